//! Voice call state and signaling over the gateway: who is in a group's call, announced to
//! its members, and signaling relayed only between participants of the same call.

use std::time::Duration;

use protocol::gateway::Event;
use serde_json::json;
use sohbet_tests::{GatewayEvent, TestApp};

const HEARTBEAT_MS: u64 = 300;

async fn app() -> TestApp {
    TestApp::spawn_with(|s| s.heartbeat_interval_ms = HEARTBEAT_MS).await
}

fn voice_state(e: &GatewayEvent) -> Option<(i64, i64, bool)> {
    match e {
        GatewayEvent::Event(Event::VoiceStateUpdated {
            group_id,
            user_id,
            in_call,
        }) => Some((*group_id, *user_id, *in_call)),
        _ => None,
    }
}

fn signal(e: &GatewayEvent) -> Option<(i64, serde_json::Value)> {
    match e {
        GatewayEvent::Event(Event::VoiceSignal { from, signal, .. }) => {
            Some((*from, signal.clone()))
        }
        _ => None,
    }
}

#[tokio::test]
async fn joining_and_leaving_a_call_is_announced_to_the_group() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;

    a.handle.voice_join(group);
    assert_eq!(
        b.expect("alice joined", voice_state).await,
        (group, alice.user.user_id, true)
    );
    // Someone connecting now sees the call in their ready payload.
    let mut b2 = app.gateway(&bob.token);
    let GatewayEvent::Ready { voice_calls, .. } = b2.ready().await else {
        unreachable!()
    };
    assert_eq!(voice_calls.len(), 1);
    assert_eq!(voice_calls[0].participants, vec![alice.user.user_id]);

    a.handle.voice_leave();
    assert_eq!(
        b.expect("alice left", voice_state).await,
        (group, alice.user.user_id, false)
    );
}

#[tokio::test]
async fn signaling_is_relayed_between_participants_only() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let group = app.group_with(&alice, &[&bob, &carol]).await;
    let mut a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;
    let mut c = app.online(&carol.token).await;

    a.handle.voice_join(group);
    b.handle.voice_join(group);
    a.expect("bob joined", |e| {
        voice_state(e).filter(|s| s.1 == bob.user.user_id)
    })
    .await;

    let offer = json!({"type": "offer", "sdp": "v=0..."});
    a.handle
        .voice_signal(group, bob.user.user_id, offer.clone());
    assert_eq!(b.expect("offer", signal).await, (alice.user.user_id, offer));

    // Carol is a member but not in the call: she neither receives nor can send signals.
    a.handle
        .voice_signal(group, carol.user.user_id, json!({"type": "offer"}));
    c.handle.voice_signal(
        group,
        bob.user.user_id,
        json!({"type": "offer", "from": "carol"}),
    );
    let to_carol = c.collect_for(Duration::from_millis(500)).await;
    assert!(
        !to_carol.iter().any(|e| signal(e).is_some()),
        "{to_carol:?}"
    );
    let to_bob = b.collect_for(Duration::from_millis(300)).await;
    assert!(!to_bob.iter().any(|e| signal(e).is_some()), "{to_bob:?}");
}

#[tokio::test]
async fn a_non_member_cannot_join_a_groups_call() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mallory = app.user("mallory").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let mut a = app.online(&alice.token).await;
    let m = app.online(&mallory.token).await;
    m.handle.voice_join(group);
    m.handle
        .voice_signal(group, alice.user.user_id, json!({"type": "offer"}));
    let seen = a.collect_for(Duration::from_millis(600)).await;
    assert!(
        !seen
            .iter()
            .any(|e| voice_state(e).is_some() || signal(e).is_some()),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_dropped_connection_leaves_its_call() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let mut a = app.online(&alice.token).await;
    let b = app.online(&bob.token).await;
    b.handle.voice_join(group);
    a.expect("bob joined", |e| voice_state(e).filter(|s| s.2))
        .await;
    b.handle.close().await;
    assert_eq!(
        a.expect("bob left", |e| voice_state(e).filter(|s| !s.2))
            .await,
        (group, bob.user.user_id, false)
    );
}

#[tokio::test]
async fn callers_on_a_dead_instance_expire_out_of_the_call() {
    let first = app().await;
    let second = first.spawn_peer().await;
    let alice = first.user("alice").await;
    let bob = first.user("bob").await;
    let group = first.group_with(&alice, &[&bob]).await;
    let mut a = first.online(&alice.token).await;
    let b = second.online(&bob.token).await;
    b.handle.voice_join(group);
    a.expect("bob joined", |e| voice_state(e).filter(|s| s.2))
        .await;
    second.gateway.crash();
    assert_eq!(
        a.expect("bob expired", |e| voice_state(e).filter(|s| !s.2))
            .await,
        (group, bob.user.user_id, false)
    );
    drop(b);
}
