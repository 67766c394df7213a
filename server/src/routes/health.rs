//! Liveness of the server and reachability of its stores.

use axum::{extract::State, http::StatusCode, Json};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use std::time::Duration;

use tokio::time::timeout;

use crate::state::AppState;

/// A store that has not answered a trivial probe in this time counts as unreachable; long
/// enough for a busy store, short enough for a load balancer's health check.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unreachable`.
    pub postgres: &'static str,
    pub redis: &'static str,
}

/// GET /api/health
///
/// 200 when PostgreSQL and Redis both answer, 503 otherwise; the body says which.
#[utoipa::path(get, path = "/api/health", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let pg = timeout(
        PROBE_TIMEOUT,
        sqlx::query_scalar!("select 1 as probe").fetch_one(&state.db),
    );
    let mut conn = state.redis.clone();
    let ping = redis::cmd("PING");
    let redis = timeout(PROBE_TIMEOUT, ping.query_async::<String>(&mut conn));
    let (pg, redis) = tokio::join!(pg, redis);
    let (pg, redis) = (matches!(pg, Ok(Ok(_))), matches!(redis, Ok(Ok(_))));
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    let status = if pg && redis {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            postgres: word(pg),
            redis: word(redis),
        }),
    )
}
