//! Group commit: concurrent sends of one group are committed together, and still each gets
//! the next sequence number in order, a nonce stores one message, and a send that cannot be
//! stored fails alone.
//!
//! To make sends gather into one batch for certain, a test holds the group's row lock in a
//! transaction of its own (as a slow commit of another server instance would): the first
//! send's batch waits on it, and the sends arriving meanwhile queue behind that batch.

use std::{collections::HashMap, time::Duration};

use futures::future::join_all;
use protocol::{gateway::Event, messages::Message};
use reqwest::StatusCode;
use serde_json::json;
use sohbet_tests::{parse, GatewayEvent, TestApp, TestUser};
use sqlx::{PgPool, Postgres, Transaction};

/// Every stored message of the group, by seq: (seq, sender, content, transaction start).
async fn stored(db: &PgPool, group_id: i64) -> Vec<(i64, Option<i64>, String, String)> {
    sqlx::query_as(
        "select seq, sender_id, content, sent_at::text from messages
          where group_id = $1 order by seq",
    )
    .bind(group_id)
    .fetch_all(db)
    .await
    .expect("messages")
}

/// Holds the group's row lock until the transaction is dropped or committed.
async fn lock_group(db: &PgPool, group_id: i64) -> Transaction<'static, Postgres> {
    let mut tx = db.begin().await.expect("begin");
    sqlx::query("select 1 from chat_groups where group_id = $1 for update")
        .bind(group_id)
        .execute(&mut *tx)
        .await
        .expect("lock the group");
    tx
}

/// Waits until a statement of another connection waits for a lock (the first batch).
async fn until_a_batch_waits(db: &PgPool) {
    for _ in 0..400 {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
              where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(db)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no batch ever waited for the group's lock");
}

/// Sends "first" (in a task of its own) and waits until its batch waits for the group.
async fn first_send_waits(
    app: &TestApp,
    user: &TestUser,
    group_id: i64,
) -> tokio::task::JoinHandle<StatusCode> {
    let request = app
        .http
        .post(app.url(&format!("/api/groups/{group_id}/messages")))
        .bearer_auth(&user.token)
        .json(&json!({"content": "first"}));
    let first = tokio::spawn(async move { request.send().await.expect("send").status() });
    until_a_batch_waits(&app.db).await;
    first
}

/// Lets the sends started meanwhile reach the queue. One arriving later still commits, in a
/// later batch: only the transaction-count assertions depend on this pause.
async fn let_sends_queue() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

fn assert_gap_free(seqs: impl IntoIterator<Item = i64>, count: usize) {
    let seqs: Vec<i64> = seqs.into_iter().collect();
    let expected: Vec<i64> = (1..=i64::try_from(count).expect("count")).collect();
    assert_eq!(seqs, expected, "sequence numbers are gap-free and in order");
}

#[tokio::test]
async fn concurrent_senders_get_gap_free_seqs_in_their_own_order_and_delivery_in_seq_order() {
    let app = TestApp::spawn().await;
    let users = app.users(["alice", "bob", "carol", "dave", "erin"]).await;
    let [alice, rest @ ..] = &users;
    let group_id = app
        .group_with(alice, &rest.iter().collect::<Vec<_>>())
        .await;
    let mut watcher = app.online(&rest[0].token).await;
    const EACH: usize = 30;

    // Every member sends EACH messages, one after another, all members at once.
    let app = &app;
    join_all(users.iter().map(|u| async move {
        for k in 0..EACH {
            app.send(u, group_id, &format!("{}:{k}", u.user.username))
                .await;
        }
    }))
    .await;

    let rows = stored(&app.db, group_id).await;
    assert_gap_free(rows.iter().map(|r| r.0), users.len() * EACH);
    for u in &users {
        let mine: Vec<String> = rows
            .iter()
            .filter(|r| r.1 == Some(u.user.user_id))
            .map(|r| r.2.clone())
            .collect();
        let expected: Vec<String> = (0..EACH)
            .map(|k| format!("{}:{k}", u.user.username))
            .collect();
        assert_eq!(
            mine, expected,
            "{}'s messages in the order sent",
            u.user.username
        );
    }
    // A member receives each message once, in seq order.
    let mut delivered = Vec::new();
    while delivered.len() < rows.len() {
        let message = watcher
            .expect("message_created", |e| match e {
                GatewayEvent::Event(Event::MessageCreated { message }) => Some(message.seq),
                _ => None,
            })
            .await;
        delivered.push(message);
    }
    assert_gap_free(delivered, rows.len());
}

#[tokio::test]
async fn one_nonce_repeated_within_a_batch_stores_one_message() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    let lock = lock_group(&app.db, group_id).await;
    let first = first_send_waits(&app, &alice, group_id).await;

    // Queued behind the waiting batch: the same send retried 8 times, and 8 others.
    let retries = join_all(
        (0..8).map(|_| app.send_raw(&bob, group_id, json!({"content": "once", "nonce": "n-1"}))),
    );
    let others = join_all((0..8).map(|k| {
        app.send_raw(
            &alice,
            group_id,
            json!({"content": format!("other {k}"), "nonce": format!("o-{k}")}),
        )
    }));
    let (retries, others, ()) = tokio::join!(retries, others, async {
        let_sends_queue().await;
        lock.commit().await.expect("release the group");
    });

    assert_eq!(first.await.expect("first"), StatusCode::CREATED);
    let mut statuses: HashMap<StatusCode, usize> = HashMap::new();
    let mut ids = Vec::new();
    for (status, body) in retries {
        *statuses.entry(status).or_default() += 1;
        ids.push(parse::<Message>(body).message_id);
    }
    assert_eq!(statuses.get(&StatusCode::CREATED), Some(&1), "{statuses:?}");
    assert_eq!(statuses.get(&StatusCode::OK), Some(&7), "{statuses:?}");
    ids.dedup();
    assert_eq!(ids.len(), 1, "every retry answered with the one message");
    assert!(others.iter().all(|(s, _)| *s == StatusCode::CREATED));

    let rows = stored(&app.db, group_id).await;
    assert_gap_free(rows.iter().map(|r| r.0), 1 + 1 + 8);
    assert_eq!(rows.iter().filter(|r| r.2 == "once").count(), 1);
    // Everything queued behind the lock committed in one transaction (one start time).
    let queued: std::collections::HashSet<&str> = rows[1..].iter().map(|r| r.3.as_str()).collect();
    assert_eq!(
        queued.len(),
        1,
        "the queued sends committed together: {rows:?}"
    );
}

#[tokio::test]
async fn a_send_that_cannot_be_stored_fails_alone_and_the_rest_of_its_batch_commits_once() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    // A fault only the database knows about, raised inside the batch's insert.
    for sql in [
        "create function refuse_poison() returns trigger language plpgsql as $$
         begin
             if new.content = 'poison' then raise exception 'poisoned message'; end if;
             return new;
         end $$",
        "create trigger refuse_poison before insert on messages
             for each row execute function refuse_poison()",
    ] {
        sqlx::query(sql).execute(&app.db).await.expect("trigger");
    }
    let lock = lock_group(&app.db, group_id).await;
    let first = first_send_waits(&app, &alice, group_id).await;

    let good = join_all((0..6).map(|k| {
        let user = if k % 2 == 0 { &alice } else { &bob };
        app.send_raw(
            user,
            group_id,
            json!({"content": format!("good {k}"), "nonce": format!("g-{k}")}),
        )
    }));
    let poison = app.send_raw(&bob, group_id, json!({"content": "poison"}));
    let (good, poison, ()) = tokio::join!(good, poison, async {
        let_sends_queue().await;
        lock.commit().await.expect("release the group");
    });

    assert_eq!(first.await.expect("first"), StatusCode::CREATED);
    assert_eq!(poison.0, StatusCode::INTERNAL_SERVER_ERROR, "{}", poison.1);
    for (status, body) in &good {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
    }
    let rows = stored(&app.db, group_id).await;
    assert_gap_free(rows.iter().map(|r| r.0), 1 + 6);
    let mut contents: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    contents.sort_unstable();
    assert_eq!(
        contents,
        ["first", "good 0", "good 1", "good 2", "good 3", "good 4", "good 5"]
    );
    // Each good send answered with its own stored message.
    for (_, body) in good {
        let message: Message = parse(body);
        assert!(rows
            .iter()
            .any(|r| r.0 == message.seq && r.2 == message.content));
    }
}
