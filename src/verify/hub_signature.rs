//! GitHub-style `sha256=<hex>` signatures, as sent by Jira admin webhooks (`X-Hub-Signature`)
//! and GitHub (`X-Hub-Signature-256`). Nothing but the body is signed.

use hmac::Hmac;
use http::{HeaderMap, HeaderName};
use sha2::Sha256;

use super::{
    Verified, VerifyError, decode_lower_hex, hmac_tag, random_id, required_header, signed_by_any,
};

pub(super) const DEFAULT_HEADER: &str = "X-Hub-Signature";
/// Jira's delivery id. It is not signed, so it names a redelivery only together with the same
/// body (`Scheme::signs_delivery_id`).
pub(super) const ID_HEADER: &str = "X-Atlassian-Webhook-Identifier";
/// `sha1=` (GitHub's legacy header) is deliberately not accepted.
const ALGORITHM_PREFIX: &str = "sha256=";

pub(super) fn verify(
    headers: &HeaderMap,
    header: &HeaderName,
    body: &[u8],
    secrets: &[&str],
) -> Result<Verified, VerifyError> {
    let received = required_header(headers, header)?
        .strip_prefix(ALGORITHM_PREFIX)
        .and_then(decode_lower_hex)
        .ok_or(VerifyError::InvalidSignature)?;
    if !signed_by_any::<Hmac<Sha256>>(secrets, &[body], &received) {
        return Err(VerifyError::InvalidSignature);
    }
    let delivery_id = headers
        .get(ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    Ok(Verified { delivery_id })
}

pub(super) fn sign(header: &HeaderName, body: &[u8], secret: &str) -> Vec<(String, String)> {
    let tag = hmac_tag::<Hmac<Sha256>>(secret.as_bytes(), &[body]);
    vec![
        (
            header.as_str().to_owned(),
            format!("{ALGORITHM_PREFIX}{}", hex::encode(tag)),
        ),
        (ID_HEADER.to_owned(), random_id()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Scheme;
    use crate::verify::tests::{at, headers, verifier};

    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_BODY: &[u8] = b"Hello, World!";
    const GITHUB_HEX: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn scheme(header: &str) -> Scheme {
        Scheme::parse("hub-signature", Some(header), None).expect("valid header")
    }

    fn check(header: &str, value: &str, secrets: &[&str]) -> Result<Verified, VerifyError> {
        let delivery = headers(&[(header, value)]);
        verifier(scheme("X-Hub-Signature-256"), secrets).verify(&delivery, GITHUB_BODY, at(0))
    }

    #[test]
    fn github_vector_verifies() {
        let verified = check(
            "X-Hub-Signature-256",
            &format!("sha256={GITHUB_HEX}"),
            &[GITHUB_SECRET],
        );
        assert_eq!(verified, Ok(Verified { delivery_id: None }));
    }

    #[test]
    fn default_header_is_jiras_and_yields_the_atlassian_identifier() {
        let jira = Scheme::parse("hub-signature", None, None).expect("default");
        let delivery = headers(&[
            ("X-Hub-Signature", &format!("sha256={GITHUB_HEX}")),
            (ID_HEADER, "42-abc"),
        ]);
        let verified = verifier(jira, &[GITHUB_SECRET]).verify(&delivery, GITHUB_BODY, at(0));
        assert_eq!(
            verified.expect("valid").delivery_id.as_deref(),
            Some("42-abc")
        );
    }

    #[test]
    fn signature_in_another_header_fails() {
        let result = check(
            "X-Hub-Signature",
            &format!("sha256={GITHUB_HEX}"),
            &[GITHUB_SECRET],
        );
        assert_eq!(result, Err(VerifyError::InvalidSignature));
    }

    #[test]
    fn malformed_signatures_fail() {
        let tag = hex::decode(GITHUB_HEX).expect("vector is hex");
        let cases = [
            format!("sha1={GITHUB_HEX}"),
            format!("SHA256={GITHUB_HEX}"),
            GITHUB_HEX.to_owned(),
            format!("sha256={}", GITHUB_HEX.to_uppercase()),
            format!("sha256={}", &GITHUB_HEX[..62]),
            format!("sha256={GITHUB_HEX}00"),
            format!("sha256={}", &GITHUB_HEX[..63]),
            format!(
                "sha256={}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &tag)
            ),
            format!("sha256= {GITHUB_HEX}"),
            "sha256=".to_owned(),
            String::new(),
        ];
        for case in cases {
            assert_eq!(
                check("X-Hub-Signature-256", &case, &[GITHUB_SECRET]),
                Err(VerifyError::InvalidSignature),
                "{case}"
            );
        }
    }

    #[test]
    fn wrong_secret_fails_and_rotation_accepts_the_second() {
        let value = format!("sha256={GITHUB_HEX}");
        assert_eq!(
            check("X-Hub-Signature-256", &value, &["c2VjcmV0"]),
            Err(VerifyError::InvalidSignature)
        );
        assert!(check("X-Hub-Signature-256", &value, &["c2VjcmV0", GITHUB_SECRET]).is_ok());
    }

    #[test]
    fn missing_or_non_utf8_header_fails() {
        let v = verifier(scheme("X-Hub-Signature-256"), &[GITHUB_SECRET]);
        assert_eq!(
            v.verify(&HeaderMap::new(), GITHUB_BODY, at(0)),
            Err(VerifyError::InvalidSignature)
        );
        let mut latin1 = HeaderMap::new();
        let value = http::HeaderValue::from_bytes(b"sha256=\xff").expect("obs-text is allowed");
        latin1.insert("X-Hub-Signature-256", value);
        assert_eq!(
            v.verify(&latin1, GITHUB_BODY, at(0)),
            Err(VerifyError::InvalidSignature)
        );
    }

    #[test]
    fn sign_emits_signature_then_a_fresh_identifier() {
        let v = verifier(scheme("X-Hub-Signature-256"), &[GITHUB_SECRET]);
        let signed = v.sign(GITHUB_BODY, at(0));
        assert_eq!(
            signed[0],
            (
                "x-hub-signature-256".to_owned(),
                format!("sha256={GITHUB_HEX}")
            )
        );
        assert_eq!(signed[1].0, ID_HEADER);
        assert_ne!(signed[1].1, v.sign(GITHUB_BODY, at(0))[1].1);
    }
}
