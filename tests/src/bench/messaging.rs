//! `sohbet-bench messaging`: send throughput into one group; history page latency at
//! 1,000 / 100,000 / 1,000,000 messages in a group (it should not grow with the history);
//! mark-read and unread-count latency for a user in 100 groups.
//!
//! Long histories are seeded with one `insert ... select generate_series` statement, not
//! through the API.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::json;

use super::{print_table, Samples};
use crate::{seed_messages, TestApp, TestUser};

/// How long each send scenario runs.
const SEND_PHASE: Duration = Duration::from_secs(5);
/// Concurrent clients sending into the one group.
const SENDERS: &[usize] = &[1, 8, 32];
/// History sizes, and requests timed per page kind and size.
const HISTORY_SIZES: &[i64] = &[1_000, 100_000, 1_000_000];
const HISTORY_REQUESTS: usize = 200;
/// The read scenario: one user in this many groups of this many messages each.
const READ_GROUPS: usize = 100;
const READ_GROUP_MESSAGES: i64 = 1_000;
const READ_ROUNDS: usize = 5;
/// A history read for the first time in one go.
const LONG_UNREAD: i64 = 100_000;

pub async fn run() {
    // A pool large enough that the concurrent clients measure the server, not the pool.
    let app = Arc::new(TestApp::spawn_with(|s| s.db_pool_size = 32).await);
    send_throughput(&app).await;
    history_latency(&app).await;
    read_latency(&app).await;
}

fn ms(d: f64) -> String {
    format!("{d:.2}")
}

fn p50_p99(s: &mut Samples) -> String {
    format!(
        "{} / {}",
        ms(s.percentile_ms(50.0)),
        ms(s.percentile_ms(99.0))
    )
}

async fn send_loop(
    app: Arc<TestApp>,
    user: Arc<TestUser>,
    group_id: i64,
    until: Instant,
) -> Samples {
    let mut samples = Samples::default();
    let path = format!("/api/groups/{group_id}/messages");
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        let start = Instant::now();
        let (status, body) = app
            .post(
                &path,
                Some(&user.token),
                &json!({ "content": format!("message {i}") }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        samples.push(start.elapsed());
    }
    samples
}

async fn send_throughput(app: &Arc<TestApp>) {
    let owner = app.user("bench_owner").await;
    let mut members = Vec::new();
    for i in 0..7 {
        members.push(app.user(&format!("bench_member{i}")).await);
    }
    let group_id = app
        .group_with(&owner, &members.iter().collect::<Vec<_>>())
        .await;
    let mut users: Vec<Arc<TestUser>> = vec![Arc::new(owner)];
    users.extend(members.into_iter().map(Arc::new));

    let mut rows = Vec::new();
    for &clients in SENDERS {
        let until = Instant::now() + SEND_PHASE;
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                tokio::spawn(send_loop(
                    app.clone(),
                    users[c % users.len()].clone(),
                    group_id,
                    until,
                ))
            })
            .collect();
        let mut all = Samples::default();
        for t in tasks {
            all.extend(t.await.expect("sender task"));
        }
        let secs = started.elapsed().as_secs_f64();
        rows.push(vec![
            clients.to_string(),
            all.len().to_string(),
            format!("{:.0}", all.len() as f64 / secs),
            ms(all.percentile_ms(50.0)),
            ms(all.percentile_ms(99.0)),
        ]);
    }
    print_table(
        "Send into one group of 8 members (POST /api/groups/{id}/messages)",
        &["clients", "messages", "msg/s", "p50 ms", "p99 ms"],
        &rows,
    );
}

async fn time_requests(app: &TestApp, token: &str, path: &str, n: usize) -> Samples {
    let mut samples = Samples::default();
    for _ in 0..n {
        let start = Instant::now();
        let (status, body) = app.get(path, token).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        samples.push(start.elapsed());
    }
    samples
}

async fn history_latency(app: &Arc<TestApp>) {
    let reader = app.user("bench_reader").await;
    let mut rows = Vec::new();
    for &size in HISTORY_SIZES {
        let group_id = app.create_group(&reader, &format!("history {size}")).await;
        let seeding = Instant::now();
        seed_messages(&app.db, group_id, reader.user.user_id, size).await;
        let seeded = seeding.elapsed();
        sqlx::query("analyze messages")
            .execute(&app.db)
            .await
            .expect("analyze");
        let middle: i64 =
            sqlx::query_scalar("select message_id from messages where group_id = $1 and seq = $2")
                .bind(group_id)
                .bind(size / 2)
                .fetch_one(&app.db)
                .await
                .expect("middle message");
        let base = format!("/api/groups/{group_id}/messages");
        let mut row = vec![size.to_string(), format!("{:.1}", seeded.as_secs_f64())];
        for query in [
            "?limit=50".to_owned(),
            format!("?before={middle}&limit=50"),
            format!("?after={middle}&limit=50"),
            format!("?around={middle}&limit=50"),
            "?limit=100".to_owned(),
        ] {
            let mut s = time_requests(
                app,
                &reader.token,
                &format!("{base}{query}"),
                HISTORY_REQUESTS,
            )
            .await;
            row.push(p50_p99(&mut s));
        }
        // The reader's watermark is still 0: every seeded message is unread. Counting them is
        // a range over the unread part, so this one grows with it (unlike the pages).
        let path = format!("/api/groups/{group_id}/read");
        let mut s = time_requests(app, &reader.token, &path, HISTORY_REQUESTS / 10).await;
        row.push(p50_p99(&mut s));
        rows.push(row);
    }
    print_table(
        "History page latency, p50 / p99 ms (GET /api/groups/{id}/messages, 200 requests each; unread count: GET /api/groups/{id}/read, 20)",
        &[
            "messages in group",
            "seeded in s",
            "latest 50",
            "before middle, 50",
            "after middle, 50",
            "around middle, 50",
            "latest 100",
            "unread count, all unread",
        ],
        &rows,
    );
}

async fn read_latency(app: &Arc<TestApp>) {
    let owner = app.user("bench_poster").await;
    let reader = app.user("bench_many").await;
    app.befriend(&owner, &reader).await;
    let mut groups = Vec::new();
    for i in 0..READ_GROUPS {
        let group_id = app.create_group(&owner, &format!("busy {i}")).await;
        app.add_member(&owner, group_id, &reader).await;
        seed_messages(&app.db, group_id, owner.user.user_id, READ_GROUP_MESSAGES).await;
        groups.push(group_id);
    }
    // The poster has read what they "sent", as sending through the API would record.
    sqlx::query(
        "update group_members m set last_read_seq = g.last_seq
           from chat_groups g where g.group_id = m.group_id and m.user_id = $1",
    )
    .bind(owner.user.user_id)
    .execute(&app.db)
    .await
    .expect("watermarks");
    sqlx::query("analyze")
        .execute(&app.db)
        .await
        .expect("analyze");

    // Message ids by (group, seq), to mark read step by step.
    let ids: Vec<(i64, i64, i64)> = sqlx::query_as(
        "select group_id, seq, message_id from messages
          where group_id = any($1) and seq % 10 = 0 order by group_id, seq",
    )
    .bind(&groups)
    .fetch_all(&app.db)
    .await
    .expect("ids");
    let id_of = |group_id: i64, seq: i64| {
        ids.iter()
            .find(|(g, s, _)| *g == group_id && *s == seq)
            .map(|(_, _, id)| *id)
            .expect("message id")
    };

    let mut mark = Samples::default();
    let mut unread = Samples::default();
    let mut list = Samples::default();
    for round in 1..=READ_ROUNDS {
        // Each round reads 10 more messages in every group.
        let seq = i64::try_from(round).unwrap_or(1) * 10;
        for &group_id in &groups {
            let start = Instant::now();
            let (status, body) = app
                .post(
                    &format!("/api/groups/{group_id}/read"),
                    Some(&reader.token),
                    &json!({ "message_id": id_of(group_id, seq) }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            mark.push(start.elapsed());
            unread.extend(
                time_requests(
                    app,
                    &reader.token,
                    &format!("/api/groups/{group_id}/read"),
                    1,
                )
                .await,
            );
        }
        list.extend(time_requests(app, &reader.token, "/api/groups", 5).await);
    }
    // A first read of a long history: the request flips one batch, the rest follows.
    let long = app.create_group(&owner, "long").await;
    app.add_member(&owner, long, &reader).await;
    seed_messages(&app.db, long, owner.user.user_id, LONG_UNREAD).await;
    sqlx::query("update group_members set last_read_seq = $2 where group_id = $1 and user_id = $3")
        .bind(long)
        .bind(LONG_UNREAD)
        .bind(owner.user.user_id)
        .execute(&app.db)
        .await
        .expect("watermark");
    let latest: i64 =
        sqlx::query_scalar("select message_id from messages where group_id = $1 and seq = $2")
            .bind(long)
            .bind(LONG_UNREAD)
            .fetch_one(&app.db)
            .await
            .expect("latest");
    let start = Instant::now();
    let (status, body) = app
        .post(
            &format!("/api/groups/{long}/read"),
            Some(&reader.token),
            &json!({ "message_id": latest }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut first_read = Samples::default();
    first_read.push(start.elapsed());
    let flipped_by = loop {
        let left: i64 =
            sqlx::query_scalar("select count(*) from messages where group_id = $1 and not is_read")
                .bind(long)
                .fetch_one(&app.db)
                .await
                .expect("left");
        if left == 0 {
            break start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let is_read: i64 = sqlx::query_scalar("select count(*) from messages where is_read")
        .fetch_one(&app.db)
        .await
        .expect("count");
    let rows = vec![
        vec![
            "mark read (POST /api/groups/{id}/read)".to_owned(),
            mark.len().to_string(),
            ms(mark.percentile_ms(50.0)),
            ms(mark.percentile_ms(99.0)),
        ],
        vec![
            "unread count (GET /api/groups/{id}/read)".to_owned(),
            unread.len().to_string(),
            ms(unread.percentile_ms(50.0)),
            ms(unread.percentile_ms(99.0)),
        ],
        vec![
            format!("list of {READ_GROUPS} groups with unread counts (GET /api/groups)"),
            list.len().to_string(),
            ms(list.percentile_ms(50.0)),
            ms(list.percentile_ms(99.0)),
        ],
        vec![
            format!(
                "first mark read over {LONG_UNREAD} unread (is_read all flipped after {:.0} ms)",
                flipped_by.as_secs_f64() * 1000.0
            ),
            "1".to_owned(),
            ms(first_read.percentile_ms(50.0)),
            ms(first_read.percentile_ms(99.0)),
        ],
    ];
    print_table(
        &format!(
            "Read status for a user in {READ_GROUPS} groups of {READ_GROUP_MESSAGES} messages \
             ({is_read} messages flipped to is_read)"
        ),
        &["operation", "requests", "p50 ms", "p99 ms"],
        &rows,
    );
}
