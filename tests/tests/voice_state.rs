//! Voice call state and signaling over the gateway, frame by frame: who is in a group's
//! call (with muted/deafened), announced to its members; signaling relayed only between
//! participants of the same call; every refusal answered with an error frame; one device
//! per user; a grace period for blips; ringing in DMs; the call size limit.

use std::time::Duration;

use protocol::{
    gateway::{ClientFrame, Event},
    voice::{refusal, RingEnd, VoiceParticipant, VoiceSignal},
};
use sohbet_tests::{Gateway, GatewayEvent, TestApp};

const HEARTBEAT_MS: u64 = 300;
const GRACE_MS: u64 = 600;

async fn app() -> TestApp {
    app_with(|_| {}).await
}

async fn app_with(configure: impl FnOnce(&mut sohbet_server::config::Settings)) -> TestApp {
    TestApp::spawn_with(|s| {
        s.heartbeat_interval_ms = HEARTBEAT_MS;
        s.voice_grace_ms = GRACE_MS;
        configure(s);
    })
    .await
}

fn voice_state(e: &GatewayEvent) -> Option<(i64, i64, bool)> {
    match e {
        GatewayEvent::Event(Event::VoiceStateUpdated {
            group_id,
            user_id,
            in_call,
            ..
        }) => Some((*group_id, *user_id, *in_call)),
        _ => None,
    }
}

fn signal(e: &GatewayEvent) -> Option<(i64, VoiceSignal)> {
    match e {
        GatewayEvent::Event(Event::VoiceSignal { from, signal, .. }) => {
            Some((*from, signal.clone()))
        }
        _ => None,
    }
}

fn offer() -> VoiceSignal {
    VoiceSignal::Offer {
        sdp: "v=0\r\n...".into(),
    }
}

/// Sends `voice_join` with a ref and waits for its answer: the participants already there,
/// or the refusal's code.
async fn join(gw: &mut Gateway, group_id: i64) -> Result<(Vec<VoiceParticipant>, bool), String> {
    join_as(gw, group_id, false, false).await
}

async fn join_as(
    gw: &mut Gateway,
    group_id: i64,
    muted: bool,
    deafened: bool,
) -> Result<(Vec<VoiceParticipant>, bool), String> {
    let reference = gw.handle.next_ref();
    gw.handle.send(ClientFrame::VoiceJoin {
        group_id,
        muted,
        deafened,
        reference: Some(reference),
    });
    gw.answer(reference, |e| match e {
        GatewayEvent::VoiceJoined {
            participants,
            resumed,
            reference: Some(r),
            ..
        } if *r == reference => Some((participants.clone(), *resumed)),
        _ => None,
    })
    .await
}

/// Sends `signal` to `to` with a ref and returns the code of its refusal.
async fn refused_signal(gw: &mut Gateway, group_id: i64, to: i64, signal: VoiceSignal) -> String {
    let reference = gw.handle.next_ref();
    gw.handle.send(ClientFrame::VoiceSignal {
        group_id,
        to,
        signal,
        reference: Some(reference),
    });
    gw.refusal(reference).await
}

#[tokio::test]
async fn joining_and_leaving_a_call_is_announced_to_the_group() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let mut a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;

    let (present, resumed) = join(&mut a, group).await.expect("alice joins");
    assert!(present.is_empty() && !resumed);
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
    assert_eq!(voice_calls[0].user_ids(), vec![alice.user.user_id]);

    // Bob joining is told Alice is there.
    let (present, _) = join(&mut b, group).await.expect("bob joins");
    assert_eq!(
        present.iter().map(|p| p.user_id).collect::<Vec<_>>(),
        vec![alice.user.user_id]
    );

    a.handle.voice_leave();
    assert_eq!(
        b.expect("alice left", |e| voice_state(e).filter(|s| !s.2))
            .await,
        (group, alice.user.user_id, false)
    );
}

#[tokio::test]
async fn mute_and_deafen_are_broadcast_and_listed_in_ready() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let mut a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;
    join_as(&mut a, group, true, false)
        .await
        .expect("join muted");
    let joined = b
        .expect("alice joined muted", |e| match e {
            GatewayEvent::Event(Event::VoiceStateUpdated {
                muted,
                deafened,
                in_call: true,
                ..
            }) => Some((*muted, *deafened)),
            _ => None,
        })
        .await;
    assert_eq!(joined, (true, false));

    a.handle.send(ClientFrame::VoiceState {
        muted: true,
        deafened: true,
        reference: None,
    });
    let changed = b
        .expect("alice deafened", |e| match e {
            GatewayEvent::Event(Event::VoiceStateUpdated {
                deafened: true,
                muted,
                ..
            }) => Some(*muted),
            _ => None,
        })
        .await;
    assert!(changed);
    let mut b2 = app.gateway(&bob.token);
    let GatewayEvent::Ready { voice_calls, .. } = b2.ready().await else {
        unreachable!()
    };
    assert_eq!(
        voice_calls[0].participants,
        vec![VoiceParticipant {
            user_id: alice.user.user_id,
            muted: true,
            deafened: true
        }]
    );

    // Not in a call: refused.
    let reference = b.handle.next_ref();
    b.handle.send(ClientFrame::VoiceState {
        muted: true,
        deafened: false,
        reference: Some(reference),
    });
    assert_eq!(b.refusal(reference).await, refusal::NOT_IN_CALL);
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

    join(&mut a, group).await.expect("alice joins");
    join(&mut b, group).await.expect("bob joins");

    a.handle.voice_signal(group, bob.user.user_id, offer());
    assert_eq!(
        b.expect("offer", signal).await,
        (alice.user.user_id, offer())
    );

    // Carol is a member but not in the call: she can neither be reached nor send.
    assert_eq!(
        refused_signal(&mut a, group, carol.user.user_id, offer()).await,
        refusal::TARGET_NOT_IN_CALL
    );
    assert_eq!(
        refused_signal(&mut c, group, bob.user.user_id, offer()).await,
        refusal::NOT_IN_CALL
    );
    // To oneself: refused too.
    assert_eq!(
        refused_signal(&mut a, group, alice.user.user_id, offer()).await,
        refusal::TARGET_NOT_IN_CALL
    );
    // Whatever was refused never reached anyone.
    assert!(!c.drain().iter().any(|e| signal(e).is_some()));
    assert!(!b.drain().iter().any(|e| signal(e).is_some()));
}

#[tokio::test]
async fn oversized_or_untyped_signals_are_refused() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let mut a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;
    join(&mut a, group).await.expect("alice joins");
    join(&mut b, group).await.expect("bob joins");

    assert_eq!(
        refused_signal(
            &mut a,
            group,
            bob.user.user_id,
            VoiceSignal::Offer {
                sdp: "a".repeat(protocol::voice::MAX_SDP_BYTES + 1),
            }
        )
        .await,
        refusal::INVALID_SIGNAL
    );
    assert_eq!(
        refused_signal(
            &mut a,
            group,
            bob.user.user_id,
            VoiceSignal::Candidate {
                candidate: "c".repeat(protocol::voice::MAX_CANDIDATE_BYTES + 1),
                sdp_mid: None,
                sdp_mline_index: None,
            }
        )
        .await,
        refusal::INVALID_SIGNAL
    );
    assert!(!b.drain().iter().any(|e| signal(e).is_some()));
}

#[tokio::test]
async fn a_non_member_is_refused_as_if_the_group_did_not_exist() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mallory = app.user("mallory").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let mut a = app.online(&alice.token).await;
    let mut m = app.online(&mallory.token).await;
    assert_eq!(
        join(&mut m, group).await.expect_err("refused"),
        refusal::NOT_FOUND
    );
    assert_eq!(
        join(&mut m, 987_654_321).await.expect_err("refused"),
        refusal::NOT_FOUND
    );
    let reference = m.handle.next_ref();
    m.handle.send(ClientFrame::Typing {
        group_id: group,
        reference: Some(reference),
    });
    assert_eq!(m.refusal(reference).await, refusal::NOT_FOUND);
    assert_eq!(
        refused_signal(&mut m, group, alice.user.user_id, offer()).await,
        refusal::NOT_IN_CALL
    );
    assert!(!a
        .drain()
        .iter()
        .any(|e| voice_state(e).is_some() || signal(e).is_some()));
}

#[tokio::test]
async fn a_read_only_dm_refuses_calls_and_typing() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.befriend(&alice, &bob).await;
    let dm = app.dm(&alice, &bob).await;
    // Bob blocks Alice: the DM stays, read-only for both.
    let (status, _) = app
        .put(&format!("/api/blocks/{}", alice.user.user_id), &bob.token)
        .await;
    assert!(status.is_success());
    let mut a = app.online(&alice.token).await;
    assert_eq!(
        join(&mut a, dm).await.expect_err("refused"),
        refusal::FORBIDDEN
    );
    let reference = a.handle.next_ref();
    a.handle.send(ClientFrame::Typing {
        group_id: dm,
        reference: Some(reference),
    });
    assert_eq!(a.refusal(reference).await, refusal::FORBIDDEN);
}

#[tokio::test]
async fn the_call_refuses_the_joiner_past_the_limit() {
    let app = app_with(|s| s.max_call_participants = 8).await;
    let owner = app.user("owner").await;
    let mut others = Vec::new();
    for i in 0..8 {
        others.push(app.user(&format!("member{i}")).await);
    }
    let refs: Vec<&sohbet_tests::TestUser> = others.iter().collect();
    let group = app.group_with(&owner, &refs).await;
    let mut gateways = Vec::new();
    for user in others.iter().take(8) {
        let mut gw = app.online(&user.token).await;
        join(&mut gw, group).await.expect("one of the first eight");
        gateways.push(gw);
    }
    let mut ninth = app.online(&owner.token).await;
    assert_eq!(
        join(&mut ninth, group).await.expect_err("refused"),
        refusal::CALL_FULL
    );
    // Someone leaves: there is room again.
    gateways[0].handle.voice_leave();
    ninth
        .expect("a seat freed", |e| voice_state(e).filter(|s| !s.2))
        .await;
    join(&mut ninth, group).await.expect("room again");
}

#[tokio::test]
async fn joining_from_a_second_device_moves_the_call_there() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let phone = app.login("alice").await;
    let mut desk = app.online(&alice.token).await;
    let mut mobile = app.online(&phone.token).await;
    let mut b = app.online(&bob.token).await;
    join(&mut desk, group).await.expect("desk joins");
    b.expect("alice joined", voice_state).await;

    join(&mut mobile, group).await.expect("phone joins");
    let GatewayEvent::Ready { session_id, .. } = app.gateway(&phone.token).ready().await else {
        unreachable!()
    };
    let moved_to = desk
        .expect("moved", |e| match e {
            GatewayEvent::Event(Event::VoiceMoved { session_id, .. }) => Some(session_id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(moved_to, session_id);
    // The old device is out: its signals are refused, and its leaving changes nothing.
    assert_eq!(
        refused_signal(&mut desk, group, bob.user.user_id, offer()).await,
        refusal::NOT_IN_CALL
    );
    desk.handle.voice_leave();
    desk.handle.close().await;
    // Still exactly one Alice in the call, on the phone.
    let mut b2 = app.gateway(&bob.token);
    let GatewayEvent::Ready { voice_calls, .. } = b2.ready().await else {
        unreachable!()
    };
    assert_eq!(voice_calls[0].user_ids(), vec![alice.user.user_id]);
    assert!(!b
        .drain()
        .iter()
        .any(|e| voice_state(e).is_some_and(|s| !s.2)));
}

#[tokio::test]
async fn a_connection_blip_within_the_grace_period_keeps_the_call() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let mut a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;
    join(&mut a, group).await.expect("alice joins");
    b.expect("alice joined", voice_state).await;

    a.handle.drop_connection();
    a.expect("reconnected", |e| {
        matches!(e, GatewayEvent::Ready { .. }).then_some(())
    })
    .await;
    let (_, resumed) = join(&mut a, group).await.expect("rejoin");
    assert!(resumed, "same session within the grace period resumes");
    // Past the grace period, Bob has seen nothing.
    let seen = b.collect_for(Duration::from_millis(GRACE_MS * 3)).await;
    assert!(!seen.iter().any(|e| voice_state(e).is_some()), "{seen:?}");
}

#[tokio::test]
async fn a_dropped_connection_leaves_its_call_after_the_grace_period() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let mut a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;
    join(&mut b, group).await.expect("bob joins");
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
    let mut b = second.online(&bob.token).await;
    join(&mut b, group).await.expect("bob joins");
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

fn ringing(e: &GatewayEvent) -> Option<(i64, i64)> {
    match e {
        GatewayEvent::Event(Event::CallRinging {
            group_id,
            caller_id,
            ..
        }) => Some((*group_id, *caller_id)),
        _ => None,
    }
}

fn ring_ended(e: &GatewayEvent) -> Option<RingEnd> {
    match e {
        GatewayEvent::Event(Event::CallRingEnded { reason, .. }) => Some(*reason),
        _ => None,
    }
}

#[tokio::test]
async fn a_dm_call_rings_every_device_and_answering_on_one_stops_the_others() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.befriend(&alice, &bob).await;
    let dm = app.dm(&alice, &bob).await;
    let bob_phone = app.login("bob").await;
    let mut a = app.online(&alice.token).await;
    let mut desk = app.online(&bob.token).await;
    let mut phone = app.online(&bob_phone.token).await;

    join(&mut a, dm).await.expect("alice calls");
    assert_eq!(
        desk.expect("ringing", ringing).await,
        (dm, alice.user.user_id)
    );
    assert_eq!(
        phone.expect("ringing", ringing).await,
        (dm, alice.user.user_id)
    );
    // A device connecting while it rings is told in ready.
    let GatewayEvent::Ready { rings, .. } = app.gateway(&bob.token).ready().await else {
        unreachable!()
    };
    assert_eq!(rings.len(), 1);
    assert_eq!(rings[0].caller_id, alice.user.user_id);

    let (present, _) = join(&mut phone, dm)
        .await
        .expect("bob answers on the phone");
    assert_eq!(present[0].user_id, alice.user.user_id);
    assert_eq!(
        desk.expect("ringing stopped", ring_ended).await,
        RingEnd::Answered
    );
    assert_eq!(a.expect("answered", ring_ended).await, RingEnd::Answered);
}

#[tokio::test]
async fn declining_tells_the_caller() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.befriend(&alice, &bob).await;
    let dm = app.dm(&alice, &bob).await;
    let mut a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;
    join(&mut a, dm).await.expect("alice calls");
    b.expect("ringing", ringing).await;
    b.handle.send(ClientFrame::CallDecline {
        group_id: dm,
        reference: None,
    });
    assert_eq!(a.expect("declined", ring_ended).await, RingEnd::Declined);
    assert_eq!(b.expect("declined", ring_ended).await, RingEnd::Declined);
    // Declining again: nothing rings.
    let reference = b.handle.next_ref();
    b.handle.send(ClientFrame::CallDecline {
        group_id: dm,
        reference: Some(reference),
    });
    assert_eq!(b.refusal(reference).await, refusal::NOT_RINGING);
    // The caller cannot decline their own call either.
    let reference = a.handle.next_ref();
    a.handle.send(ClientFrame::CallDecline {
        group_id: dm,
        reference: Some(reference),
    });
    assert_eq!(a.refusal(reference).await, refusal::NOT_RINGING);
}

#[tokio::test]
async fn an_unanswered_call_is_missed_on_both_sides_and_listed_for_the_callee() {
    let app = app_with(|s| s.ring_timeout_secs = 1).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.befriend(&alice, &bob).await;
    let dm = app.dm(&alice, &bob).await;
    let mut a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;
    join(&mut a, dm).await.expect("alice calls");
    b.expect("ringing", ringing).await;
    assert_eq!(a.expect("missed", ring_ended).await, RingEnd::Missed);
    assert_eq!(b.expect("missed", ring_ended).await, RingEnd::Missed);

    let missed = app
        .client(&bob.token)
        .missed_calls()
        .await
        .expect("missed calls");
    assert_eq!(missed.missed_calls.len(), 1);
    assert_eq!(missed.missed_calls[0].caller_id, alice.user.user_id);
    assert_eq!(missed.missed_calls[0].group_id, dm);
    let none = app
        .client(&alice.token)
        .missed_calls()
        .await
        .expect("caller's list");
    assert!(none.missed_calls.is_empty(), "the caller missed nothing");
}

#[tokio::test]
async fn hanging_up_before_an_answer_cancels_the_ring() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.befriend(&alice, &bob).await;
    let dm = app.dm(&alice, &bob).await;
    let mut a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;
    join(&mut a, dm).await.expect("alice calls");
    b.expect("ringing", ringing).await;
    a.handle.voice_leave();
    assert_eq!(b.expect("cancelled", ring_ended).await, RingEnd::Cancelled);
}

#[tokio::test]
async fn group_calls_do_not_ring() {
    let app = app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.group_with(&alice, &[&bob]).await;
    let mut a = app.online(&alice.token).await;
    let mut b = app.online(&bob.token).await;
    join(&mut a, group).await.expect("alice joins");
    b.expect("alice in voice", voice_state).await;
    let seen = b.collect_for(Duration::from_millis(300)).await;
    assert!(!seen.iter().any(|e| ringing(e).is_some()), "{seen:?}");
}

#[tokio::test]
async fn ice_servers_hand_out_turn_rest_credentials() {
    let app = app_with(|s| {
        s.stun_urls = vec!["stun:127.0.0.1:3478".into()];
        s.turn_urls = vec!["turn:127.0.0.1:3478?transport=udp".into()];
        s.turn_secret = Some(sohbet_server::config::Secret("north-wind".into()));
        s.turn_ttl_secs = 600;
    })
    .await;
    let alice = app.user("alice").await;
    let (status, _) = app.get("/api/voice/ice-servers", "not-a-token").await;
    assert_eq!(status, 401);
    let servers = app
        .client(&alice.token)
        .ice_servers()
        .await
        .expect("ice servers");
    assert_eq!(servers.ttl_secs, 600);
    assert_eq!(servers.ice_servers[0].urls, vec!["stun:127.0.0.1:3478"]);
    let turn = &servers.ice_servers[1];
    let username = turn.username.clone().expect("turn username");
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    assert_eq!(user, alice.user.user_id.to_string());
    let expiry: i64 = expiry.parse().expect("unix time");
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "{expiry} vs {now}"
    );
    assert_eq!(
        turn.credential.as_deref(),
        Some(sohbet_server::routes::voice::turn_credential("north-wind", &username).as_str())
    );
}
