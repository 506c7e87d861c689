//! BambooHR: `X-BambooHR-Signature` is lowercase hex HMAC-SHA256 over the body followed directly
//! by the `X-BambooHR-Timestamp` header's bytes as received.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::Hmac;
use http::HeaderMap;
use sha2::Sha256;

use super::{
    VerifyError, decode_lower_hex, hmac_tag, is_fresh, parse_unix_seconds, required_header,
    signed_by_any,
};

const SIGNATURE: &str = "X-BambooHR-Signature";
const TIMESTAMP: &str = "X-BambooHR-Timestamp";

pub(super) fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
    tolerance: Duration,
    now: DateTime<Utc>,
) -> Result<(), VerifyError> {
    let received = decode_lower_hex(required_header(headers, SIGNATURE)?)
        .ok_or(VerifyError::InvalidSignature)?;
    let timestamp = required_header(headers, TIMESTAMP)?;
    if !signed_by_any::<Hmac<Sha256>>(secrets, &[body, timestamp.as_bytes()], &received) {
        return Err(VerifyError::InvalidSignature);
    }
    // BambooHR does not document the timestamp's format, so a format we cannot read is still
    // accepted (it is signed); freshness, like the signature first, binds only readable ones.
    match sent_at(timestamp) {
        Some(sent) if !is_fresh(sent, now, tolerance) => Err(VerifyError::StaleTimestamp),
        _ => Ok(()),
    }
}

/// Unix seconds of a timestamp written as unix seconds or RFC 3339.
fn sent_at(timestamp: &str) -> Option<i64> {
    parse_unix_seconds(timestamp).or_else(|| {
        DateTime::parse_from_rfc3339(timestamp)
            .ok()
            .map(|sent| sent.timestamp())
    })
}

pub(super) fn sign(body: &[u8], secret: &str, now: DateTime<Utc>) -> Vec<(String, String)> {
    let timestamp = now.timestamp().to_string();
    let tag = hmac_tag::<Hmac<Sha256>>(secret.as_bytes(), &[body, timestamp.as_bytes()]);
    vec![
        (SIGNATURE.to_owned(), hex::encode(tag)),
        (TIMESTAMP.to_owned(), timestamp),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Scheme;
    use crate::verify::tests::{at, headers, verifier};

    // Self-computed with Python's hmac module: HMAC-SHA256(key, body + b"1700000000").
    const SECRET: &str = "bamboo-private-key";
    const BODY: &[u8] = br#"{"employees":[{"id":"123","changedFields":["Status"]}]}"#;
    const SENT: i64 = 1_700_000_000;
    const SENT_TEXT: &str = "1700000000";
    const HEX: &str = "533ea5299a7f0b442f94e408d5e1c291de6b132860ea8f199bb4dc282df9a916";

    fn check(pairs: &[(&str, &str)], secrets: &[&str], now: i64) -> Result<(), VerifyError> {
        let verified = verifier(Scheme::BambooHr, secrets).verify(&headers(pairs), BODY, at(now));
        verified.map(|verified| assert_eq!(verified.delivery_id, None))
    }

    fn signed_with(timestamp: &str) -> String {
        hex::encode(hmac_tag::<Hmac<Sha256>>(
            SECRET.as_bytes(),
            &[BODY, timestamp.as_bytes()],
        ))
    }

    #[test]
    fn self_computed_vector_verifies() {
        assert_eq!(
            check(&[(SIGNATURE, HEX), (TIMESTAMP, SENT_TEXT)], &[SECRET], SENT),
            Ok(())
        );
    }

    #[test]
    fn timestamp_is_part_of_the_signature() {
        let result = check(
            &[(SIGNATURE, HEX), (TIMESTAMP, "1700000001")],
            &[SECRET],
            SENT,
        );
        assert_eq!(result, Err(VerifyError::InvalidSignature));
    }

    #[test]
    fn missing_or_empty_timestamp_fails() {
        assert_eq!(
            check(&[(SIGNATURE, HEX)], &[SECRET], SENT),
            Err(VerifyError::InvalidSignature)
        );
        let empty = check(
            &[(SIGNATURE, &signed_with("")), (TIMESTAMP, "")],
            &[SECRET],
            SENT,
        );
        assert_eq!(empty, Err(VerifyError::InvalidSignature));
    }

    #[test]
    fn malformed_signatures_fail() {
        let cases = [
            String::new(),
            HEX.to_uppercase(),
            format!("sha256={HEX}"),
            HEX[..62].to_owned(),
            format!("{HEX}00"),
            HEX[..63].to_owned(),
        ];
        for case in cases {
            let result = check(
                &[(SIGNATURE, &case), (TIMESTAMP, SENT_TEXT)],
                &[SECRET],
                SENT,
            );
            assert_eq!(result, Err(VerifyError::InvalidSignature), "{case}");
        }
        assert_eq!(
            check(&[(TIMESTAMP, SENT_TEXT)], &[SECRET], SENT),
            Err(VerifyError::InvalidSignature)
        );
    }

    #[test]
    fn unix_seconds_tolerance_applies_both_ways() {
        let pairs = [(SIGNATURE, HEX), (TIMESTAMP, SENT_TEXT)];
        assert_eq!(check(&pairs, &[SECRET], SENT + 300), Ok(()));
        assert_eq!(check(&pairs, &[SECRET], SENT - 300), Ok(()));
        assert_eq!(
            check(&pairs, &[SECRET], SENT + 301),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            check(&pairs, &[SECRET], SENT - 301),
            Err(VerifyError::StaleTimestamp)
        );
        let forged = [
            (SIGNATURE, &HEX.replace('5', "6")[..]),
            (TIMESTAMP, SENT_TEXT),
        ];
        assert_eq!(
            check(&forged, &[SECRET], SENT + 301),
            Err(VerifyError::InvalidSignature)
        );
    }

    #[test]
    fn rfc3339_timestamps_are_checked_too() {
        let timestamp = "2023-11-14T22:13:20Z";
        let pairs = [
            (SIGNATURE, &signed_with(timestamp)[..]),
            (TIMESTAMP, timestamp),
        ];
        assert_eq!(check(&pairs, &[SECRET], SENT + 300), Ok(()));
        assert_eq!(
            check(&pairs, &[SECRET], SENT - 301),
            Err(VerifyError::StaleTimestamp)
        );
    }

    #[test]
    fn unreadable_timestamps_are_signed_but_not_aged() {
        let timestamp = "Tue, 14 Nov 2023 22:13:20 GMT";
        let pairs = [
            (SIGNATURE, &signed_with(timestamp)[..]),
            (TIMESTAMP, timestamp),
        ];
        assert_eq!(check(&pairs, &[SECRET], SENT + 86_400), Ok(()));
    }

    #[test]
    fn rotation_accepts_the_second_secret() {
        let pairs = [(SIGNATURE, HEX), (TIMESTAMP, SENT_TEXT)];
        assert_eq!(check(&pairs, &["b2xkLWtleQ==", SECRET], SENT), Ok(()));
        assert_eq!(
            check(&pairs, &["b2xkLWtleQ=="], SENT),
            Err(VerifyError::InvalidSignature)
        );
    }

    #[test]
    fn sign_emits_signature_and_current_unix_seconds() {
        let signed = verifier(Scheme::BambooHr, &[SECRET]).sign(BODY, at(SENT));
        assert_eq!(
            signed,
            [
                (SIGNATURE.to_owned(), HEX.to_owned()),
                (TIMESTAMP.to_owned(), SENT_TEXT.to_owned())
            ]
        );
    }
}
