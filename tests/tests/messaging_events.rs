//! The messaging routes publish their events after commit, to the right people. (Delivery
//! itself, ordering and resume are the gateway's tests.)

use protocol::gateway::Event;
use serde_json::json;
use sohbet_tests::{GatewayEvent, TestApp};

#[tokio::test]
async fn members_get_message_and_read_events_and_outsiders_get_none() {
    let app = TestApp::spawn().await;
    let [alice, bob, eve] = app.users(["alice", "bob", "eve"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    let mut bob_gw = app.gateway(&bob.token);
    let mut eve_gw = app.gateway(&eve.token);
    bob_gw.ready().await;
    eve_gw.ready().await;

    let sent = app.send(&alice, group_id, "hello").await;
    let created = bob_gw
        .expect("message_created", |e| match e {
            GatewayEvent::Event(Event::MessageCreated { message }) => Some(message.clone()),
            _ => None,
        })
        .await;
    assert_eq!(created, sent);

    app.post(
        &format!("/api/groups/{group_id}/read"),
        Some(&bob.token),
        &json!({"message_id": sent.message_id}),
    )
    .await;
    let (reader, seq) = bob_gw
        .expect("read_updated", |e| match e {
            GatewayEvent::Event(Event::ReadUpdated {
                user_id,
                last_read_seq,
                ..
            }) => Some((*user_id, *last_read_seq)),
            _ => None,
        })
        .await;
    assert_eq!((reader, seq), (bob.user.user_id, sent.seq));
    let up_to = bob_gw
        .expect("messages_read", |e| match e {
            GatewayEvent::Event(Event::MessagesRead { up_to_seq, .. }) => Some(*up_to_seq),
            _ => None,
        })
        .await;
    assert_eq!(up_to, sent.seq);

    let leaked: Vec<_> = eve_gw
        .collect_for(std::time::Duration::from_millis(300))
        .await
        .into_iter()
        .filter(|e| matches!(e, GatewayEvent::Event(ev) if !matches!(ev, Event::PresenceUpdated { .. })))
        .collect();
    assert!(leaked.is_empty(), "an outsider received {leaked:?}");
}

#[tokio::test]
async fn a_friend_request_reaches_its_recipient_but_a_blocked_senders_does_not() {
    let app = TestApp::spawn().await;
    let [alice, bob, mallory] = app.users(["alice", "bob", "mallory"]).await;
    app.put(
        &format!("/api/blocks/{}", mallory.user.user_id),
        &alice.token,
    )
    .await;
    let mut alice_gw = app.online(&alice.token).await;

    for from in [&mallory, &bob] {
        app.post(
            "/api/friends/requests",
            Some(&from.token),
            &json!({"username": "alice"}),
        )
        .await;
    }
    let from = alice_gw
        .expect("friend_request_received", |e| match e {
            GatewayEvent::Event(Event::FriendRequestReceived { request }) => {
                Some(request.user.user_id)
            }
            _ => None,
        })
        .await;
    // Mallory asked first; the first request to arrive is Bob's.
    assert_eq!(from, bob.user.user_id);
}

#[tokio::test]
async fn the_ready_payload_carries_my_unread_count_per_group() {
    let app = TestApp::spawn().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let group_id = app.group_with(&alice, &[&bob]).await;
    let first = app.send(&alice, group_id, "one").await;
    app.send(&alice, group_id, "two").await;
    app.send(&alice, group_id, "three").await;
    app.delete(
        &format!("/api/groups/{group_id}/messages/{}", first.message_id),
        &alice.token,
    )
    .await;
    let mut gateway = app.gateway(&bob.token);
    let GatewayEvent::Ready { groups, .. } = gateway.ready().await else {
        unreachable!("ready() returns Ready")
    };
    let position = groups
        .iter()
        .find(|g| g.group_id == group_id)
        .expect("the group is in ready");
    assert_eq!((position.last_seq, position.unread), (3, 2));
}
