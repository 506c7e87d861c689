//! The safety policy: who must never be touched, and how much may happen per hour. The
//! configuration fills it in; enqueueing and the worker ask it.

use std::collections::BTreeSet;

use super::ids::domain_holds;

/// Who must never be touched, and how much may happen per hour.
#[derive(Clone, Debug)]
pub struct Safety {
    pub protected_emails: BTreeSet<String>,
    pub protected_domains: Vec<String>,
    pub protected_account_ids: BTreeSet<String>,
    pub max_actions_per_hour: u64,
    /// A delivery that would create more jobs than this has all of them wait for approval.
    pub approval_above: u64,
}

/// The defaults of `[safety]`, written only here, as for [`WorkerConfig`].
impl Default for Safety {
    fn default() -> Self {
        Safety {
            protected_emails: BTreeSet::new(),
            protected_domains: Vec::new(),
            protected_account_ids: BTreeSet::new(),
            max_actions_per_hour: 100,
            approval_above: 50,
        }
    }
}

impl Safety {
    /// Why this email must not be touched, if it is protected: listed itself, or in a
    /// protected domain or one of its subdomains.
    pub fn protects_email(&self, email: &str) -> Option<&'static str> {
        let email = email.to_ascii_lowercase();
        if self.protected_emails.contains(&email) {
            return Some("protected_email");
        }
        self.protected_domains
            .iter()
            .any(|protected| domain_holds(protected, &email))
            .then_some("protected_domain")
    }

    pub fn protects_account(&self, account_id: &str) -> bool {
        self.protected_account_ids.contains(account_id)
    }
}
