//! # strongroom-crypto
//!
//! The Strongroom protocol core: keys, certificates, signed envelopes with a
//! key per message, attachment streams and safety numbers.
//!
//! It is sans-IO: bytes in, bytes out. It opens no sockets or files, reads no
//! clock and uses no global RNG — callers pass the time (`now`, ms since the
//! Unix epoch) and a cryptographic RNG, so every protocol test is
//! deterministic and in memory. Primitives come from aws-lc-rs behind the
//! crate's own types ([`keys`]); nothing is hand-rolled.
//!
//! ```
//! use rand_core::OsRng;
//! use strongroom_crypto::{certs::*, content::Content, envelope::*, ids::*, keys::*};
//!
//! let net = NetworkId::random(&mut OsRng);
//! // Bob: identity key, one device, a signed device list and a signed pre-key.
//! let bob = UserId::random(&mut OsRng);
//! let bob_identity = SigningKey::generate(&mut OsRng);
//! let bob_device = DeviceId::random(&mut OsRng);
//! let bob_device_key = SigningKey::generate(&mut OsRng);
//! let entry = DeviceEntry { device_id: bob_device, signing_key: bob_device_key.verifying_key(),
//!     created_at: 0, revoked: false, versions: strongroom_crypto::suite::SUPPORTED_VERSIONS, name: "phone".into() };
//! let list = DeviceList::first(&bob_identity, net, bob, 0, vec![entry]).unwrap();
//! let expect = DeviceListExpectation { network_id: net, user_id: bob, pinned_identity: None, seen: None };
//! let bob_list = list.verify(&expect).unwrap();
//! let prekey_secret = AgreementSecret::generate(&mut OsRng);
//! let key_ref = PreKeyRef { kind: PreKeyKind::MediumTerm, id: 1 };
//! let prekey = SignedPreKey::sign(&bob_device_key, net, bob, bob_device, key_ref,
//!     prekey_secret.public(), 0, u64::MAX).unwrap();
//! let verified = prekey.verify(&bob_list.device(bob_device).unwrap(), 1_000).unwrap();
//!
//! // Bob sends himself a note (he is both sender and recipient here).
//! let sender = Sender { network_id: net, user_id: bob, identity_key: bob_identity.verifying_key(),
//!     device_id: bob_device, signing_key: &bob_device_key };
//! let meta = MessageMeta { host_network_id: net, conversation_id: ConversationId::random(&mut OsRng),
//!     message_id: MessageId::random(&mut OsRng), timestamp: 1_000, ttl_secs: 0, burn_on_read_secs: 0,
//!     membership: MembershipCommitment::default() };
//! let env = seal(&sender, &meta, &Content::Text("hi".into()), &[Recipient::from(&verified)], &mut OsRng).unwrap();
//!
//! let me = RecipientDevice { network_id: net, user_id: bob, identity_key: bob_identity.verifying_key(), device_id: bob_device };
//! let wire = env.for_device(net, bob, bob_device).unwrap().encode();
//! let opened = DeliveredEnvelope::decode(&wire).unwrap()
//!     .open(&me, &[(key_ref, prekey_secret)][..], &bob_list, &mut MemoryReplayGuard::default(), 1_001).unwrap();
//! assert_eq!(opened.content, Content::Text("hi".into()));
//! ```

pub mod attachment;
pub mod certs;
mod codec;
pub mod content;
pub mod envelope;
pub mod fuzz_checks;
mod hex;
pub mod ids;
pub mod keys;
pub mod link;
pub mod merkle;
mod primitives;
pub mod safety_number;
pub mod suite;

pub use codec::DecodeError;
