//! Voice calls over REST: the ICE servers a client should use, and my missed calls. Joining,
//! leaving and signaling go over the gateway (`gateway::calls`).

use axum::extract::State;
use base64::Engine;
use hmac::{Hmac, Mac};
use protocol::voice::{IceServer, IceServers, MissedCall, MissedCalls};
use sha1::Sha1;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{auth::Auth, config::Settings, error::ApiResult, extract::Json, state::AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ice_servers))
        .routes(routes!(missed_calls))
}

/// Most missed calls listed.
const MISSED_CALLS_LISTED: i64 = 50;

/// GET /api/voice/ice-servers
///
/// The STUN servers configured, and the TURN servers with credentials valid for
/// `ttl_secs`, in the TURN REST scheme coturn's `use-auth-secret` checks. Empty when none is
/// configured: clients on one network connect through host candidates.
#[utoipa::path(get, path = "/api/voice/ice-servers", tag = "voice",
    security(("bearer" = [])),
    responses((status = 200, body = IceServers),
              (status = 401, body = protocol::error::ErrorBody)))]
async fn ice_servers(auth: Auth, State(state): State<AppState>) -> Json<IceServers> {
    let now = chrono::Utc::now().timestamp();
    Json(ice_servers_for(&state.settings, auth.user_id(), now))
}

/// The ICE servers for `user_id` at Unix time `now`.
pub fn ice_servers_for(settings: &Settings, user_id: i64, now: i64) -> IceServers {
    let mut ice_servers = Vec::new();
    if !settings.stun_urls.is_empty() {
        ice_servers.push(IceServer {
            urls: settings.stun_urls.clone(),
            username: None,
            credential: None,
        });
    }
    let ttl_secs = settings.turn_ttl_secs;
    if let (false, Some(secret)) = (settings.turn_urls.is_empty(), &settings.turn_secret) {
        let expiry = now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX));
        let username = format!("{expiry}:{user_id}");
        ice_servers.push(IceServer {
            urls: settings.turn_urls.clone(),
            credential: Some(turn_credential(secret.expose(), &username)),
            username: Some(username),
        });
    }
    IceServers {
        ice_servers,
        ttl_secs,
    }
}

/// base64(HMAC-SHA1(secret, username)): the TURN REST API's password.
pub fn turn_credential(secret: &str, username: &str) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// GET /api/voice/missed-calls
///
/// My most recent missed calls (DM calls that rang until they timed out), newest first.
#[utoipa::path(get, path = "/api/voice/missed-calls", tag = "voice",
    security(("bearer" = [])),
    responses((status = 200, body = MissedCalls),
              (status = 401, body = protocol::error::ErrorBody)))]
async fn missed_calls(auth: Auth, State(state): State<AppState>) -> ApiResult<Json<MissedCalls>> {
    let rows = sqlx::query!(
        "select missed_call_id, group_id, caller_id, called_at from missed_calls
          where callee_id = $1 order by called_at desc, missed_call_id desc limit $2",
        auth.user_id(),
        MISSED_CALLS_LISTED
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(MissedCalls {
        missed_calls: rows
            .into_iter()
            .map(|r| MissedCall {
                missed_call_id: r.missed_call_id,
                group_id: r.group_id,
                caller_id: r.caller_id,
                called_at: r.called_at,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credentials_are_base64_hmac_sha1() {
        // RFC 2202 test case 2 (HMAC-SHA1 of "what do ya want for nothing?" keyed "Jefe").
        assert_eq!(
            turn_credential("Jefe", "what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
    }

    #[test]
    fn nothing_configured_means_no_ice_servers() {
        let settings = Settings::new("postgres://x", "redis://x");
        let servers = ice_servers_for(&settings, 7, 1_700_000_000);
        assert!(servers.ice_servers.is_empty());
    }

    #[test]
    fn turn_usernames_carry_expiry_and_user() {
        let mut settings = Settings::new("postgres://x", "redis://x");
        settings.stun_urls = vec!["stun:127.0.0.1:3478".into()];
        settings.turn_urls = vec!["turn:127.0.0.1:3478?transport=udp".into()];
        settings.turn_secret = Some(crate::config::Secret("s3cret".into()));
        settings.turn_ttl_secs = 600;
        let servers = ice_servers_for(&settings, 7, 1_700_000_000);
        assert_eq!(servers.ice_servers.len(), 2);
        let turn = &servers.ice_servers[1];
        assert_eq!(turn.username.as_deref(), Some("1700000600:7"));
        // Python: base64(hmac.new(b"s3cret", b"1700000600:7", sha1).digest())
        assert_eq!(
            turn.credential.as_deref(),
            Some("PvB8GqFh5UcTgLqT2Q0vyc81Wjo=")
        );
        assert_eq!(servers.ttl_secs, 600);
    }
}
