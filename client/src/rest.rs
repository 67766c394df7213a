//! [`Client`]: one typed method per REST operation.

use std::time::Duration;

use protocol::{
    auth::{LoginRequest, LoginResponse, RegisterRequest, RevokedSessions, SessionInfo},
    error::ErrorBody,
    users::{FriendCodeResponse, UpdateMeRequest, User},
};
use reqwest::{Method, StatusCode};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::ClientError;

/// REST requests give up after this long; the server answers in milliseconds when healthy.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A Sohbet REST client for one server and, once logged in, one session.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("logged_in", &self.token.is_some())
            .finish()
    }
}

impl Client {
    /// A client for the server at `base`, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: impl Into<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            base: base.into().trim_end_matches('/').to_owned(),
            token: None,
        })
    }

    /// The same server with an existing session token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `ws://…/api/gateway` for this server.
    pub fn gateway_url(&self) -> String {
        let ws = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.base.clone()
        };
        format!("{ws}/api/gateway")
    }

    /// Sends a request and decodes the answer (`()` for 204).
    pub async fn request<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            let bytes = if status == StatusCode::NO_CONTENT || bytes.is_empty() {
                &b"null"[..]
            } else {
                &bytes
            };
            return serde_json::from_slice(bytes).map_err(|_| ClientError::Unexpected {
                status,
                body: String::from_utf8_lossy(bytes).into_owned(),
            });
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => Err(ClientError::Api {
                status,
                code: e.error.code,
                message: e.error.message,
            }),
            Err(_) => Err(ClientError::Unexpected {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            }),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request::<(), T>(Method::GET, path, None).await
    }

    async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.request(method, path, Some(body)).await
    }

    async fn bare<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> Result<T, ClientError> {
        self.request::<(), T>(method, path, None).await
    }

    // --- auth -------------------------------------------------------------------------------

    pub async fn register(&self, req: &RegisterRequest) -> Result<User, ClientError> {
        self.send(Method::POST, "/api/auth/register", req).await
    }

    /// Logs in and returns a client holding the new session.
    pub async fn login(&self, req: &LoginRequest) -> Result<(Self, LoginResponse), ClientError> {
        let resp: LoginResponse = self.send(Method::POST, "/api/auth/login", req).await?;
        Ok((self.with_token(resp.token.clone()), resp))
    }

    pub async fn logout(&self) -> Result<(), ClientError> {
        self.bare(Method::POST, "/api/auth/logout").await
    }

    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, ClientError> {
        self.get("/api/auth/sessions").await
    }

    pub async fn revoke_session(&self, session_id: &str) -> Result<(), ClientError> {
        self.bare(Method::DELETE, &format!("/api/auth/sessions/{session_id}"))
            .await
    }

    pub async fn revoke_other_sessions(&self) -> Result<RevokedSessions, ClientError> {
        self.bare(Method::DELETE, "/api/auth/sessions").await
    }

    // --- users ------------------------------------------------------------------------------

    pub async fn me(&self) -> Result<User, ClientError> {
        self.get("/api/users/me").await
    }

    pub async fn update_me(&self, req: &UpdateMeRequest) -> Result<User, ClientError> {
        self.send(Method::PATCH, "/api/users/me", req).await
    }

    pub async fn regenerate_friend_code(&self) -> Result<FriendCodeResponse, ClientError> {
        self.bare(Method::POST, "/api/users/me/friend-code").await
    }
}
