//! Sending, editing, deleting and paging messages.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use protocol::messages::{Message, MessagePage};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sohbet_tests::{code, parse, TestApp, TestUser};

async fn send_raw(
    app: &TestApp,
    user: &TestUser,
    group_id: i64,
    body: Value,
) -> (StatusCode, Value) {
    app.post(
        &format!("/api/groups/{group_id}/messages"),
        Some(&user.token),
        &body,
    )
    .await
}

async fn page(app: &TestApp, user: &TestUser, group_id: i64, query: &str) -> MessagePage {
    let (status, body) = app
        .get(
            &format!("/api/groups/{group_id}/messages?{query}"),
            &user.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    parse(body)
}

fn contents(page: &MessagePage) -> Vec<&str> {
    page.messages.iter().map(|m| m.content.as_str()).collect()
}

fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn a_sent_message_is_trimmed_numbered_and_in_the_history() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let group_id = app.create_group(&alice, "g").await;
    let first = app.send(&alice, group_id, "  hello\r\nworld \n").await;
    let second = app.send(&alice, group_id, "again").await;
    assert_eq!(first.content, "hello\nworld");
    assert_eq!((first.seq, second.seq), (1, 2));
    assert_eq!(first.sender_id, Some(alice.user.user_id));
    assert!(first.edited_at.is_none());
    let history = page(&app, &alice, group_id, "").await;
    assert_eq!(contents(&history), ["hello\nworld", "again"]);
    assert!(!history.has_more);
}

#[tokio::test]
async fn message_content_must_be_1_to_4000_characters_without_control_characters() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let group_id = app.create_group(&alice, "g").await;
    for content in [
        String::new(),
        " \n\t ".into(),
        "x".repeat(4001),
        "nul\u{0}byte".into(),
        "bell\u{7}".into(),
        "\u{1b}[2Jclear".into(),
        format!(" {} ", "é".repeat(4001)),
    ] {
        let (status, body) = send_raw(&app, &alice, group_id, json!({ "content": content })).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{content:?}"
        );
        assert_eq!(body["error"]["field"], "content");
    }
    for body in [
        json!({}),
        json!({"content": 5}),
        json!({"content": "x", "seq": 1}),
    ] {
        let (status, answer) = send_raw(&app, &alice, group_id, body.clone()).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            "{body}"
        );
    }
    // Four thousand characters of several bytes each, padded with spaces: accepted.
    let long = format!("  {}  ", "ğ".repeat(4000));
    let (status, body) = send_raw(&app, &alice, group_id, json!({ "content": long })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let stored: i64 = sqlx::query_scalar("select count(*) from messages")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn invalid_utf8_is_malformed_and_a_lone_surrogate_is_invalid() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let group_id = app.create_group(&alice, "g").await;
    // Not UTF-8: not JSON at all. A lone surrogate escape: JSON, but not a string of text.
    for (raw, status, err) in [
        (
            &b"{\"content\": \"\xff\xfe\"}"[..],
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            br#"{"content": "\ud800"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ] {
        let resp = app
            .http
            .post(app.url(&format!("/api/groups/{group_id}/messages")))
            .bearer_auth(&alice.token)
            .header("content-type", "application/json")
            .body(raw.to_vec())
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), status, "{raw:?}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(code(&body), err);
    }
}

#[tokio::test]
async fn only_the_sender_can_edit_and_the_message_shows_as_edited() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    let message = app.send(&bob, group_id, "typo").await;
    let path = format!("/api/groups/{group_id}/messages/{}", message.message_id);
    // Not even the owner edits someone else's words.
    let (status, body) = app
        .patch(&path, &alice.token, &json!({"content": "x"}))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = app.patch(&path, &bob.token, &json!({"content": ""})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = app
        .patch(&path, &bob.token, &json!({"content": "fixed"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let edited: Message = parse(body);
    assert_eq!(edited.content, "fixed");
    assert!(edited.edited_at.is_some());
    assert!(edited.updated_at > message.updated_at);
    assert_eq!(edited.seq, message.seq);
    let (status, _) = app
        .patch(
            &format!("/api/groups/{group_id}/messages/999999"),
            &bob.token,
            &json!({"content": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn members_delete_their_own_messages_and_admins_anyones() {
    let app = TestApp::spawn().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let group_id = app.group_with(&alice, &[&bob, &carol]).await;
    let path = |m: &Message| format!("/api/groups/{group_id}/messages/{}", m.message_id);
    let by_bob = app.send(&bob, group_id, "bob's").await;
    let by_alice = app.send(&alice, group_id, "alice's").await;
    let by_carol = app.send(&carol, group_id, "carol's").await;

    let (status, _) = app.delete(&path(&by_bob), &carol.token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.delete(&path(&by_bob), &bob.token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // An admin may delete anyone's, the owner's included.
    app.patch(
        &format!("/api/groups/{group_id}/members/{}", carol.user.user_id),
        &alice.token,
        &json!({"role": "admin"}),
    )
    .await;
    let (status, _) = app.delete(&path(&by_alice), &carol.token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.delete(&path(&by_carol), &alice.token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.delete(&path(&by_carol), &alice.token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page(&app, &bob, group_id, "").await.messages.is_empty());
    // Sequence numbers are never reused.
    assert_eq!(app.send(&bob, group_id, "next").await.seq, 4);
}

#[tokio::test]
async fn in_a_dm_nobody_deletes_the_other_persons_messages() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    app.befriend(&alice, &bob).await;
    let dm = app.dm(&alice, &bob).await;
    let message = app.send(&bob, dm, "mine").await;
    let (status, _) = app
        .delete(
            &format!("/api/groups/{dm}/messages/{}", message.message_id),
            &alice.token,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_retry_with_the_same_nonce_returns_the_same_message() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    let body = json!({"content": "once", "nonce": "n-1"});
    let (status, first) = send_raw(&app, &alice, group_id, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, again) = send_raw(&app, &alice, group_id, body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first, again);
    // Another sender's nonce is their own.
    let (status, other) = send_raw(&app, &bob, group_id, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(other["message_id"], first["message_id"]);
    // The same nonce in another group is a client bug, not a retry.
    let elsewhere = app.create_group(&alice, "other").await;
    let (status, answer) = send_raw(&app, &alice, elsewhere, body).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::CONFLICT, "nonce_reused")
    );
    for nonce in [json!(""), json!("n".repeat(65)), json!(7)] {
        let (status, _) = send_raw(
            &app,
            &alice,
            group_id,
            json!({"content": "x", "nonce": nonce}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{nonce}");
    }
}

#[tokio::test]
async fn simultaneous_retries_with_one_nonce_store_one_message_and_burn_no_sequence_number() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let group_id = app.create_group(&alice, "g").await;
    let body = json!({"content": "retry storm", "nonce": "storm"});
    let answers =
        futures::future::join_all((0..8).map(|_| send_raw(&app, &alice, group_id, body.clone())))
            .await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    assert!(
        answers.iter().all(|(s, b)| s.is_success() && b["seq"] == 1),
        "{answers:?}"
    );
    let (messages, last_seq): (i64, i64) = sqlx::query_as(
        "select (select count(*) from messages), (select last_seq from chat_groups)",
    )
    .fetch_one(&app.db)
    .await
    .expect("counts");
    assert_eq!((messages, last_seq), (1, 1));
    assert_eq!(app.send(&alice, group_id, "next").await.seq, 2);
}

#[tokio::test]
async fn history_pages_before_after_and_around_a_message() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let group_id = app.create_group(&alice, "g").await;
    let mut sent = Vec::new();
    for i in 1..=30 {
        sent.push(app.send(&alice, group_id, &format!("m{i}")).await);
    }
    let id = |seq: usize| sent[seq - 1].message_id;

    let latest = page(&app, &alice, group_id, "limit=10").await;
    assert_eq!(seqs(&latest.messages), (21..=30).collect::<Vec<_>>());
    assert!(latest.has_more);
    let before = page(
        &app,
        &alice,
        group_id,
        &format!("before={}&limit=10", id(21)),
    )
    .await;
    assert_eq!(seqs(&before.messages), (11..=20).collect::<Vec<_>>());
    let first = page(
        &app,
        &alice,
        group_id,
        &format!("before={}&limit=10", id(5)),
    )
    .await;
    assert_eq!(seqs(&first.messages), (1..=4).collect::<Vec<_>>());
    assert!(!first.has_more);
    let after = page(
        &app,
        &alice,
        group_id,
        &format!("after={}&limit=10", id(25)),
    )
    .await;
    assert_eq!(seqs(&after.messages), (26..=30).collect::<Vec<_>>());
    assert!(!after.has_more);
    let around = page(
        &app,
        &alice,
        group_id,
        &format!("around={}&limit=10", id(15)),
    )
    .await;
    assert_eq!(seqs(&around.messages), (10..=19).collect::<Vec<_>>());
    let default = page(&app, &alice, group_id, "").await;
    assert_eq!(default.messages.len(), 30);
}

#[tokio::test]
async fn bad_history_parameters_are_400_and_foreign_cursors_404() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let group_id = app.create_group(&alice, "g").await;
    let other = app.create_group(&alice, "other").await;
    let here = app.send(&alice, group_id, "here").await;
    let there = app.send(&alice, other, "there").await;
    for query in [
        "limit=0".to_owned(),
        "limit=101".into(),
        "limit=-1".into(),
        "limit=abc".into(),
        "before=x".into(),
        "sort=desc".into(),
        format!("before={0}&after={0}", here.message_id),
    ] {
        let (status, body) = app
            .get(
                &format!("/api/groups/{group_id}/messages?{query}"),
                &alice.token,
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_parameter"),
            "{query}"
        );
    }
    let (status, body) = app
        .get(
            &format!("/api/groups/{group_id}/messages?after={}", there.message_id),
            &alice.token,
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _) = app.get("/api/groups/abc/messages", &alice.token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_message_committing_late_is_not_skipped_by_a_pager() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let group_id = app.create_group(&alice, "g").await;
    let start = app.send(&alice, group_id, "start").await;

    // A slow sender: takes the next sequence number and holds its transaction open.
    let mut slow = app.db.begin().await.expect("tx");
    let slow_seq: i64 = sqlx::query_scalar(
        "update chat_groups set last_seq = last_seq + 1 where group_id = $1 returning last_seq",
    )
    .bind(group_id)
    .fetch_one(&mut *slow)
    .await
    .expect("seq");
    sqlx::query(
        "insert into messages (group_id, sender_id, content, seq) values ($1, $2, 'slow', $3)",
    )
    .bind(group_id)
    .bind(alice.user.user_id)
    .bind(slow_seq)
    .execute(&mut *slow)
    .await
    .expect("insert");

    // A fast sender meanwhile waits behind it rather than taking a later number and
    // committing first.
    let fast = app.send(&alice, group_id, "fast");
    let reader = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let seen = page(
            &app,
            &alice,
            group_id,
            &format!("after={}", start.message_id),
        )
        .await;
        assert!(seen.messages.is_empty(), "{:?}", contents(&seen));
        slow.commit().await.expect("commit");
    };
    let (fast, ()) = tokio::join!(fast, reader);
    assert_eq!(fast.seq, slow_seq + 1);
    let seen = page(
        &app,
        &alice,
        group_id,
        &format!("after={}", start.message_id),
    )
    .await;
    assert_eq!(contents(&seen), ["slow", "fast"]);
}

#[tokio::test]
async fn a_pager_following_concurrent_senders_sees_every_message_once_in_order() {
    let app = TestApp::spawn().await;
    let users = [
        app.user("alice").await,
        app.user("bob").await,
        app.user("carol").await,
        app.user("dave").await,
    ];
    let group_id = app
        .group_with(&users[0], &[&users[1], &users[2], &users[3]])
        .await;
    let start = app.send(&users[0], group_id, "start").await;
    const PER_SENDER: usize = 24;
    let done = Arc::new(AtomicBool::new(false));

    let senders = futures::future::join_all(users.iter().map(|u| async {
        for i in 0..PER_SENDER {
            app.send(u, group_id, &format!("{} {i}", u.user.username))
                .await;
        }
    }));
    let pager = async {
        let mut seen: Vec<Message> = Vec::new();
        let mut cursor = start.message_id;
        loop {
            let finished = done.load(Ordering::SeqCst);
            let page = page(
                &app,
                &users[1],
                group_id,
                &format!("after={cursor}&limit=7"),
            )
            .await;
            if let Some(last) = page.messages.last() {
                cursor = last.message_id;
            }
            let empty = page.messages.is_empty();
            seen.extend(page.messages);
            if finished && empty {
                return seen;
            }
        }
    };
    let senders = async {
        senders.await;
        done.store(true, Ordering::SeqCst);
    };
    let ((), seen) = tokio::join!(senders, pager);

    let all = page(&app, &users[1], group_id, "limit=100").await.messages;
    assert_eq!(all.len(), 1 + users.len() * PER_SENDER);
    assert_eq!(
        seqs(&seen),
        seqs(&all[1..]),
        "the pager skipped or repeated a message"
    );
    assert_eq!(seqs(&all), (1..=all.len() as i64).collect::<Vec<_>>());
}
