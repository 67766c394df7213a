//! Prometheus metrics, `GET /metrics` in the text format, every name prefixed `sohbet_`.
//!
//! Counted where they happen (through the `metrics` facade): HTTP requests and their latency
//! by route template and status (`track_http`), PostgreSQL and Redis errors (the
//! `ApiError` conversions), login failures, rate-limit refusals. Read when scraped: gateway
//! connections, events delivered and queue closes (the hub's own counters), the PostgreSQL
//! pool, and active calls and participants (from Redis, so every instance reports the same
//! cluster-wide figure).
//!
//! `--metrics-listen` serves `/metrics` on an address of its own (e.g. loopback only) and
//! takes it off the public one.

use std::{
    collections::HashSet,
    sync::{atomic::Ordering, OnceLock},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// Request latency buckets, in seconds: from a cached read (~1 ms) to a login's argon2 under
/// load (~1 s) and the 5 s database acquire timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's recorder, installed once (tests start several servers in one process).
fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("sohbet_http_request_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::error!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// Installs the recorder, so counts start before the first scrape.
pub fn init() {
    handle();
}

/// `/metrics` alone, for the public router or a listener of its own.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

/// GET /metrics
///
/// The Prometheus text exposition format.
async fn render(State(state): State<AppState>) -> Response {
    observe(&state).await;
    match handle() {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Counts a request by method, route template (never the raw path: ids would make a series
/// per user) and status, and records its latency.
pub async fn track_http(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("sohbet_http_requests_total", &labels).increment(1);
    metrics::histogram!("sohbet_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// A PostgreSQL error reached a request.
pub fn postgres_error() {
    metrics::counter!("sohbet_postgres_errors_total").increment(1);
}

/// A Redis error reached a request.
pub fn redis_error() {
    metrics::counter!("sohbet_redis_errors_total").increment(1);
}

/// A login with a wrong password or an unknown account.
pub fn login_failure() {
    metrics::counter!("sohbet_login_failures_total").increment(1);
}

/// A request refused by a rate limit.
pub fn rate_limited() {
    metrics::counter!("sohbet_rate_limit_hits_total").increment(1);
}

/// Figures read at scrape time.
async fn observe(state: &AppState) {
    let hub = &state.gateway.hub;
    metrics::gauge!("sohbet_gateway_connections").set(hub.connection_count() as f64);
    metrics::counter!("sohbet_gateway_events_delivered_total")
        .absolute(hub.delivered.load(Ordering::Relaxed));
    metrics::counter!("sohbet_gateway_queue_closes_total")
        .absolute(hub.kicked_slow.load(Ordering::Relaxed));
    let size = state.db.size();
    let idle = u32::try_from(state.db.num_idle()).unwrap_or(u32::MAX);
    metrics::gauge!("sohbet_postgres_pool_connections", "state" => "idle").set(f64::from(idle));
    metrics::gauge!("sohbet_postgres_pool_connections", "state" => "in_use")
        .set(f64::from(size.saturating_sub(idle)));
    metrics::gauge!("sohbet_postgres_pool_max_connections")
        .set(f64::from(state.settings.db_pool_size));
    match state.gateway.voice.live_participants().await {
        Ok(members) => {
            let calls: HashSet<&str> = members
                .iter()
                .filter_map(|m| m.split_once('|').map(|(group, _)| group))
                .collect();
            metrics::gauge!("sohbet_calls_active").set(calls.len() as f64);
            metrics::gauge!("sohbet_call_participants").set(members.len() as f64);
        }
        // Already counted as a Redis error by its conversion.
        Err(e) => {
            tracing::warn!(error = %e, "cannot count calls for metrics");
        }
    }
}
