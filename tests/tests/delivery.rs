//! No lost messages: every message the server acknowledged reaches every member exactly
//! once and in order per group, also across disconnects, resumes and server instances.

use std::{collections::HashMap, time::Duration};

use protocol::{gateway::Event, messages::Message};
use rand::Rng;
use sohbet_tests::{Gateway, GatewayEvent, TestApp, TestUser};

const HEARTBEAT_MS: u64 = 300;

async fn app() -> TestApp {
    TestApp::spawn_with(|s| s.heartbeat_interval_ms = HEARTBEAT_MS).await
}

fn created(e: &GatewayEvent) -> Option<Message> {
    match e {
        GatewayEvent::Event(Event::MessageCreated { message }) => Some(message.clone()),
        _ => None,
    }
}

/// Reads message events until `count` arrived (panics on timeout).
async fn messages(gw: &mut Gateway, count: usize) -> Vec<Message> {
    let mut out = Vec::new();
    while out.len() < count {
        out.push(gw.expect("message_created", created).await);
    }
    out
}

#[tokio::test]
async fn a_sent_message_reaches_every_online_member_but_no_one_else() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let mut a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;
    let mut c = app.online(&carol.token).await;

    let sent = app.send(&bob, group, "hello").await;
    assert_eq!(messages(&mut a, 1).await, vec![sent.clone()]);
    assert_eq!(
        messages(&mut b, 1).await,
        vec![sent],
        "the sender's other devices see it too"
    );
    let seen = c.collect_for(Duration::from_millis(500)).await;
    assert!(
        !seen.iter().any(|e| created(e).is_some()),
        "a non-member gets nothing: {seen:?}"
    );
}

#[tokio::test]
async fn a_client_resumes_and_gets_what_it_missed_exactly_once_in_order() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let first = app.send(&bob, group, "before").await;
    let a = app.online(&alice.token).await;
    a.handle.close().await;

    // Alice is away while five messages arrive; then her client resumes from `first.seq`.
    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push(app.send(&bob, group, &format!("while away {i}")).await);
    }
    let client = app.client(&alice.token);
    let positions = HashMap::from([(group, first.seq)]);
    let mut gw = resume(&client, positions);
    gw.ready().await;
    let replayed = messages(&mut gw, 5).await;
    assert_eq!(replayed, missed);
    gw.expect("resumed", |e| match e {
        GatewayEvent::Resumed {
            replayed: 5,
            resync_groups,
        } if resync_groups.is_empty() => Some(()),
        _ => None,
    })
    .await;
    let extra = gw.collect_for(Duration::from_millis(400)).await;
    assert!(
        !extra.iter().any(|e| created(e).is_some()),
        "nothing twice: {extra:?}"
    );
}

/// A raw resume from given positions, as a client restarted from its saved state would.
fn resume(client: &sohbet_client::Client, positions: HashMap<i64, i64>) -> Gateway {
    let (handle, events) = sohbet_client::gateway::connect_from(
        client.gateway_url(),
        client.token().expect("token").to_owned(),
        Default::default(),
        positions,
    );
    Gateway { handle, events }
}

#[tokio::test]
async fn a_gap_too_large_to_replay_is_answered_with_resync() {
    let app = TestApp::spawn_with(|s| {
        s.heartbeat_interval_ms = HEARTBEAT_MS;
        s.replay_limit = 3;
    })
    .await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.group_with(&alice, &[&bob]).await;
    for i in 0..5 {
        app.send(&bob, group, &format!("m{i}")).await;
    }
    let mut gw = resume(&app.client(&alice.token), HashMap::from([(group, 0)]));
    gw.ready().await;
    let groups = gw
        .expect("resumed", |e| match e {
            GatewayEvent::Resumed { resync_groups, .. } => Some(resync_groups.clone()),
            _ => None,
        })
        .await;
    assert_eq!(groups, vec![group]);
    // Live messages still flow after a resync.
    let next = app.send(&bob, group, "after").await;
    assert_eq!(messages(&mut gw, 1).await, vec![next]);
}

#[tokio::test]
async fn resuming_a_group_you_are_not_in_replays_nothing() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let group = app.group_with(&alice, &[&bob]).await;
    app.send(&bob, group, "secret").await;
    let mut gw = resume(&app.client(&carol.token), HashMap::from([(group, 0)]));
    gw.ready().await;
    let seen = gw.collect_for(Duration::from_millis(500)).await;
    assert!(!seen.iter().any(|e| created(e).is_some()), "{seen:?}");
}

#[tokio::test]
async fn messages_sent_through_one_instance_reach_clients_on_another() {
    let first = app().await;
    let second = first.spawn_peer().await;
    let alice = first.user("alice").await;
    let bob = first.user("bob").await;
    let group = first.group_with(&alice, &[&bob]).await;
    let mut a = first.online(&alice.token).await;
    let sent = second.send(&bob, group, "via the other instance").await;
    assert_eq!(messages(&mut a, 1).await, vec![sent]);
}

/// Several senders on two instances while receivers drop and reconnect at random: every
/// acknowledged message reaches every member exactly once and in order.
#[tokio::test]
async fn no_acknowledged_message_is_lost_while_receivers_drop_and_reconnect() {
    const SENDERS: usize = 3;
    const PER_SENDER: usize = 40;
    let first = app().await;
    let second = first.spawn_peer().await;
    let owner = first.user("owner").await;
    let mut members: Vec<TestUser> = Vec::new();
    for i in 0..4 {
        members.push(first.user(&format!("member{i}")).await);
    }
    let refs: Vec<&TestUser> = members.iter().collect();
    let group = first.group_with(&owner, &refs).await;

    // Receivers: every member, alternating instances.
    let mut receivers = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let app = if i % 2 == 0 { &first } else { &second };
        let gw = app.online(&m.token).await;
        receivers.push(gw);
    }

    // Senders: the owner and two members, through both instances, concurrently.
    let senders: Vec<&TestUser> = std::iter::once(&owner)
        .chain(members.iter().take(SENDERS - 1))
        .collect();
    let sending = futures::future::join_all(senders.iter().enumerate().map(|(s, user)| {
        let app = if s % 2 == 0 { &first } else { &second };
        async move {
            let mut acked = Vec::new();
            for i in 0..PER_SENDER {
                acked.push(
                    app.send(user, group, &format!("sender {s} message {i}"))
                        .await
                        .seq,
                );
            }
            acked
        }
    }));
    // Meanwhile, receivers drop their connections at random moments.
    let chaos = async {
        for _ in 0..12 {
            let pause = rand::rng().random_range(5..60);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let victim = rand::rng().random_range(0..receivers.len());
            receivers[victim].handle.drop_connection();
        }
    };
    let (acked, ()) = tokio::join!(sending, chaos);
    let mut expected: Vec<i64> = acked.into_iter().flatten().collect();
    expected.sort_unstable();
    assert_eq!(expected.len(), SENDERS * PER_SENDER);

    for (i, gw) in receivers.iter_mut().enumerate() {
        let got: Vec<i64> = messages(gw, expected.len())
            .await
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(
            got, expected,
            "receiver {i} got every message once, in order"
        );
        let extra = gw.collect_for(Duration::from_millis(300)).await;
        assert!(
            !extra.iter().any(|e| created(e).is_some()),
            "receiver {i} got a duplicate"
        );
    }
}
