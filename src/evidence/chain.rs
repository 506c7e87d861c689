//! The audit trail's hash chain (README, "Proof for auditors", "Tamper evidence"), pure:
//! what an event's canonical content is, how it is linked to the one before, and how a
//! chain read back in `chain_seq` order is checked. The store seals and reads
//! (src/store/chain.rs); nothing here touches it.
//!
//! An event's link is `sha256 = SHA-256(prev || SHA-256(content))` over the raw 32-byte
//! digests, written as lowercase hex; the first event's `prev` is [`GENESIS`]. The content
//! names the job's email and the account id it had when sealed by tokens (`{email}`,
//! `{account_id}`), so replacing both by pseudonyms later leaves every link as it was.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::person::{self, Naming};

/// The `prev_sha256` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Names the construction, so that a later one can be told apart.
const CONTENT_VERSION: &str = "offboard-event-v1";

/// An audit event as stored, without its link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventContent {
    pub id: i64,
    pub job_id: i64,
    pub at: DateTime<Utc>,
    pub from_state: Option<String>,
    pub to_state: String,
    pub actor: String,
    pub detail: String,
}

/// An event waiting to be sealed, with its job's email and account id as they are now.
#[derive(Clone, Debug)]
pub struct UnsealedEvent {
    pub content: EventContent,
    pub email: String,
    pub account_id: Option<String>,
}

/// What sealing writes on an event.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Seal {
    pub event_id: i64,
    pub chain_seq: i64,
    pub prev_sha256: String,
    pub sha256: String,
    /// The account id the content names by `{account_id}`.
    pub account_id: Option<String>,
}

/// The newest sealed event: what a report is made at.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChainHead {
    pub chain_seq: i64,
    pub sha256: String,
}

/// An event read back with its seal and its job's email as stored now.
#[derive(Clone, Debug)]
pub struct SealedEvent {
    pub content: EventContent,
    pub email: String,
    pub seal: Seal,
}

/// The canonical content: a JSON array of the event's fields, the person named by tokens.
pub fn canonical_content(content: &EventContent, naming: Naming<'_>) -> String {
    let tokens = |text: &str| person::replace(text, naming, "{email}", "{account_id}", true);
    serde_json::json!([
        CONTENT_VERSION,
        content.id,
        content.job_id,
        content.at.timestamp_micros(),
        content.from_state,
        content.to_state,
        tokens(&content.actor),
        tokens(&content.detail),
    ])
    .to_string()
}

/// The link of an event whose previous link is `prev` (hex).
pub fn link(prev: &str, content: &EventContent, naming: Naming<'_>) -> String {
    let content_sha = Sha256::digest(canonical_content(content, naming).as_bytes());
    let mut hasher = Sha256::new();
    // A malformed stored `prev` hashes as its text: it cannot match anyway.
    match hex::decode(prev) {
        Ok(raw) => hasher.update(raw),
        Err(_) => hasher.update(prev.as_bytes()),
    }
    hasher.update(content_sha);
    hex::encode(hasher.finalize())
}

/// Seals `events`, in order, after `head` (none: the chain starts).
pub fn seal(head: Option<&ChainHead>, events: &[UnsealedEvent]) -> Vec<Seal> {
    let (mut seq, mut prev) = match head {
        Some(head) => (head.chain_seq, head.sha256.clone()),
        None => (0, GENESIS.to_owned()),
    };
    events
        .iter()
        .map(|event| {
            seq += 1;
            let naming = Naming {
                email: &event.email,
                account_id: event.account_id.as_deref(),
            };
            let sha256 = link(&prev, &event.content, naming);
            Seal {
                event_id: event.content.id,
                chain_seq: seq,
                prev_sha256: std::mem::replace(&mut prev, sha256.clone()),
                sha256,
                account_id: event.account_id.clone(),
            }
        })
        .collect()
}

/// The first event that does not match, and how.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Break {
    #[error(
        "event {event_id} (chain_seq {chain_seq}): the events from chain_seq {expected} are missing"
    )]
    Missing {
        event_id: i64,
        chain_seq: i64,
        expected: i64,
    },
    #[error(
        "event {event_id} (chain_seq {chain_seq}): its link to the previous event does not match"
    )]
    Link { event_id: i64, chain_seq: i64 },
    #[error("event {event_id} (chain_seq {chain_seq}): its content does not match its hash")]
    Content { event_id: i64, chain_seq: i64 },
}

/// Checks a chain event by event, in `chain_seq` order, keeping only the last link.
#[derive(Clone, Debug)]
pub struct ChainCheck {
    prev: String,
    next_seq: i64,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck {
            prev: GENESIS.to_owned(),
            next_seq: 1,
        }
    }
}

impl ChainCheck {
    /// Checks the next event: it follows the last one without a gap, names its link, and
    /// its content hashes to its `sha256`.
    pub fn check(&mut self, event: &SealedEvent) -> Result<(), Break> {
        let (event_id, chain_seq) = (event.content.id, event.seal.chain_seq);
        if chain_seq != self.next_seq {
            return Err(Break::Missing {
                event_id,
                chain_seq,
                expected: self.next_seq,
            });
        }
        if event.seal.prev_sha256 != self.prev {
            return Err(Break::Link {
                event_id,
                chain_seq,
            });
        }
        let naming = Naming {
            email: &event.email,
            account_id: event.seal.account_id.as_deref(),
        };
        if link(&self.prev, &event.content, naming) != event.seal.sha256 {
            return Err(Break::Content {
                event_id,
                chain_seq,
            });
        }
        self.prev = event.seal.sha256.clone();
        self.next_seq += 1;
        Ok(())
    }

    /// The events checked so far.
    pub fn checked(&self) -> i64 {
        self.next_seq - 1
    }

    /// The head of what was checked, `None` for an empty chain.
    pub fn head(&self) -> Option<ChainHead> {
        (self.next_seq > 1).then(|| ChainHead {
            chain_seq: self.next_seq - 1,
            sha256: self.prev.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::person::replace;
    use proptest::prelude::*;

    fn event(id: i64, detail: &str) -> UnsealedEvent {
        UnsealedEvent {
            content: EventContent {
                id,
                job_id: 7,
                at: DateTime::from_timestamp_micros(1_765_000_000_123_456).unwrap(),
                from_state: Some("running".into()),
                to_state: "succeeded".into(),
                actor: "worker:a".into(),
                detail: detail.into(),
            },
            email: "jane@example.com".into(),
            account_id: Some("acc-1".into()),
        }
    }

    fn sealed(unsealed: &[UnsealedEvent]) -> Vec<SealedEvent> {
        seal(None, unsealed)
            .into_iter()
            .zip(unsealed)
            .map(|(seal, e)| SealedEvent {
                content: e.content.clone(),
                email: e.email.clone(),
                seal,
            })
            .collect()
    }

    fn check_all(events: &[SealedEvent]) -> Result<i64, Break> {
        let mut check = ChainCheck::default();
        events.iter().try_for_each(|e| check.check(e))?;
        Ok(check.checked())
    }

    #[test]
    fn a_sealed_chain_checks_and_links_each_event_to_the_one_before() {
        let events = sealed(&[event(1, "a"), event(2, "b"), event(5, "c")]);
        assert_eq!(events[0].seal.prev_sha256, GENESIS);
        assert_eq!(events[1].seal.prev_sha256, events[0].seal.sha256);
        assert_eq!(events[2].seal.chain_seq, 3);
        assert_eq!(check_all(&events), Ok(3));
    }

    #[test]
    fn an_edit_a_gap_or_a_relink_is_named() {
        let mut events = sealed(&[event(1, "a"), event(2, "b"), event(3, "c")]);
        events[1].content.detail = "B".into();
        assert_eq!(
            check_all(&events),
            Err(Break::Content {
                event_id: 2,
                chain_seq: 2
            })
        );
        let mut events = sealed(&[event(1, "a"), event(2, "b"), event(3, "c")]);
        events.remove(1);
        assert_eq!(
            check_all(&events),
            Err(Break::Missing {
                event_id: 3,
                chain_seq: 3,
                expected: 2
            })
        );
        let mut events = sealed(&[event(1, "a"), event(2, "b")]);
        events[1].seal.prev_sha256 = GENESIS.into();
        assert!(matches!(check_all(&events), Err(Break::Link { .. })));
    }

    #[test]
    fn pseudonymizing_the_person_leaves_the_chain_intact() {
        let detail = "jane@example.com (JANE@example.com) has account acc-1; {email}";
        let mut events = sealed(&[event(1, detail)]);
        let naming = Naming {
            email: "jane@example.com",
            account_id: Some("acc-1"),
        };
        let (p_email, p_account) = ("pseudonym-aa@pseudonym.invalid", "pseudonym-bb");
        events[0].content.detail = replace(detail, naming, p_email, p_account, false);
        events[0].email = p_email.into();
        events[0].seal.account_id = Some(p_account.into());
        assert!(!events[0].content.detail.contains("jane"));
        assert_eq!(check_all(&events), Ok(1));
    }

    /// Pieces of a detail: the person's names in any casing, lookalike tokens, braces, and
    /// other text.
    fn detail_strategy(email: String, account: String) -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(email.clone()),
            Just(email.to_ascii_uppercase()),
            Just(account.clone()),
            Just("{email}".to_owned()),
            Just("{account_id}".to_owned()),
            Just("{".to_owned()),
            "[a-z0-9@.{} -]{0,6}",
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        /// The design's promise: pseudonymizing the person in any text leaves the canonical
        /// content, and so every link, as it was.
        #[test]
        fn pseudonymizing_never_changes_the_canonical_content(
            (email, account, detail) in ("[a-z]{1,6}@[a-z]{1,5}\\.io", "[a-z0-9-]{1,12}")
                .prop_flat_map(|(email, account)| {
                    let details = detail_strategy(email.clone(), account.clone());
                    (Just(email), Just(account), details)
                })
        ) {
            let pseudonyms = crate::evidence::pseudonym::Pseudonyms::new(
                secrecy::SecretString::from("k".repeat(32)),
            );
            let (p_email, p_account) = (pseudonyms.email(&email), pseudonyms.account_id(&account));
            let mut content = event(1, &detail).content;
            let before = canonical_content(&content, Naming { email: &email, account_id: Some(&account) });
            let original = Naming { email: &email, account_id: Some(&account) };
            content.detail = replace(&detail, original, &p_email, &p_account, false);
            content.actor = replace(&content.actor, original, &p_email, &p_account, false);
            let after = canonical_content(&content, Naming { email: &p_email, account_id: Some(&p_account) });
            prop_assert_eq!(before, after);
            prop_assert!(!content.detail.to_ascii_lowercase().contains(&email));
        }
    }

    #[test]
    fn the_canonical_content_is_a_stable_json_array() {
        let e = event(1, "for jane@example.com {x}");
        let naming = Naming {
            email: &e.email,
            account_id: e.account_id.as_deref(),
        };
        assert_eq!(
            canonical_content(&e.content, naming),
            r#"["offboard-event-v1",1,7,1765000000123456,"running","succeeded","worker:a","for {email} {{x}"]"#
        );
    }
}
