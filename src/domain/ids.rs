//! A person's email address, the key that ties webhooks, jobs and Atlassian accounts together,
//! and the Atlassian ids a job names (`check_id`).
//!
//! Parsing is deliberately stricter than RFC 5322: quoted local parts, comments, IP-literal
//! domains and non-ASCII addresses never name an Atlassian account, and accepting them would
//! only let a malformed payload reach the worker. Addresses are lower-cased so that one person
//! is one key, whatever casing the HR system used.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A validated, lower-cased email address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Email(String);

/// RFC 5321 limits: 64 bytes before the `@`, 254 for the whole path.
const MAX_LOCAL_LEN: usize = 64;
const MAX_LEN: usize = 254;
const MAX_LABEL_LEN: usize = 63;
/// Printable ASCII that only appears in quoted or commented addresses, which are refused.
const FORBIDDEN: &str = "\"<>(),;:\\[]";

impl Email {
    /// Validates and lower-cases `text`. Surrounding whitespace is an error, not trimmed: a
    /// payload that pads addresses is malformed and should be looked at. The error says why the
    /// address was refused without repeating it, so callers decide how much of it to show.
    pub fn parse(text: &str) -> Result<Email, String> {
        if text.len() > MAX_LEN {
            return Err(format!("longer than {MAX_LEN} bytes"));
        }
        if let Some(bad) = text.chars().find(|&c| !is_allowed(c)) {
            return Err(format!(
                "contains {bad:?}, which is not allowed in an address"
            ));
        }
        let (local, domain) = text.split_once('@').ok_or("missing `@`")?;
        if domain.contains('@') {
            return Err("more than one `@`".into());
        }
        check_local_part(local)?;
        check_domain(domain)?;
        Ok(Email(text.to_ascii_lowercase()))
    }

    /// An address as the store recorded it: validated and lower-cased when it was written.
    pub fn stored(text: String) -> Email {
        Email(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the `@`, lower-cased.
    pub fn domain(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, domain)| domain)
    }
}

/// Read back from a stored answer: checked again, since JSON can say anything.
impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Email::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl PartialEq<str> for Email {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Email {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Read as the address it is, wherever an address is taken as text.
impl std::ops::Deref for Email {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email domain that stands for itself and its subdomains: `example.com` holds
/// `a@example.com` and `a@eu.example.com`, never `a@notexample.com`. Lower-cased; valid
/// exactly when an address at it is. Protected domains and the customer inventory's filter
/// match alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain(String);

impl Domain {
    /// A leading `@` is dropped (`@example.com` is how people often write a domain).
    pub fn parse(text: &str) -> Result<Domain, String> {
        let domain = text.trim_start_matches('@').to_ascii_lowercase();
        if domain.chars().any(|c| !is_allowed(c) || c == '@') {
            return Err("a domain may only contain letters, digits, `-` and `.`".into());
        }
        check_domain(&domain)?;
        Ok(Domain(domain))
    }

    /// An address as the store recorded it: validated and lower-cased when it was written.
    pub fn stored(text: String) -> Email {
        Email(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `email`, in any ASCII casing, is at this domain or one of its subdomains.
    pub fn holds(&self, email: &str) -> bool {
        domain_holds(&self.0, email)
    }
}

/// Whether `email` is at `domain` (lower-case) or one of its subdomains. ASCII case folding
/// only, as everywhere an address is compared (`atlassian::lookup`).
pub fn domain_holds(domain: &str, email: &str) -> bool {
    let Some((_, at)) = email.rsplit_once('@') else {
        return false;
    };
    let at = at.to_ascii_lowercase();
    at == domain
        || at
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// The longest id a job may name (README, "Manual and bulk jobs").
pub const MAX_ID_LEN: usize = 128;

/// An Atlassian account id, as a job records it: the payload's claim, or the account a
/// lookup resolved. A type of its own, so that it is never taken for an email or another id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl AccountId {
    /// An id as the store recorded it, or as Atlassian answered it.
    pub fn stored(text: String) -> AccountId {
        AccountId(text)
    }

    /// An id a payload or a request claims, checked by the one rule for ids (`check_id`).
    pub fn claimed(text: &str) -> Result<AccountId, String> {
        check_id(text)?;
        Ok(AccountId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Read as the id it is, wherever an id is taken as text (a URL segment, a log field).
impl std::ops::Deref for AccountId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for AccountId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for AccountId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The one rule for the Atlassian ids a job names (`account_id`, `group_id`,
/// `service_desk_id`, `organization_id`), wherever they enter: rules, manual requests and
/// imports. At most 128 characters of `[A-Za-z0-9:_.-]`, and not dots only: Atlassian's ids
/// are far shorter and plainer, and an id becomes a URL path segment, where `/`, `%`, a
/// space or a look-alike letter would address another resource, and `.` or `..` a parent.
/// The error says why without repeating the id, which may be huge or hostile.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("is empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("is longer than {MAX_ID_LEN} characters"));
    }
    if let Some(bad) = id
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-')))
    {
        return Err(format!(
            "contains {bad:?}; an id is letters, digits, `:`, `_`, `.` and `-`"
        ));
    }
    if id.bytes().all(|b| b == b'.') {
        return Err("is only dots, which would address another resource".into());
    }
    Ok(())
}

fn is_allowed(c: char) -> bool {
    // `is_ascii_graphic` already excludes whitespace, control characters and non-ASCII.
    c.is_ascii_graphic() && !FORBIDDEN.contains(c)
}

fn check_local_part(local: &str) -> Result<(), String> {
    if local.is_empty() {
        return Err("nothing before the `@`".into());
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err(format!(
            "the part before the `@` is longer than {MAX_LOCAL_LEN} bytes"
        ));
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), String> {
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("the domain needs at least two labels, e.g. example.com".into());
    }
    labels.into_iter().try_for_each(check_label)
}

fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("the domain has an empty label (leading, trailing or double dot)".into());
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "a domain label is longer than {MAX_LABEL_LEN} bytes"
        ));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err("the domain may only contain letters, digits, `-` and `.`".into());
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("a domain label starts or ends with `-`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_domain_holds_itself_and_its_subdomains_only() {
        let domain = Domain::parse("@Example.COM").unwrap();
        assert_eq!(domain.as_str(), "example.com");
        for email in ["a@example.com", "A@EXAMPLE.com", "a@eu.Example.com"] {
            assert!(domain.holds(email), "{email}");
        }
        for email in [
            "a@notexample.com",
            "a@example.com.evil",
            "example.com",
            "a@com",
        ] {
            assert!(!domain.holds(email), "{email}");
        }
        // Only ASCII folds: U+212A KELVIN SIGN is not a `k`.
        assert!(
            !Domain::parse("kelvin.com")
                .unwrap()
                .holds("a@\u{212A}elvin.com")
        );
        for bad in [
            "",
            "com",
            "exa mple.com",
            "a@b.com",
            "example..com",
            "ex\u{e4}mple.com",
        ] {
            assert!(Domain::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn accepts_and_lower_cases_ordinary_addresses() {
        let cases = [
            ("alice@example.com", "alice@example.com", "example.com"),
            (
                "Alice.Smith@Example.COM",
                "alice.smith@example.com",
                "example.com",
            ),
            ("o'brien@example.ie", "o'brien@example.ie", "example.ie"),
            (
                "first+tag@mail.example.co.uk",
                "first+tag@mail.example.co.uk",
                "mail.example.co.uk",
            ),
            ("a@b.c", "a@b.c", "b.c"),
            (
                "x_y-z@sub-domain.example.org",
                "x_y-z@sub-domain.example.org",
                "sub-domain.example.org",
            ),
            ("1234@123.example", "1234@123.example", "123.example"),
            (
                "!#$%&*+/=?^_`{|}~-@example.com",
                "!#$%&*+/=?^_`{|}~-@example.com",
                "example.com",
            ),
        ];
        for (input, stored, domain) in cases {
            let email = Email::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(email.as_str(), stored);
            assert_eq!(email.to_string(), stored);
            assert_eq!(email.domain(), domain);
            assert_eq!(
                serde_json::to_value(&email).unwrap(),
                serde_json::json!(stored)
            );
        }
    }

    #[test]
    fn accepts_the_length_limits_exactly() {
        let local = "a".repeat(64);
        assert!(Email::parse(&format!("{local}@example.com")).is_ok());
        let label = "b".repeat(63);
        assert!(Email::parse(&format!("a@{label}.com")).is_ok());
        let long_domain = format!("{0}.{0}.{0}.{1}.com", "c".repeat(63), "d".repeat(56));
        let at_limit = format!("a@{long_domain}");
        assert_eq!(at_limit.len(), 254);
        assert!(Email::parse(&at_limit).is_ok());
    }

    #[test]
    fn refuses_malformed_addresses_with_a_reason() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_label = format!("a@{}.com", "b".repeat(64));
        let long_total = format!("a@{0}.{0}.{0}.{1}.com", "c".repeat(63), "d".repeat(57));
        let cases: &[(&str, &str)] = &[
            ("", "missing `@`"),
            ("alice", "missing `@`"),
            ("alice@", "two labels"),
            ("@example.com", "nothing before"),
            ("a@b@example.com", "more than one `@`"),
            (" alice@example.com", "' '"),
            ("alice@example.com ", "' '"),
            ("alice@example.com\n", "'\\n'"),
            ("al ice@example.com", "' '"),
            ("al\tice@example.com", "'\\t'"),
            ("\"alice\"@example.com", "'\"'"),
            ("<alice@example.com>", "'<'"),
            ("alice(x)@example.com", "'('"),
            ("a,b@example.com", "','"),
            ("a;b@example.com", "';'"),
            ("a:b@example.com", "':'"),
            ("a\\b@example.com", "'\\\\'"),
            ("alice@[127.0.0.1]", "'['"),
            ("jörg@example.com", "'ö'"),
            ("alice@exämple.com", "'ä'"),
            ("alice@\u{0}example.com", "'\\0'"),
            ("alice@localhost", "two labels"),
            ("alice@example..com", "empty label"),
            ("alice@.example.com", "empty label"),
            ("alice@example.com.", "empty label"),
            ("alice@-example.com", "starts or ends with `-`"),
            ("alice@example-.com", "starts or ends with `-`"),
            ("alice@exa_mple.com", "letters, digits"),
            ("alice@exa!mple.com", "letters, digits"),
            (&long_local, "longer than 64"),
            (&long_label, "longer than 63"),
            (&long_total, "longer than 254"),
        ];
        for (input, reason) in cases {
            let error = Email::parse(input).expect_err(input);
            assert!(
                error.contains(reason),
                "{input:?}: {error:?} should mention {reason:?}"
            );
        }
    }

    #[test]
    fn ids_are_short_and_plain() {
        for good in [
            "5b10ac8d82e05b22cc7d4ef5",
            "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077",
            "qm:1a2b_3.c",
            "10",
            &"a".repeat(128),
        ] {
            assert_eq!(check_id(good), Ok(()), "{good:?}");
        }
        let long = "a".repeat(129);
        for (bad, why) in [
            ("", "empty"),
            (long.as_str(), "longer than 128"),
            ("g/1", "'/'"),
            ("g%2F1", "'%'"),
            ("g 1", "' '"),
            // Cyrillic `а` and fullwidth `ｇ`, look-alikes of `a` and `g`.
            ("g\u{0430}1", "contains"),
            ("\u{FF47}1", "contains"),
            ("g\n", "'\\n'"),
            (".", "dots"),
            ("..", "dots"),
        ] {
            let error = check_id(bad).expect_err(bad);
            assert!(error.contains(why), "{bad:?}: {error}");
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_is_idempotent(text in any::<String>()) {
            if let Ok(email) = Email::parse(&text) {
                prop_assert_eq!(email.as_str(), text.to_ascii_lowercase());
                prop_assert_eq!(Email::parse(email.as_str()), Ok(email.clone()));
            }
        }

        #[test]
        fn plausible_addresses_round_trip(
            text in "[A-Za-z0-9._%+'-]{1,20}@([a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?\\.){1,3}[a-z]{2,6}"
        ) {
            let email = Email::parse(&text).map_err(TestCaseError::fail)?;
            prop_assert_eq!(email.as_str(), text.to_ascii_lowercase());
        }
    }
}
