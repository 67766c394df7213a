//! `sohbet-bench soak [--minutes N] [--users N]`: many simulated users against two server
//! instances (processes on one database and one Redis) for a bounded time.
//!
//! Each user holds a gateway connection to one instance and, at random intervals, sends a
//! message to one of its groups or DMs (through its instance's REST API), marks a group
//! read, types, joins a group's call, signals whoever is in it and leaves, or drops its
//! socket and resumes from the last sequence it saw on the *other* instance. At the end
//! every user reconnects and catches up, and the soak checks that every acknowledged
//! message reached every member of its group exactly once.
//!
//! Prints a line per minute (each server's RSS, messages acknowledged and delivered,
//! errors), then the totals: errors, lost and duplicated deliveries (both must be 0), the
//! p50/p99 live delivery latency, and each server's RSS over time (a line that keeps
//! growing is a leak).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use protocol::{
    gateway::{ClientFrame, Event, ResumeFrom, ServerFrame, GATEWAY_VERSION},
    messages::{Message, MessagePage},
    voice::VoiceSignal,
};
use rand::{seq::IndexedRandom, Rng};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as Frame;

use super::{
    gateway::{cpu_and_rss, fabricate_users, start_server, Server, Socket},
    print_table, Samples,
};
use crate::TestDatabase;

/// Members of each group (owner included); users also pair up in DMs.
const GROUP_SIZE: usize = 6;
/// How long after the last send every user gets to reconnect and catch up.
const DRAIN: Duration = Duration::from_secs(60);
/// A person's pace: one action every 1–5 s.
const ACTION_GAP_MS: std::ops::Range<u64> = 1_000..5_000;
/// Heartbeat well inside the server's default 5 s interval.
const HEARTBEAT: Duration = Duration::from_secs(4);

/// What every user saw and did, for the final count.
#[derive(Default)]
struct Ledger {
    /// Acknowledged messages: id → group.
    acked: HashMap<i64, i64>,
    /// Per conversation, the highest sequence acknowledged: what a caught-up member has.
    last_acked_seq: HashMap<i64, i64>,
    /// (user, message id) → how many times it arrived.
    received: HashMap<(i64, i64), u32>,
    /// Latency from just before the send to a live `message_created`.
    latency: Samples,
}

#[derive(Default)]
struct Counters {
    acked: AtomicU64,
    delivered: AtomicU64,
    errors: AtomicU64,
    /// Refused frames without a ref (a signal racing its target's leave): counted, not errors.
    refusals: AtomicU64,
    reconnects: AtomicU64,
    resyncs: AtomicU64,
    voice_joins: AtomicU64,
}

struct World {
    servers: [String; 2],
    /// Conversations (groups and DMs) → members.
    members: HashMap<i64, Vec<i64>>,
    ledger: Mutex<Ledger>,
    counters: Counters,
    clock: Instant,
    http: reqwest::Client,
}

impl World {
    fn error(&self, what: &str) {
        let n = self.counters.errors.fetch_add(1, Ordering::Relaxed);
        // The first few in full; after that only the count.
        if n < 20 {
            eprintln!("soak error: {what}");
        }
    }
}

/// Runs the soak; false when a message was lost or duplicated.
pub async fn run(minutes: u64, users: usize) -> bool {
    let db = TestDatabase::create().await;
    let prefix = format!("soak:{}:", db.name);
    let redis_url = std::env::var("REDIS_URL").expect("REDIS_URL");
    let servers = [
        start_server(&db, &prefix, &redis_url).await,
        start_server(&db, &prefix, &redis_url).await,
    ];
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await
        .expect("pool");
    let people = fabricate_users(&pool, &redis_url, &prefix, 1, users).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http");
    let base = servers[0].base.clone();
    let members = arrange(&http, &base, &people).await;
    println!(
        "\nsoak: {users} users, {} conversations, two instances, {minutes} min",
        members.len()
    );
    let world = Arc::new(World {
        servers: [servers[0].base.clone(), servers[1].base.clone()],
        members,
        ledger: Mutex::new(Ledger::default()),
        counters: Counters::default(),
        clock: Instant::now(),
        http,
    });

    let deadline = Instant::now() + Duration::from_secs(minutes * 60);
    let tasks: Vec<_> = people
        .iter()
        .enumerate()
        .map(|(i, (user_id, token))| {
            let world = world.clone();
            let (user_id, token) = (*user_id, token.clone());
            tokio::spawn(async move { user(world, user_id, token, i % 2, deadline).await })
        })
        .collect();
    let rss = report_every_minute(&world, &servers, deadline).await;
    for t in tasks {
        if t.await.is_err() {
            world.error("a user task panicked");
        }
    }
    summarize(&world, &servers, rss)
}

/// Groups of [`GROUP_SIZE`] (the first user of each owns it; friends with every member)
/// and a DM for each pair of neighbours, all made through the REST API.
async fn arrange(
    http: &reqwest::Client,
    base: &str,
    people: &[(i64, String)],
) -> HashMap<i64, Vec<i64>> {
    let call = |method: reqwest::Method, path: String, token: &str, body: serde_json::Value| {
        let req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let resp = req.send().await.expect("arrange request");
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            assert!(status.is_success(), "arrange {path}: {status} {body}");
            body
        }
    };
    let befriend = |a: &(i64, String), b: &(i64, String)| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let body = json!({"username": format!("load{}", b.0)});
            call(
                reqwest::Method::POST,
                "/api/friends/requests".into(),
                &a.1,
                body,
            )
            .await;
            let path = format!("/api/friends/requests/{}/accept", a.0);
            call(reqwest::Method::POST, path, &b.1, json!({})).await;
        }
    };
    let mut members: HashMap<i64, Vec<i64>> = HashMap::new();
    for group in people.chunks(GROUP_SIZE).filter(|g| g.len() > 1) {
        let owner = &group[0];
        let body = json!({"name": "soak"});
        let created = call(reqwest::Method::POST, "/api/groups".into(), &owner.1, body).await;
        let group_id = created["group"]["group_id"].as_i64().expect("group id");
        for member in &group[1..] {
            befriend(owner, member).await;
            let path = format!("/api/groups/{group_id}/members");
            call(
                reqwest::Method::POST,
                path,
                &owner.1,
                json!({"user_id": member.0}),
            )
            .await;
        }
        members.insert(group_id, group.iter().map(|(id, _)| *id).collect());
    }
    // Neighbours across groups, so DMs are not all between group friends.
    for pair in people[GROUP_SIZE / 2..].chunks(2).filter(|p| p.len() == 2) {
        let (a, b) = (&pair[0], &pair[1]);
        let same_group = members
            .values()
            .any(|m| m.first() == Some(&a.0) && m.contains(&b.0));
        if !same_group {
            befriend(a, b).await;
        }
        let dm = call(
            reqwest::Method::POST,
            "/api/dms".into(),
            &a.1,
            json!({"user_id": b.0}),
        )
        .await;
        let dm_id = dm["group"]["group_id"].as_i64().expect("dm id");
        members.insert(dm_id, vec![a.0, b.0]);
    }
    members
}

/// One user's connection state.
struct Me {
    user_id: i64,
    token: String,
    /// Index of the instance it is connected to.
    server: usize,
    conversations: Vec<i64>,
    /// Per conversation: (last seq, last message id) seen.
    positions: HashMap<i64, (i64, i64)>,
    /// Between `identify` and `resumed`: arrivals are replays, not live deliveries.
    replaying: bool,
    in_call: Option<i64>,
    next_ref: u64,
}

async fn user(world: Arc<World>, user_id: i64, token: String, server: usize, deadline: Instant) {
    let conversations: Vec<i64> = world
        .members
        .iter()
        .filter(|(_, m)| m.contains(&user_id))
        .map(|(g, _)| *g)
        .collect();
    // Every conversation is resumed from the start, so none is left out of a replay.
    let positions = conversations.iter().map(|g| (*g, (0, 0))).collect();
    let mut me = Me {
        user_id,
        token,
        server,
        conversations,
        positions,
        replaying: true,
        in_call: None,
        next_ref: 0,
    };
    let mut socket = connect(&world, &mut me).await;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut next_action = Instant::now() + gap();
    while Instant::now() < deadline {
        tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(Frame::Text(text))) => on_frame(&world, &mut me, &text).await,
                Some(Ok(Frame::Close(close))) => {
                    world.error(&format!("user {user_id}: closed by the server: {close:?}"));
                    socket = reconnect(&world, &mut me, socket).await;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    world.error(&format!("user {user_id}: socket failed: {e}"));
                    socket = reconnect(&world, &mut me, socket).await;
                }
                None => {
                    world.error(&format!("user {user_id}: socket ended"));
                    socket = reconnect(&world, &mut me, socket).await;
                }
            },
            _ = heartbeat.tick() => send(&world, &mut socket, &ClientFrame::Heartbeat).await,
            () = tokio::time::sleep_until(next_action.into()) => {
                next_action = Instant::now() + gap();
                socket = act(&world, &mut me, socket).await;
            }
        }
    }
    // Catch up: a last reconnect (on the other instance) replays whatever is missing; the
    // others' last sends are given a few seconds to be acknowledged first.
    if me.in_call.take().is_some() {
        send(&world, &mut socket, &ClientFrame::VoiceLeave).await;
    }
    let mut socket = reconnect(&world, &mut me, socket).await;
    let settle = Instant::now() + Duration::from_secs(5);
    let until = Instant::now() + DRAIN;
    while Instant::now() < until && (Instant::now() < settle || !caught_up(&world, &me)) {
        tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(Frame::Text(text))) => on_frame(&world, &mut me, &text).await,
                Some(Ok(_)) => {}
                _ => socket = reconnect(&world, &mut me, socket).await,
            },
            _ = heartbeat.tick() => send(&world, &mut socket, &ClientFrame::Heartbeat).await,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let _ = socket.close(None).await;
}

fn gap() -> Duration {
    Duration::from_millis(rand::rng().random_range(ACTION_GAP_MS))
}

/// Whether this user has seen the last acknowledged message of each of its conversations.
fn caught_up(world: &World, me: &Me) -> bool {
    let Ok(ledger) = world.ledger.lock() else {
        return true;
    };
    me.conversations.iter().all(|g| {
        let seen = me.positions.get(g).map_or(0, |p| p.0);
        seen >= ledger.last_acked_seq.get(g).copied().unwrap_or(0)
    })
}

async fn send(world: &World, socket: &mut Socket, frame: &ClientFrame) {
    let text = serde_json::to_string(frame).unwrap_or_default();
    if socket.send(Frame::Text(text.into())).await.is_err() {
        world.error("a frame could not be sent");
    }
}

/// Identifies on `me.server`, resuming from `me.positions`; returns once `ready` came (the
/// replay then arrives as ordinary frames until `resumed`).
async fn connect(world: &World, me: &mut Me) -> Socket {
    let base = &world.servers[me.server];
    let url = format!("{}/api/gateway", base.replacen("http", "ws", 1));
    loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((mut socket, _)) => {
                let positions: HashMap<i64, i64> = me
                    .positions
                    .iter()
                    .map(|(g, (seq, _))| (*g, *seq))
                    .collect();
                let identify = ClientFrame::Identify {
                    token: me.token.clone(),
                    version: GATEWAY_VERSION,
                    resume: Some(ResumeFrom::from_positions(&positions)),
                };
                me.replaying = true;
                send(world, &mut socket, &identify).await;
                return socket;
            }
            Err(e) => {
                world.error(&format!("user {}: connect: {e}", me.user_id));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Drops the socket without a word (as a lost network would) and resumes on the other
/// instance.
async fn reconnect(world: &World, me: &mut Me, socket: Socket) -> Socket {
    drop(socket);
    world.counters.reconnects.fetch_add(1, Ordering::Relaxed);
    // A call is left behind with the socket; its grace period ends it.
    me.in_call = None;
    me.server = 1 - me.server;
    connect(world, me).await
}

async fn on_frame(world: &World, me: &mut Me, text: &str) {
    let Ok(frame) = serde_json::from_str::<ServerFrame>(text) else {
        world.error(&format!("user {}: an unreadable frame: {text}", me.user_id));
        return;
    };
    match frame {
        ServerFrame::Event {
            event: Event::MessageCreated { message },
        } => received(world, me, &message),
        ServerFrame::Resumed { resync_groups, .. } => {
            me.replaying = false;
            for group_id in resync_groups {
                world.counters.resyncs.fetch_add(1, Ordering::Relaxed);
                fetch_missed(world, me, group_id).await;
            }
        }
        ServerFrame::Error {
            reference: None, ..
        } => {
            world.counters.refusals.fetch_add(1, Ordering::Relaxed);
        }
        ServerFrame::Error { code, message, .. } => {
            world.error(&format!("user {}: refused: {code} {message}", me.user_id));
        }
        _ => {}
    }
}

/// A `message_created`: counted once per arrival (a second arrival is a duplicate).
fn received(world: &World, me: &mut Me, message: &Message) {
    let position = me.positions.entry(message.group_id).or_insert((0, 0));
    if message.seq > position.0 {
        *position = (message.seq, message.message_id);
    }
    world.counters.delivered.fetch_add(1, Ordering::Relaxed);
    let Ok(mut ledger) = world.ledger.lock() else {
        return;
    };
    let count = ledger
        .received
        .entry((me.user_id, message.message_id))
        .or_insert(0);
    *count += 1;
    if *count == 1 && !me.replaying {
        let sent_us = message
            .content
            .strip_prefix("t=")
            .and_then(|t| t.split(' ').next())
            .and_then(|t| t.parse::<u64>().ok());
        if let Some(sent_us) = sent_us {
            let now_us = world.clock.elapsed().as_micros() as u64;
            ledger
                .latency
                .push(Duration::from_micros(now_us.saturating_sub(sent_us)));
        }
    }
}

/// After a gap too large to replay: the history after the last message seen, over REST.
async fn fetch_missed(world: &World, me: &mut Me, group_id: i64) {
    loop {
        let after = me.positions.get(&group_id).map_or(0, |p| p.1);
        let mut url = format!(
            "{}/api/groups/{group_id}/messages?limit=100",
            world.servers[me.server]
        );
        if after > 0 {
            url.push_str(&format!("&after={after}"));
        }
        let page = world.http.get(&url).bearer_auth(&me.token).send().await;
        let Ok(page) = page else {
            world.error("history request failed");
            return;
        };
        let Ok(page) = page.json::<MessagePage>().await else {
            world.error("history page unreadable");
            return;
        };
        for message in &page.messages {
            if me
                .positions
                .get(&group_id)
                .is_none_or(|p| message.seq > p.0)
            {
                received(world, me, message);
            }
        }
        if !page.has_more || page.messages.is_empty() {
            return;
        }
    }
}

/// One action of a person.
async fn act(world: &World, me: &mut Me, mut socket: Socket) -> Socket {
    let Some(&group_id) = me.conversations.choose(&mut rand::rng()) else {
        return socket;
    };
    let roll = rand::rng().random_range(0..100);
    match roll {
        0..=59 => {
            let sent_us = world.clock.elapsed().as_micros();
            let body = json!({"content": format!("t={sent_us} from {}", me.user_id)});
            let path = format!("/api/groups/{group_id}/messages");
            if let Some(answer) = post(world, me, "send", &path, body).await {
                match answer.json::<Message>().await {
                    Ok(message) => {
                        world.counters.acked.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut ledger) = world.ledger.lock() {
                            ledger.acked.insert(message.message_id, group_id);
                            let last = ledger.last_acked_seq.entry(group_id).or_insert(0);
                            *last = (*last).max(message.seq);
                        }
                    }
                    Err(e) => world.error(&format!("send answer unreadable: {e}")),
                }
            }
        }
        60..=74 => {
            // Nothing seen there yet: nothing to mark.
            let Some(&(_, message_id)) = me.positions.get(&group_id).filter(|p| p.1 > 0) else {
                return socket;
            };
            let path = format!("/api/groups/{group_id}/read");
            post(
                world,
                me,
                "mark read",
                &path,
                json!({"message_id": message_id}),
            )
            .await;
        }
        75..=84 => {
            me.next_ref += 1;
            let frame = ClientFrame::Typing {
                group_id,
                reference: Some(me.next_ref),
            };
            send(world, &mut socket, &frame).await;
        }
        85..=94 => socket = voice(world, me, socket, group_id).await,
        _ => socket = reconnect(world, me, socket).await,
    }
    socket
}

/// POSTs `body` to `path` on my instance: the answer when it succeeded; a failure is
/// counted as an error of `what`.
async fn post(
    world: &World,
    me: &Me,
    what: &str,
    path: &str,
    body: serde_json::Value,
) -> Option<reqwest::Response> {
    let url = format!("{}{path}", world.servers[me.server]);
    let sent = world.http.post(&url).bearer_auth(&me.token).json(&body);
    match sent.send().await {
        Ok(answer) if answer.status().is_success() => Some(answer),
        Ok(answer) => {
            world.error(&format!("{what}: {}", answer.status()));
            None
        }
        Err(e) => {
            world.error(&format!("{what}: {e}"));
            None
        }
    }
}

/// Leaves the call it is in, or joins `group_id`'s and sends a (fake) offer to each
/// participant there: the gateway relays it like any signal.
async fn voice(world: &World, me: &mut Me, mut socket: Socket, group_id: i64) -> Socket {
    if me.in_call.take().is_some() {
        send(world, &mut socket, &ClientFrame::VoiceLeave).await;
        return socket;
    }
    me.next_ref += 1;
    let reference = me.next_ref;
    let join = ClientFrame::VoiceJoin {
        group_id,
        muted: false,
        deafened: false,
        reference: Some(reference),
    };
    send(world, &mut socket, &join).await;
    world.counters.voice_joins.fetch_add(1, Ordering::Relaxed);
    // The answer comes among other frames: handle those as usual meanwhile.
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let Ok(Some(Ok(Frame::Text(text)))) =
            tokio::time::timeout_at(until.into(), socket.next()).await
        else {
            break;
        };
        match serde_json::from_str::<ServerFrame>(&text) {
            Ok(ServerFrame::VoiceJoined {
                participants,
                reference: Some(r),
                ..
            }) if r == reference => {
                me.in_call = Some(group_id);
                for p in participants {
                    let signal = ClientFrame::VoiceSignal {
                        group_id,
                        to: p.user_id,
                        signal: VoiceSignal::Offer {
                            sdp: "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=soak\r\n".into(),
                        },
                        reference: None,
                    };
                    send(world, &mut socket, &signal).await;
                }
                return socket;
            }
            Ok(ServerFrame::Error {
                code,
                reference: Some(r),
                ..
            }) if r == reference => {
                // A DM whose other side is in a call elsewhere is fine to refuse; nothing
                // else should be.
                world.error(&format!("user {}: voice_join refused: {code}", me.user_id));
                return socket;
            }
            _ => on_frame(world, me, &text).await,
        }
    }
    world.error(&format!("user {}: no answer to voice_join", me.user_id));
    socket
}

/// A line per minute until `deadline`; returns each server's RSS (MiB) per minute.
async fn report_every_minute(
    world: &World,
    servers: &[Server; 2],
    deadline: Instant,
) -> Vec<[f64; 2]> {
    let rss = |s: &Server| cpu_and_rss(s.pid).1 as f64 / 1024.0;
    let mut lines = vec![[rss(&servers[0]), rss(&servers[1])]];
    println!(
        "minute 0: RSS A {:.1} MiB, B {:.1} MiB",
        lines[0][0], lines[0][1]
    );
    let mut minute = 0;
    while Instant::now() < deadline {
        let next = world.clock + Duration::from_secs(60 * (minute + 1));
        tokio::time::sleep_until(next.min(deadline).into()).await;
        minute += 1;
        let now = [rss(&servers[0]), rss(&servers[1])];
        let c = &world.counters;
        println!(
            "minute {minute}: RSS A {:.1} MiB, B {:.1} MiB; acknowledged {}, delivered {}, \
             reconnects {}, voice joins {}, errors {}",
            now[0],
            now[1],
            c.acked.load(Ordering::Relaxed),
            c.delivered.load(Ordering::Relaxed),
            c.reconnects.load(Ordering::Relaxed),
            c.voice_joins.load(Ordering::Relaxed),
            c.errors.load(Ordering::Relaxed),
        );
        lines.push(now);
    }
    lines
}

fn summarize(world: &World, servers: &[Server; 2], mut rss: Vec<[f64; 2]>) -> bool {
    let after = [servers[0].pid, servers[1].pid].map(|pid| cpu_and_rss(pid).1 as f64 / 1024.0);
    rss.push(after);
    let Ok(mut ledger) = world.ledger.lock() else {
        return false;
    };
    let (mut expected, mut lost, mut duplicated) = (0u64, 0u64, 0u64);
    for (message_id, group_id) in &ledger.acked {
        for member in world.members.get(group_id).into_iter().flatten() {
            expected += 1;
            match ledger.received.get(&(*member, *message_id)) {
                None => lost += 1,
                Some(1) => {}
                Some(n) => duplicated += u64::from(*n - 1),
            }
        }
    }
    let c = &world.counters;
    let p50 = ledger.latency.percentile_ms(50.0);
    let p99 = ledger.latency.percentile_ms(99.0);
    print_table(
        "Soak: two instances",
        &[
            "acknowledged",
            "deliveries expected",
            "lost",
            "duplicated",
            "errors",
            "refused signals",
            "reconnects",
            "resyncs",
            "voice joins",
            "live p50 ms",
            "live p99 ms",
        ],
        &[vec![
            ledger.acked.len().to_string(),
            expected.to_string(),
            lost.to_string(),
            duplicated.to_string(),
            c.errors.load(Ordering::Relaxed).to_string(),
            c.refusals.load(Ordering::Relaxed).to_string(),
            c.reconnects.load(Ordering::Relaxed).to_string(),
            c.resyncs.load(Ordering::Relaxed).to_string(),
            c.voice_joins.load(Ordering::Relaxed).to_string(),
            format!("{p50:.1}"),
            format!("{p99:.1}"),
        ]],
    );
    let last = rss.len() - 1;
    let rows: Vec<Vec<String>> = rss
        .iter()
        .enumerate()
        .map(|(i, [a, b])| {
            let when = if i == last {
                "after the drain".to_owned()
            } else {
                format!("minute {i}")
            };
            vec![when, format!("{a:.1}"), format!("{b:.1}")]
        })
        .collect();
    print_table("Server RSS over the soak (MiB)", &["when", "A", "B"], &rows);
    if lost > 0 || duplicated > 0 {
        println!("\nFAILED: {lost} lost and {duplicated} duplicated deliveries");
        return false;
    }
    true
}
