//! Standard Webhooks v1: `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64>`
//! over `{id}.{timestamp}.{body}`, keyed with the base64-decoded `whsec_` secret. Svix, the
//! reference sender, names the same three headers `svix-id`, `svix-timestamp` and
//! `svix-signature` unless an account is white-labelled; either set is accepted.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::Hmac;
use http::HeaderMap;
use sha2::Sha256;

use super::{
    Verified, VerifyError, decode_base64_secret, hmac_tag, is_fresh, parse_unix_seconds, random_id,
    required_header, tag_matches,
};

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";
const SVIX_ID: &str = "svix-id";
const SVIX_TIMESTAMP: &str = "svix-timestamp";
const SVIX_SIGNATURE: &str = "svix-signature";

/// The names of a delivery's id, timestamp and signature headers, in that order.
type HeaderSet = [&'static str; 3];
const STANDARD_HEADERS: HeaderSet = [ID, TIMESTAMP, SIGNATURE];
const SVIX_HEADERS: HeaderSet = [SVIX_ID, SVIX_TIMESTAMP, SVIX_SIGNATURE];
const SECRET_PREFIX: &str = "whsec_";
/// Other versions (`v1a` is ed25519) are skipped, not rejected, so senders can add them.
const VERSION_PREFIX: &str = "v1,";

/// The base64 part of a secret, which senders show with or without `whsec_`.
pub(super) fn strip_prefix(secret: &str) -> &str {
    secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret)
}

fn key(secret: &str) -> Option<Vec<u8>> {
    decode_base64_secret(strip_prefix(secret))
}

fn tag(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let content = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
    hmac_tag::<Hmac<Sha256>>(key, &content)
}

pub(super) fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
    tolerance: Duration,
    now: DateTime<Utc>,
) -> Result<Verified, VerifyError> {
    let [id, timestamp, signatures] = delivery_headers(headers)?;
    let expected: Vec<Vec<u8>> = secrets
        .iter()
        .filter_map(|secret| key(secret))
        .map(|key| tag(&key, id, timestamp, body))
        .collect();
    // Rotating senders put several space-separated signatures in the header; one match is enough.
    let signed = signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix(VERSION_PREFIX))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .any(|received| expected.iter().any(|tag| tag_matches(tag, &received)));
    if !signed {
        return Err(VerifyError::InvalidSignature);
    }
    // Freshness is judged only once the signature holds, so an unauthenticated caller learns
    // nothing about our clock, and a replayed genuine delivery is reported as stale.
    let sent = parse_unix_seconds(timestamp).ok_or(VerifyError::InvalidSignature)?;
    if !is_fresh(sent, now, tolerance) {
        return Err(VerifyError::StaleTimestamp);
    }
    Ok(Verified {
        delivery_id: Some(id.to_owned()),
    })
}

/// The id, timestamp and signatures of a delivery, all three from one header set and each
/// sent once. Senders use one set or the other (Svix's white-labelling replaces its names,
/// it does not add the others), so a delivery with headers of both sets, or with one of them
/// twice, is not one a sender made: which id would name it is ambiguous, and a proxy or log
/// that reads the other copy would see another delivery than the one verified.
fn delivery_headers(headers: &HeaderMap) -> Result<[&str; 3], VerifyError> {
    let carries = |set: &HeaderSet| set.iter().any(|name| headers.contains_key(*name));
    let set = match (carries(&STANDARD_HEADERS), carries(&SVIX_HEADERS)) {
        (true, false) => STANDARD_HEADERS,
        (false, true) => SVIX_HEADERS,
        (true, true) | (false, false) => return Err(VerifyError::InvalidSignature),
    };
    let [id, timestamp, signature] = set;
    Ok([
        single_header(headers, id)?,
        single_header(headers, timestamp)?,
        single_header(headers, signature)?,
    ])
}

/// A header that must be sent exactly once; repeated, it is refused like a missing one.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    if headers.get_all(name).iter().nth(1).is_some() {
        return Err(VerifyError::InvalidSignature);
    }
    required_header(headers, name)
}

pub(super) fn sign(body: &[u8], secret: &str, now: DateTime<Utc>) -> Vec<(String, String)> {
    let id = format!("msg_{}", random_id());
    let timestamp = now.timestamp().to_string();
    // An unusable secret signs with the empty key, which `verify` never accepts.
    let key = key(secret).unwrap_or_default();
    let signature = STANDARD.encode(tag(&key, &id, &timestamp, body));
    vec![
        (ID.to_owned(), id),
        (TIMESTAMP.to_owned(), timestamp),
        (SIGNATURE.to_owned(), format!("{VERSION_PREFIX}{signature}")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Scheme;
    use crate::verify::tests::{at, headers, verifier};
    use proptest::prelude::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const MSG_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SENT: i64 = 1_649_367_553;
    const SENT_TEXT: &str = "1649367553";
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const GOOD: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn check(secrets: &[&str], signature: &str, now: i64) -> Result<Verified, VerifyError> {
        let delivery = headers(&[(ID, MSG_ID), (TIMESTAMP, SENT_TEXT), (SIGNATURE, signature)]);
        verifier(Scheme::StandardWebhooks, secrets).verify(&delivery, BODY, at(now))
    }

    #[test]
    fn official_vector_verifies_and_yields_the_webhook_id() {
        let verified = check(&[SECRET], GOOD, SENT).expect("official vector");
        assert_eq!(verified.delivery_id.as_deref(), Some(MSG_ID));
    }

    #[test]
    fn official_must_fail_signatures_fail() {
        for bad in ["v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=", "v1,"] {
            assert_eq!(
                check(&[SECRET], bad, SENT),
                Err(VerifyError::InvalidSignature),
                "{bad}"
            );
        }
    }

    #[test]
    fn secret_without_whsec_prefix_is_the_same_key() {
        assert!(check(&["C2FVsBQIhrscChlQIMV+b5sSYspob7oD"], GOOD, SENT).is_ok());
    }

    #[test]
    fn any_v1_entry_may_match_and_other_versions_are_ignored() {
        let good_b64 = GOOD.trim_start_matches(VERSION_PREFIX);
        let rotated = format!("v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=  {GOOD}");
        assert!(check(&[SECRET], &rotated, SENT).is_ok());
        assert!(check(&[SECRET], &format!("v1a,{good_b64} {GOOD}"), SENT).is_ok());
        for other in [
            format!("v1a,{good_b64}"),
            format!("v2,{good_b64}"),
            good_b64.to_owned(),
        ] {
            assert_eq!(
                check(&[SECRET], &other, SENT),
                Err(VerifyError::InvalidSignature)
            );
        }
    }

    #[test]
    fn truncated_overlong_and_misencoded_signatures_fail() {
        let good_b64 = GOOD.trim_start_matches(VERSION_PREFIX);
        let tag = STANDARD.decode(good_b64).expect("vector is base64");
        let cases = [
            format!("v1,{}", STANDARD.encode(&tag[..31])),
            format!("v1,{}", STANDARD.encode([tag.as_slice(), &[0]].concat())),
            format!("v1,{}", good_b64.trim_end_matches('=')),
            format!("v1,{}", hex::encode(&tag)),
            format!("V1,{good_b64}"),
            format!("v1, {good_b64}"),
        ];
        for case in cases {
            assert_eq!(
                check(&[SECRET], &case, SENT),
                Err(VerifyError::InvalidSignature),
                "{case}"
            );
        }
    }

    #[test]
    fn rotation_accepts_the_second_secret() {
        assert!(
            check(
                &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SECRET],
                GOOD,
                SENT
            )
            .is_ok()
        );
    }

    #[test]
    fn tolerance_applies_both_ways_after_the_signature() {
        assert!(check(&[SECRET], GOOD, SENT + 300).is_ok());
        assert!(check(&[SECRET], GOOD, SENT - 300).is_ok());
        assert_eq!(
            check(&[SECRET], GOOD, SENT + 301),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            check(&[SECRET], GOOD, SENT - 301),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            check(&[SECRET], "v1,", SENT + 301),
            Err(VerifyError::InvalidSignature)
        );
    }

    #[test]
    fn signed_but_unparseable_timestamp_is_invalid() {
        let key = key(SECRET).expect("vector secret decodes");
        for timestamp in ["soon", "+1649367553", "1649367553.0", " 1649367553"] {
            let signature = format!("v1,{}", STANDARD.encode(tag(&key, MSG_ID, timestamp, BODY)));
            let delivery = headers(&[
                (ID, MSG_ID),
                (TIMESTAMP, timestamp),
                (SIGNATURE, &signature),
            ]);
            let result =
                verifier(Scheme::StandardWebhooks, &[SECRET]).verify(&delivery, BODY, at(SENT));
            assert_eq!(result, Err(VerifyError::InvalidSignature), "{timestamp}");
        }
    }

    /// The official vector's id, timestamp and signature under the header names `set`.
    fn named(set: HeaderSet) -> Vec<(&'static str, &'static str)> {
        set.into_iter().zip([MSG_ID, SENT_TEXT, GOOD]).collect()
    }

    fn check_named(pairs: &[(&str, &str)]) -> Result<Verified, VerifyError> {
        verifier(Scheme::StandardWebhooks, &[SECRET]).verify(&headers(pairs), BODY, at(SENT))
    }

    /// Svix signs exactly as the specification's reference library does (its own library's
    /// `test_sign` checks this same vector) and sends it under its own names.
    #[test]
    fn svix_header_names_carry_the_official_vector() {
        let verified = check_named(&named(SVIX_HEADERS)).expect("svix-* names");
        assert_eq!(verified.delivery_id.as_deref(), Some(MSG_ID));
        // Header names are case-insensitive, as Svix's libraries treat them.
        let capitalised = [
            ("Svix-Id", MSG_ID),
            ("SVIX-TIMESTAMP", SENT_TEXT),
            ("Svix-Signature", GOOD),
        ];
        assert!(check_named(&capitalised).is_ok());

        let v = verifier(Scheme::StandardWebhooks, &[SECRET]);
        let bad = "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=";
        for signature in [bad, "v1,", ""] {
            let delivery = headers(&[
                (SVIX_ID, MSG_ID),
                (SVIX_TIMESTAMP, SENT_TEXT),
                (SVIX_SIGNATURE, signature),
            ]);
            assert_eq!(
                v.verify(&delivery, BODY, at(SENT)),
                Err(VerifyError::InvalidSignature),
                "{signature:?}"
            );
        }
        let svix = headers(&named(SVIX_HEADERS));
        assert_eq!(
            v.verify(&svix, BODY, at(SENT + 301)),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            v.verify(&svix, b"{}", at(SENT)),
            Err(VerifyError::InvalidSignature)
        );
    }

    /// Each header taken from either set, mixed (`svix-id` with `webhook-signature`, ...), or
    /// both whole sets, or one set plus a stray header of the other: never what a sender
    /// sends, so refused even though the values would verify.
    #[test]
    fn headers_of_both_sets_fail() {
        let values = [MSG_ID, SENT_TEXT, GOOD];
        for mask in 1..7 {
            let pairs: Vec<(&str, &str)> = (0..3)
                .map(|i| {
                    let set = if mask & (1 << i) == 0 {
                        STANDARD_HEADERS
                    } else {
                        SVIX_HEADERS
                    };
                    (set[i], values[i])
                })
                .collect();
            assert_eq!(
                check_named(&pairs),
                Err(VerifyError::InvalidSignature),
                "{pairs:?}"
            );
        }
        let both = [named(STANDARD_HEADERS), named(SVIX_HEADERS)].concat();
        assert_eq!(check_named(&both), Err(VerifyError::InvalidSignature));
        for (set, other) in [
            (STANDARD_HEADERS, SVIX_HEADERS),
            (SVIX_HEADERS, STANDARD_HEADERS),
        ] {
            for stray in 0..3 {
                let mut pairs = named(set);
                pairs.push((other[stray], values[stray]));
                assert_eq!(
                    check_named(&pairs),
                    Err(VerifyError::InvalidSignature),
                    "{pairs:?}"
                );
            }
        }
    }

    /// A header sent twice fails whichever copy is the right one: a proxy or a log that
    /// reads the other copy would see another delivery than the one verified.
    #[test]
    fn a_repeated_header_fails() {
        let values = [MSG_ID, SENT_TEXT, GOOD];
        for set in [STANDARD_HEADERS, SVIX_HEADERS] {
            for twice in 0..3 {
                for extra in [values[twice], "msg_other", "1649367554", "v1,"] {
                    for first in [true, false] {
                        let mut pairs = named(set);
                        if first {
                            pairs.push((set[twice], extra));
                        } else {
                            pairs.insert(0, (set[twice], extra));
                        }
                        assert_eq!(
                            check_named(&pairs),
                            Err(VerifyError::InvalidSignature),
                            "{pairs:?}"
                        );
                    }
                }
            }
        }
    }

    /// Only the two sets' exact names count; look-alikes are unknown headers, so the
    /// delivery has no signature at all.
    #[test]
    fn look_alike_header_names_are_not_aliases() {
        for set in [
            ["svix_id", "svix_timestamp", "svix_signature"],
            ["x-svix-id", "x-svix-timestamp", "x-svix-signature"],
            ["svix-msg-id", "svix-msg-timestamp", "svix-msg-signature"],
            ["webhook_id", "webhook_timestamp", "webhook_signature"],
            [
                "svix-webhook-id",
                "svix-webhook-timestamp",
                "svix-webhook-signature",
            ],
        ] {
            assert_eq!(
                check_named(&named(set)),
                Err(VerifyError::InvalidSignature),
                "{set:?}"
            );
        }
        // A look-alike next to a genuine set is ignored like any other header.
        let mut pairs = named(SVIX_HEADERS);
        pairs.push(("webhook_id", "msg_other"));
        assert!(check_named(&pairs).is_ok());
    }

    #[test]
    fn missing_empty_or_non_utf8_headers_fail() {
        for set in [STANDARD_HEADERS, SVIX_HEADERS] {
            missing_empty_or_non_utf8_headers_fail_in(set);
        }
    }

    fn missing_empty_or_non_utf8_headers_fail_in([id, timestamp, signature]: HeaderSet) {
        let full = [(id, MSG_ID), (timestamp, SENT_TEXT), (signature, GOOD)];
        let v = verifier(Scheme::StandardWebhooks, &[SECRET]);
        for skip in 0..full.len() {
            let partial: Vec<_> = full
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, h)| *h)
                .collect();
            assert_eq!(
                v.verify(&headers(&partial), BODY, at(SENT)),
                Err(VerifyError::InvalidSignature)
            );
            let mut emptied = full;
            emptied[skip].1 = "";
            assert_eq!(
                v.verify(&headers(&emptied), BODY, at(SENT)),
                Err(VerifyError::InvalidSignature)
            );
        }
        let mut latin1 = headers(&full);
        let value = http::HeaderValue::from_bytes(b"v1,tZ1I4\xe9").expect("obs-text is allowed");
        latin1.insert(signature, value);
        assert_eq!(
            v.verify(&latin1, BODY, at(SENT)),
            Err(VerifyError::InvalidSignature)
        );
    }

    proptest! {
        /// Whatever the key, body and time, a delivery signed as a sender signs it verifies
        /// under either set of names, with its id, and fails with the names mixed.
        #[test]
        fn either_set_verifies_and_mixed_sets_fail(
            key in proptest::collection::vec(any::<u8>(), 1..64),
            body in proptest::collection::vec(any::<u8>(), 0..256),
            now in 0i64..4_102_444_800,
            mask in 0usize..8,
        ) {
            let secret = format!("whsec_{}", STANDARD.encode(&key));
            let v = verifier(Scheme::StandardWebhooks, &[&secret]);
            let signed = v.sign(&body, at(now));
            let pairs: Vec<(&str, &str)> = signed
                .iter()
                .enumerate()
                .map(|(i, (_, value))| {
                    let set = if mask & (1 << i) == 0 { STANDARD_HEADERS } else { SVIX_HEADERS };
                    (set[i], value.as_str())
                })
                .collect();
            let result = v.verify(&headers(&pairs), &body, at(now));
            if mask == 0 || mask == 7 {
                prop_assert_eq!(result.map(|v| v.delivery_id), Ok(Some(signed[0].1.clone())));
            } else {
                prop_assert_eq!(result, Err(VerifyError::InvalidSignature));
            }
        }
    }

    #[test]
    fn sign_emits_a_fresh_id_current_timestamp_and_a_verifying_signature() {
        let v = verifier(
            Scheme::StandardWebhooks,
            &[SECRET, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        );
        let signed = v.sign(BODY, at(SENT));
        let names: Vec<&str> = signed.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, [ID, TIMESTAMP, SIGNATURE]);
        assert!(signed[0].1.starts_with("msg_"));
        assert_ne!(signed[0].1, v.sign(BODY, at(SENT))[0].1);
        assert_eq!(signed[1].1, SENT_TEXT);
        let pairs: Vec<(&str, &str)> = signed
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let verified =
            verifier(Scheme::StandardWebhooks, &[SECRET]).verify(&headers(&pairs), BODY, at(SENT));
        assert_eq!(
            verified.expect("own signature").delivery_id.as_deref(),
            Some(signed[0].1.as_str())
        );
    }
}
