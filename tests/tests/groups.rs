//! Groups, direct messages, members and roles.

use protocol::groups::{GroupDetail, GroupListItem, Role};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sohbet_tests::{code, parse, TestApp, TestUser};

async fn detail(app: &TestApp, user: &TestUser, group_id: i64) -> GroupDetail {
    let (status, body) = app
        .get(&format!("/api/groups/{group_id}"), &user.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    parse(body)
}

fn role_of(detail: &GroupDetail, user: &TestUser) -> Option<Role> {
    detail
        .members
        .iter()
        .find(|m| m.user.user_id == user.user.user_id)
        .map(|m| m.role)
}

async fn list(app: &TestApp, user: &TestUser) -> Vec<GroupListItem> {
    let (status, body) = app.get("/api/groups", &user.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    parse(body)
}

async fn remove(
    app: &TestApp,
    by: &TestUser,
    group_id: i64,
    who: &TestUser,
) -> (StatusCode, Value) {
    app.delete(
        &format!("/api/groups/{group_id}/members/{}", who.user.user_id),
        &by.token,
    )
    .await
}

async fn set_role(
    app: &TestApp,
    by: &TestUser,
    group_id: i64,
    who: &TestUser,
    role: &str,
) -> (StatusCode, Value) {
    app.patch(
        &format!("/api/groups/{group_id}/members/{}", who.user.user_id),
        &by.token,
        &json!({ "role": role }),
    )
    .await
}

#[tokio::test]
async fn creating_a_group_makes_me_its_owner() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let (status, body) = app
        .post(
            "/api/groups",
            Some(&alice.token),
            &json!({"name": "  Book club ", "description": "Monthly"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let group: GroupDetail = parse(body);
    assert_eq!(group.group.name.as_deref(), Some("Book club"));
    assert_eq!(group.group.description.as_deref(), Some("Monthly"));
    assert!(!group.group.is_direct_msg);
    assert_eq!(group.my_role, Role::Owner);
    assert_eq!(role_of(&group, &alice), Some(Role::Owner));
}

#[tokio::test]
async fn group_names_and_descriptions_are_validated() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    for body in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "n".repeat(101)}),
        json!({"name": "tab\u{7}bell"}),
        json!({"name": "ok", "description": "d".repeat(1001)}),
        json!({"name": "ok", "description": "nul\u{0}"}),
    ] {
        let (status, answer) = app.post("/api/groups", Some(&alice.token), &body).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{body}"
        );
    }
    for body in [
        json!({}),
        json!({"name": 1}),
        json!({"name": "x", "owner": 1}),
    ] {
        let (status, answer) = app.post("/api/groups", Some(&alice.token), &body).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
        );
    }
    let (status, _) = app
        .post(
            "/api/groups",
            Some(&alice.token),
            &json!({"name": "n".repeat(100)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_non_member_gets_404_for_a_group_and_everything_in_it() {
    let app = TestApp::spawn().await;
    let [alice, mallory] = app.users(["alice", "mallory"]).await;
    let group_id = app.create_group(&alice, "secret").await;
    let message = app.send(&alice, group_id, "hush").await;
    let missing = group_id + 1000;
    for gid in [group_id, missing] {
        let m = message.message_id;
        let calls: Vec<(reqwest::Method, String, Option<Value>)> = vec![
            (reqwest::Method::GET, format!("/api/groups/{gid}"), None),
            (
                reqwest::Method::PATCH,
                format!("/api/groups/{gid}"),
                Some(json!({"name": "x"})),
            ),
            (reqwest::Method::DELETE, format!("/api/groups/{gid}"), None),
            (
                reqwest::Method::GET,
                format!("/api/groups/{gid}/messages"),
                None,
            ),
            (
                reqwest::Method::POST,
                format!("/api/groups/{gid}/messages"),
                Some(json!({"content": "hi"})),
            ),
            (
                reqwest::Method::PATCH,
                format!("/api/groups/{gid}/messages/{m}"),
                Some(json!({"content": "x"})),
            ),
            (
                reqwest::Method::DELETE,
                format!("/api/groups/{gid}/messages/{m}"),
                None,
            ),
            (
                reqwest::Method::GET,
                format!("/api/groups/{gid}/messages/{m}/receipts"),
                None,
            ),
            (
                reqwest::Method::GET,
                format!("/api/groups/{gid}/read"),
                None,
            ),
            (
                reqwest::Method::POST,
                format!("/api/groups/{gid}/read"),
                Some(json!({"message_id": m})),
            ),
            (
                reqwest::Method::POST,
                format!("/api/groups/{gid}/members"),
                Some(json!({"user_id": 1})),
            ),
            (
                reqwest::Method::DELETE,
                format!("/api/groups/{gid}/members/{}", alice.user.user_id),
                None,
            ),
            (
                reqwest::Method::PATCH,
                format!("/api/groups/{gid}/members/{}", alice.user.user_id),
                Some(json!({"role": "admin"})),
            ),
            (
                reqwest::Method::POST,
                format!("/api/groups/{gid}/leave"),
                Some(json!({})),
            ),
            (
                reqwest::Method::POST,
                format!("/api/groups/{gid}/owner"),
                Some(json!({"user_id": 1})),
            ),
        ];
        for (method, path, body) in calls {
            let (status, answer) = app
                .call(method.clone(), &path, Some(&mallory.token), body.as_ref())
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
            assert_eq!(
                answer["error"]["message"], "group not found",
                "{method} {path}"
            );
        }
    }
    assert!(list(&app, &mallory).await.is_empty());
    assert_eq!(
        detail(&app, &alice, group_id).await.group.name.as_deref(),
        Some("secret")
    );
}

#[tokio::test]
async fn only_an_admin_or_the_owner_can_update_a_group() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    let path = format!("/api/groups/{group_id}");
    let (status, body) = app.patch(&path, &bob.token, &json!({"name": "mine"})).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    set_role(&app, &alice, group_id, &bob, "admin").await;
    let (status, body) = app
        .patch(
            &path,
            &bob.token,
            &json!({"name": "renamed", "description": "about"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "renamed");
    let (status, body) = app
        .patch(&path, &alice.token, &json!({"description": null}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["description"], Value::Null);
    assert_eq!(body["name"], "renamed");
    let (status, _) = app.patch(&path, &alice.token, &json!({"name": ""})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn only_the_owner_can_delete_a_group() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    app.send(&bob, group_id, "hello").await;
    set_role(&app, &alice, group_id, &bob, "admin").await;
    let path = format!("/api/groups/{group_id}");
    let (status, _) = app.delete(&path, &bob.token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.delete(&path, &alice.token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&path, &bob.token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let left: i64 = sqlx::query_scalar("select count(*) from messages")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(left, 0);
}

#[tokio::test]
async fn only_friends_can_be_added_as_members() {
    let app = TestApp::spawn().await;
    let [alice, stranger] = app.users(["alice", "stranger"]).await;
    let group_id = app.create_group(&alice, "team").await;
    let (status, body) = app
        .post(
            &format!("/api/groups/{group_id}/members"),
            Some(&alice.token),
            &json!({"user_id": stranger.user.user_id}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
}

#[tokio::test]
async fn a_plain_member_cannot_add_members() {
    let app = TestApp::spawn().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    app.befriend(&bob, &carol).await;
    let (status, _) = app
        .post(
            &format!("/api/groups/{group_id}/members"),
            Some(&bob.token),
            &json!({"user_id": carol.user.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    set_role(&app, &alice, group_id, &bob, "admin").await;
    app.add_member(&bob, group_id, &carol).await;
    let (status, body) = app
        .post(
            &format!("/api/groups/{group_id}/members"),
            Some(&bob.token),
            &json!({"user_id": carol.user.user_id}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "already_member")
    );
}

#[tokio::test]
async fn members_can_be_removed_only_by_a_higher_role() {
    let app = TestApp::spawn().await;
    let [alice, bob, carol, dave] = app.users(["alice", "bob", "carol", "dave"]).await;
    let group_id = app.group_with(&alice, &[&bob, &carol, &dave]).await;
    set_role(&app, &alice, group_id, &bob, "admin").await;
    set_role(&app, &alice, group_id, &carol, "admin").await;
    // member → member, admin → admin, admin → owner: refused.
    assert_eq!(
        remove(&app, &dave, group_id, &bob).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        remove(&app, &bob, group_id, &carol).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        remove(&app, &bob, group_id, &alice).await.0,
        StatusCode::FORBIDDEN
    );
    // admin → member, owner → admin: allowed.
    assert_eq!(
        remove(&app, &bob, group_id, &dave).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        remove(&app, &alice, group_id, &carol).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, _) = app
        .get(&format!("/api/groups/{group_id}"), &dave.token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Removing a non-member is 404.
    assert_eq!(
        remove(&app, &alice, group_id, &dave).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_owner_must_transfer_ownership_before_leaving() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    let leave = format!("/api/groups/{group_id}/leave");
    let (status, body) = app.post(&leave, Some(&alice.token), &json!({})).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "owner_must_transfer")
    );

    let (status, body) = app
        .post(
            &format!("/api/groups/{group_id}/owner"),
            Some(&alice.token),
            &json!({"user_id": bob.user.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let group = detail(&app, &bob, group_id).await;
    assert_eq!(role_of(&group, &bob), Some(Role::Owner));
    assert_eq!(role_of(&group, &alice), Some(Role::Admin));

    let (status, _) = app.post(&leave, Some(&alice.token), &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(detail(&app, &bob, group_id).await.members.len(), 1);
}

#[tokio::test]
async fn the_group_goes_when_its_last_member_leaves() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let group_id = app.create_group(&alice, "solo").await;
    app.send(&alice, group_id, "echo").await;
    let (status, _) = app
        .delete(
            &format!("/api/groups/{group_id}/members/{}", alice.user.user_id),
            &alice.token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let groups: i64 = sqlx::query_scalar("select count(*) from chat_groups")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(groups, 0);
}

#[tokio::test]
async fn only_the_owner_changes_roles_and_never_to_owner() {
    let app = TestApp::spawn().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let group_id = app.group_with(&alice, &[&bob, &carol]).await;
    let (status, _) = set_role(&app, &alice, group_id, &bob, "admin").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = set_role(&app, &bob, group_id, &carol, "admin").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = set_role(&app, &alice, group_id, &carol, "owner").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );
    let (status, body) = set_role(&app, &alice, group_id, &carol, "king").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    let (status, _) = set_role(&app, &alice, group_id, &alice, "member").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let group = detail(&app, &carol, group_id).await;
    assert_eq!(role_of(&group, &bob), Some(Role::Admin));
    assert_eq!(role_of(&group, &carol), Some(Role::Member));
    assert_eq!(role_of(&group, &alice), Some(Role::Owner));
}

#[tokio::test]
async fn only_the_owner_transfers_ownership() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    set_role(&app, &alice, group_id, &bob, "admin").await;
    let (status, _) = app
        .post(
            &format!("/api/groups/{group_id}/owner"),
            Some(&bob.token),
            &json!({"user_id": bob.user.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .post(
            &format!("/api/groups/{group_id}/owner"),
            Some(&alice.token),
            &json!({"user_id": 424242}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        role_of(&detail(&app, &alice, group_id).await, &alice),
        Some(Role::Owner)
    );
}

#[tokio::test]
async fn a_group_cannot_grow_past_the_configured_size() {
    let app = TestApp::spawn_with(|s| s.max_group_size = 2).await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    app.befriend(&alice, &carol).await;
    let (status, body) = app
        .post(
            &format!("/api/groups/{group_id}/members"),
            Some(&alice.token),
            &json!({"user_id": carol.user.user_id}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "group_full"));
}

#[tokio::test]
async fn my_groups_are_listed_by_latest_activity_with_last_message_and_unread_count() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let older = app.group_with(&alice, &[&bob]).await;
    app.send(&bob, older, "one").await;
    app.send(&bob, older, "two").await;
    let newer = app.create_group(&alice, "newer").await;
    let dm = app.dm(&alice, &bob).await;

    let groups = list(&app, &alice).await;
    let order: Vec<i64> = groups.iter().map(|g| g.group.group_id).collect();
    assert_eq!(order, [dm, newer, older]);
    let dm_item = &groups[0];
    assert!(dm_item.group.is_direct_msg);
    assert_eq!(
        dm_item.dm_user.as_ref().map(|u| u.user_id),
        Some(bob.user.user_id)
    );
    let older_item = &groups[2];
    assert_eq!(older_item.unread_count, 2);
    assert_eq!(
        older_item.last_message.as_ref().map(|m| m.content.as_str()),
        Some("two")
    );
    assert!(groups[1].last_message.is_none());

    app.send(&alice, older, "three").await;
    let groups = list(&app, &alice).await;
    assert_eq!(groups[0].group.group_id, older);
    assert_eq!(groups[0].unread_count, 0, "replying reads what came before");
    assert_eq!(list(&app, &bob).await[0].unread_count, 1);
}

#[tokio::test]
async fn a_dm_is_get_or_create_from_either_side() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    app.befriend(&alice, &bob).await;
    let (status, body) = app
        .post(
            "/api/dms",
            Some(&alice.token),
            &json!({"user_id": bob.user.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let created: GroupDetail = parse(body);
    assert!(created.group.is_direct_msg);
    assert!(created.group.name.is_none());
    let mut members: Vec<i64> = created.members.iter().map(|m| m.user.user_id).collect();
    members.sort_unstable();
    assert_eq!(members, [alice.user.user_id, bob.user.user_id]);

    let (status, body) = app
        .post(
            "/api/dms",
            Some(&bob.token),
            &json!({"user_id": alice.user.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["group"]["group_id"], created.group.group_id);
}

#[tokio::test]
async fn simultaneous_dm_calls_from_both_sides_yield_one_group() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    app.befriend(&alice, &bob).await;
    let app = &app;
    let calls = (0..8).map(|i| {
        let (me, other) = if i % 2 == 0 {
            (&alice, &bob)
        } else {
            (&bob, &alice)
        };
        let body = json!({"user_id": other.user.user_id});
        async move { app.post("/api/dms", Some(&me.token), &body).await }
    });
    let answers = futures::future::join_all(calls).await;
    let mut ids: Vec<i64> = answers
        .iter()
        .map(|(status, body)| {
            assert!(status.is_success(), "{status} {body}");
            body["group"]["group_id"].as_i64().expect("id")
        })
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let (groups, members): (i64, i64) = sqlx::query_as(
        "select (select count(*) from chat_groups), (select count(*) from group_members)",
    )
    .fetch_one(&app.db)
    .await
    .expect("counts");
    assert_eq!((groups, members), (1, 2));
}

#[tokio::test]
async fn a_dm_needs_a_friend_to_start() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let (status, _) = app
        .post(
            "/api/dms",
            Some(&alice.token),
            &json!({"user_id": bob.user.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for user_id in [alice.user.user_id, 987_654] {
        let (status, _) = app
            .post(
                "/api/dms",
                Some(&alice.token),
                &json!({ "user_id": user_id }),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn members_cannot_be_added_to_a_dm_and_nobody_leaves_or_deletes_it() {
    let app = TestApp::spawn().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    app.befriend(&alice, &bob).await;
    app.befriend(&alice, &carol).await;
    let dm = app.dm(&alice, &bob).await;
    let (status, _) = app
        .post(
            &format!("/api/groups/{dm}/members"),
            Some(&alice.token),
            &json!({"user_id": carol.user.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .post(
            &format!("/api/groups/{dm}/leave"),
            Some(&alice.token),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.delete(&format!("/api/groups/{dm}"), &alice.token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .patch(
            &format!("/api/groups/{dm}"),
            &alice.token,
            &json!({"name": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(detail(&app, &alice, dm).await.members.len(), 2);
}

#[tokio::test]
async fn a_dm_survives_unfriending_readable_but_read_only() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    app.befriend(&alice, &bob).await;
    let dm = app.dm(&alice, &bob).await;
    let before = app.send(&bob, dm, "before").await;
    app.delete(&format!("/api/friends/{}", bob.user.user_id), &alice.token)
        .await;

    let (status, body) = app
        .get(&format!("/api/groups/{dm}/messages"), &bob.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["messages"][0]["content"], "before");
    // Still found (and the same group) when reopened, but nobody can send.
    assert_eq!(app.dm(&bob, &alice).await, dm);
    for user in [&alice, &bob] {
        let (status, body) = app
            .post(
                &format!("/api/groups/{dm}/messages"),
                Some(&user.token),
                &json!({"content": "hi"}),
            )
            .await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    }
    // Nor can the old messages be edited, though each side may still delete its own.
    let (status, _) = app
        .patch(
            &format!("/api/groups/{dm}/messages/{}", before.message_id),
            &bob.token,
            &json!({"content": "rewritten"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Friends again: the same DM opens up.
    app.befriend(&bob, &alice).await;
    app.send(&alice, dm, "again").await;
}

#[tokio::test]
async fn a_blocked_user_cannot_message_the_blocker_and_gets_the_unfriended_answer() {
    let app = TestApp::spawn().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    app.befriend(&alice, &bob).await;
    app.befriend(&carol, &bob).await;
    let blocked_dm = app.dm(&alice, &bob).await;
    let unfriended_dm = app.dm(&carol, &bob).await;
    app.put(&format!("/api/blocks/{}", bob.user.user_id), &alice.token)
        .await;
    app.delete(&format!("/api/friends/{}", bob.user.user_id), &carol.token)
        .await;

    let app = &app;
    let send = |dm: i64| {
        let (path, token) = (format!("/api/groups/{dm}/messages"), bob.token.clone());
        async move {
            app.post(&path, Some(&token), &json!({"content": "hello?"}))
                .await
        }
    };
    let (blocked, unfriended) = tokio::join!(send(blocked_dm), send(unfriended_dm));
    assert_eq!(blocked.0, StatusCode::FORBIDDEN);
    assert_eq!(blocked, unfriended);
    // Nor can he start over with a friend request that reaches her.
    app.post(
        "/api/friends/requests",
        Some(&bob.token),
        &json!({"username": "alice"}),
    )
    .await;
    let (_, incoming) = app.get("/api/friends/requests", &alice.token).await;
    assert_eq!(incoming["incoming"], json!([]));
}

#[tokio::test]
async fn blocked_users_are_excluded_from_each_others_groups() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    app.befriend(&alice, &bob).await;
    let hers = app.create_group(&alice, "hers").await;
    let his = app.create_group(&bob, "his").await;
    app.put(&format!("/api/blocks/{}", bob.user.user_id), &alice.token)
        .await;
    for (by, group_id, whom) in [(&alice, hers, &bob), (&bob, his, &alice)] {
        let (status, body) = app
            .post(
                &format!("/api/groups/{group_id}/members"),
                Some(&by.token),
                &json!({"user_id": whom.user.user_id}),
            )
            .await;
        // The same answer as for any non-friend.
        assert_eq!(
            (status, body["error"]["message"].as_str()),
            (StatusCode::FORBIDDEN, Some("you can add only your friends"))
        );
    }
}
