//! `sohbet-client`: the Rust SDK of Sohbet, used by the tests, the benchmarks and the
//! desktop app.
//!
//! - [`rest`]: [`Client`], one typed method per REST operation.
//! - [`gateway`]: [`gateway::connect`], an event stream over the WebSocket gateway that
//!   reconnects and resumes by itself, so a message the server acknowledged reaches the
//!   stream exactly once and in order per group.
//! - [`calls`]: voice calls through the server ([`Client::join_call`], ring, accept,
//!   decline), driving the voice engine with the gateway as signaling.
//! - [`tls`]: [`Tls`], whom `https://` and `wss://` trust: the system's roots and an
//!   optional extra CA.
//! - [`error`]: the SDK error type, `ClientError`.

pub mod calls;
pub mod error;
pub mod gateway;
pub mod rest;
pub mod tls;

pub use error::ClientError;
pub use rest::Client;
pub use tls::Tls;
