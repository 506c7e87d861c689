//! HiBob: `Bob-Signature` is standard base64 of HMAC-SHA512 over the body; no id, no timestamp.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Hmac;
use http::HeaderMap;
use sha2::Sha512;

use super::{VerifyError, hmac_tag, required_header, signed_by_any};

const SIGNATURE: &str = "Bob-Signature";

/// HiBob's setup call, which must get a quick 2xx before any signature or JSON handling.
/// Only the two exact bodies HiBob sends count, so nothing else can skip verification.
pub fn is_hibob_ping(body: &[u8]) -> bool {
    body == b"Ping test" || body == br#"{"text":"Ping test"}"#
}

pub(super) fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Result<(), VerifyError> {
    let received = STANDARD
        .decode(required_header(headers, SIGNATURE)?)
        .map_err(|_| VerifyError::InvalidSignature)?;
    if signed_by_any::<Hmac<Sha512>>(secrets, &[body], &received) {
        Ok(())
    } else {
        Err(VerifyError::InvalidSignature)
    }
}

pub(super) fn sign(body: &[u8], secret: &str) -> Vec<(String, String)> {
    let tag = hmac_tag::<Hmac<Sha512>>(secret.as_bytes(), &[body]);
    vec![(SIGNATURE.to_owned(), STANDARD.encode(tag))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Scheme;
    use crate::verify::tests::{at, headers, verifier};

    // Self-computed with Python: base64(HMAC-SHA512(b"hibob-secret", body)).
    const SECRET: &str = "hibob-secret";
    const BODY: &[u8] = br#"{"type":"employee.left"}"#;
    const B64: &str =
        "1lkM+ot9B2iFofdCw0iPWabhhdjBRiNBwdXLRDy/eM+wacPFZeKNScZSajb4BZNOIy0gxrn1Ay8QHGqyUc5ZfQ==";

    fn check(value: Option<&str>, secrets: &[&str]) -> Result<(), VerifyError> {
        let delivery = headers(&value.map(|v| vec![(SIGNATURE, v)]).unwrap_or_default());
        let verified = verifier(Scheme::HiBob, secrets).verify(&delivery, BODY, at(0));
        verified.map(|verified| assert_eq!(verified.delivery_id, None))
    }

    #[test]
    fn self_computed_vector_verifies() {
        assert_eq!(check(Some(B64), &[SECRET]), Ok(()));
    }

    #[test]
    fn malformed_signatures_fail() {
        let tag = STANDARD.decode(B64).expect("vector is base64");
        let cases = [
            None,
            Some(String::new()),
            Some(hex::encode(&tag)),
            Some(STANDARD.encode(&tag[..63])),
            Some(STANDARD.encode([tag.as_slice(), &[0]].concat())),
            Some(B64.trim_end_matches('=').to_owned()),
            Some(format!("sha512={B64}")),
            Some(STANDARD.encode(hmac_tag::<Hmac<sha2::Sha256>>(SECRET.as_bytes(), &[BODY]))),
        ];
        for case in cases {
            assert_eq!(
                check(case.as_deref(), &[SECRET]),
                Err(VerifyError::InvalidSignature),
                "{case:?}"
            );
        }
    }

    #[test]
    fn rotation_accepts_the_second_secret() {
        assert_eq!(
            check(Some(B64), &["b2xkLWtleQ=="]),
            Err(VerifyError::InvalidSignature)
        );
        assert_eq!(check(Some(B64), &["b2xkLWtleQ==", SECRET]), Ok(()));
    }

    #[test]
    fn sign_matches_the_vector() {
        let signed = verifier(Scheme::HiBob, &[SECRET]).sign(BODY, at(0));
        assert_eq!(signed, [(SIGNATURE.to_owned(), B64.to_owned())]);
    }

    #[test]
    fn only_the_two_exact_ping_bodies_are_pings() {
        assert!(is_hibob_ping(b"Ping test"));
        assert!(is_hibob_ping(br#"{"text":"Ping test"}"#));
        let near_misses: [&[u8]; 6] = [
            b"Ping test\n",
            b" Ping test",
            b"ping test",
            br#"{"text": "Ping test"}"#,
            br#"{"text":"Ping test","x":1}"#,
            b"",
        ];
        for body in near_misses {
            assert!(!is_hibob_ping(body), "{body:?}");
        }
    }
}
