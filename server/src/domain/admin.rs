//! The operator's account tasks, behind the `sohbet-server user` commands: list accounts,
//! disable and enable one, set a new password. Ending a user's sessions goes through the
//! session store and the event bus like a revocation by the user, so their sockets on every
//! instance close at once (4004).

use chrono::{DateTime, Utc};
use protocol::UserId;
use sqlx::PgExecutor;

use crate::{
    domain::{Password, Username},
    error::{ApiError, ApiResult},
    state::AppState,
};

/// One account as the operator sees it.
#[derive(Debug)]
pub struct Account {
    pub user_id: UserId,
    pub username: String,
    pub email: String,
    pub created_at: DateTime<Utc>,
    /// Since when the account is disabled; `None` when it is active.
    pub disabled_at: Option<DateTime<Utc>>,
}

/// Every account, oldest first.
pub async fn list(db: impl PgExecutor<'_>) -> ApiResult<Vec<Account>> {
    Ok(sqlx::query_as!(
        Account,
        "select user_id, username, email, created_at, disabled_at from users order by user_id",
    )
    .fetch_all(db)
    .await?)
}

/// Disables (`true`) or enables the account; disabling ends every session of it. Returns the
/// user's id; 404 for an unknown username.
pub async fn set_disabled(
    state: &AppState,
    username: &Username,
    disabled: bool,
) -> ApiResult<UserId> {
    // Disabled first, sessions ended after: a login racing with this either sees the flag
    // or made its session before the sessions were ended.
    let user_id = sqlx::query_scalar!(
        "update users
         set disabled_at = case when $2::boolean then coalesce(disabled_at, now()) end
         where username = $1
         returning user_id",
        username.as_str(),
        disabled
    )
    .fetch_optional(&state.db)
    .await?;
    let user_id = user_id.ok_or(ApiError::NotFound("user"))?;
    if disabled {
        end_sessions(state, user_id).await?;
    }
    tracing::info!(
        user_id,
        disabled,
        "account disabled flag set by an operator"
    );
    Ok(user_id)
}

/// Sets a new password and ends every session of the account (whoever held one no longer
/// knows the password). 404 for an unknown username.
pub async fn reset_password(
    state: &AppState,
    username: &Username,
    password: &Password,
) -> ApiResult<UserId> {
    let hash = state.passwords.hash(password.expose()).await?;
    let user_id = sqlx::query_scalar!(
        "update users set password_hash = $2 where username = $1 returning user_id",
        username.as_str(),
        hash
    )
    .fetch_optional(&state.db)
    .await?;
    let user_id = user_id.ok_or(ApiError::NotFound("user"))?;
    end_sessions(state, user_id).await?;
    tracing::info!(user_id, "password reset by an operator");
    Ok(user_id)
}

async fn end_sessions(state: &AppState, user_id: UserId) -> ApiResult<()> {
    // No token is empty, so this keeps none.
    let ended = state.sessions.revoke_others(user_id, "").await?;
    state
        .events
        .sessions_ended(&state.keys.control_channel(), user_id, ended)
        .await;
    Ok(())
}
