//! Deel: `x-deel-signature` is lowercase hex HMAC-SHA256 over `POST` followed by the body.

use hmac::Hmac;
use http::HeaderMap;
use sha2::Sha256;

use super::{VerifyError, decode_lower_hex, hmac_tag, required_header, signed_by_any};

const SIGNATURE: &str = "x-deel-signature";
/// Deel signs the request method in front of the body; its webhooks are always POSTs.
const METHOD: &[u8] = b"POST";

pub(super) fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Result<(), VerifyError> {
    let received = decode_lower_hex(required_header(headers, SIGNATURE)?)
        .ok_or(VerifyError::InvalidSignature)?;
    if signed_by_any::<Hmac<Sha256>>(secrets, &[METHOD, body], &received) {
        Ok(())
    } else {
        Err(VerifyError::InvalidSignature)
    }
}

pub(super) fn sign(body: &[u8], secret: &str) -> Vec<(String, String)> {
    let tag = hmac_tag::<Hmac<Sha256>>(secret.as_bytes(), &[METHOD, body]);
    vec![(SIGNATURE.to_owned(), hex::encode(tag))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Scheme;
    use crate::verify::tests::{at, headers, verifier};

    const KEY: &str = "deel-key";
    const BODY: &[u8] = br#"{"data":{}}"#;
    const HEX: &str = "1af303a0c7df12ecb440982b90211347882383849a0bf954c473cf0af931a807";

    fn check(value: Option<&str>, secrets: &[&str]) -> Result<(), VerifyError> {
        let delivery = headers(&value.map(|v| vec![(SIGNATURE, v)]).unwrap_or_default());
        let verified = verifier(Scheme::Deel, secrets).verify(&delivery, BODY, at(0));
        verified.map(|verified| assert_eq!(verified.delivery_id, None))
    }

    #[test]
    fn self_computed_check_verifies() {
        assert_eq!(check(Some(HEX), &[KEY]), Ok(()));
    }

    #[test]
    fn body_without_method_prefix_does_not_verify() {
        let unprefixed = hex::encode(hmac_tag::<Hmac<Sha256>>(KEY.as_bytes(), &[BODY]));
        assert_eq!(
            check(Some(&unprefixed), &[KEY]),
            Err(VerifyError::InvalidSignature)
        );
    }

    #[test]
    fn malformed_signatures_fail() {
        let tag = hex::decode(HEX).expect("vector is hex");
        let cases = [
            None,
            Some(String::new()),
            Some(HEX.to_uppercase()),
            Some(format!("sha256={HEX}")),
            Some(HEX[..62].to_owned()),
            Some(HEX[..63].to_owned()),
            Some(format!("{HEX}00")),
            Some(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                &tag,
            )),
        ];
        for case in cases {
            assert_eq!(
                check(case.as_deref(), &[KEY]),
                Err(VerifyError::InvalidSignature),
                "{case:?}"
            );
        }
    }

    #[test]
    fn rotation_accepts_the_second_secret() {
        assert_eq!(
            check(Some(HEX), &["b2xkLWtleQ=="]),
            Err(VerifyError::InvalidSignature)
        );
        assert_eq!(check(Some(HEX), &["b2xkLWtleQ==", KEY]), Ok(()));
    }

    #[test]
    fn sign_matches_the_check() {
        let signed = verifier(Scheme::Deel, &[KEY]).sign(BODY, at(0));
        assert_eq!(signed, [(SIGNATURE.to_owned(), HEX.to_owned())]);
    }
}
