//! The authorization matrix: who may do what, for every REST route and the gateway frames
//! that name a group, read in one place ([`POLICY`]).
//!
//! Each rule says: this call, made by each of these kinds of caller, gets this answer.
//! Every call runs against fresh state arranged through the API (a new group, a new DM,
//! the caller's relation to the other user), on the real server, PostgreSQL and Redis.
//! The test also checks that the table is complete — every route of the server's own
//! OpenAPI document, each with every kind of caller that applies to it — and that a
//! non-member gets exactly the answer given for a group that does not exist.

use std::collections::{BTreeMap, BTreeSet};

use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sohbet_tests::{TestApp, TestUser, EVENT_WAIT, PASSWORD};
use tokio_tungstenite::tungstenite::Message;

/// Who makes the call. The cast: the group `{group_id}` has owner O, admin A and members M
/// and T; N belongs to no group; the DM `{dm_id}` is M's with T; `{user_id}` is T.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    /// O, the group's owner.
    Owner,
    /// A, an admin of the group.
    Admin,
    /// M, a plain member of the group.
    Member,
    /// N, in neither the group nor the DM.
    NonMember,
    /// M in the DM with T, friends.
    DmMember,
    /// M in the DM after T blocked M: the DM is read-only.
    DmBlocked,
    /// M, friends with T.
    Friend,
    /// M, no relation to T.
    Stranger,
    /// M asked T to be friends (pending).
    Asked,
    /// T asked M to be friends (pending).
    AskedBy,
    /// T blocks M (M must not be able to tell).
    BlockedBy,
    /// M blocks T.
    Blocking,
    /// Someone signed in, for routes about the caller alone.
    SignedIn,
    /// Signed in as someone else than the owner of the session `{session_id}`.
    OtherUser,
    /// No `Authorization` header (on the gateway: an empty token).
    Anonymous,
    /// The token of a session that logged out.
    LoggedOut,
    /// The token of a session whose key expired in Redis.
    Expired,
}
use Role::*;

const GROUP_ROLES: &[Role] = &[Owner, Admin, Member];
const NO_SESSION: &[Role] = &[Anonymous, LoggedOut, Expired];
const DM_ROLES: &[Role] = &[DmMember, DmBlocked];
const NOT_FRIENDS: &[Role] = &[Stranger, Asked, AskedBy, BlockedBy, Blocking];
const ANYONE: &[Role] = &[SignedIn, Anonymous, LoggedOut, Expired];

/// The answer a caller gets.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// REST: this success status.
    Status(u16),
    /// REST: this error status and `error.code`.
    Error(u16, &'static str),
    /// Gateway: the frame was accepted (answered, or no refusal before the next
    /// heartbeat's ack: frames are handled in order).
    Accepted,
    /// Gateway: the frame was refused with this code.
    Refused(&'static str),
    /// Gateway: `identify` closed the socket with this code.
    Closed(u16),
}
use Answer::*;

/// An answer as it came back, with the text that came with it (for the report).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Status(u16),
    Error(u16, String),
    Accepted,
    Refused(String),
    Closed(u16),
}

impl Answer {
    fn seen(self) -> Seen {
        match self {
            Status(status) => Seen::Status(status),
            Error(status, code) => Seen::Error(status, code.to_owned()),
            Accepted => Seen::Accepted,
            Refused(code) => Seen::Refused(code.to_owned()),
            Closed(code) => Seen::Closed(code),
        }
    }
}

#[derive(Debug)]
enum Call {
    /// A request; `{…}` in the path and the JSON body are filled from the arranged state.
    Rest {
        method: &'static str,
        path: &'static str,
        body: Option<&'static str>,
    },
    /// Gateway frames sent in order after `identify`; all but the last must be accepted.
    Frames(&'static [&'static str]),
    /// The gateway's `identify` with the caller's token.
    Identify,
}

#[derive(Debug)]
struct Rule {
    call: Call,
    who: &'static [Role],
    answer: Answer,
}

const fn rest(
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    who: &'static [Role],
    answer: Answer,
) -> Rule {
    Rule {
        call: Call::Rest { method, path, body },
        who,
        answer,
    }
}

const fn frames(frames: &'static [&'static str], who: &'static [Role], answer: Answer) -> Rule {
    Rule {
        call: Call::Frames(frames),
        who,
        answer,
    }
}

const UNAUTHORIZED: Answer = Error(401, "unauthorized");
const NOT_FOUND: Answer = Error(404, "not_found");
const FORBIDDEN: Answer = Error(403, "forbidden");

const NAME: Option<&str> = Some(r#"{"name": "renamed"}"#);
const CONTENT: Option<&str> = Some(r#"{"content": "hello"}"#);
const EDITED: Option<&str> = Some(r#"{"content": "edited"}"#);
const NEWCOMER: Option<&str> = Some(r#"{"user_id": {newcomer}}"#);
const TARGET: Option<&str> = Some(r#"{"user_id": {user_id}}"#);
const MAKE_ADMIN: Option<&str> = Some(r#"{"role": "admin"}"#);
const READ: Option<&str> = Some(r#"{"message_id": {message_id}}"#);
const ASK_T: Option<&str> = Some(r#"{"username": "{t_username}"}"#);
const EMPTY: Option<&str> = Some("{}");

/// The policy. `{dm_id}` rows are the same routes as `{group_id}` rows, tried on a DM;
/// `{my_message_id}` is a message the caller sent (T's for a non-member), `{message_id}`
/// one T sent.
#[rustfmt::skip]
const POLICY: &[Rule] = &[
    // ── open to anyone ──────────────────────────────────────────────────────────────────
    rest("GET",    "/api/health/live",                      None, ANYONE, Status(200)),
    rest("GET",    "/api/health",                           None, ANYONE, Status(200)),
    rest("GET",    "/api/openapi.json",                     None, ANYONE, Status(200)),
    rest("GET",    "/api/gateway",                          None, ANYONE, Error(400, "websocket_required")),
    rest("POST",   "/api/auth/register",
         Some(r#"{"username": "new{fresh}", "email": "new{fresh}@example.org", "password": "{password}"}"#),
         ANYONE, Status(201)),
    rest("POST",   "/api/auth/login",
         Some(r#"{"login": "{s_username}", "password": "{password}"}"#), ANYONE, Status(200)),

    // ── the caller's own account and sessions ───────────────────────────────────────────
    rest("POST",   "/api/auth/logout",                      EMPTY, &[SignedIn], Status(204)),
    rest("POST",   "/api/auth/logout",                      EMPTY, NO_SESSION, UNAUTHORIZED),
    rest("GET",    "/api/auth/sessions",                    None, &[SignedIn], Status(200)),
    rest("GET",    "/api/auth/sessions",                    None, NO_SESSION, UNAUTHORIZED),
    rest("DELETE", "/api/auth/sessions",                    None, &[SignedIn], Status(200)),
    rest("DELETE", "/api/auth/sessions",                    None, NO_SESSION, UNAUTHORIZED),
    rest("DELETE", "/api/auth/sessions/{session_id}",       None, &[SignedIn], Status(204)),
    rest("DELETE", "/api/auth/sessions/{session_id}",       None, &[OtherUser], NOT_FOUND),
    rest("DELETE", "/api/auth/sessions/{session_id}",       None, NO_SESSION, UNAUTHORIZED),
    rest("GET",    "/api/users/me",                         None, &[SignedIn], Status(200)),
    rest("GET",    "/api/users/me",                         None, NO_SESSION, UNAUTHORIZED),
    rest("PATCH",  "/api/users/me", Some(r#"{"status": "idle"}"#), &[SignedIn], Status(200)),
    rest("PATCH",  "/api/users/me", Some(r#"{"status": "idle"}"#), NO_SESSION, UNAUTHORIZED),
    rest("POST",   "/api/users/me/friend-code",             EMPTY, &[SignedIn], Status(200)),
    rest("POST",   "/api/users/me/friend-code",             EMPTY, NO_SESSION, UNAUTHORIZED),
    rest("GET",    "/api/groups",                           None, &[SignedIn], Status(200)),
    rest("GET",    "/api/groups",                           None, NO_SESSION, UNAUTHORIZED),
    rest("POST",   "/api/groups",    Some(r#"{"name": "new group"}"#), &[SignedIn], Status(201)),
    rest("POST",   "/api/groups",    Some(r#"{"name": "new group"}"#), NO_SESSION, UNAUTHORIZED),
    rest("GET",    "/api/friends",                          None, &[SignedIn], Status(200)),
    rest("GET",    "/api/friends",                          None, NO_SESSION, UNAUTHORIZED),
    rest("GET",    "/api/friends/requests",                 None, &[SignedIn], Status(200)),
    rest("GET",    "/api/friends/requests",                 None, NO_SESSION, UNAUTHORIZED),
    rest("GET",    "/api/blocks",                           None, &[SignedIn], Status(200)),
    rest("GET",    "/api/blocks",                           None, NO_SESSION, UNAUTHORIZED),
    rest("GET",    "/api/voice/ice-servers",                None, &[SignedIn], Status(200)),
    rest("GET",    "/api/voice/ice-servers",                None, NO_SESSION, UNAUTHORIZED),
    rest("GET",    "/api/voice/missed-calls",               None, &[SignedIn], Status(200)),
    rest("GET",    "/api/voice/missed-calls",               None, NO_SESSION, UNAUTHORIZED),

    // ── a group: members read, admins manage, the owner owns ───────────────────────────
    rest("GET",    "/api/groups/{group_id}",                None, GROUP_ROLES, Status(200)),
    rest("GET",    "/api/groups/{group_id}",                None, &[NonMember], NOT_FOUND),
    rest("GET",    "/api/groups/{group_id}",                None, NO_SESSION, UNAUTHORIZED),
    rest("PATCH",  "/api/groups/{group_id}",                NAME, &[Owner, Admin], Status(200)),
    rest("PATCH",  "/api/groups/{group_id}",                NAME, &[Member], FORBIDDEN),
    rest("PATCH",  "/api/groups/{group_id}",                NAME, &[NonMember], NOT_FOUND),
    rest("PATCH",  "/api/groups/{group_id}",                NAME, NO_SESSION, UNAUTHORIZED),
    rest("DELETE", "/api/groups/{group_id}",                None, &[Owner], Status(204)),
    rest("DELETE", "/api/groups/{group_id}",                None, &[Admin, Member], FORBIDDEN),
    rest("DELETE", "/api/groups/{group_id}",                None, &[NonMember], NOT_FOUND),
    rest("DELETE", "/api/groups/{group_id}",                None, NO_SESSION, UNAUTHORIZED),
    rest("POST",   "/api/groups/{group_id}/members",        NEWCOMER, &[Owner, Admin], Status(201)),
    rest("POST",   "/api/groups/{group_id}/members",        NEWCOMER, &[Member], FORBIDDEN),
    rest("POST",   "/api/groups/{group_id}/members",        NEWCOMER, &[NonMember], NOT_FOUND),
    rest("POST",   "/api/groups/{group_id}/members",        NEWCOMER, NO_SESSION, UNAUTHORIZED),
    rest("DELETE", "/api/groups/{group_id}/members/{user_id}", None, &[Owner, Admin], Status(204)),
    rest("DELETE", "/api/groups/{group_id}/members/{user_id}", None, &[Member], FORBIDDEN),
    rest("DELETE", "/api/groups/{group_id}/members/{user_id}", None, &[NonMember], NOT_FOUND),
    rest("DELETE", "/api/groups/{group_id}/members/{user_id}", None, NO_SESSION, UNAUTHORIZED),
    rest("PATCH",  "/api/groups/{group_id}/members/{user_id}", MAKE_ADMIN, &[Owner], Status(200)),
    rest("PATCH",  "/api/groups/{group_id}/members/{user_id}", MAKE_ADMIN, &[Admin, Member], FORBIDDEN),
    rest("PATCH",  "/api/groups/{group_id}/members/{user_id}", MAKE_ADMIN, &[NonMember], NOT_FOUND),
    rest("PATCH",  "/api/groups/{group_id}/members/{user_id}", MAKE_ADMIN, NO_SESSION, UNAUTHORIZED),
    rest("POST",   "/api/groups/{group_id}/leave",          EMPTY, &[Admin, Member], Status(204)),
    rest("POST",   "/api/groups/{group_id}/leave",          EMPTY, &[Owner], Error(409, "owner_must_transfer")),
    rest("POST",   "/api/groups/{group_id}/leave",          EMPTY, &[NonMember], NOT_FOUND),
    rest("POST",   "/api/groups/{group_id}/leave",          EMPTY, NO_SESSION, UNAUTHORIZED),
    rest("POST",   "/api/groups/{group_id}/owner",          TARGET, &[Owner], Status(200)),
    rest("POST",   "/api/groups/{group_id}/owner",          TARGET, &[Admin, Member], FORBIDDEN),
    rest("POST",   "/api/groups/{group_id}/owner",          TARGET, &[NonMember], NOT_FOUND),
    rest("POST",   "/api/groups/{group_id}/owner",          TARGET, NO_SESSION, UNAUTHORIZED),
    rest("POST",   "/api/groups/{group_id}/messages",       CONTENT, GROUP_ROLES, Status(201)),
    rest("POST",   "/api/groups/{group_id}/messages",       CONTENT, &[NonMember], NOT_FOUND),
    rest("POST",   "/api/groups/{group_id}/messages",       CONTENT, NO_SESSION, UNAUTHORIZED),
    rest("GET",    "/api/groups/{group_id}/messages",       None, GROUP_ROLES, Status(200)),
    rest("GET",    "/api/groups/{group_id}/messages",       None, &[NonMember], NOT_FOUND),
    rest("GET",    "/api/groups/{group_id}/messages",       None, NO_SESSION, UNAUTHORIZED),
    rest("PATCH",  "/api/groups/{group_id}/messages/{my_message_id}", EDITED, GROUP_ROLES, Status(200)),
    rest("PATCH",  "/api/groups/{group_id}/messages/{message_id}", EDITED, GROUP_ROLES, FORBIDDEN),
    rest("PATCH",  "/api/groups/{group_id}/messages/{message_id}", EDITED, &[NonMember], NOT_FOUND),
    rest("PATCH",  "/api/groups/{group_id}/messages/{message_id}", EDITED, NO_SESSION, UNAUTHORIZED),
    rest("DELETE", "/api/groups/{group_id}/messages/{my_message_id}", None, GROUP_ROLES, Status(204)),
    rest("DELETE", "/api/groups/{group_id}/messages/{message_id}", None, &[Owner, Admin], Status(204)),
    rest("DELETE", "/api/groups/{group_id}/messages/{message_id}", None, &[Member], FORBIDDEN),
    rest("DELETE", "/api/groups/{group_id}/messages/{message_id}", None, &[NonMember], NOT_FOUND),
    rest("DELETE", "/api/groups/{group_id}/messages/{message_id}", None, NO_SESSION, UNAUTHORIZED),
    rest("GET",    "/api/groups/{group_id}/messages/{message_id}/receipts", None, GROUP_ROLES, Status(200)),
    rest("GET",    "/api/groups/{group_id}/messages/{message_id}/receipts", None, &[NonMember], NOT_FOUND),
    rest("GET",    "/api/groups/{group_id}/messages/{message_id}/receipts", None, NO_SESSION, UNAUTHORIZED),
    rest("GET",    "/api/groups/{group_id}/read",           None, GROUP_ROLES, Status(200)),
    rest("GET",    "/api/groups/{group_id}/read",           None, &[NonMember], NOT_FOUND),
    rest("GET",    "/api/groups/{group_id}/read",           None, NO_SESSION, UNAUTHORIZED),
    rest("POST",   "/api/groups/{group_id}/read",           READ, GROUP_ROLES, Status(200)),
    rest("POST",   "/api/groups/{group_id}/read",           READ, &[NonMember], NOT_FOUND),
    rest("POST",   "/api/groups/{group_id}/read",           READ, NO_SESSION, UNAUTHORIZED),

    // ── the same routes on a DM: no roles to manage; read-only once one side blocks ────
    rest("GET",    "/api/groups/{dm_id}",                   None, DM_ROLES, Status(200)),
    rest("GET",    "/api/groups/{dm_id}",                   None, &[NonMember], NOT_FOUND),
    rest("PATCH",  "/api/groups/{dm_id}",                   NAME, DM_ROLES, FORBIDDEN),
    rest("PATCH",  "/api/groups/{dm_id}",                   NAME, &[NonMember], NOT_FOUND),
    rest("DELETE", "/api/groups/{dm_id}",                   None, DM_ROLES, FORBIDDEN),
    rest("DELETE", "/api/groups/{dm_id}",                   None, &[NonMember], NOT_FOUND),
    rest("POST",   "/api/groups/{dm_id}/members",           NEWCOMER, DM_ROLES, FORBIDDEN),
    rest("POST",   "/api/groups/{dm_id}/members",           NEWCOMER, &[NonMember], NOT_FOUND),
    rest("DELETE", "/api/groups/{dm_id}/members/{user_id}", None, DM_ROLES, FORBIDDEN),
    rest("DELETE", "/api/groups/{dm_id}/members/{user_id}", None, &[NonMember], NOT_FOUND),
    rest("PATCH",  "/api/groups/{dm_id}/members/{user_id}", MAKE_ADMIN, DM_ROLES, FORBIDDEN),
    rest("PATCH",  "/api/groups/{dm_id}/members/{user_id}", MAKE_ADMIN, &[NonMember], NOT_FOUND),
    rest("POST",   "/api/groups/{dm_id}/leave",             EMPTY, DM_ROLES, FORBIDDEN),
    rest("POST",   "/api/groups/{dm_id}/leave",             EMPTY, &[NonMember], NOT_FOUND),
    rest("POST",   "/api/groups/{dm_id}/owner",             TARGET, DM_ROLES, FORBIDDEN),
    rest("POST",   "/api/groups/{dm_id}/owner",             TARGET, &[NonMember], NOT_FOUND),
    rest("POST",   "/api/groups/{dm_id}/messages",          CONTENT, &[DmMember], Status(201)),
    rest("POST",   "/api/groups/{dm_id}/messages",          CONTENT, &[DmBlocked], FORBIDDEN),
    rest("POST",   "/api/groups/{dm_id}/messages",          CONTENT, &[NonMember], NOT_FOUND),
    rest("GET",    "/api/groups/{dm_id}/messages",          None, DM_ROLES, Status(200)),
    rest("GET",    "/api/groups/{dm_id}/messages",          None, &[NonMember], NOT_FOUND),
    rest("PATCH",  "/api/groups/{dm_id}/messages/{my_message_id}", EDITED, &[DmMember], Status(200)),
    rest("PATCH",  "/api/groups/{dm_id}/messages/{my_message_id}", EDITED, &[DmBlocked], FORBIDDEN),
    rest("PATCH",  "/api/groups/{dm_id}/messages/{message_id}", EDITED, DM_ROLES, FORBIDDEN),
    rest("PATCH",  "/api/groups/{dm_id}/messages/{message_id}", EDITED, &[NonMember], NOT_FOUND),
    rest("DELETE", "/api/groups/{dm_id}/messages/{my_message_id}", None, DM_ROLES, Status(204)),
    rest("DELETE", "/api/groups/{dm_id}/messages/{message_id}", None, DM_ROLES, FORBIDDEN),
    rest("DELETE", "/api/groups/{dm_id}/messages/{message_id}", None, &[NonMember], NOT_FOUND),
    rest("GET",    "/api/groups/{dm_id}/messages/{message_id}/receipts", None, DM_ROLES, Status(200)),
    rest("GET",    "/api/groups/{dm_id}/messages/{message_id}/receipts", None, &[NonMember], NOT_FOUND),
    rest("GET",    "/api/groups/{dm_id}/read",              None, DM_ROLES, Status(200)),
    rest("GET",    "/api/groups/{dm_id}/read",              None, &[NonMember], NOT_FOUND),
    rest("POST",   "/api/groups/{dm_id}/read",              READ, DM_ROLES, Status(200)),
    rest("POST",   "/api/groups/{dm_id}/read",              READ, &[NonMember], NOT_FOUND),

    // ── friends, requests, blocks and DMs: by the caller's relation to T ───────────────
    rest("POST",   "/api/dms",                              TARGET, &[Friend], Status(201)),
    rest("POST",   "/api/dms",                              TARGET, NOT_FRIENDS, FORBIDDEN),
    rest("POST",   "/api/dms",                              TARGET, NO_SESSION, UNAUTHORIZED),
    rest("POST",   "/api/friends/requests",                 ASK_T, &[Stranger, Asked, BlockedBy], Status(202)),
    rest("POST",   "/api/friends/requests",                 ASK_T, &[Friend, AskedBy], Status(200)),
    rest("POST",   "/api/friends/requests",                 ASK_T, &[Blocking], Error(409, "blocked")),
    rest("POST",   "/api/friends/requests",                 ASK_T, NO_SESSION, UNAUTHORIZED),
    rest("DELETE", "/api/friends/requests/{user_id}",       None, &[Asked], Status(204)),
    rest("DELETE", "/api/friends/requests/{user_id}",       None, &[Friend, Stranger, AskedBy, BlockedBy, Blocking], NOT_FOUND),
    rest("DELETE", "/api/friends/requests/{user_id}",       None, NO_SESSION, UNAUTHORIZED),
    rest("POST",   "/api/friends/requests/{user_id}/accept", EMPTY, &[AskedBy], Status(200)),
    rest("POST",   "/api/friends/requests/{user_id}/accept", EMPTY, &[Friend, Stranger, Asked, BlockedBy, Blocking], NOT_FOUND),
    rest("POST",   "/api/friends/requests/{user_id}/accept", EMPTY, NO_SESSION, UNAUTHORIZED),
    rest("POST",   "/api/friends/requests/{user_id}/decline", EMPTY, &[AskedBy], Status(204)),
    rest("POST",   "/api/friends/requests/{user_id}/decline", EMPTY, &[Friend, Stranger, Asked, BlockedBy, Blocking], NOT_FOUND),
    rest("POST",   "/api/friends/requests/{user_id}/decline", EMPTY, NO_SESSION, UNAUTHORIZED),
    rest("DELETE", "/api/friends/{user_id}",                None, &[Friend], Status(204)),
    rest("DELETE", "/api/friends/{user_id}",                None, NOT_FRIENDS, NOT_FOUND),
    rest("DELETE", "/api/friends/{user_id}",                None, NO_SESSION, UNAUTHORIZED),
    rest("PUT",    "/api/blocks/{user_id}",                 None, &[Friend, Stranger, Asked, AskedBy, BlockedBy, Blocking], Status(204)),
    rest("PUT",    "/api/blocks/{user_id}",                 None, NO_SESSION, UNAUTHORIZED),
    rest("DELETE", "/api/blocks/{user_id}",                 None, &[Blocking], Status(204)),
    rest("DELETE", "/api/blocks/{user_id}",                 None, &[Friend, Stranger, Asked, AskedBy, BlockedBy], NOT_FOUND),
    rest("DELETE", "/api/blocks/{user_id}",                 None, NO_SESSION, UNAUTHORIZED),

    // ── gateway frames ──────────────────────────────────────────────────────────────────
    Rule { call: Call::Identify, who: &[SignedIn], answer: Accepted },
    Rule { call: Call::Identify, who: NO_SESSION, answer: Closed(4003) },
    frames(&[r#"{"op": "typing", "group_id": {group_id}}"#], GROUP_ROLES, Accepted),
    frames(&[r#"{"op": "typing", "group_id": {group_id}}"#], &[NonMember], Refused("not_found")),
    frames(&[r#"{"op": "typing", "group_id": {dm_id}}"#], &[DmMember], Accepted),
    frames(&[r#"{"op": "typing", "group_id": {dm_id}}"#], &[DmBlocked], Refused("forbidden")),
    frames(&[r#"{"op": "typing", "group_id": {dm_id}}"#], &[NonMember], Refused("not_found")),
    frames(&[r#"{"op": "voice_join", "group_id": {group_id}}"#], GROUP_ROLES, Accepted),
    frames(&[r#"{"op": "voice_join", "group_id": {group_id}}"#], &[NonMember], Refused("not_found")),
    frames(&[r#"{"op": "voice_join", "group_id": {dm_id}}"#], &[DmMember], Accepted),
    frames(&[r#"{"op": "voice_join", "group_id": {dm_id}}"#], &[DmBlocked], Refused("forbidden")),
    frames(&[r#"{"op": "voice_join", "group_id": {dm_id}}"#], &[NonMember], Refused("not_found")),
    // Signaling only between participants of one call: outside it, nobody may signal.
    frames(&[r#"{"op": "voice_signal", "group_id": {group_id}, "to": {user_id}, "signal": {"type": "bye"}}"#],
           &[Owner, Admin, Member, NonMember], Refused("not_in_call")),
    frames(&[r#"{"op": "voice_signal", "group_id": {dm_id}, "to": {user_id}, "signal": {"type": "bye"}}"#],
           &[DmMember, DmBlocked, NonMember], Refused("not_in_call")),
    frames(&[r#"{"op": "voice_join", "group_id": {group_id}}"#,
             r#"{"op": "voice_signal", "group_id": {group_id}, "to": {user_id}, "signal": {"type": "bye"}}"#],
           GROUP_ROLES, Refused("target_not_in_call")),
    frames(&[r#"{"op": "call_decline", "group_id": {group_id}}"#], GROUP_ROLES, Refused("not_ringing")),
    frames(&[r#"{"op": "call_decline", "group_id": {group_id}}"#], &[NonMember], Refused("not_found")),
    frames(&[r#"{"op": "call_decline", "group_id": {dm_id}}"#], DM_ROLES, Refused("not_ringing")),
    frames(&[r#"{"op": "call_decline", "group_id": {dm_id}}"#], &[NonMember], Refused("not_found")),
];

/// A group id no group has.
const UNKNOWN_GROUP: i64 = 987_654_321_012;

/// The callers' accounts and the tokens that no longer work, made once.
struct Cast {
    o: TestUser,
    a: TestUser,
    m: TestUser,
    n: TestUser,
    t: TestUser,
    u: TestUser,
    s: TestUser,
    logged_out: String,
    expired: String,
}

/// The state one call runs against, arranged afresh for it.
#[derive(Clone, Default)]
struct Scene {
    group_id: i64,
    dm_id: i64,
    message_id: i64,
    my_message_id: i64,
    session_id: String,
    /// The caller's token (`None`: no header).
    token: Option<String>,
    fresh: u32,
}

#[tokio::test]
async fn every_route_and_frame_answers_each_caller_as_the_policy_says() {
    // Many logins from one address: the login limit is not what this test is about.
    let app = TestApp::spawn_with(|s| s.login_ip_limit = u64::MAX / 2).await;
    check_the_table_covers_every_route(&app).await;
    let cast = cast(&app).await;
    let mut wrong = Vec::new();
    let mut fresh = 0;
    for rule in POLICY {
        for &role in rule.who {
            fresh += 1;
            let scene = arrange(&app, &cast, rule, role, fresh).await;
            let got = act(&app, &cast, &rule.call, &scene).await;
            if got.0 != rule.answer.seen() {
                wrong.push(format!(
                    "{} as {role:?}: expected {:?}, got {:?} {}",
                    describe(&rule.call),
                    rule.answer,
                    got.0,
                    got.1
                ));
                continue;
            }
            // A non-member learns nothing: the answer is the one for no such group.
            if role == NonMember {
                let unknown = Scene {
                    group_id: UNKNOWN_GROUP,
                    dm_id: UNKNOWN_GROUP,
                    ..scene.clone()
                };
                let other = act(&app, &cast, &rule.call, &unknown).await;
                if other != got {
                    wrong.push(format!(
                        "{} as NonMember: {got:?} differs from a group that does not exist: {other:?}",
                        describe(&rule.call)
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells of the matrix are wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

fn describe(call: &Call) -> String {
    match call {
        Call::Rest { method, path, .. } => format!("{method} {path}"),
        Call::Frames(frames) => format!("gateway {}", frames.join(" then ")),
        Call::Identify => "gateway identify".into(),
    }
}

/// The roles a route must have a rule for, by what its path names.
fn required_roles(method: &str, path: &str) -> Vec<Role> {
    const PUBLIC: &[&str] = &[
        "/api/health/live",
        "/api/health",
        "/api/gateway",
        "/api/auth/register",
        "/api/auth/login",
    ];
    if PUBLIC.contains(&path) {
        return ANYONE.to_vec();
    }
    let mut roles = NO_SESSION.to_vec();
    let about_t = (path.contains("{user_id}") && !path.contains("{group_id}"))
        || path == "/api/dms"
        || (method == "POST" && path == "/api/friends/requests");
    if path.contains("{group_id}") {
        roles.extend(GROUP_ROLES);
        roles.push(NonMember);
    } else if about_t {
        roles.extend([Friend, Stranger, Asked, AskedBy, BlockedBy, Blocking]);
    } else if path.contains("{session_id}") {
        roles.extend([SignedIn, OtherUser]);
    } else {
        roles.push(SignedIn);
    }
    roles
}

/// Every route of the OpenAPI document has a rule for every role that applies to it (a
/// group route also on a DM), and no (route, role) has two rules.
async fn check_the_table_covers_every_route(app: &TestApp) {
    let (status, doc) = app.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut covered: BTreeMap<(String, String), BTreeSet<Role>> = BTreeMap::new();
    for rule in POLICY {
        let Call::Rest { method, path, .. } = &rule.call else {
            continue;
        };
        let key = (method.to_string(), path.to_string());
        let roles = covered.entry(key).or_default();
        for role in rule.who {
            assert!(
                roles.insert(*role),
                "{method} {path} has two rules for {role:?}"
            );
        }
    }
    let paths = doc["paths"].as_object().expect("paths");
    let mut missing = Vec::new();
    for (path, item) in paths {
        let methods = item.as_object().expect("path item").keys();
        let methods =
            methods.filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()));
        for method in methods {
            let method = method.to_uppercase();
            let mut variants = vec![(path.clone(), required_roles(&method, path))];
            if path.contains("{group_id}") {
                let on_dm = path.replace("{group_id}", "{dm_id}");
                variants.push((on_dm, [DmMember, DmBlocked, NonMember].to_vec()));
            }
            for (path, required) in variants {
                let have = covered
                    .get(&(method.clone(), path.clone()))
                    .cloned()
                    .unwrap_or_default();
                for role in required {
                    if !have.contains(&role) {
                        missing.push(format!("{method} {path} as {role:?}"));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the policy table has no rule for:\n{}",
        missing.join("\n")
    );
}

async fn cast(app: &TestApp) -> Cast {
    let [o, a, m, n, t, u, s] = app
        .users([
            "owner", "admin", "member", "outsider", "target", "newcomer", "self",
        ])
        .await;
    for (x, y) in [(&o, &a), (&o, &m), (&o, &t), (&o, &u), (&a, &u), (&m, &u)] {
        app.befriend(x, y).await;
    }
    let logged_out = app.login("member").await.token;
    let (status, _) = app
        .post("/api/auth/logout", Some(&logged_out), &json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // A session that lapsed: its key expires in Redis as after an hour of disuse.
    let expired = app.login("member").await.token;
    let key = app.key(&format!("session:{expired}"));
    let set: bool = app.redis_cmd(redis::cmd("PEXPIRE").arg(&key).arg(1)).await;
    assert!(set, "the session key exists");
    while app.redis_cmd::<bool>(redis::cmd("EXISTS").arg(&key)).await {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Cast {
        o,
        a,
        m,
        n,
        t,
        u,
        s,
        logged_out,
        expired,
    }
}

fn user_of(cast: &Cast, role: Role) -> Option<&TestUser> {
    Some(match role {
        Owner => &cast.o,
        Admin => &cast.a,
        Member | DmMember | DmBlocked | Friend | Stranger | Asked | AskedBy | BlockedBy
        | Blocking | OtherUser => &cast.m,
        NonMember => &cast.n,
        Anonymous | LoggedOut | Expired | SignedIn => return None,
    })
}

/// Whether the call's path, body or frames name `placeholder`.
fn names(call: &Call, placeholder: &str) -> bool {
    match call {
        Call::Rest { path, body, .. } => {
            path.contains(placeholder) || body.is_some_and(|b| b.contains(placeholder))
        }
        Call::Frames(frames) => frames.iter().any(|f| f.contains(placeholder)),
        Call::Identify => false,
    }
}

/// Fresh state for one call: M's relation to T, a new group with its cast and messages or
/// a new DM of M and T (when the call names one), and the caller's token.
async fn arrange(app: &TestApp, cast: &Cast, rule: &Rule, role: Role, fresh: u32) -> Scene {
    let (m, t) = (&cast.m, &cast.t);
    // M and T start as strangers with no DM.
    sqlx::query(
        "delete from friendships
          where least(user_id_1, user_id_2) = least($1::bigint, $2::bigint)
            and greatest(user_id_1, user_id_2) = greatest($1::bigint, $2::bigint)",
    )
    .bind(m.user.user_id)
    .bind(t.user.user_id)
    .execute(&app.db)
    .await
    .expect("reset M and T");
    // Only the cast's DMs: other tests share the database and write into their own DMs
    // meanwhile (deleting every DM deadlocked with them on a fresh machine).
    let ours: Vec<i64> = [&cast.o, &cast.a, m, &cast.n, t, &cast.u, &cast.s]
        .iter()
        .map(|p| p.user.user_id)
        .collect();
    sqlx::query(
        "delete from chat_groups g
          where g.is_direct_msg
            and exists (select 1 from group_members gm
                         where gm.group_id = g.group_id and gm.user_id = any($1))",
    )
    .bind(&ours)
    .execute(&app.db)
    .await
    .expect("remove the DM");

    let mut scene = Scene {
        fresh,
        ..Scene::default()
    };
    let caller = user_of(cast, role);
    if names(&rule.call, "{dm_id}") {
        app.befriend(m, t).await;
        scene.dm_id = app.dm(m, t).await;
        scene.message_id = app.send(t, scene.dm_id, "from T").await.message_id;
        scene.my_message_id = app.send(m, scene.dm_id, "from M").await.message_id;
        if role == DmBlocked {
            block(app, t, m).await;
        }
    } else if names(&rule.call, "{group_id}") {
        scene.group_id = app.create_group(&cast.o, "team").await;
        for member in [&cast.a, m, t] {
            app.add_member(&cast.o, scene.group_id, member).await;
        }
        let path = format!(
            "/api/groups/{}/members/{}",
            scene.group_id, cast.a.user.user_id
        );
        let (status, body) = app
            .patch(&path, &cast.o.token, &json!({"role": "admin"}))
            .await;
        assert_eq!(status, StatusCode::OK, "make A admin: {body}");
        scene.message_id = app.send(t, scene.group_id, "from T").await.message_id;
        scene.my_message_id = match caller {
            Some(user) if GROUP_ROLES.contains(&role) => {
                app.send(user, scene.group_id, "mine").await.message_id
            }
            _ => scene.message_id,
        };
    }
    if role == NonMember {
        scene.my_message_id = scene.message_id;
    }
    match role {
        Friend => app.befriend(m, t).await,
        Asked => ask(app, m, t).await,
        AskedBy => ask(app, t, m).await,
        BlockedBy => block(app, t, m).await,
        Blocking => block(app, m, t).await,
        _ => {}
    }
    if names(&rule.call, "{session_id}") {
        // Another session of S, for S to revoke (and M to fail to).
        let victim = app.login(&cast.s.user.username).await.token;
        let (status, sessions) = app.get("/api/auth/sessions", &victim).await;
        assert_eq!(status, StatusCode::OK);
        scene.session_id = sessions
            .as_array()
            .and_then(|list| list.iter().find(|s| s["current"] == json!(true)))
            .and_then(|s| s["session_id"].as_str())
            .expect("the current session")
            .to_owned();
    }
    scene.token = match role {
        Anonymous => None,
        LoggedOut => Some(cast.logged_out.clone()),
        Expired => Some(cast.expired.clone()),
        // A session of its own: calls on sessions may end it (or all the others of S).
        SignedIn => Some(app.login(&cast.s.user.username).await.token),
        _ => caller.map(|u| u.token.clone()),
    };
    scene
}

async fn ask(app: &TestApp, from: &TestUser, to: &TestUser) {
    let (status, body) = app
        .post(
            "/api/friends/requests",
            Some(&from.token),
            &json!({"username": to.user.username}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "request: {body}");
}

async fn block(app: &TestApp, blocker: &TestUser, blocked: &TestUser) {
    let (status, body) = app
        .put(
            &format!("/api/blocks/{}", blocked.user.user_id),
            &blocker.token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "block: {body}");
}

/// `template` with the scene's values in place of its `{…}` names.
fn fill(template: &str, cast: &Cast, scene: &Scene) -> String {
    [
        ("{group_id}", scene.group_id.to_string()),
        ("{dm_id}", scene.dm_id.to_string()),
        ("{my_message_id}", scene.my_message_id.to_string()),
        ("{message_id}", scene.message_id.to_string()),
        ("{user_id}", cast.t.user.user_id.to_string()),
        ("{newcomer}", cast.u.user.user_id.to_string()),
        ("{t_username}", cast.t.user.username.clone()),
        ("{s_username}", cast.s.user.username.clone()),
        ("{session_id}", scene.session_id.clone()),
        ("{fresh}", scene.fresh.to_string()),
        ("{password}", PASSWORD.to_owned()),
    ]
    .iter()
    .fold(template.to_owned(), |text, (name, value)| {
        text.replace(name, value)
    })
}

/// Makes the call; returns the answer and, for the report, what came back.
async fn act(app: &TestApp, cast: &Cast, call: &Call, scene: &Scene) -> (Seen, String) {
    match call {
        Call::Rest { method, path, body } => {
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            let body: Option<Value> = body.map(|b| {
                serde_json::from_str(&fill(b, cast, scene)).expect("the rule's body is JSON")
            });
            let path = fill(path, cast, scene);
            let (status, answer) = app
                .call(method, &path, scene.token.as_deref(), body.as_ref())
                .await;
            let shown = answer.to_string();
            if status.is_success() {
                return (Seen::Status(status.as_u16()), shown);
            }
            // Every refusal comes in the one error shape.
            let code = answer["error"]["code"]
                .as_str()
                .unwrap_or("<not the error shape>");
            (Seen::Error(status.as_u16(), code.to_owned()), shown)
        }
        Call::Identify => match identify(app, scene.token.as_deref()).await {
            Ok(_) => (Seen::Accepted, String::new()),
            Err(code) => (Seen::Closed(code), String::new()),
        },
        Call::Frames(frames) => {
            let mut socket = identify(app, scene.token.as_deref())
                .await
                .expect("identified");
            let mut last = (Seen::Accepted, String::new());
            for (i, frame) in frames.iter().enumerate() {
                let reference = i as u64 + 1;
                let mut frame: Value =
                    serde_json::from_str(&fill(frame, cast, scene)).expect("the rule's frame");
                frame["ref"] = json!(reference);
                last = send_frame(&mut socket, &frame, reference).await;
                if i + 1 < frames.len() {
                    assert_eq!(last.0, Seen::Accepted, "{frame} leads the rule: {}", last.1);
                }
            }
            last
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next frame as JSON, or the close code when the server closes.
async fn next_frame(socket: &mut Socket) -> Result<Value, u16> {
    loop {
        let message = tokio::time::timeout(EVENT_WAIT, socket.next())
            .await
            .expect("the gateway answers");
        match message {
            Some(Ok(Message::Text(text))) => {
                return Ok(serde_json::from_str(&text).expect("a JSON frame"))
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(frame.map_or(1005, |f| u16::from(f.code)))
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(1006),
        }
    }
}

/// Connects and identifies with `token`: the socket once `ready` came, or the close code.
async fn identify(app: &TestApp, token: Option<&str>) -> Result<Socket, u16> {
    let (mut socket, _) = tokio_tungstenite::connect_async(app.client("x").gateway_url())
        .await
        .expect("connect");
    let hello = next_frame(&mut socket).await.expect("hello");
    assert_eq!(hello["op"], "hello");
    let identify = json!({"op": "identify", "token": token.unwrap_or(""), "version": 1});
    socket
        .send(Message::Text(identify.to_string().into()))
        .await
        .expect("send identify");
    loop {
        let frame = next_frame(&mut socket).await?;
        if frame["op"] == "ready" {
            return Ok(socket);
        }
    }
}

/// Sends `frame` then a heartbeat; the frame's answer (`voice_joined`, or an `error` with
/// its ref), or accepted if the heartbeat's ack comes first: frames are handled in order.
async fn send_frame(socket: &mut Socket, frame: &Value, reference: u64) -> (Seen, String) {
    for text in [frame.to_string(), json!({"op": "heartbeat"}).to_string()] {
        socket
            .send(Message::Text(text.into()))
            .await
            .expect("send frame");
    }
    let mut answer = (Seen::Accepted, String::new());
    loop {
        let got = match next_frame(socket).await {
            Ok(got) => got,
            Err(code) => return (Seen::Closed(code), format!("closed with {code}")),
        };
        match got["op"].as_str() {
            Some("heartbeat_ack") => return answer,
            Some("error") if got["ref"] == json!(reference) => {
                let code = got["code"].as_str().unwrap_or("<no code>").to_owned();
                answer = (Seen::Refused(code), got.to_string());
            }
            _ => {}
        }
    }
}
