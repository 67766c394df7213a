//! The Rust SDK end to end: the calls a desktop client makes, typed, against the real server.

use protocol::{
    friends::{FriendRequestBody, FriendRequestState},
    groups::{CreateGroupRequest, Role},
    messages::{HistoryQuery, MarkReadRequest, SendMessageRequest},
};
use sohbet_client::Client;
use sohbet_tests::{sdk_sign_up, TestApp};

async fn signed_in(app: &TestApp, name: &str) -> Client {
    sdk_sign_up(&Client::new(app.base.clone()).expect("client"), name).await
}

#[tokio::test]
async fn the_sdk_covers_friends_groups_messages_and_read_status() {
    let app = TestApp::spawn().await;
    let ada = signed_in(&app, "ada").await;
    let bob = signed_in(&app, "bob").await;
    let ada_me = ada.me().await.expect("me");
    let bob_me = bob.me().await.expect("me");

    let outcome = ada
        .send_friend_request(&FriendRequestBody {
            friend_code: Some(bob_me.friend_code.clone()),
            username: None,
        })
        .await
        .expect("request");
    assert_eq!(outcome.state, FriendRequestState::Pending);
    assert_eq!(
        bob.friend_requests()
            .await
            .expect("requests")
            .incoming
            .len(),
        1
    );
    bob.accept_friend_request(ada_me.user_id)
        .await
        .expect("accept");
    assert_eq!(ada.friends().await.expect("friends").len(), 1);

    let dm = ada.open_dm(bob_me.user_id).await.expect("dm");
    let again = bob.open_dm(ada_me.user_id).await.expect("dm again");
    assert_eq!(dm.group.group_id, again.group.group_id);

    let group = ada
        .create_group(&CreateGroupRequest {
            name: "crew".into(),
            description: None,
        })
        .await
        .expect("group")
        .group
        .group_id;
    ada.add_member(group, bob_me.user_id).await.expect("add");
    ada.change_role(group, bob_me.user_id, Role::Admin)
        .await
        .expect("promote");

    let mut sent = Vec::new();
    for i in 0..3 {
        let req = SendMessageRequest {
            content: format!("hi {i}"),
            nonce: Some(format!("n{i}")),
        };
        sent.push(ada.send_message(group, &req).await.expect("send"));
    }
    let retry = SendMessageRequest {
        content: "hi 0".into(),
        nonce: Some("n0".into()),
    };
    assert_eq!(
        ada.send_message(group, &retry)
            .await
            .expect("retry")
            .message_id,
        sent[0].message_id
    );

    let page = bob
        .history(
            group,
            &HistoryQuery {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .expect("history");
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![sent[1].seq, sent[2].seq]
    );
    let edited = ada
        .edit_message(group, sent[2].message_id, "hi 2 (edited)")
        .await
        .expect("edit");
    assert!(edited.edited_at.is_some());

    let listed = bob.groups().await.expect("groups");
    let item = listed
        .iter()
        .find(|g| g.group.group_id == group)
        .expect("listed");
    assert_eq!(item.unread_count, 3);
    bob.mark_read(
        group,
        &MarkReadRequest {
            message_id: sent[2].message_id,
        },
    )
    .await
    .expect("read");
    assert_eq!(bob.read_state(group).await.expect("state").unread_count, 0);
    let receipts = ada
        .receipts(group, sent[0].message_id)
        .await
        .expect("receipts");
    assert_eq!(
        receipts.iter().map(|r| r.user_id).collect::<Vec<_>>(),
        vec![bob_me.user_id]
    );

    bob.delete_message(group, sent[1].message_id)
        .await
        .expect("admin deletes");
    let err = bob
        .delete_group(group)
        .await
        .expect_err("only the owner deletes");
    assert_eq!(err.code(), Some("forbidden"));
    ada.delete_group(group).await.expect("owner deletes");
    assert_eq!(
        bob.group(group).await.expect_err("gone").code(),
        Some("not_found")
    );
}
