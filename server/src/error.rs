//! `ApiError`: every failure a handler can return, each with a stable code and status.
//! Internal causes are logged with their chain and never shown to the client.

use axum::{
    extract::rejection::{PathRejection, QueryRejection},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use protocol::error::{ErrorBody, ErrorDetail};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `malformed_json`: the body is not JSON.
    #[error("the request body is not valid JSON")]
    MalformedJson,
    /// 422 `invalid_body`: JSON of the wrong shape (missing or unknown fields, wrong types).
    #[error("{0}")]
    InvalidBody(String),
    /// 415 `unsupported_media_type`: the body is not declared as `application/json`.
    #[error("expected a body with content-type application/json")]
    UnsupportedMediaType,
    /// 413 `payload_too_large`.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// 400 `invalid_parameter`: a path or query parameter of the wrong form.
    #[error("{0}")]
    InvalidParameter(String),
    /// 422 `validation_failed`: a field breaks a rule (length, alphabet, range).
    #[error("{message}")]
    Validation {
        field: &'static str,
        message: String,
    },
    /// 400 `websocket_required`: a plain request to the gateway, which only upgrades.
    #[error("this endpoint accepts only a WebSocket upgrade request")]
    WebSocketRequired,
    /// 405 `method_not_allowed`: the path exists, the method does not (`Allow` lists those
    /// that do).
    #[error("this method is not allowed here")]
    MethodNotAllowed,
    /// 401 `unauthorized`: missing, malformed, expired or revoked session token.
    #[error("a valid session token is required")]
    Unauthorized,
    /// 401 `invalid_credentials`: unknown user or wrong password (deliberately the same).
    #[error("the login or password is wrong")]
    InvalidCredentials,
    /// 403 `forbidden`: known to the caller, but the caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 403 `account_disabled`: the right password for an account an operator disabled.
    #[error("this account is disabled")]
    AccountDisabled,
    /// 404 `not_found`: does not exist, or the caller may not know it exists.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409 `conflict` family: e.g. `username_taken`, `email_taken`.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: &'static str,
    },
    /// 429 `rate_limited`, with `Retry-After`.
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// 503 `unavailable`: a backing store is down.
    #[error("the service is temporarily unavailable")]
    Unavailable,
    /// 500 `internal`: a bug or an unexpected failure; details only in the log.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation {
            field,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson | Self::InvalidParameter(_) | Self::WebSocketRequired => {
                StatusCode::BAD_REQUEST
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::InvalidBody(_) | Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::AccountDisabled => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::InvalidBody(_) => "invalid_body",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::InvalidParameter(_) => "invalid_parameter",
            Self::Validation { .. } => "validation_failed",
            Self::WebSocketRequired => "websocket_required",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden(_) => "forbidden",
            Self::AccountDisabled => "account_disabled",
            Self::NotFound(_) => "not_found",
            Self::Conflict { code, .. } => code,
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(cause) => tracing::error!(error = ?cause, "internal error"),
            Self::Unavailable => tracing::warn!("backing store unavailable"),
            _ => {}
        }
        let field = match &self {
            Self::Validation { field, .. } => Some((*field).to_owned()),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                field,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Self::RateLimited { retry_after_secs } = self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        crate::metrics::postgres_error();
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::WorkerCrashed => {
                tracing::warn!(error = %e, "database unavailable");
                Self::Unavailable
            }
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| unavailable_state(&c)) => {
                tracing::warn!(error = %e, "database unavailable");
                Self::Unavailable
            }
            other => Self::Internal(other.into()),
        }
    }
}

/// Redis cannot serve this now but will: unreachable, too slow, or (on a cluster) a slot
/// changing hands or a node failing over, restarting or loading its data, past the client's
/// own redirects and retries. A transaction whose commands were all redirected (its slot
/// moved between MULTI and EXEC) is one of these too.
fn redis_unavailable(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, RetryMethod, ServerErrorKind};
    let transient = |kind: Option<ServerErrorKind>| {
        matches!(
            kind,
            Some(
                ServerErrorKind::Moved
                    | ServerErrorKind::Ask
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::BusyLoading
                    | ServerErrorKind::ReadOnly
            )
        )
    };
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_cluster_error() {
        return true;
    }
    if matches!(
        e.retry_method(),
        RetryMethod::WaitAndRetry | RetryMethod::RefreshSlotsAndRetry
    ) {
        return true;
    }
    e.kind() == ErrorKind::Server(ServerErrorKind::ExecAbort)
        && e.clone()
            .into_server_errors()
            .is_some_and(|errors| errors.iter().all(|(_, error)| transient(error.kind())))
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        crate::metrics::redis_error();
        if redis_unavailable(&e) {
            tracing::warn!(error = %e, "redis unavailable");
            Self::Unavailable
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<crate::domain::values::Invalid> for ApiError {
    fn from(e: crate::domain::values::Invalid) -> Self {
        Self::Validation {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::InvalidParameter(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::InvalidParameter(rejection.body_text())
    }
}

/// SQLSTATEs that mean "the database cannot serve this now", not "this request is wrong":
/// class 08 (connection exception), 53 (insufficient resources, e.g. too many connections),
/// 57 (operator intervention: shutting down, terminated by an administrator, or
/// `57014` cancelled by the statement timeout).
fn unavailable_state(code: &str) -> bool {
    ["08", "53", "57"]
        .iter()
        .any(|class| code.starts_with(class))
}

/// The name of the constraint a database error broke, if it was a constraint violation.
pub fn violated_constraint(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
