//! The domain layer: what Sohbet does, free of HTTP. Route handlers and the gateway both
//! call in here; nothing in here knows a route, a status code or a socket.
//!
//! - [`values`]: validated inputs (username, login name, email, password, display name, profile picture
//!   URL, friend code, group name, description, message content, nonce). A value of one of
//!   these types has passed its rule; code past the edge never checks it again.
//! - [`accounts`]: registration and login (credentials, login rate limits, sessions).
//! - [`users`]: profiles as stored and as others see them (presence applied, or as a
//!   stranger); the row types and column lists other concepts join against.
//! - [`relation`]: the one `friendships` row of a pair of users and what it means to each;
//!   [`friends`]: friend requests and friendships; [`blocks`]: blocking, kept on the same
//!   row and invisible to the blocked side.
//! - [`groups`]: group chats and direct messages, and the caller's [`groups::Membership`]
//!   (what every group-scoped operation checks first); [`members`]: adding, removing,
//!   leaving, roles and ownership.
//! - [`messages`]: sending (the one send path: the sends of a group committed together, each
//!   with the group's next sequence number and the sender's watermark), history pages, edits
//!   and deletions.
//! - [`read_status`]: read watermarks, unread counts, receipts and `messages.is_read`, with
//!   the one definition of the group's read lock.
//!
//! Operations that change something publish their events (after commit) themselves, so a
//! caller cannot forget to.

pub mod accounts;
pub mod blocks;
pub mod friends;
pub mod groups;
pub mod members;
pub mod messages;
pub mod read_status;
pub mod relation;
pub mod users;
pub mod values;

pub use values::{
    Description, DisplayName, Email, FriendCode, GroupName, LoginName, MessageContent, Nonce,
    Password, ProfilePicUrl, Username,
};
