//! Ghost members (PROTOCOL.md §3.4): a conversation's members are what its
//! members signed. The relay's member table gaining someone no member added
//! (as a compromised relay would make it, or an unsigned API call does)
//! never makes a client encrypt to them: the client refuses to send and
//! says who the relay claims is a member.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use strongroom_client::{Client, ClientError};
use strongroom_crypto::ids::DeviceId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_no_member_added_gets_nothing() {
    let dir = temp_dir("ghost-members");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let invite = alice.create_invite(false).await.unwrap().invite;
    let mut mallory =
        Client::enrol(&dir.join("mallory"), "mallory passphrase", &invite, "mallory", PASSWORD).await.unwrap();
    let group = alice.create_conversation("group", &["bob"]).await.unwrap();
    let conv = strongroom_crypto::ids::ConversationId::parse_hex(&group.id).unwrap();
    alice.send_text(conv, "before").await.unwrap();
    let signed = bob.membership(conv).await.unwrap();
    assert_eq!(signed.members, [alice.user_id(), bob.user_id()].into());
    assert_eq!(signed.commitment.version, 1);

    // The relay's table gains Mallory with no signed statement.
    let r = login(&server.url, alice.network_id(), "bob", DeviceId::random(&mut rand_core::OsRng)).await;
    let token = r.json::<strongroom_wire::Session>().await.unwrap().token;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/conversations/{conv}/members", server.url))
        .bearer_auth(token)
        .json(&strongroom_wire::ChangeMembers { add: vec![mallory.user_id().to_string()], ..Default::default() })
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());

    // Alice's client will not encrypt to her, and says why.
    let err = alice.send_text(conv, "secret plans").await.unwrap_err();
    match err {
        ClientError::Trust(m) => assert!(
            m.contains("the relay says mallory is a member of this conversation; no member added mallory"),
            "{m}"
        ),
        other => panic!("expected a refusal naming mallory, got {other:?}"),
    }
    let err = bob.send_text(conv, "more plans").await.unwrap_err();
    assert!(matches!(err, ClientError::Trust(ref m) if m.contains("no member added mallory")), "{err}");
    let got = mallory.sync().await.unwrap();
    assert!(got.received.iter().all(|m| m.conversation != conv), "mallory got nothing: {:?}", got.received);
    assert_eq!(bob.membership(conv).await.unwrap().members, [alice.user_id(), bob.user_id()].into());

    // Once a member signs her in, she is a member like any other.
    alice.change_members(conv, &["mallory"], &[], &[], &[]).await.unwrap();
    alice.send_text(conv, "welcome, mallory").await.unwrap();
    let got = mallory.sync().await.unwrap();
    assert!(got.received.iter().any(|m| m.conversation == conv), "{:?}", got.received);
    let signed = bob.membership(conv).await.unwrap();
    assert_eq!(signed.commitment.version, 2);
    assert!(signed.members.contains(&mallory.user_id()));
}

/// What a member may sign is what their role allows: the relay checks it as
/// members do, so a group member cannot use a room's rules and a member of
/// a room cannot add people.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_follow_roles_and_the_chain() {
    let dir = temp_dir("membership-roles");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let invite = alice.create_invite(false).await.unwrap().invite;
    let carol = Client::enrol(&dir.join("carol"), "carol passphrase", &invite, "carol", PASSWORD).await.unwrap();
    let room = alice.create_conversation("room", &["bob"]).await.unwrap();
    let conv = strongroom_crypto::ids::ConversationId::parse_hex(&room.id).unwrap();
    let err = bob.change_members(conv, &["carol"], &[], &[], &[]).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Refused { ref code, .. } if code == "membership_refused"),
        "a plain member of a room cannot add: {err}"
    );
    alice.change_members(conv, &[], &[], &["bob"], &[]).await.unwrap();
    bob.change_members(conv, &["carol"], &[], &[], &[]).await.unwrap();
    let signed = alice.membership(conv).await.unwrap();
    assert_eq!(signed.members, [alice.user_id(), bob.user_id(), carol.user_id()].into());
    assert_eq!(signed.moderators, [alice.user_id(), bob.user_id()].into());
    // Bob leaves; Alice's next statement follows his, which she fetches first.
    bob.change_members(conv, &[], &["bob"], &[], &[]).await.unwrap();
    alice.change_members(conv, &[], &["carol"], &[], &[]).await.unwrap();
    let signed = alice.membership(conv).await.unwrap();
    assert_eq!(signed.members, [alice.user_id()].into());
    assert_eq!(signed.commitment.version, 5);
    // The relay's listing of a direct conversation is only a hint.
    let direct = alice.direct_with("bob").await.unwrap();
    assert_eq!(alice.membership(direct).await.unwrap().members, [alice.user_id(), bob.user_id()].into());
    assert_eq!(bob.direct_with("alice").await.unwrap(), direct, "both find the same signed conversation");
}
