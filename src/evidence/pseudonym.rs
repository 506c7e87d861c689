//! Keyed pseudonyms (README, "Proof for auditors", "Personal data has an end"): the same
//! person keeps the same pseudonym under the same `[evidence] pseudonym_key`, and nobody
//! without the key can tell whose it is, or test a guess.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The domain of every email pseudonym: reserved (RFC 2606), so it never reaches anyone,
/// and a valid address, so the jobs table's checks and `Email::parse` accept it.
pub const PSEUDONYM_DOMAIN: &str = "pseudonym.invalid";
const PREFIX: &str = "pseudonym-";
/// 128 bits of the HMAC: collisions between people stay out of reach.
const HEX_LEN: usize = 32;

/// Makes pseudonyms under one key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Pseudonyms {
    key: SecretString,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms { key: [redacted] }")
    }
}

impl Pseudonyms {
    pub fn new(key: SecretString) -> Pseudonyms {
        Pseudonyms { key }
    }

    fn hmac_hex(&self, input: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(input.as_bytes());
        let digest = mac.finalize().into_bytes();
        hex::encode(digest)[..HEX_LEN].to_owned()
    }

    /// `pseudonym-<HMAC(key, lower-case email)>@pseudonym.invalid`.
    pub fn email(&self, email: &str) -> String {
        if is_pseudonym(email) {
            return email.to_owned();
        }
        format!(
            "{PREFIX}{}@{PSEUDONYM_DOMAIN}",
            self.hmac_hex(&email.to_ascii_lowercase())
        )
    }

    /// `pseudonym-<HMAC(key, "account_id:" + id)>`: kept apart from the emails' inputs, so
    /// an account id that looks like an email gets a pseudonym of its own kind.
    pub fn account_id(&self, id: &str) -> String {
        if id.starts_with(PREFIX) {
            return id.to_owned();
        }
        format!("{PREFIX}{}", self.hmac_hex(&format!("account_id:{id}")))
    }
}

/// Whether an email is a pseudonym already.
pub fn is_pseudonym(email: &str) -> bool {
    email.starts_with(PREFIX) && email.ends_with(&format!("@{PSEUDONYM_DOMAIN}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;

    fn pseudonyms(key: &str) -> Pseudonyms {
        Pseudonyms::new(SecretString::from(key.to_owned()))
    }

    #[test]
    fn the_same_person_keeps_the_same_pseudonym_under_the_same_key() {
        let one = pseudonyms("k1");
        assert_eq!(one.email("Jane@Example.com"), one.email("jane@example.com"));
        assert_ne!(one.email("jane@example.com"), one.email("john@example.com"));
        assert_ne!(
            one.email("jane@example.com"),
            pseudonyms("k2").email("jane@example.com")
        );
        let pseudonym = one.email("jane@example.com");
        assert_eq!(one.email(&pseudonym), pseudonym, "idempotent");
        assert_eq!(Email::parse(&pseudonym).unwrap().as_str(), pseudonym);
        assert!(is_pseudonym(&pseudonym));
    }

    #[test]
    fn account_pseudonyms_differ_from_email_ones_and_are_stable() {
        let p = pseudonyms("k1");
        assert_eq!(p.account_id("5b10"), p.account_id("5b10"));
        assert!(!p.email("a@b.co").starts_with(&p.account_id("a@b.co")));
        assert_eq!(p.account_id(&p.account_id("5b10")), p.account_id("5b10"));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let shown = format!("{:?}", pseudonyms("very-secret-key"));
        assert!(!shown.contains("very-secret-key"), "{shown}");
    }
}
