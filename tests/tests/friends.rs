//! Friend requests, friends and blocks.

use protocol::friends::{Friend, FriendRequestOutcome, FriendRequestState, FriendRequests};
use protocol::gateway::Presence;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sohbet_tests::{code, parse, presence_of, TestApp, TestUser};

async fn request(app: &TestApp, from: &TestUser, body: Value) -> (StatusCode, Value) {
    app.post("/api/friends/requests", Some(&from.token), &body)
        .await
}

async fn request_by_name(app: &TestApp, from: &TestUser, to: &TestUser) -> (StatusCode, Value) {
    request(app, from, json!({"username": to.user.username})).await
}

async fn friends(app: &TestApp, user: &TestUser) -> Vec<Friend> {
    let (status, body) = app.get("/api/friends", &user.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    parse(body)
}

async fn requests(app: &TestApp, user: &TestUser) -> FriendRequests {
    let (status, body) = app.get("/api/friends/requests", &user.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    parse(body)
}

async fn blocked(app: &TestApp, user: &TestUser) -> Vec<Friend> {
    let (status, body) = app.get("/api/blocks", &user.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    parse(body)
}

fn ids(list: &[Friend]) -> Vec<i64> {
    list.iter().map(|f| f.user.user_id).collect()
}

async fn block(app: &TestApp, who: &TestUser, whom: &TestUser) {
    let (status, body) = app
        .put(&format!("/api/blocks/{}", whom.user.user_id), &who.token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

#[tokio::test]
async fn a_request_by_username_accepted_makes_friends_listed_with_profile() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;

    let (status, body) = request_by_name(&app, &alice, &bob).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let outcome: FriendRequestOutcome = parse(body);
    assert_eq!(outcome.state, FriendRequestState::Pending);
    assert_eq!(outcome.user.user_id, bob.user.user_id);

    let (status, _) = app
        .post(
            &format!("/api/friends/requests/{}/accept", alice.user.user_id),
            Some(&bob.token),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let alice_friends = friends(&app, &alice).await;
    assert_eq!(ids(&alice_friends), [bob.user.user_id]);
    let listed = serde_json::to_value(&alice_friends[0].user).expect("json");
    for field in ["display_name", "status", "last_seen", "username"] {
        assert!(listed.get(field).is_some(), "{field} missing: {listed}");
    }
    assert!(listed.get("email").is_none(), "a friend's email leaks");
    assert_eq!(ids(&friends(&app, &bob).await), [alice.user.user_id]);
}

#[tokio::test]
async fn a_request_by_friend_code_ignores_case_and_dashes() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let code = bob.user.friend_code.to_lowercase();
    let typed = format!("{}-{}", &code[..4], &code[4..]);
    let (status, body) = request(&app, &alice, json!({ "friend_code": typed })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        ids(&requests(&app, &bob).await.incoming),
        [alice.user.user_id]
    );
}

#[tokio::test]
async fn incoming_and_outgoing_requests_are_listed_on_each_side() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    request_by_name(&app, &alice, &bob).await;
    let a = requests(&app, &alice).await;
    let b = requests(&app, &bob).await;
    assert_eq!(ids(&a.outgoing), [bob.user.user_id]);
    assert!(a.incoming.is_empty());
    assert_eq!(ids(&b.incoming), [alice.user.user_id]);
    assert!(b.outgoing.is_empty());
    assert!(friends(&app, &alice).await.is_empty());
}

#[tokio::test]
async fn a_request_to_someone_who_already_asked_you_becomes_a_friendship() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    request_by_name(&app, &alice, &bob).await;
    let (status, body) = request_by_name(&app, &bob, &alice).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcome: FriendRequestOutcome = parse(body);
    assert_eq!(outcome.state, FriendRequestState::Friends);
    assert_eq!(ids(&friends(&app, &alice).await), [bob.user.user_id]);
    assert!(requests(&app, &alice).await.outgoing.is_empty());
}

#[tokio::test]
async fn one_row_per_pair_remembers_who_asked_first() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    request_by_name(&app, &alice, &bob).await;
    request_by_name(&app, &alice, &bob).await;
    request_by_name(&app, &bob, &alice).await;
    let rows: Vec<(i64, i64, String)> =
        sqlx::query_as("select user_id_1, user_id_2, status from friendships")
            .fetch_all(&app.db)
            .await
            .expect("rows");
    assert_eq!(
        rows,
        [(alice.user.user_id, bob.user.user_id, "accepted".to_owned())]
    );
}

#[tokio::test]
async fn crossed_simultaneous_requests_make_one_friendship() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    for _ in 0..5 {
        let (a, b) = tokio::join!(
            request_by_name(&app, &alice, &bob),
            request_by_name(&app, &bob, &alice)
        );
        assert!(a.0.is_success() && b.0.is_success(), "{a:?} {b:?}");
        assert_eq!(ids(&friends(&app, &alice).await), [bob.user.user_id]);
        let (status, _) = app
            .delete(&format!("/api/friends/{}", bob.user.user_id), &alice.token)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
}

#[tokio::test]
async fn decline_removes_the_request_for_both() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    request_by_name(&app, &alice, &bob).await;
    let path = format!("/api/friends/requests/{}/decline", alice.user.user_id);
    let (status, _) = app.post(&path, Some(&bob.token), &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(requests(&app, &alice).await.outgoing.is_empty());
    assert!(requests(&app, &bob).await.incoming.is_empty());
    let (status, body) = app.post(&path, Some(&bob.token), &json!({})).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn cancel_withdraws_only_my_own_request() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    request_by_name(&app, &alice, &bob).await;
    // Bob cannot "cancel" a request he received.
    let (status, _) = app
        .delete(
            &format!("/api/friends/requests/{}", alice.user.user_id),
            &bob.token,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .delete(
            &format!("/api/friends/requests/{}", bob.user.user_id),
            &alice.token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(requests(&app, &bob).await.incoming.is_empty());
}

#[tokio::test]
async fn accepting_needs_a_pending_incoming_request() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    request_by_name(&app, &alice, &bob).await;
    // The requester cannot accept their own request.
    let (status, body) = app
        .post(
            &format!("/api/friends/requests/{}/accept", bob.user.user_id),
            Some(&alice.token),
            &json!({}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn removing_a_friend_ends_it_for_both() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    app.befriend(&alice, &bob).await;
    let path = format!("/api/friends/{}", alice.user.user_id);
    let (status, _) = app.delete(&path, &bob.token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(friends(&app, &alice).await.is_empty());
    assert!(friends(&app, &bob).await.is_empty());
    let (status, _) = app.delete(&path, &bob.token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_blocked_users_request_answers_like_any_request_and_is_never_shown() {
    let app = TestApp::spawn().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    block(&app, &alice, &bob).await;

    let (blocked_status, blocked_body) = request_by_name(&app, &bob, &alice).await;
    let (normal_status, normal_body) = request_by_name(&app, &bob, &carol).await;
    assert_eq!(blocked_status, normal_status);
    assert_eq!(blocked_body["state"], normal_body["state"]);
    // Asking again also answers as for anyone.
    let (again, _) = request_by_name(&app, &bob, &alice).await;
    assert_eq!(again, normal_status);

    // Bob sees both requests pending; Alice sees nothing.
    let outgoing = ids(&requests(&app, &bob).await.outgoing);
    assert!(outgoing.contains(&alice.user.user_id) && outgoing.contains(&carol.user.user_id));
    assert!(requests(&app, &alice).await.incoming.is_empty());
    // Bob can withdraw it like any request.
    let (status, _) = app
        .delete(
            &format!("/api/friends/requests/{}", alice.user.user_id),
            &bob.token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        ids(&requests(&app, &bob).await.outgoing),
        [carol.user.user_id]
    );
}

#[tokio::test]
async fn blocking_a_friend_looks_to_them_like_being_unfriended() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    app.befriend(&alice, &bob).await;
    block(&app, &alice, &bob).await;
    assert!(friends(&app, &bob).await.is_empty());
    assert!(friends(&app, &alice).await.is_empty());
    assert_eq!(ids(&blocked(&app, &alice).await), [bob.user.user_id]);
    assert!(blocked(&app, &bob).await.is_empty());
    // Blocking again is harmless.
    block(&app, &alice, &bob).await;
}

#[tokio::test]
async fn a_request_received_before_blocking_stays_pending_for_its_sender() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    request_by_name(&app, &bob, &alice).await;
    block(&app, &alice, &bob).await;
    assert_eq!(
        ids(&requests(&app, &bob).await.outgoing),
        [alice.user.user_id]
    );
    assert!(requests(&app, &alice).await.incoming.is_empty());
}

#[tokio::test]
async fn requesting_a_user_i_blocked_is_a_conflict_until_i_unblock() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    block(&app, &alice, &bob).await;
    let (status, body) = request_by_name(&app, &alice, &bob).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "blocked"));
    let (status, _) = app
        .delete(&format!("/api/blocks/{}", bob.user.user_id), &alice.token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = request_by_name(&app, &alice, &bob).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_mutual_block_holds_until_both_unblock() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    block(&app, &alice, &bob).await;
    block(&app, &bob, &alice).await;
    assert_eq!(ids(&blocked(&app, &bob).await), [alice.user.user_id]);

    let (status, _) = app
        .delete(&format!("/api/blocks/{}", bob.user.user_id), &alice.token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(blocked(&app, &alice).await.is_empty());
    assert_eq!(ids(&blocked(&app, &bob).await), [alice.user.user_id]);
    // Bob's block still hides Alice's requests from him.
    let (status, _) = request_by_name(&app, &alice, &bob).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(requests(&app, &bob).await.incoming.is_empty());

    // Unblocking someone I do not block is 404, and does not lift their block.
    let (status, _) = app
        .delete(&format!("/api/blocks/{}", bob.user.user_id), &alice.token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_friend_requests_are_rejected_without_a_500() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    for (body, status, err) in [
        (
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"username": "bob", "friend_code": bob.user.friend_code}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"friend_code": "0000OOOO"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"username": "no such name!"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"username": "nobody"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"username": "alice"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"username": 5}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"username": "bob", "admin": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ] {
        let (got, answer) = request(&app, &alice, body.clone()).await;
        assert_eq!((got, code(&answer)), (status, err), "{body}");
    }
    for path in ["/api/friends/abc", "/api/blocks/99999999999999999999"] {
        let (status, answer) = app.delete(path, &alice.token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
    }
    let (status, _) = app.put("/api/blocks/987654", &alice.token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .put(&format!("/api/blocks/{}", alice.user.user_id), &alice.token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call(reqwest::Method::GET, "/api/friends", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn friends_see_live_presence_and_strangers_see_none() {
    let app = TestApp::spawn().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    app.befriend(&alice, &bob).await;
    request_by_name(&app, &carol, &alice).await;
    sqlx::query("update users set last_seen = now()")
        .execute(&app.db)
        .await
        .expect("last_seen");

    // Not connected: offline, whatever status Alice chose.
    let listed = &friends(&app, &bob).await[0].user;
    assert_eq!(listed.status, protocol::gateway::Presence::Offline);
    assert!(listed.last_seen.is_some());

    let _gateway = app.online(&alice.token).await;
    let listed = &friends(&app, &bob).await[0].user;
    assert_eq!(listed.status, protocol::gateway::Presence::Online);

    // Carol, who only asked, learns nothing of Alice's presence, nor Alice of hers.
    let outgoing = &requests(&app, &carol).await.outgoing[0].user;
    assert_eq!(outgoing.status, protocol::gateway::Presence::Offline);
    assert!(outgoing.last_seen.is_none());
    assert!(requests(&app, &alice).await.incoming[0]
        .user
        .last_seen
        .is_none());
}

#[tokio::test]
async fn new_friends_each_get_the_others_presence() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let mut a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;
    app.befriend(&alice, &bob).await;
    for (gw, friend) in [(&mut a, &bob), (&mut b, &alice)] {
        gw.expect(
            "the new friend's presence",
            presence_of(friend.user.user_id, Presence::Online),
        )
        .await;
    }
}
