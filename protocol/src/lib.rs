//! Wire types of Sohbet, defined once and shared by the server (`sohbet-server`), the Rust
//! client SDK and, through generated TypeScript, the desktop UI.
//!
//! - [`auth`]: registration, login and sessions.
//! - [`friends`]: friend requests, friends and blocks.
//! - [`groups`]: group chats and direct messages, members and roles.
//! - [`messages`]: messages, history pages and read status.
//! - [`users`]: user profiles and their updates.
//! - [`error`]: the single error body every failing request returns.
//! - [`gateway`]: real-time events pushed over the WebSocket gateway.
//! - [`voice`]: voice calls: signaling, voice state, ringing, ICE servers.
//!
//! Request bodies reject unknown fields so that a typo in a client is a clear 4xx rather
//! than a silently ignored field.

pub mod auth;
pub mod error;
pub mod friends;
pub mod gateway;
pub mod groups;
pub mod messages;
pub mod users;
pub mod voice;

mod serde_util;

/// Identifier of a user (the seed's `users.user_id`).
pub type UserId = i64;

/// Identifier of a group chat or direct message (`chat_groups.group_id`).
pub type GroupId = i64;

/// Identifier of a message (`messages.message_id`).
pub type MessageId = i64;
