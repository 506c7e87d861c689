//! Webhook signature verification: one file per sender scheme behind [`Verifier::verify`].
//!
//! Every scheme runs on the raw body bytes before anything parses them, decodes the received
//! MAC in its one canonical encoding (lowercase hex, padded standard base64) and compares it at
//! full length in constant time. Any configured secret may match, so keys can be rotated.
//! [`Verifier::sign`] is the sender's side of the same code, for `offboard sign` and for tests.
//!
//! Over 600 lines, as one concept: the entry point, its error and the options every scheme
//! shares; the schemes themselves are in their own files.

mod bamboohr;
mod body_timestamp;
mod deel;
mod hibob;
mod hub_signature;
mod standard_webhooks;
mod token;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::Mac;
use hmac::digest::KeyInit;
use http::header::AsHeaderName;
use http::{HeaderMap, HeaderName, HeaderValue};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;

pub use body_timestamp::{BodyTimestampError, check_body_timestamp};
pub use hibob::is_hibob_ping;

const SCHEME_NAMES: &str = "standard-webhooks, hub-signature, bamboohr, hibob, deel, token";

/// How a source proves that a delivery comes from its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    StandardWebhooks,
    HubSignature { header: HeaderName },
    BambooHr,
    HiBob,
    Deel,
    Token { header: HeaderName, prefix: String },
}

impl Scheme {
    /// From the config: the scheme name and its optional `header` / `prefix` options.
    /// The error says what to fix.
    pub fn parse(name: &str, header: Option<&str>, prefix: Option<&str>) -> Result<Scheme, String> {
        let scheme = match name {
            "standard-webhooks" => Scheme::StandardWebhooks,
            "hub-signature" => Scheme::HubSignature {
                header: header_name(header.unwrap_or(hub_signature::DEFAULT_HEADER))?,
            },
            "bamboohr" => Scheme::BambooHr,
            "hibob" => Scheme::HiBob,
            "deel" => Scheme::Deel,
            "token" => Scheme::Token {
                header: header_name(header.unwrap_or(token::DEFAULT_HEADER))?,
                prefix: token_prefix(prefix.unwrap_or(token::DEFAULT_PREFIX))?,
            },
            other => {
                return Err(format!(
                    "unknown scheme `{other}`; expected one of: {SCHEME_NAMES}"
                ));
            }
        };
        let takes_header = matches!(scheme, Scheme::HubSignature { .. } | Scheme::Token { .. });
        if header.is_some() && !takes_header {
            return Err(format!("option `header` does not apply to scheme `{name}`"));
        }
        if prefix.is_some() && !matches!(scheme, Scheme::Token { .. }) {
            return Err(format!("option `prefix` does not apply to scheme `{name}`"));
        }
        Ok(scheme)
    }

    /// The scheme's name as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::HubSignature { .. } => "hub-signature",
            Scheme::BambooHr => "bamboohr",
            Scheme::HiBob => "hibob",
            Scheme::Deel => "deel",
            Scheme::Token { .. } => "token",
        }
    }

    /// Whether the sender's signature covers the raw body; `token` only proves the sender
    /// knows the token, so anybody who captured one request can send any body with it.
    pub fn signs_body(&self) -> bool {
        !matches!(self, Scheme::Token { .. })
    }

    /// The header in which the scheme's own sender names a delivery without signing the name
    /// (the one [`Verified::delivery_id`] is read from), if any. A signed id is part of the
    /// signature and is not listed: a source's `id_header` cannot replace it.
    fn unsigned_id_header(&self) -> Option<&'static str> {
        match self {
            Scheme::HubSignature { .. } => Some(hub_signature::ID_HEADER),
            Scheme::StandardWebhooks
            | Scheme::BambooHr
            | Scheme::HiBob
            | Scheme::Deel
            | Scheme::Token { .. } => None,
        }
    }

    /// Whether the delivery id the scheme itself reads ([`Verified::delivery_id`]) is covered
    /// by the signature. Only Standard Webhooks signs `webhook-id`; Jira's
    /// `X-Atlassian-Webhook-Identifier` is a plain header anybody can set.
    pub fn signs_delivery_id(&self) -> bool {
        matches!(self, Scheme::StandardWebhooks)
    }

    /// Checks one secret at config load. The message never contains the secret.
    pub fn validate_secret(&self, secret: &SecretString) -> Result<(), String> {
        let secret = secret.expose_secret();
        if secret.is_empty() {
            return Err(format!("a `{}` secret must not be empty", self.name()));
        }
        // Only Standard Webhooks keys are base64 (after an optional `whsec_`); every other
        // sender uses the secret's bytes as written, e.g. GitHub's "It's a Secret to Everybody".
        if *self != Scheme::StandardWebhooks {
            return Ok(());
        }
        match decode_base64_secret(standard_webhooks::strip_prefix(secret)) {
            Some(_) => Ok(()),
            None => Err(format!(
                "a `{}` secret must be `whsec_` followed by base64, or base64 alone, of at least one byte",
                self.name()
            )),
        }
    }
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("option `header` = {name:?} is not a valid HTTP header name"))
}

fn token_prefix(prefix: &str) -> Result<String, String> {
    // A prefix that cannot appear in a header value would make every delivery fail.
    HeaderValue::from_str(prefix)
        .map(|_| prefix.to_owned())
        .map_err(|_| format!("option `prefix` = {prefix:?} cannot appear in an HTTP header value"))
}

/// Checks deliveries of one source; `Debug` redacts the secrets.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub scheme: Scheme,
    pub secrets: Vec<SecretString>,
    pub tolerance: Duration,
}

/// What a verified delivery tells about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The sender's own delivery id, where the scheme has one.
    pub delivery_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the webhook signature is missing or does not match")]
    InvalidSignature,
    #[error("the webhook timestamp is outside the allowed tolerance")]
    StaleTimestamp,
}

impl VerifyError {
    /// Stable machine-readable code for API responses.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::InvalidSignature => "invalid_signature",
            VerifyError::StaleTimestamp => "stale_timestamp",
        }
    }
}

impl Verifier {
    /// Verifies a delivery on its raw body bytes; any of the secrets may match.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Verified, VerifyError> {
        // An empty secret is an HMAC key or token that anybody can use, so it never matches.
        let secrets: Vec<&str> = self
            .secrets
            .iter()
            .map(|secret| secret.expose_secret())
            .filter(|secret| !secret.is_empty())
            .collect();
        let unidentified = Verified { delivery_id: None };
        match &self.scheme {
            Scheme::StandardWebhooks => {
                standard_webhooks::verify(headers, body, &secrets, self.tolerance, now)
            }
            Scheme::HubSignature { header } => {
                hub_signature::verify(headers, header, body, &secrets)
            }
            Scheme::BambooHr => bamboohr::verify(headers, body, &secrets, self.tolerance, now)
                .map(|()| unidentified),
            Scheme::HiBob => hibob::verify(headers, body, &secrets).map(|()| unidentified),
            Scheme::Deel => deel::verify(headers, body, &secrets).map(|()| unidentified),
            Scheme::Token { header, prefix } => {
                token::verify(headers, header, prefix, &secrets).map(|()| unidentified)
            }
        }
    }

    /// The headers a genuine sender would attach to `body` at `now`, signed with the first
    /// secret. Without a usable secret the headers are produced but never verify.
    pub fn sign(&self, body: &[u8], now: DateTime<Utc>) -> Vec<(String, String)> {
        let secret = self
            .secrets
            .first()
            .map(|secret| secret.expose_secret())
            .unwrap_or_default();
        match &self.scheme {
            Scheme::StandardWebhooks => standard_webhooks::sign(body, secret, now),
            Scheme::HubSignature { header } => hub_signature::sign(header, body, secret),
            Scheme::BambooHr => bamboohr::sign(body, secret, now),
            Scheme::HiBob => hibob::sign(body, secret),
            Scheme::Deel => deel::sign(body, secret),
            Scheme::Token { header, prefix } => token::sign(header, prefix, secret),
        }
    }

    /// [`Verifier::sign`] for a source that reads its delivery id from `id_header`: its sender
    /// names each delivery there. The scheme's own unsigned id header, which such a source does
    /// not read, is renamed to it; a scheme without one gets a fresh id added. Otherwise
    /// `offboard sign` would print an id under a header the source ignores.
    pub fn sign_with_id_header(
        &self,
        body: &[u8],
        now: DateTime<Utc>,
        id_header: Option<&HeaderName>,
    ) -> Vec<(String, String)> {
        let mut headers = self.sign(body, now);
        let Some(id_header) = id_header else {
            return headers;
        };
        let named = |wanted: &str| {
            headers
                .iter()
                .position(|(name, _)| name.eq_ignore_ascii_case(wanted))
        };
        if named(id_header.as_str()).is_some() {
            return headers;
        }
        match self.scheme.unsigned_id_header().and_then(named) {
            Some(own) => headers[own].0 = id_header.as_str().to_owned(),
            None => headers.push((id_header.as_str().to_owned(), random_id())),
        }
        headers
    }
}

/// The value of a header the scheme requires; missing, empty or non-UTF-8 fails verification.
fn required_header(headers: &HeaderMap, name: impl AsHeaderName) -> Result<&str, VerifyError> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .ok_or(VerifyError::InvalidSignature)
}

fn hmac_tag<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC pads or hashes keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Whether `received` is the MAC of `parts` under any of the secrets (their UTF-8 bytes as keys).
fn signed_by_any<M: Mac + KeyInit>(secrets: &[&str], parts: &[&[u8]], received: &[u8]) -> bool {
    secrets
        .iter()
        .any(|secret| tag_matches(&hmac_tag::<M>(secret.as_bytes(), parts), received))
}

/// Constant time over the bytes; only a length mismatch, which is public anyway, returns early.
fn tag_matches(expected: &[u8], received: &[u8]) -> bool {
    expected.ct_eq(received).into()
}

/// Lowercase only: the senders emit lowercase, and with one accepted spelling per MAC any
/// change to the header's characters is a different (and so failing) signature.
fn decode_lower_hex(encoded: &str) -> Option<Vec<u8>> {
    let lowercase = encoded
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if lowercase {
        hex::decode(encoded).ok()
    } else {
        None
    }
}

/// Secrets come from people and tools that pad or not and use either alphabet; a string valid
/// under several of these engines decodes to the same bytes under each.
fn decode_base64_secret(encoded: &str) -> Option<Vec<u8>> {
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(encoded).ok())
        .filter(|key| !key.is_empty())
}

/// Unix seconds written as plain ASCII digits; signs, spaces and fractions are not timestamps.
fn parse_unix_seconds(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Within `tolerance` of `now` in either direction: senders' clocks run fast as well as slow.
fn is_fresh(sent_unix: i64, now: DateTime<Utc>, tolerance: Duration) -> bool {
    now.timestamp().abs_diff(sent_unix) <= tolerance.as_secs()
}

/// A fresh random delivery id body: 26 alphanumerics, about 154 bits.
fn random_id() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(26)
        .map(char::from)
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(super) fn at(unix: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(unix, 0).expect("timestamp in chrono's range")
    }

    pub(super) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("test header name");
            map.append(
                name,
                HeaderValue::from_str(value).expect("test header value"),
            );
        }
        map
    }

    pub(super) fn verifier(scheme: Scheme, secrets: &[&str]) -> Verifier {
        Verifier {
            scheme,
            secrets: secrets
                .iter()
                .map(|secret| SecretString::from(*secret))
                .collect(),
            tolerance: Duration::from_secs(300),
        }
    }

    const ALL: [&str; 6] = [
        "standard-webhooks",
        "hub-signature",
        "bamboohr",
        "hibob",
        "deel",
        "token",
    ];

    /// With `id_header`, every scheme's signed headers name the delivery under that header,
    /// once, and still verify; Jira's own id header is no longer printed.
    #[test]
    fn sign_with_id_header_names_the_delivery_under_the_sources_header() {
        let id_header = HeaderName::from_static("x-request-id");
        let body = br#"{"email":"a@example.com"}"#;
        let now = at(1_700_000_000);
        for name in ALL {
            let scheme = Scheme::parse(name, None, None).unwrap();
            let verifier = verifier(scheme, &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
            let signed = verifier.sign_with_id_header(body, now, Some(&id_header));
            let ids: Vec<&String> = signed
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("X-Request-Id"))
                .map(|(_, value)| value)
                .collect();
            assert_eq!(ids.len(), 1, "{name}: {signed:?}");
            assert!(!ids[0].is_empty(), "{name}");
            assert!(
                !signed
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(hub_signature::ID_HEADER)),
                "{name}: {signed:?}"
            );
            let pairs: Vec<(&str, &str)> = signed
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            assert!(
                verifier.verify(&headers(&pairs), body, now).is_ok(),
                "{name}: {signed:?}"
            );
            assert_eq!(
                verifier.sign_with_id_header(body, now, None).len(),
                verifier.sign(body, now).len(),
                "{name}: without id_header the scheme's own headers"
            );
        }
    }

    #[test]
    fn parse_round_trips_every_name_with_defaults() {
        for name in ALL {
            let scheme = Scheme::parse(name, None, None).expect(name);
            assert_eq!(scheme.name(), name);
        }
        assert_eq!(
            Scheme::parse("hub-signature", None, None),
            Ok(Scheme::HubSignature {
                header: HeaderName::from_static("x-hub-signature")
            })
        );
        assert_eq!(
            Scheme::parse("token", None, None),
            Ok(Scheme::Token {
                header: HeaderName::from_static("authorization"),
                prefix: "Bearer ".to_owned()
            })
        );
    }

    #[test]
    fn parse_takes_header_and_prefix_options() {
        assert_eq!(
            Scheme::parse("hub-signature", Some("X-Hub-Signature-256"), None),
            Ok(Scheme::HubSignature {
                header: HeaderName::from_static("x-hub-signature-256")
            })
        );
        assert_eq!(
            Scheme::parse("token", Some("X-Okta-Token"), Some("")),
            Ok(Scheme::Token {
                header: HeaderName::from_static("x-okta-token"),
                prefix: String::new()
            })
        );
    }

    #[test]
    fn parse_rejects_unknown_names_listing_the_valid_ones() {
        let message = Scheme::parse("github", None, None).expect_err("unknown");
        assert!(message.contains("github"), "{message}");
        for name in ALL {
            assert!(message.contains(name), "{message}");
        }
    }

    #[test]
    fn parse_rejects_options_the_scheme_does_not_take() {
        for name in ["standard-webhooks", "bamboohr", "hibob", "deel"] {
            let message = Scheme::parse(name, Some("X-Sig"), None).expect_err(name);
            assert!(
                message.contains("header") && message.contains(name),
                "{message}"
            );
            let message = Scheme::parse(name, None, Some("Token ")).expect_err(name);
            assert!(
                message.contains("prefix") && message.contains(name),
                "{message}"
            );
        }
        let message = Scheme::parse("hub-signature", None, Some("sha256=")).expect_err("prefix");
        assert!(message.contains("prefix"), "{message}");
    }

    #[test]
    fn parse_rejects_invalid_header_names_and_prefixes() {
        for bad in ["", "X Sig", "X-Sig:", "Ä"] {
            assert!(
                Scheme::parse("hub-signature", Some(bad), None).is_err(),
                "{bad:?}"
            );
            assert!(Scheme::parse("token", Some(bad), None).is_err(), "{bad:?}");
        }
        assert!(Scheme::parse("token", None, Some("Bearer\n")).is_err());
    }

    #[test]
    fn validate_secret_accepts_base64_and_whsec() {
        let sw = Scheme::StandardWebhooks;
        for secret in [
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "c2VjcmV0LQ",
            "_-_-",
        ] {
            assert_eq!(
                sw.validate_secret(&SecretString::from(secret)),
                Ok(()),
                "{secret}"
            );
        }
        // Every other scheme keys its HMAC with the secret's bytes as written.
        for name in ALL.iter().filter(|n| **n != "standard-webhooks") {
            let scheme = Scheme::parse(name, None, None).expect(name);
            for secret in ["It's a Secret to Everybody", "c2VjcmV0", "whsec_x"] {
                assert_eq!(
                    scheme.validate_secret(&SecretString::from(secret)),
                    Ok(()),
                    "{name} {secret}"
                );
            }
        }
    }

    #[test]
    fn validate_secret_rejects_empty_and_non_base64_without_echoing_it() {
        for name in ALL {
            let scheme = Scheme::parse(name, None, None).expect(name);
            let message = scheme
                .validate_secret(&SecretString::from(""))
                .expect_err(name);
            assert!(message.contains(name), "{message}");
        }
        assert!(
            Scheme::StandardWebhooks
                .validate_secret(&SecretString::from("whsec_"))
                .is_err()
        );
        for secret in ["It's a Secret to Everybody", "not base64!", "Q"] {
            let message = Scheme::StandardWebhooks
                .validate_secret(&SecretString::from(secret))
                .expect_err(secret);
            assert!(!message.contains(secret), "{message}");
        }
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(VerifyError::InvalidSignature.code(), "invalid_signature");
        assert_eq!(VerifyError::StaleTimestamp.code(), "stale_timestamp");
    }

    #[test]
    fn verifier_debug_redacts_secrets() {
        let debug = format!("{:?}", verifier(Scheme::Deel, &["c3VwZXItc2VjcmV0"]));
        assert!(!debug.contains("c3VwZXItc2VjcmV0"), "{debug}");
    }

    #[test]
    fn no_secrets_means_nothing_verifies() {
        for name in ALL {
            let scheme = Scheme::parse(name, None, None).expect(name);
            let signed = verifier(scheme.clone(), &[]).sign(b"{}", at(1_700_000_000));
            let pairs: Vec<(&str, &str)> = signed
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let result = verifier(scheme, &[]).verify(&headers(&pairs), b"{}", at(1_700_000_000));
            assert_eq!(result, Err(VerifyError::InvalidSignature), "{name}");
        }
    }

    /// A scheme, a secret it accepts, and which signed headers authenticate the delivery.
    fn scheme_case(index: usize, key: &[u8]) -> (Scheme, String, &'static [&'static str], bool) {
        let secret = base64::engine::general_purpose::STANDARD.encode(key);
        match index {
            0 => (
                Scheme::StandardWebhooks,
                format!("whsec_{secret}"),
                &["webhook-id", "webhook-timestamp", "webhook-signature"],
                true,
            ),
            1 => (
                Scheme::parse("hub-signature", None, None).expect("default"),
                secret,
                &["x-hub-signature"],
                true,
            ),
            2 => (
                Scheme::BambooHr,
                secret,
                &["X-BambooHR-Signature", "X-BambooHR-Timestamp"],
                true,
            ),
            3 => (Scheme::HiBob, secret, &["Bob-Signature"], true),
            4 => (Scheme::Deel, secret, &["x-deel-signature"], true),
            _ => (
                Scheme::parse("token", None, None).expect("default"),
                secret,
                &["authorization"],
                false,
            ),
        }
    }

    fn header_map(pairs: &[(String, Vec<u8>)]) -> Option<HeaderMap> {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            map.append(name, HeaderValue::from_bytes(value).ok()?);
        }
        Some(map)
    }

    /// Bytes a header value may hold: visible ASCII, space, tab and obs-text.
    fn header_value_bytes() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')];
        let arbitrary = proptest::collection::vec(byte, 0..120);
        let prefixes = prop_oneof![
            Just(&b""[..]),
            Just(&b"v1,"[..]),
            Just(&b"v1,AAAA v1,"[..]),
            Just(&b"sha256="[..]),
            Just(&b"Bearer "[..]),
            Just(&b"17000000"[..]),
        ];
        (prefixes, arbitrary).prop_map(|(prefix, tail)| [prefix, tail.as_slice()].concat())
    }

    const ALL_HEADERS: [&str; 13] = [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-id",
        "svix-timestamp",
        "svix-signature",
        "x-hub-signature",
        "x-atlassian-webhook-identifier",
        "x-bamboohr-signature",
        "x-bamboohr-timestamp",
        "bob-signature",
        "x-deel-signature",
        "authorization",
    ];

    proptest! {
        #[test]
        fn signed_deliveries_verify_and_any_bit_flip_fails(
            index in 0usize..6,
            key in proptest::collection::vec(any::<u8>(), 1..64),
            body in proptest::collection::vec(any::<u8>(), 0..256),
            now in 0i64..4_102_444_800,
            flip_at in any::<usize>(),
            bit in 0u8..8,
        ) {
            let (scheme, secret, authenticated, body_signed) = scheme_case(index, &key);
            let v = verifier(scheme, &[&secret]);
            let signed: Vec<(String, Vec<u8>)> =
                v.sign(&body, at(now)).into_iter().map(|(n, val)| (n, val.into_bytes())).collect();
            let delivery = header_map(&signed).expect("sign emits valid headers");
            let verified = v.verify(&delivery, &body, at(now)).expect("own signature verifies");
            if let Some(id) = verified.delivery_id {
                prop_assert!(signed.iter().any(|(_, value)| value == id.as_bytes()));
            }

            let mut tampered_headers = signed.clone();
            let mut tampered_body = body.clone();
            let mut targets: Vec<&mut Vec<u8>> = tampered_headers
                .iter_mut()
                .filter(|(name, _)| authenticated.iter().any(|a| a.eq_ignore_ascii_case(name)))
                .map(|(_, value)| value)
                .collect();
            prop_assert_eq!(targets.len(), authenticated.len());
            if body_signed {
                targets.push(&mut tampered_body);
            }
            let total: usize = targets.iter().map(|t| t.len()).sum();
            let mut offset = flip_at % total;
            for target in targets {
                if let Some(byte) = target.get_mut(offset) {
                    *byte ^= 1 << bit;
                    break;
                }
                offset -= target.len();
            }
            let tampered = header_map(&tampered_headers);
            prop_assume!(tampered.is_some());
            let tampered = tampered.expect("checked above");
            prop_assert!(v.verify(&tampered, &tampered_body, at(now)).is_err());
        }

        #[test]
        fn hostile_headers_and_bodies_never_panic(
            values in proptest::collection::vec(proptest::option::of(header_value_bytes()), ALL_HEADERS.len()),
            body in proptest::collection::vec(any::<u8>(), 0..256),
            now in any::<i64>(),
            tolerance in any::<u64>(),
        ) {
            let pairs: Vec<(String, Vec<u8>)> = ALL_HEADERS
                .iter()
                .zip(values)
                .filter_map(|(name, value)| value.map(|value| ((*name).to_owned(), value)))
                .collect();
            let delivery = header_map(&pairs).expect("strategy yields valid header values");
            let now = DateTime::from_timestamp(now, 0).unwrap_or_default();
            for index in 0..6 {
                let (scheme, secret, _, _) = scheme_case(index, b"key");
                let mut v = verifier(scheme, &[&secret, "c2Vjb25k"]);
                v.tolerance = Duration::from_secs(tolerance);
                let _ = v.verify(&delivery, &body, now);
            }
        }
    }
}
