//! Scale-out on a Redis Cluster: two server instances on a cluster of three masters (the
//! test's own, on loopback) behave as one server — sessions, chat, resume, presence, calls
//! and rate limits cross instances and nothing is missed — and a master restarting in the
//! middle of traffic loses no acknowledged message.

use std::time::Duration;

use protocol::{
    gateway::{ClientFrame, Event, Presence},
    messages::Message,
    users::User,
};
use reqwest::StatusCode;
use sohbet_server::{config::Secret, rate_limit::Rate};
use sohbet_tests::{
    code, parse, presence_of, services::PrivateRedisCluster, Gateway, GatewayEvent, TestApp,
};

/// Short heartbeats: presence and call state are renewed and swept often, so the cluster
/// carries the gateway's whole upkeep during the test.
const HEARTBEAT_MS: u64 = 300;

/// Two instances on `cluster`, sharing a database and key prefix.
async fn two_instances(
    cluster: &PrivateRedisCluster,
    configure: impl FnOnce(&mut sohbet_server::config::Settings),
) -> (TestApp, TestApp) {
    let first = TestApp::spawn_with(|s| {
        s.redis_url = Secret(cluster.url());
        s.heartbeat_interval_ms = HEARTBEAT_MS;
        configure(s);
    })
    .await;
    let second = first.spawn_peer().await;
    (first, second)
}

fn created(e: &GatewayEvent) -> Option<Message> {
    match e {
        GatewayEvent::Event(Event::MessageCreated { message }) => Some(message.clone()),
        _ => None,
    }
}

/// The next `count` messages on `gw`, then proof that no other (a duplicate) follows.
async fn exactly(gw: &mut Gateway, count: usize) -> Vec<i64> {
    let mut seqs = Vec::new();
    while seqs.len() < count {
        seqs.push(gw.expect("message_created", created).await.seq);
    }
    let extra = gw.collect_for(Duration::from_millis(300)).await;
    assert!(
        !extra.iter().any(|e| created(e).is_some()),
        "a message arrived twice: {extra:?}"
    );
    seqs
}

#[tokio::test]
async fn two_instances_on_a_redis_cluster_behave_as_one_server() {
    let cluster = PrivateRedisCluster::start();
    // Six messages a minute per user, counted wherever they are sent.
    let (first, second) =
        two_instances(&cluster, |s| s.limit_messages_burst = Rate::new(6, 60)).await;

    // A session created through one instance is valid on the other.
    let [alice, bob] = first.users(["alice", "bob"]).await;
    let (status, me) = second.get("/api/users/me", &bob.token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(parse::<User>(me), bob.user);
    let group = first.group_with(&alice, &[&bob]).await;

    // Presence crosses instances.
    let mut a = first.online(&alice.token).await;
    let mut b = second.online(&bob.token).await;
    a.expect(
        "bob online",
        presence_of(bob.user.user_id, Presence::Online),
    )
    .await;

    // Chat both ways, each message through the other's instance.
    let m1 = first.send(&alice, group, "from the first instance").await;
    let m2 = second.send(&bob, group, "from the second instance").await;
    assert_eq!(exactly(&mut a, 2).await, [m1.seq, m2.seq]);
    assert_eq!(exactly(&mut b, 2).await, [m1.seq, m2.seq]);

    // Bob's connection drops; what is sent meanwhile arrives exactly once as he resumes.
    b.handle.drop_connection();
    let m3 = first.send(&alice, group, "while bob reconnects").await;
    let m4 = second.send(&alice, group, "and through his instance").await;
    assert_eq!(exactly(&mut b, 2).await, [m3.seq, m4.seq]);

    // A call joined on the second instance shows on the first.
    b.handle.send(ClientFrame::VoiceJoin {
        group_id: group,
        muted: false,
        deafened: false,
        reference: Some(1),
    });
    b.answer(1, |e| {
        matches!(e, GatewayEvent::VoiceJoined { .. }).then_some(())
    })
    .await
    .expect("bob joins the call");
    let bob_id = bob.user.user_id;
    a.expect("bob in the call", |e| match e {
        GatewayEvent::Event(Event::VoiceStateUpdated {
            user_id,
            in_call: true,
            ..
        }) if *user_id == bob_id => Some(()),
        _ => None,
    })
    .await;

    // Alice has sent three messages through both instances: three more pass, the seventh is
    // refused by whichever instance it reaches.
    first.send(&alice, group, "fourth").await;
    second.send(&alice, group, "fifth").await;
    first.send(&alice, group, "sixth").await;
    for app in [&first, &second] {
        let (status, body) = app
            .send_raw(&alice, group, serde_json::json!({"content": "seventh"}))
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(code(&body), "rate_limited");
    }
    // Bob's own count is his: he may still send.
    second.send(&bob, group, "bob's third").await;
}

#[tokio::test]
async fn a_cluster_master_restarting_mid_traffic_loses_no_acknowledged_message() {
    let cluster = PrivateRedisCluster::start();
    let (first, second) = two_instances(&cluster, |_| {}).await;
    let [alice, bob] = first.users(["alice", "bob"]).await;
    let group = first.group_with(&alice, &[&bob]).await;
    let mut b = second.online(&bob.token).await;

    // The master carrying the event channel restarts while alice keeps sending through the
    // other instance; some sends may fail while it is down (not acknowledged, so not owed).
    let owner = cluster.owner_of(&first.key("events"));
    let restart = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(500));
        let mut cluster = cluster;
        cluster.restart(owner);
        cluster
    });
    let mut acked = Vec::new();
    let mut refused = 0;
    let mut after_restart = 0;
    while after_restart < 20 {
        let (status, body) = first
            .send_raw(
                &alice,
                group,
                serde_json::json!({"content": format!("message {}", acked.len())}),
            )
            .await;
        if status == StatusCode::CREATED {
            acked.push(parse::<Message>(body).seq);
        } else {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            refused += 1;
        }
        if restart.is_finished() {
            after_restart += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _cluster = restart.await.expect("the node restarted");
    assert!(
        acked.len() >= 20,
        "{} acknowledged, {refused} refused",
        acked.len()
    );

    // Every acknowledged message reaches bob exactly once, in order: live, or on the resume
    // the lost subscription made his instance ask for.
    assert_eq!(exactly(&mut b, acked.len()).await, acked);
    // And delivery is live again.
    let last = second.send(&alice, group, "after the restart").await;
    assert_eq!(exactly(&mut b, 1).await, [last.seq]);
}
