//! What pseudonymizing one person makes of their records (README, "Proof for auditors",
//! "Personal data has an end"), decided in Rust; the store reads the rows and writes the
//! result in one transaction.

use super::person::{Naming, replace};
use super::pseudonym::Pseudonyms;

/// How one person's records are rewritten. The store (src/store/chain.rs) reads the rows
/// and writes what this returns.
pub struct Rewrite<'a> {
    email: &'a str,
    pseudonym: String,
    /// Every account id the person's records name, longer first, so that an id inside
    /// another is replaced whole.
    account_ids: Vec<String>,
    pseudonyms: &'a Pseudonyms,
}

impl<'a> Rewrite<'a> {
    pub fn new(
        email: &'a str,
        mut account_ids: Vec<String>,
        pseudonyms: &'a Pseudonyms,
    ) -> Rewrite<'a> {
        account_ids.sort();
        account_ids.dedup();
        account_ids.sort_by_key(|id| std::cmp::Reverse(id.len()));
        Rewrite {
            email,
            pseudonym: pseudonyms.email(email),
            account_ids,
            pseudonyms,
        }
    }

    pub fn email(&self) -> &str {
        self.email
    }

    pub fn pseudonym(&self) -> &str {
        &self.pseudonym
    }

    pub fn account_id(&self, id: Option<&str>) -> Option<String> {
        id.map(|id| self.pseudonyms.account_id(id))
    }

    /// `text` with the email and every account id of the person replaced: for the columns
    /// the chain does not hash.
    pub fn scrub(&self, text: &str) -> String {
        let naming = |account_id| Naming {
            email: self.email,
            account_id,
        };
        let mut out = replace(text, naming(None), &self.pseudonym, "", false);
        for id in &self.account_ids {
            let p_account = self.pseudonyms.account_id(id);
            out = replace(&out, naming(Some(id)), &self.pseudonym, &p_account, false);
        }
        out
    }

    pub fn scrub_optional(&self, text: Option<&str>) -> Option<String> {
        text.map(|text| self.scrub(text))
    }

    /// An event's new actor, detail and `chain_account_id`, or `None` when it does not name
    /// the person. Only the names its canonical content hashes as tokens are replaced: the
    /// job's email, and the account id it was sealed with (an unsealed event: its job's,
    /// pseudonymized in the same transaction, which the sealer will read).
    pub fn event(&self, event: &EventText) -> Option<EventText> {
        let account = if event.sealed {
            event.chain_account_id.as_deref()
        } else {
            event.job_account_id.as_deref()
        };
        let naming = Naming {
            email: self.email,
            account_id: account,
        };
        let p_account = self.account_id(account).unwrap_or_default();
        let rewritten = EventText {
            actor: replace(&event.actor, naming, &self.pseudonym, &p_account, false),
            detail: replace(&event.detail, naming, &self.pseudonym, &p_account, false),
            chain_account_id: self.account_id(event.chain_account_id.as_deref()),
            ..event.clone()
        };
        (rewritten != *event).then_some(rewritten)
    }
}

/// The columns of an audit event a pseudonymization may rewrite, and what decides how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventText {
    pub id: i64,
    pub sealed: bool,
    pub actor: String,
    pub detail: String,
    pub chain_account_id: Option<String>,
    pub job_account_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn event(sealed: bool, detail: &str) -> EventText {
        EventText {
            id: 1,
            sealed,
            actor: "worker:a".into(),
            detail: detail.into(),
            chain_account_id: sealed.then(|| "acc-old".to_owned()),
            job_account_id: Some("acc-new".into()),
        }
    }

    #[test]
    fn an_event_loses_only_the_names_its_chain_hashes_as_tokens() {
        let pseudonyms = Pseudonyms::new(SecretString::from("k".repeat(32)));
        let rewrite = Rewrite::new(
            "jane@example.com",
            vec!["acc-new".into(), "acc-old".into(), "acc-new".into()],
            &pseudonyms,
        );
        let sealed = rewrite
            .event(&event(true, "JANE@example.com: acc-old, acc-new"))
            .expect("rewritten");
        let (p_old, p_new) = (
            pseudonyms.account_id("acc-old"),
            pseudonyms.account_id("acc-new"),
        );
        assert_eq!(
            sealed.detail,
            format!("{}: {p_old}, acc-new", rewrite.pseudonym())
        );
        assert_eq!(sealed.chain_account_id, Some(p_old));
        let unsealed = rewrite.event(&event(false, "acc-new")).expect("rewritten");
        assert_eq!(unsealed.detail, p_new);
        assert_eq!(rewrite.event(&event(false, "nothing personal")), None);
        assert_eq!(
            rewrite.scrub("jane@example.com acc-old acc-new"),
            format!(
                "{} {} {}",
                rewrite.pseudonym(),
                pseudonyms.account_id("acc-old"),
                pseudonyms.account_id("acc-new")
            )
        );
    }
}
