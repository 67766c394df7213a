//! The `Auth` extractor: a request's session from `Authorization: Bearer <token>`, renewed
//! on use. Every authenticated route takes it.

use axum::{extract::FromRequestParts, http::request::Parts};
use protocol::UserId;

use crate::{error::ApiError, session::Session, state::AppState};

pub struct Auth(pub Session);

impl Auth {
    pub fn user_id(&self) -> UserId {
        self.0.data.user_id
    }
}

pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(parts).ok_or(ApiError::Unauthorized)?;
        Ok(Self(state.sessions.authenticate(token).await?))
    }
}
