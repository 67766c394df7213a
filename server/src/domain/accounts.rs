//! Accounts: registration and login.

use protocol::{auth::LoginResponse, users::User};

use crate::{
    domain::{
        users::{fetch_user, UserRow, FRIEND_CODE_ATTEMPTS},
        DisplayName, Email, FriendCode, LoginName, Password, Username,
    },
    error::{violated_constraint, ApiError, ApiResult},
    rate_limit,
    state::AppState,
};

/// What registration needs, validated.
#[derive(Debug)]
pub struct Registration {
    pub username: Username,
    pub email: Email,
    pub password: Password,
    pub display_name: Option<DisplayName>,
}

/// Creates an account with a fresh friend code. 409 `username_taken` or `email_taken`.
pub async fn register(state: &AppState, new: Registration) -> ApiResult<User> {
    let hash = state.passwords.hash(new.password.expose()).await?;
    for _ in 0..FRIEND_CODE_ATTEMPTS {
        let friend_code = FriendCode::random();
        let inserted = sqlx::query_as!(
            UserRow,
            "insert into users (username, email, password_hash, friend_code, display_name)
             values ($1, $2, $3, $4, $5)
             returning user_id, username, email, display_name, profile_pic, friend_code, status,
                       last_seen, created_at, updated_at",
            new.username.as_str(),
            new.email.as_str(),
            hash.as_str(),
            friend_code.as_str(),
            new.display_name.as_ref().map(DisplayName::as_str)
        )
        .fetch_one(&state.db)
        .await;
        match inserted {
            Ok(row) => {
                tracing::info!(user_id = row.user_id, "registered");
                return Ok(row.into());
            }
            Err(e) => match violated_constraint(&e) {
                Some("users_username_key") => {
                    return Err(ApiError::Conflict {
                        code: "username_taken",
                        message: "that username is taken",
                    })
                }
                Some("users_email_key") => {
                    return Err(ApiError::Conflict {
                        code: "email_taken",
                        message: "an account with that email exists",
                    })
                }
                Some("users_friend_code_key") => continue,
                _ => return Err(e.into()),
            },
        }
    }
    Err(ApiError::Internal(anyhow::anyhow!(
        "no free friend code after {FRIEND_CODE_ATTEMPTS} draws"
    )))
}

/// The account a login names, and what its password must match.
struct LoginRow {
    user_id: i64,
    password_hash: String,
    disabled: bool,
}

/// A login attempt as it arrived.
pub struct Credentials<'a> {
    /// A username or an email.
    pub login: &'a LoginName,
    pub password: &'a str,
    pub device_info: Option<&'a str>,
    /// The client's address: attempts are limited per IP, and the session records it.
    pub ip: String,
}

/// Checks the credentials and opens a session. An unknown account and a wrong password
/// give the same `invalid_credentials` answer after the same argon2 work. Attempts are
/// limited per client IP, and failures per login name *from that IP* (429 with
/// `Retry-After`): someone guessing elsewhere cannot lock the owner out.
pub async fn login(state: &AppState, creds: Credentials<'_>) -> ApiResult<LoginResponse> {
    let settings = &state.settings;
    let ip = creds.ip;
    rate_limit::hit(
        &state.redis,
        &state.keys.login_ip(&ip),
        settings.login_ip_limit,
        settings.login_window_secs,
    )
    .await?;
    let login = creds.login;
    let account_key = state.keys.login_failures(login.as_str(), &ip);
    rate_limit::check(&state.redis, &account_key, settings.login_account_limit).await?;

    let row = if login.is_email() {
        sqlx::query_as!(
            LoginRow,
            r#"select user_id, password_hash, disabled_at is not null as "disabled!"
                 from users where lower(email) = $1"#,
            login.as_str()
        )
        .fetch_optional(&state.db)
        .await?
    } else {
        sqlx::query_as!(
            LoginRow,
            r#"select user_id, password_hash, disabled_at is not null as "disabled!"
                 from users where username = $1"#,
            login.as_str()
        )
        .fetch_optional(&state.db)
        .await?
    };
    let (hash, account) = match row {
        Some(r) => (Some(r.password_hash), Some((r.user_id, r.disabled))),
        None => (None, None),
    };
    let verified = state.passwords.verify(creds.password, hash).await?;
    let (user_id, disabled) = match account {
        Some(account) if verified => account,
        _ => {
            crate::metrics::login_failure();
            rate_limit::record(&state.redis, &account_key, settings.login_window_secs).await?;
            return Err(ApiError::InvalidCredentials);
        }
    };
    // Only after the password matched: nobody learns an account is disabled but its owner.
    if disabled {
        return Err(ApiError::AccountDisabled);
    }
    // An account deleted since the lookup is as unknown as any other.
    let user = fetch_user(&state.db, user_id).await.map_err(|e| match e {
        ApiError::Unauthorized => ApiError::InvalidCredentials,
        other => other,
    })?;
    rate_limit::reset(&state.redis, &account_key).await?;
    let token = state
        .sessions
        .create(user.user_id, &user.username, &ip, creds.device_info)
        .await?;
    tracing::info!(user_id = user.user_id, client_ip = %ip, "logged in");
    Ok(LoginResponse {
        token,
        user,
        expires_at: state.sessions.expires_at(),
    })
}
