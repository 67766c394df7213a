//! Server choice, sign-up, log-in, restoring the saved session, sessions, log-out.

use protocol::{
    auth::{LoginRequest, RegisterRequest, SessionInfo},
    users::User,
};
use serde::Serialize;
use sohbet_client::Client;
use tauri::{ipc::Channel, State};

use crate::{
    error::{CommandError, CommandResult},
    events::AppEvent,
    state::AppState,
};

/// Shown in the server's session list, e.g. "Sohbet desktop 0.1.0 on linux".
fn device_info() -> String {
    format!(
        "Sohbet desktop {} on {}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS
    )
}

/// Where the app stands when it starts.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Startup {
    /// No server chosen yet: first run.
    NoServer,
    /// A server, no session: log in or sign up.
    LoggedOut { server: String },
    /// The saved session is valid.
    LoggedIn { server: String, user: User },
    /// A saved session, but the server does not answer; the gateway keeps trying.
    Offline { server: String },
}

/// Restores the saved session, if any, and connects.
#[tauri::command]
#[specta::specta]
pub async fn startup(state: State<'_, AppState>) -> CommandResult<Startup> {
    crate::startup_mark("startup command");
    let Ok(server) = state.server().await else {
        return Ok(Startup::NoServer);
    };
    let base = server.base().to_owned();
    if let Ok(session) = state.session().await {
        // The web view reloaded: the session is already running.
        let user = session.client.me().await?;
        return Ok(Startup::LoggedIn { server: base, user });
    }
    let profile = state.profile.clone();
    let token = tokio::task::spawn_blocking(move || profile.load_token())
        .await
        .ok()
        .flatten();
    crate::startup_mark("token loaded");
    let Some(token) = token else {
        return Ok(Startup::LoggedOut { server: base });
    };
    let client = server.with_token(token);
    let me = client.me().await;
    crate::startup_mark("session checked");
    match me {
        Ok(user) => {
            state.start_session(client).await;
            Ok(Startup::LoggedIn { server: base, user })
        }
        Err(e) if e.code() == Some("unauthorized") => {
            let profile = state.profile.clone();
            let _ = tokio::task::spawn_blocking(move || profile.clear_token()).await;
            Ok(Startup::LoggedOut { server: base })
        }
        Err(e) => {
            let e = CommandError::from(e);
            if e.code == "unreachable" {
                // Keep the session: the gateway reconnects by itself once the server is back.
                state.start_session(client).await;
                Ok(Startup::Offline { server: base })
            } else {
                Err(e)
            }
        }
    }
}

/// Normalises what a person typed as a server address: `host:port` gets `http://`, a
/// trailing slash goes; anything but http(s) is refused.
pub fn normalise_server(input: &str) -> CommandResult<String> {
    let input = input.trim();
    if input.is_empty() {
        return Err(invalid_server("Enter the server's address."));
    }
    let with_scheme = if input.contains("://") {
        input.to_owned()
    } else {
        format!("http://{input}")
    };
    let url = reqwest::Url::parse(&with_scheme)
        .map_err(|_| invalid_server("Enter an address like https://chat.example.org."))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid_server(
            "The address must start with http:// or https://.",
        ));
    }
    if url.host_str().is_none_or(str::is_empty)
        || url.query().is_some()
        || !url.username().is_empty()
    {
        return Err(invalid_server(
            "Enter an address like https://chat.example.org.",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn invalid_server(message: &str) -> CommandError {
    CommandError {
        field: Some("server".into()),
        ..CommandError::new("invalid_server", message)
    }
}

/// Checks that a Sohbet server answers at `address` and remembers it.
#[tauri::command]
#[specta::specta]
pub async fn set_server(state: State<'_, AppState>, address: String) -> CommandResult<String> {
    let base = normalise_server(&address)?;
    let client = Client::new(base.clone())?;
    client
        .request::<(), serde_json::Value>(reqwest::Method::GET, "/api/health", None)
        .await?;
    state.profile.update_config(|c| {
        if c.server.as_ref() != Some(&base) {
            // Group ids mean nothing on another server.
            c.notifications.clear();
        }
        c.server = Some(base.clone());
    })?;
    *state.server.lock().await = Some(client);
    Ok(base)
}

/// Forgets the server (back to the first-run screen); only while logged out.
#[tauri::command]
#[specta::specta]
pub async fn forget_server(state: State<'_, AppState>) -> CommandResult<()> {
    if state.session().await.is_ok() {
        return Err(CommandError::new("logged_in", "Log out first."));
    }
    state.profile.update_config(|c| {
        c.server = None;
        c.notifications.clear();
    })?;
    *state.server.lock().await = None;
    Ok(())
}

#[tauri::command]
#[specta::specta]
pub async fn register(state: State<'_, AppState>, request: RegisterRequest) -> CommandResult<User> {
    let login = request.username.clone();
    let password = request.password.clone();
    state.server().await?.register(&request).await?;
    log_in(state, login, password).await
}

#[tauri::command]
#[specta::specta]
pub async fn log_in(
    state: State<'_, AppState>,
    login: String,
    password: String,
) -> CommandResult<User> {
    let server = state.server().await?;
    let (client, resp) = server
        .login(&LoginRequest {
            login,
            password,
            device_info: Some(device_info()),
        })
        .await?;
    let profile = state.profile.clone();
    let token = resp.token.clone();
    tokio::task::spawn_blocking(move || profile.save_token(&token))
        .await
        .map_err(|_| CommandError::new("storage", "Could not save the session."))??;
    state.start_session(client).await;
    Ok(resp.user)
}

/// Ends the session on the server (when it answers) and forgets it here in any case.
#[tauri::command]
#[specta::specta]
pub async fn log_out(state: State<'_, AppState>) -> CommandResult<()> {
    if let Some(session) = state.end_session().await {
        if let Err(e) = session.client.logout().await {
            tracing::info!(error = %e, "logout did not reach the server");
        }
    }
    let profile = state.profile.clone();
    let _ = tokio::task::spawn_blocking(move || {
        profile.clear_token();
        profile.clear_drafts();
    })
    .await;
    Ok(())
}

/// Subscribes the web view to the session's events (again, after a reload).
#[tauri::command]
#[specta::specta]
pub fn subscribe(state: State<'_, AppState>, on_event: Channel<AppEvent>) {
    state.subscribe(on_event);
}

#[tauri::command]
#[specta::specta]
pub async fn sessions(state: State<'_, AppState>) -> CommandResult<Vec<SessionInfo>> {
    Ok(state.client().await?.sessions().await?)
}

#[tauri::command]
#[specta::specta]
pub async fn revoke_session(state: State<'_, AppState>, session_id: String) -> CommandResult<()> {
    Ok(state.client().await?.revoke_session(&session_id).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn revoke_other_sessions(state: State<'_, AppState>) -> CommandResult<u32> {
    let revoked = state.client().await?.revoke_other_sessions().await?.revoked;
    Ok(u32::try_from(revoked).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::normalise_server;

    #[test]
    fn server_addresses_are_normalised() {
        assert_eq!(
            normalise_server(" 127.0.0.1:8080/ ").expect("a bare address"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            normalise_server("HTTPS://chat.example.org").expect("an https address"),
            "https://chat.example.org"
        );
        for bad in [
            "",
            "ftp://x",
            "javascript:alert(1)",
            "http://",
            "http://a b",
        ] {
            let e = normalise_server(bad).expect_err("refused");
            assert_eq!(e.code, "invalid_server", "{bad}");
            assert_eq!(e.field.as_deref(), Some("server"));
        }
    }
}
