//! Static token senders (Jira Automation, Personio, Okta, Workday): a configured header holds
//! the prefix followed by the secret, verbatim. The body is not authenticated.

use http::{HeaderMap, HeaderName};
use sha2::{Digest as _, Sha256};

use super::{VerifyError, required_header, tag_matches};

pub(super) const DEFAULT_HEADER: &str = "Authorization";
pub(super) const DEFAULT_PREFIX: &str = "Bearer ";

pub(super) fn verify(
    headers: &HeaderMap,
    header: &HeaderName,
    prefix: &str,
    secrets: &[&str],
) -> Result<(), VerifyError> {
    // Comparing fixed-size digests keeps the comparison constant-time without revealing the
    // token's length through an early return on a length mismatch.
    let received = Sha256::digest(required_header(headers, header)?);
    let matches = secrets.iter().any(|secret| {
        let expected = Sha256::new()
            .chain_update(prefix)
            .chain_update(secret)
            .finalize();
        tag_matches(&expected, &received)
    });
    if matches {
        Ok(())
    } else {
        Err(VerifyError::InvalidSignature)
    }
}

pub(super) fn sign(header: &HeaderName, prefix: &str, secret: &str) -> Vec<(String, String)> {
    vec![(header.as_str().to_owned(), format!("{prefix}{secret}"))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Scheme;
    use crate::verify::tests::{at, headers, verifier};

    const TOKEN: &str = "dG9rZW4tb25l";

    fn check(scheme: Scheme, pairs: &[(&str, &str)], secrets: &[&str]) -> Result<(), VerifyError> {
        let verified = verifier(scheme, secrets).verify(&headers(pairs), b"any body", at(0));
        verified.map(|verified| assert_eq!(verified.delivery_id, None))
    }

    fn bearer() -> Scheme {
        Scheme::parse("token", None, None).expect("defaults")
    }

    #[test]
    fn exact_prefix_and_token_verifies() {
        let value = format!("Bearer {TOKEN}");
        assert_eq!(
            check(bearer(), &[("Authorization", &value)], &[TOKEN]),
            Ok(())
        );
    }

    #[test]
    fn anything_but_the_exact_value_fails() {
        let cases = [
            TOKEN.to_owned(),
            format!("bearer {TOKEN}"),
            format!("Bearer  {TOKEN}"),
            format!("Bearer {TOKEN}x"),
            format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
            "Bearer ".to_owned(),
            String::new(),
        ];
        for case in cases {
            let result = check(bearer(), &[("Authorization", &case)], &[TOKEN]);
            assert_eq!(result, Err(VerifyError::InvalidSignature), "{case}");
        }
        assert_eq!(
            check(bearer(), &[], &[TOKEN]),
            Err(VerifyError::InvalidSignature)
        );
    }

    #[test]
    fn configured_header_and_empty_prefix_take_the_token_verbatim() {
        let personio = Scheme::parse("token", Some("X-Api-Key"), Some("")).expect("valid options");
        assert_eq!(
            check(personio.clone(), &[("x-api-key", TOKEN)], &[TOKEN]),
            Ok(())
        );
        let elsewhere = check(personio, &[("Authorization", TOKEN)], &[TOKEN]);
        assert_eq!(elsewhere, Err(VerifyError::InvalidSignature));
    }

    #[test]
    fn empty_secret_never_matches() {
        assert_eq!(
            check(bearer(), &[("Authorization", "Bearer ")], &[""]),
            Err(VerifyError::InvalidSignature)
        );
    }

    #[test]
    fn rotation_accepts_the_second_secret() {
        let value = format!("Bearer {TOKEN}");
        assert_eq!(
            check(bearer(), &[("Authorization", &value)], &["b2xk", TOKEN]),
            Ok(())
        );
    }

    #[test]
    fn sign_prints_prefix_and_token() {
        let signed = verifier(bearer(), &[TOKEN, "b2xk"]).sign(b"", at(0));
        assert_eq!(
            signed,
            [("authorization".to_owned(), format!("Bearer {TOKEN}"))]
        );
    }
}
