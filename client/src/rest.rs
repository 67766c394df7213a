//! [`Client`]: one typed method per REST operation.

use std::time::Duration;

use protocol::{
    auth::{LoginRequest, LoginResponse, RegisterRequest, RevokedSessions, SessionInfo},
    error::ErrorBody,
    friends::{Friend, FriendRequestBody, FriendRequestOutcome, FriendRequests},
    groups::{
        ChangeRoleRequest, CreateGroupRequest, Group, GroupDetail, GroupListItem, Member, Role,
        UpdateGroupRequest, UserRef,
    },
    messages::{
        EditMessageRequest, HistoryQuery, MarkReadRequest, Message, MessagePage, ReadState,
        Receipt, SendMessageRequest,
    },
    users::{FriendCodeResponse, UpdateMeRequest, User},
    GroupId, MessageId, UserId,
};
use reqwest::{Method, StatusCode};
use serde::{de::DeserializeOwned, Serialize};

use rustls::ClientConfig;

use crate::{error::ClientError, tls::Tls};

/// REST requests give up after this long; the server answers in milliseconds when healthy.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A Sohbet REST client for one server and, once logged in, one session.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    tls: Tls,
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
    /// A client for the server at `base`, e.g. `http://127.0.0.1:8080` or
    /// `https://chat.example.org`, trusting the system's root certificates.
    pub fn new(base: impl Into<String>) -> Result<Self, ClientError> {
        Self::with_tls(base, Tls::default())
    }

    /// A client for the server at `base` trusting `tls`'s roots (e.g. the system's and the
    /// server's own CA, [`Tls::with_extra_ca`]).
    pub fn with_tls(base: impl Into<String>, tls: Tls) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .use_preconfigured_tls(ClientConfig::clone(&tls.config()))
            .build()?;
        Ok(Self {
            http,
            base: base.into().trim_end_matches('/').to_owned(),
            token: None,
            tls,
        })
    }

    /// Whom this client trusts, for its gateway connection ([`GatewayOptions::tls`]).
    ///
    /// [`GatewayOptions::tls`]: crate::gateway::GatewayOptions::tls
    pub fn tls(&self) -> &Tls {
        &self.tls
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
        let retry_after_secs = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
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
                field: e.error.field,
                retry_after_secs,
            }),
            Err(_) => Err(ClientError::Unexpected {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            }),
        }
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
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

    // --- friends ----------------------------------------------------------------------------

    pub async fn friends(&self) -> Result<Vec<Friend>, ClientError> {
        self.get("/api/friends").await
    }

    pub async fn friend_requests(&self) -> Result<FriendRequests, ClientError> {
        self.get("/api/friends/requests").await
    }

    /// Sends a friend request by friend code or username.
    pub async fn send_friend_request(
        &self,
        req: &FriendRequestBody,
    ) -> Result<FriendRequestOutcome, ClientError> {
        self.send(Method::POST, "/api/friends/requests", req).await
    }

    pub async fn accept_friend_request(&self, user_id: UserId) -> Result<Friend, ClientError> {
        self.bare(
            Method::POST,
            &format!("/api/friends/requests/{user_id}/accept"),
        )
        .await
    }

    pub async fn decline_friend_request(&self, user_id: UserId) -> Result<(), ClientError> {
        self.bare(
            Method::POST,
            &format!("/api/friends/requests/{user_id}/decline"),
        )
        .await
    }

    pub async fn cancel_friend_request(&self, user_id: UserId) -> Result<(), ClientError> {
        self.bare(Method::DELETE, &format!("/api/friends/requests/{user_id}"))
            .await
    }

    pub async fn remove_friend(&self, user_id: UserId) -> Result<(), ClientError> {
        self.bare(Method::DELETE, &format!("/api/friends/{user_id}"))
            .await
    }

    pub async fn blocked(&self) -> Result<Vec<Friend>, ClientError> {
        self.get("/api/blocks").await
    }

    pub async fn block(&self, user_id: UserId) -> Result<(), ClientError> {
        self.bare(Method::PUT, &format!("/api/blocks/{user_id}"))
            .await
    }

    pub async fn unblock(&self, user_id: UserId) -> Result<(), ClientError> {
        self.bare(Method::DELETE, &format!("/api/blocks/{user_id}"))
            .await
    }

    // --- groups and DMs ---------------------------------------------------------------------

    /// My groups and DMs with their last message and my unread count, latest activity first.
    pub async fn groups(&self) -> Result<Vec<GroupListItem>, ClientError> {
        self.get("/api/groups").await
    }

    pub async fn create_group(&self, req: &CreateGroupRequest) -> Result<GroupDetail, ClientError> {
        self.send(Method::POST, "/api/groups", req).await
    }

    pub async fn group(&self, group_id: GroupId) -> Result<GroupDetail, ClientError> {
        self.get(&format!("/api/groups/{group_id}")).await
    }

    pub async fn update_group(
        &self,
        group_id: GroupId,
        req: &UpdateGroupRequest,
    ) -> Result<Group, ClientError> {
        self.send(Method::PATCH, &format!("/api/groups/{group_id}"), req)
            .await
    }

    pub async fn delete_group(&self, group_id: GroupId) -> Result<(), ClientError> {
        self.bare(Method::DELETE, &format!("/api/groups/{group_id}"))
            .await
    }

    /// Gets or creates the DM with a friend.
    pub async fn open_dm(&self, user_id: UserId) -> Result<GroupDetail, ClientError> {
        self.send(Method::POST, "/api/dms", &UserRef { user_id })
            .await
    }

    pub async fn add_member(
        &self,
        group_id: GroupId,
        user_id: UserId,
    ) -> Result<Member, ClientError> {
        let path = format!("/api/groups/{group_id}/members");
        self.send(Method::POST, &path, &UserRef { user_id }).await
    }

    pub async fn remove_member(
        &self,
        group_id: GroupId,
        user_id: UserId,
    ) -> Result<(), ClientError> {
        self.bare(
            Method::DELETE,
            &format!("/api/groups/{group_id}/members/{user_id}"),
        )
        .await
    }

    pub async fn leave_group(&self, group_id: GroupId) -> Result<(), ClientError> {
        self.bare(Method::POST, &format!("/api/groups/{group_id}/leave"))
            .await
    }

    pub async fn change_role(
        &self,
        group_id: GroupId,
        user_id: UserId,
        role: Role,
    ) -> Result<Member, ClientError> {
        let path = format!("/api/groups/{group_id}/members/{user_id}");
        self.send(Method::PATCH, &path, &ChangeRoleRequest { role })
            .await
    }

    pub async fn transfer_ownership(
        &self,
        group_id: GroupId,
        user_id: UserId,
    ) -> Result<GroupDetail, ClientError> {
        let path = format!("/api/groups/{group_id}/owner");
        self.send(Method::POST, &path, &UserRef { user_id }).await
    }

    // --- messages and read status -----------------------------------------------------------

    pub async fn send_message(
        &self,
        group_id: GroupId,
        req: &SendMessageRequest,
    ) -> Result<Message, ClientError> {
        self.send(
            Method::POST,
            &format!("/api/groups/{group_id}/messages"),
            req,
        )
        .await
    }

    pub async fn history(
        &self,
        group_id: GroupId,
        query: &HistoryQuery,
    ) -> Result<MessagePage, ClientError> {
        let mut params = Vec::new();
        for (name, value) in [
            ("before", query.before),
            ("after", query.after),
            ("around", query.around),
            ("limit", query.limit),
        ] {
            if let Some(v) = value {
                params.push(format!("{name}={v}"));
            }
        }
        let qs = if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        };
        self.get(&format!("/api/groups/{group_id}/messages{qs}"))
            .await
    }

    pub async fn edit_message(
        &self,
        group_id: GroupId,
        message_id: MessageId,
        content: &str,
    ) -> Result<Message, ClientError> {
        let path = format!("/api/groups/{group_id}/messages/{message_id}");
        self.send(
            Method::PATCH,
            &path,
            &EditMessageRequest {
                content: content.to_owned(),
            },
        )
        .await
    }

    pub async fn delete_message(
        &self,
        group_id: GroupId,
        message_id: MessageId,
    ) -> Result<(), ClientError> {
        self.bare(
            Method::DELETE,
            &format!("/api/groups/{group_id}/messages/{message_id}"),
        )
        .await
    }

    pub async fn read_state(&self, group_id: GroupId) -> Result<ReadState, ClientError> {
        self.get(&format!("/api/groups/{group_id}/read")).await
    }

    pub async fn mark_read(
        &self,
        group_id: GroupId,
        req: &MarkReadRequest,
    ) -> Result<ReadState, ClientError> {
        self.send(Method::POST, &format!("/api/groups/{group_id}/read"), req)
            .await
    }

    pub async fn receipts(
        &self,
        group_id: GroupId,
        message_id: MessageId,
    ) -> Result<Vec<Receipt>, ClientError> {
        self.get(&format!(
            "/api/groups/{group_id}/messages/{message_id}/receipts"
        ))
        .await
    }
}
