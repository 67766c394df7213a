//! Extractors whose rejections are [`ApiError`]s, so a bad body, path or query answers in
//! the one error shape.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, StatusCode},
    response::{IntoResponse, Response},
};
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::error::ApiError;

/// A JSON body, always an object. Not JSON at all → 400 `malformed_json`; JSON of the wrong
/// shape (not an object, types, missing or unknown fields) → 422 `invalid_body`; not
/// declared JSON → 415; over the body limit → 413.
pub struct Json<T>(pub T);

fn is_json_content_type(req: &Request) -> bool {
    let Some(value) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json_content_type(&req) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::InvalidParameter(e.body_text())
            }
        })?;
        // JSON is UTF-8 (RFC 8259); serde_json does not check the bytes of a string it
        // skips, so invalid UTF-8 there would otherwise pass for JSON of the wrong shape.
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Err(ApiError::MalformedJson);
        };
        // serde reads a struct from an array too, field by field in order, so `["name",
        // "password"]` would pass for `{"login": …, "password": …}`. Every body is an object.
        let is_object = text.trim_start().starts_with('{');
        match serde_json::from_str::<T>(text) {
            Ok(value) if is_object => Ok(Self(value)),
            Ok(_) => Err(ApiError::InvalidBody(
                "invalid body: expected a JSON object".into(),
            )),
            // Valid JSON of the wrong shape, or not JSON at all?
            Err(e) if serde_json::from_str::<IgnoredAny>(text).is_ok() => {
                Err(ApiError::InvalidBody(format!("invalid body: {e}")))
            }
            Err(_) => Err(ApiError::MalformedJson),
        }
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A WebSocket upgrade; a plain request answers 400 `websocket_required`.
pub struct WebSocketUpgrade(pub axum::extract::WebSocketUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map(Self)
            .map_err(|_| ApiError::WebSocketRequired)
    }
}

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);
