//! What `offboard check` prints: one line per setting, a block per source with its rules,
//! never a secret (the store's URL is shown redacted).

use super::Config;
use crate::domain::Action;
use crate::rules::{ActionSpec, RuleSpec};
use crate::verify::Scheme;

impl Config {
    /// The human summary `offboard check` prints. Never contains a secret.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(format!("config: {}", self.origin));
        line(format!("store: {}", self.database_url.redacted()));
        line(format!("listen: {}", self.listen));
        line(format!(
            "dry run: {}",
            if self.dry_run {
                "yes (targets are resolved, no mutating call is made)"
            } else {
                "NO: actions are live"
            }
        ));
        line(format!(
            "admin API: {}",
            if self.admin_token.is_some() {
                "enabled (admin_token set)"
            } else {
                "disabled (no admin_token: every /api route answers 401)"
            }
        ));
        match &self.atlassian {
            None => line("atlassian: not configured (the worker leaves jobs pending)".into()),
            Some(a) => {
                if let Some(site) = &a.site {
                    line(format!("atlassian site: {} as {}", site.url, site.email));
                }
                if let Some(admin) = &a.admin {
                    line(format!(
                        "atlassian admin: {} (org {}, directory {})",
                        admin.url, admin.org_id, admin.directory_id
                    ));
                }
            }
        }
        let w = &self.worker;
        line(format!(
            "worker: concurrency {}, max_attempts {}, lease {}s, {} requests/s per API family, backoff {}s..{}s",
            w.concurrency,
            w.max_attempts,
            w.lease.as_secs(),
            w.requests_per_second,
            w.backoff_base.as_secs(),
            w.backoff_max.as_secs()
        ));
        let s = &self.safety;
        line(format!(
            "safety: {} protected emails, {} protected domains, {} protected account ids, at most {} actions/hour, \
             approval needed for any delivery of more than {} jobs",
            s.protected_emails.len(),
            s.protected_domains.len(),
            s.protected_account_ids.len(),
            s.max_actions_per_hour,
            s.approval_above
        ));
        if self.sources.is_empty() {
            line("sources: none (every POST /hooks/... answers 404)".into());
        } else {
            line("sources:".into());
        }
        for source in &self.sources {
            let mut freshness = format!("tolerance {}s", source.verifier.tolerance.as_secs());
            if let Some(pointer) = &source.timestamp_pointer {
                freshness.push_str(&format!(" (also for the body's {pointer})"));
            }
            if source.has_unsigned_ids() {
                freshness.push_str(&format!(
                    ", unsigned delivery ids: repeats need the same body, replay window {}",
                    source.replay_window
                ));
            }
            line(format!(
                "  {} ({}, {} secret{}, {freshness}): POST /hooks/{}",
                source.name,
                source.verifier.scheme.name(),
                source.verifier.secrets.len(),
                if source.verifier.secrets.len() == 1 {
                    ""
                } else {
                    "s"
                },
                source.name
            ));
            for rule in &source.rule_summaries {
                line(format!("    rule {rule}"));
            }
        }
        let actions: Vec<&str> = self.actions().into_iter().map(Action::as_str).collect();
        line(format!(
            "actions: {}",
            if actions.is_empty() {
                "none".to_owned()
            } else {
                actions.join(", ")
            }
        ));
        out
    }

    /// Settings that load but leave a known hole, one line each with its key path, for
    /// `check` and the start-up log.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            // Jira signs only the body, so a captured rehire verifies forever: past
            // `replay_window` it would give back access that was taken away again since.
            let body_only = matches!(source.verifier.scheme, Scheme::HubSignature { .. });
            if !body_only || source.timestamp_pointer.is_some() {
                continue;
            }
            let Some(rule) = source.rules.iter().find(|rule| rule.undoes()) else {
                continue;
            };
            warnings.push(format!(
                "sources[{i}].timestamp_pointer: source `{}` has the undo rule `{}` but no \
                 timestamp_pointer, so a delivery captured once and sent again after \
                 replay_window ({}) gives back what was taken away since; set \
                 timestamp_pointer = \"/timestamp\" (Jira admin webhooks) with a \
                 tolerance_seconds that covers the sender's retries",
                source.name,
                rule.name(),
                source.replay_window
            ));
        }
        warnings
    }
}

/// One line for a rule: its name and what it does, written as the operator wrote it.
pub(super) fn summarize_rule(spec: &RuleSpec) -> String {
    if spec.cancel == Some(true) {
        let undo = match (spec.undo, spec.approval) {
            (Some(true), Some(true)) => {
                ", and gives back what was done (the inverses wait for approval)"
            }
            (Some(true), _) => ", and gives back what was done",
            _ => "",
        };
        let also = match spec.undo_sources.as_deref() {
            Some(names) if spec.undo == Some(true) && !names.is_empty() => {
                format!(", also what {} made", names.join(", "))
            }
            _ => String::new(),
        };
        return format!(
            "{}: cancels the person's pending jobs{undo}{also}",
            spec.name
        );
    }
    let actions = spec
        .actions
        .iter()
        .flatten()
        .map(|a| match a {
            ActionSpec::Name(name) => name.clone(),
            ActionSpec::Table(t) => match &t.after {
                Some(after) => format!("{} after {after}", t.action),
                None => t.action.clone(),
            },
        })
        .collect::<Vec<_>>()
        .join(", then ");
    let approval = if spec.approval == Some(true) {
        " (needs approval)"
    } else {
        ""
    };
    format!("{}: {actions}{approval}", spec.name)
}
