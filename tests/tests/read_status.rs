//! Read watermarks, unread counts, receipts and `messages.is_read`.

use protocol::messages::{Message, ReadState, Receipt};
use reqwest::StatusCode;
use serde_json::json;
use sohbet_server::domain::groups::LIST_GROUPS_SQL;
use sohbet_server::domain::messages::{BEFORE_SQL, FROM_SQL, LATEST_SQL};
use sohbet_server::domain::read_status::{
    ADVANCE_WATERMARK_SQL, FLIP_READ_SQL, MIN_WATERMARK_SQL, RECEIPTS_SQL, UNREAD_COUNT_SQL,
    WATERMARKS_SQL,
};
use sohbet_tests::{parse, seed_messages, TestApp, TestUser};

async fn mark_read(app: &TestApp, user: &TestUser, group_id: i64, message: &Message) -> ReadState {
    let (status, body) = app
        .post(
            &format!("/api/groups/{group_id}/read"),
            Some(&user.token),
            &json!({"message_id": message.message_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    parse(body)
}

async fn read_state(app: &TestApp, user: &TestUser, group_id: i64) -> ReadState {
    let (status, body) = app
        .get(&format!("/api/groups/{group_id}/read"), &user.token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    parse(body)
}

/// `is_read` of each message of the group, by seq.
async fn is_read(app: &TestApp, user: &TestUser, group_id: i64) -> Vec<bool> {
    let (_, body) = app
        .get(
            &format!("/api/groups/{group_id}/messages?limit=100"),
            &user.token,
        )
        .await;
    let page: protocol::messages::MessagePage = parse(body);
    page.messages.iter().map(|m| m.is_read).collect()
}

async fn receipts(app: &TestApp, user: &TestUser, message: &Message) -> Vec<Receipt> {
    let (status, body) = app
        .get(
            &format!(
                "/api/groups/{}/messages/{}/receipts",
                message.group_id, message.message_id
            ),
            &user.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    parse(body)
}

#[tokio::test]
async fn marking_a_message_read_counts_everything_up_to_it_as_read() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    let mut sent = Vec::new();
    for i in 1..=5 {
        sent.push(app.send(&bob, group_id, &format!("m{i}")).await);
    }
    assert_eq!(read_state(&app, &alice, group_id).await.unread_count, 5);
    let state = mark_read(&app, &alice, group_id, &sent[2]).await;
    assert_eq!((state.last_read_seq, state.unread_count), (3, 2));
    assert_eq!(read_state(&app, &alice, group_id).await, state);
}

#[tokio::test]
async fn unread_counts_stay_exact_when_messages_are_deleted() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    let mut sent = Vec::new();
    for i in 1..=6 {
        sent.push(app.send(&bob, group_id, &format!("m{i}")).await);
    }
    mark_read(&app, &alice, group_id, &sent[1]).await;
    // One deleted before Alice's watermark, two after it.
    for m in [&sent[0], &sent[3], &sent[5]] {
        let (status, _) = app
            .delete(
                &format!("/api/groups/{group_id}/messages/{}", m.message_id),
                &bob.token,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    assert_eq!(read_state(&app, &alice, group_id).await.unread_count, 2);
    let (_, list) = app.get("/api/groups", &alice.token).await;
    assert_eq!(list[0]["unread_count"], 2);
    assert_eq!(list[0]["last_message"]["content"], "m5");
}

#[tokio::test]
async fn the_read_watermark_never_moves_back() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    let first = app.send(&bob, group_id, "first").await;
    let second = app.send(&bob, group_id, "second").await;
    mark_read(&app, &alice, group_id, &second).await;
    let state = mark_read(&app, &alice, group_id, &first).await;
    assert_eq!((state.last_read_seq, state.unread_count), (2, 0));
}

#[tokio::test]
async fn my_unread_count_counts_only_others_messages_and_sending_reads_the_rest() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    app.send(&alice, group_id, "mine").await;
    assert_eq!(read_state(&app, &alice, group_id).await.unread_count, 0);
    app.send(&bob, group_id, "theirs 1").await;
    app.send(&bob, group_id, "theirs 2").await;
    assert_eq!(read_state(&app, &alice, group_id).await.unread_count, 2);
    // Bob's messages came after Alice's: sending them read it.
    assert_eq!(read_state(&app, &bob, group_id).await.unread_count, 0);
    app.send(&alice, group_id, "reply").await;
    assert_eq!(read_state(&app, &alice, group_id).await.unread_count, 0);
    assert_eq!(read_state(&app, &bob, group_id).await.unread_count, 1);
}

#[tokio::test]
async fn a_message_is_read_once_every_other_member_has_read_it() {
    let app = TestApp::spawn().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let group_id = app.group_with(&alice, &[&bob, &carol]).await;
    let m1 = app.send(&alice, group_id, "one").await;
    let m2 = app.send(&alice, group_id, "two").await;
    assert_eq!(is_read(&app, &alice, group_id).await, [false, false]);
    mark_read(&app, &bob, group_id, &m2).await;
    assert_eq!(is_read(&app, &alice, group_id).await, [false, false]);
    mark_read(&app, &carol, group_id, &m1).await;
    assert_eq!(is_read(&app, &alice, group_id).await, [true, false]);
    mark_read(&app, &carol, group_id, &m2).await;
    assert_eq!(is_read(&app, &alice, group_id).await, [true, true]);
}

#[tokio::test]
async fn in_a_dm_a_message_is_read_when_the_other_person_read_it() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    app.befriend(&alice, &bob).await;
    let dm = app.dm(&alice, &bob).await;
    let message = app.send(&alice, dm, "seen?").await;
    assert_eq!(is_read(&app, &alice, dm).await, [false]);
    mark_read(&app, &bob, dm, &message).await;
    assert_eq!(is_read(&app, &alice, dm).await, [true]);
}

#[tokio::test]
async fn replying_reads_for_the_sender_and_can_complete_is_read() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    app.befriend(&alice, &bob).await;
    let dm = app.dm(&alice, &bob).await;
    app.send(&alice, dm, "question").await;
    app.send(&bob, dm, "answer").await;
    // Bob's reply means he read the question.
    assert_eq!(is_read(&app, &alice, dm).await, [true, false]);
}

#[tokio::test]
async fn simultaneous_readers_still_mark_messages_read_by_all() {
    let app = TestApp::spawn().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let group_id = app.group_with(&alice, &[&bob, &carol]).await;
    for round in 1..=5 {
        let message = app.send(&alice, group_id, &format!("round {round}")).await;
        tokio::join!(
            mark_read(&app, &bob, group_id, &message),
            mark_read(&app, &carol, group_id, &message)
        );
        assert!(
            is_read(&app, &alice, group_id).await.iter().all(|r| *r),
            "round {round}"
        );
    }
}

#[tokio::test]
async fn a_first_read_of_a_long_history_answers_at_once_and_flips_is_read_in_batches() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    seed_messages(&app.db, group_id, alice.user.user_id, 5_500).await;
    let last = app.send(&alice, group_id, "the latest").await;
    mark_read(&app, &bob, group_id, &last).await;
    // The history says read at once; the column follows within moments.
    assert!(is_read(&app, &alice, group_id).await.iter().all(|r| *r));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left: i64 = sqlx::query_scalar("select count(*) from messages where not is_read")
            .fetch_one(&app.db)
            .await
            .expect("count");
        if left == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{left} never flipped");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_member_leaving_can_complete_is_read() {
    let app = TestApp::spawn().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let group_id = app.group_with(&alice, &[&bob, &carol]).await;
    let message = app.send(&alice, group_id, "hello").await;
    mark_read(&app, &bob, group_id, &message).await;
    assert_eq!(is_read(&app, &alice, group_id).await, [false]);
    app.post(
        &format!("/api/groups/{group_id}/leave"),
        Some(&carol.token),
        &json!({}),
    )
    .await;
    assert_eq!(is_read(&app, &alice, group_id).await, [true]);
}

#[tokio::test]
async fn receipts_say_who_read_a_message_and_when() {
    let app = TestApp::spawn().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let group_id = app.group_with(&alice, &[&bob, &carol]).await;
    let m1 = app.send(&alice, group_id, "one").await;
    let m2 = app.send(&alice, group_id, "two").await;
    assert!(
        receipts(&app, &alice, &m1).await.is_empty(),
        "the sender is no receipt"
    );
    let before = chrono::Utc::now();
    mark_read(&app, &bob, group_id, &m2).await;
    let after = chrono::Utc::now();
    // Reading m2 covers m1: Bob read both, at the time he marked m2.
    for message in [&m1, &m2] {
        let list = receipts(&app, &carol, message).await;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].user_id, bob.user.user_id);
        let read_at = list[0].read_at.expect("read_at");
        assert!(read_at >= before - chrono::Duration::seconds(1) && read_at <= after);
    }
    mark_read(&app, &carol, group_id, &m1).await;
    let ids: Vec<i64> = receipts(&app, &alice, &m1)
        .await
        .iter()
        .map(|r| r.user_id)
        .collect();
    assert_eq!(ids, [bob.user.user_id, carol.user.user_id]);
    assert_eq!(receipts(&app, &alice, &m2).await.len(), 1);
}

#[tokio::test]
async fn marking_read_a_message_of_another_group_is_404() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let group_id = app.create_group(&alice, "g").await;
    let other = app.create_group(&alice, "other").await;
    let elsewhere = app.send(&alice, other, "x").await;
    let (status, _) = app
        .post(
            &format!("/api/groups/{group_id}/read"),
            Some(&alice.token),
            &json!({"message_id": elsewhere.message_id}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post(
            &format!("/api/groups/{group_id}/read"),
            Some(&alice.token),
            &json!({"message_id": "1"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// The plan of `sql` with `binds`, as text.
async fn plan(app: &TestApp, sql: &'static str, binds: &[i64]) -> String {
    let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!("explain {sql}")));
    for b in binds {
        query = query.bind(*b);
    }
    query.fetch_all(&app.db).await.expect("explain").join("\n")
}

#[tokio::test]
async fn read_status_and_history_queries_use_indexes_in_a_group_of_100000_messages() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    seed_messages(&app.db, group_id, alice.user.user_id, 100_000).await;
    // Bob has read most of it, with a receipt every 100 messages.
    sqlx::query(
        "insert into message_read_status (message_id, user_id, group_id, seq)
         select message_id, $2, group_id, seq from messages
          where group_id = $1 and seq % 100 = 0 and seq <= 99900",
    )
    .bind(group_id)
    .bind(bob.user.user_id)
    .execute(&app.db)
    .await
    .expect("receipts");
    sqlx::query("update group_members set last_read_seq = 99900 where user_id = $1")
        .bind(bob.user.user_id)
        .execute(&app.db)
        .await
        .expect("watermark");
    // And some deleted messages (a gap every 50 sequence numbers).
    sqlx::query(
        "with gone as (delete from messages where group_id = $1 and seq % 50 = 25 returning seq)
         insert into message_deletions (group_id, seq) select $1, seq from gone",
    )
    .bind(group_id)
    .execute(&app.db)
    .await
    .expect("deletions");
    // Other groups with deletions of their own, so the statistics look like a server's
    // rather than one group's.
    sqlx::query(
        "with gs as (insert into chat_groups (name) select 'filler ' || n
                       from generate_series(1, 200) n returning group_id)
         insert into message_deletions (group_id, seq)
         select group_id, s from gs, generate_series(1, 50) s",
    )
    .execute(&app.db)
    .await
    .expect("other groups");
    sqlx::query("analyze")
        .execute(&app.db)
        .await
        .expect("analyze");
    let message_id: i64 =
        sqlx::query_scalar("select message_id from messages where group_id = $1 and seq = 50000")
            .bind(group_id)
            .fetch_one(&app.db)
            .await
            .expect("message");

    let (g, bob_id) = (group_id, bob.user.user_id);
    for (name, sql, binds) in [
        ("unread count", UNREAD_COUNT_SQL, vec![g, 99_900]),
        (
            "advance watermark and record receipt",
            ADVANCE_WATERMARK_SQL,
            vec![message_id, bob_id, g, 50_000],
        ),
        ("watermarks", WATERMARKS_SQL, vec![g, bob_id]),
        ("min watermark", MIN_WATERMARK_SQL, vec![g]),
        ("flip is_read", FLIP_READ_SQL, vec![g, 99_950, 1000]),
        (
            "receipts",
            RECEIPTS_SQL,
            vec![g, 50_000, alice.user.user_id],
        ),
        ("latest page", LATEST_SQL, vec![g, 51]),
        ("page before", BEFORE_SQL, vec![g, 50_000, 51]),
        ("page after", FROM_SQL, vec![g, 50_000, 51]),
        (
            "my groups with unread counts",
            LIST_GROUPS_SQL,
            vec![bob_id],
        ),
    ] {
        let plan = plan(&app, sql, &binds).await;
        for table in ["messages", "message_read_status", "message_deletions"] {
            assert!(
                !plan.contains(&format!("Seq Scan on {table}")),
                "{name} scans {table}:\n{plan}"
            );
        }
        if sql == UNREAD_COUNT_SQL || sql == LIST_GROUPS_SQL {
            // Unread counts come from sequence numbers and deletions, not from messages.
            assert!(
                !plan.contains("Index Only Scan using messages_group_seq_key on messages c"),
                "{name} counts messages:\n{plan}"
            );
        }
        // group_members holds two rows here, so the planner may rightly scan it.
        if sql.contains("messages") || sql.contains("message_read_status") {
            assert!(plan.contains("Index"), "{name} uses no index:\n{plan}");
        }
    }

    // And through the API: Bob's count is the 100 messages after his watermark, less the
    // two deleted there (99925 and 99975).
    assert_eq!(read_state(&app, &bob, group_id).await.unread_count, 98);
}
