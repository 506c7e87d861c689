//! Undo on rehire (README, "Undo on rehire"): what can be given back to a person whose
//! offboarding is called off, worked out from their jobs. Pure: the caller reads the jobs.
//!
//! Only steps that changed something are given back (outcome `done`): a step that found the
//! account already in that state, or nobody, or ran dry, took nothing; a step still running
//! is given back once it ends `done`. Each inverse acts on
//! the account its original recorded, without searching (the search no longer finds a
//! suspended or deactivated account). Inverses run in the reverse order of their originals,
//! one chain per account. An inverse has no inverse, and an original whose inverse was
//! already enqueued (and did not fail or get cancelled) is not given back twice. What a
//! later step made impossible (a removal from the directory, a deletion past its window) is
//! listed as irreversible, not planned.
//!
//! An undo gives back only what its own source created, and what the sources its rule names
//! in `undo_sources` created: an HR rehire does not lift a suspension an admin made by hand
//! for security. A step of another source is listed as irreversible too, with the source
//! that made it, so the operator sees what the rehire left in place and why.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Action, Email, Job, JobState, NewChain, NewStep, Outcome, UndoWindow};

/// A succeeded step that cannot be given back, as the answer lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct Irreversible {
    /// The step's job id.
    pub job: String,
    pub action: Action,
    pub reason: String,
    /// What a hand-over step moved to its successor, by id (`filter:10001`), for an
    /// operator to give back by hand.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
}

/// The inverses to enqueue, and the steps that cannot be undone; and, until the store plans
/// them, the undos a delivery asks for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Undo {
    pub chains: Vec<NewChain>,
    pub irreversible: Vec<Irreversible>,
    /// Undos not planned yet. The store plans them inside the transaction that records the
    /// delivery ([`Undo::plan_asked`]), from the jobs that transaction sees, so that two
    /// rehires of one person never both read the jobs before either records its inverses.
    pub asked: Vec<UndoAsked>,
}

/// An undo a cancel rule asked for, to be planned by the store (see [`plan`]).
#[derive(Clone, Debug, PartialEq)]
pub struct UndoAsked {
    pub email: Email,
    pub rule: String,
    pub approval: bool,
    /// The delivery's own source first, then the rule's `undo_sources`.
    pub sources: Vec<String>,
    /// `[safety] approval_above`, applied again once the inverses are known.
    pub approval_above: u64,
}

impl Undo {
    pub fn extend(&mut self, other: Undo) {
        self.chains.extend(other.chains);
        self.irreversible.extend(other.irreversible);
        self.asked.extend(other.asked);
    }

    /// The people whose jobs planning the asked undos reads.
    pub fn asked_emails(&self) -> impl Iterator<Item = &Email> {
        self.asked.iter().map(|asked| &asked.email)
    }

    /// Plans every asked undo from `jobs` (at least every job of each asked person, as the
    /// store's transaction reads them) at `now`.
    pub fn plan_asked(&mut self, jobs: &[Job], now: DateTime<Utc>) {
        for asked in std::mem::take(&mut self.asked) {
            let sources: Vec<&str> = asked.sources.iter().map(String::as_str).collect();
            let planned = plan(
                jobs,
                &asked.email,
                &asked.rule,
                asked.approval,
                &sources,
                now,
            );
            tracing::info!(
                rule = asked.rule,
                inverses = planned.chains.iter().map(|c| c.steps.len()).sum::<usize>(),
                irreversible = planned.irreversible.len(),
                "undo on rehire"
            );
            self.extend(planned);
        }
    }
}

/// The parameter an inverse carries: the id of the step it gives back. The worker gives
/// back only once that step has ended `done` (a step still running when the rehire came
/// waits for it), so an undo never grants what the step did not take.
pub const UNDOES: &str = "undoes";

/// What to give back to `email`, given every job of that person, at `now`: the steps that one
/// of `sources` created (the delivery's own source first, then the rule's `undo_sources`).
/// The inverses are created by `rule`, waiting for approval when `approval`.
pub fn plan(
    jobs: &[Job],
    email: &Email,
    rule: &str,
    approval: bool,
    sources: &[&str],
    now: DateTime<Utc>,
) -> Undo {
    let mine = || jobs.iter().filter(|job| job.email == email.as_str());
    let mut undone: Vec<&Job> = mine()
        .filter(|job| took_something(job) || still_running(job))
        .filter(|job| !already_given_back(job, jobs))
        .collect();
    // Newest first: the inverses run in the reverse order of their originals. A succeeded
    // job is last updated when it succeeded, a running one when it was claimed.
    undone.sort_by_key(|job| std::cmp::Reverse((job.updated_at, job.id)));
    let deleted_for_good = mine().find(|job| {
        took_something(job)
            && job.action == Action::DeleteAccount
            && matches!(job.action.inverse(), Some((_, UndoWindow::Days(days))) if now - job.updated_at > Duration::days(days))
    });
    let removed_from_directory = |after: &Job| {
        mine().find(|job| {
            took_something(job)
                && job.action == Action::RemoveFromDirectory
                && (job.updated_at, job.id) > (after.updated_at, after.id)
        })
    };
    let mut undo = Undo::default();
    for job in undone {
        let irreversible = |reason: &str| Irreversible {
            job: job.id.to_string(),
            action: job.action,
            reason: reason.to_owned(),
            items: moved_items(job),
        };
        if let Some(reason) = not_ours(job, sources) {
            undo.irreversible.push(irreversible(&reason));
            continue;
        }
        if let Some(reason) = job.action.irreversible_because() {
            undo.irreversible.push(irreversible(reason));
            continue;
        }
        let Some((inverse, window)) = job.action.inverse() else {
            continue;
        };
        if let UndoWindow::Days(days) = window
            && now - job.updated_at > Duration::days(days)
        {
            undo.irreversible.push(irreversible(&format!(
                "its {days}-day window to be undone has passed"
            )));
            continue;
        }
        if let Some(deleted) = deleted_for_good {
            undo.irreversible.push(irreversible(&format!(
                "the account was deleted (job {}) over 14 days ago: nothing can be given back to it",
                deleted.id
            )));
            continue;
        }
        // A directory write needs the account in the directory.
        if inverse.writes_directory()
            && let Some(removed) = removed_from_directory(job)
        {
            undo.irreversible.push(irreversible(&format!(
                "the account was removed from the directory afterwards (job {}): invite it \
                 again, then give this back by hand",
                removed.id
            )));
            continue;
        }
        let (Some(account_id), Some(account_type)) = (&job.account_id, &job.account_type) else {
            undo.irreversible.push(irreversible(if still_running(job) {
                "it was still looking up its account when the rehire came"
            } else {
                "it recorded no account to give back to"
            }));
            continue;
        };
        let mut params = job.params.clone();
        // The inverse acts on the recorded account, never on a vouched-for id.
        params.remove(super::TRUST_ACCOUNT_ID);
        params.insert(UNDOES.to_owned(), job.id.to_string().into());
        let step = NewStep {
            action: inverse,
            params,
            run_at: now,
            lane: super::Lane::Bulk,
        };
        match undo
            .chains
            .iter_mut()
            .find(|chain| chain.account_id.as_deref() == Some(account_id))
        {
            Some(chain) => chain.steps.push(step),
            None => undo.chains.push(NewChain {
                email: email.clone(),
                account_id: Some(account_id.clone()),
                account_type: Some(account_type.clone()),
                rule: rule.to_owned(),
                approval,
                steps: vec![step],
            }),
        }
    }
    undo
}

/// Why this undo leaves `job` in place, when none of `sources` created it. The facts about
/// the account (a deletion past its window, a removal from the directory) still count
/// whoever made them: they decide what can be given back at all.
fn not_ours(job: &Job, sources: &[&str]) -> Option<String> {
    let own = sources.first().copied().unwrap_or_default();
    match job.source.as_deref() {
        Some(source) if sources.contains(&source) => None,
        Some(source) => Some(format!(
            "source `{source}` made it, and this undo gives back only what `{own}` made: \
             name `{source}` in the rule's `undo_sources` to give it back"
        )),
        None => Some(format!(
            "no source is recorded for it, and this undo gives back only what `{own}` made"
        )),
    }
}

/// Only steps that changed something are given back (outcome `done`): a step that found the
/// account already in that state, or nobody, or ran dry, took nothing.
fn took_something(job: &Job) -> bool {
    job.state == JobState::Succeeded && job.outcome == Some(Outcome::Done)
        || !moved_items(job).is_empty()
}

/// What a hand-over step moved, even one that then failed on an item it could not move.
fn moved_items(job: &Job) -> Vec<String> {
    job.handover
        .as_ref()
        .map(|handover| handover.moved.clone())
        .unwrap_or_default()
}

/// A step in flight when the rehire comes is planned too: its inverse waits for it, and
/// gives back only if it ends `done` (`UNDOES`).
fn still_running(job: &Job) -> bool {
    job.state == JobState::Running && job.action.inverse().is_some()
}

/// Whether an inverse of `original` was enqueued for it, and has not failed or been
/// cancelled: then it is given back already, or about to be.
fn already_given_back(original: &Job, jobs: &[Job]) -> bool {
    let Some((inverse, _)) = original.action.inverse() else {
        return false;
    };
    let original_id = original.id.to_string();
    jobs.iter().any(|job| {
        let names_it = match job.param(UNDOES) {
            Some(undoes) => undoes == original_id,
            // Inverses made before they named their original, or enqueued by hand.
            None => job.params == original.params && job.created_at >= original.updated_at,
        };
        job.action == inverse
            && job.email == original.email
            && names_it
            && !matches!(job.state, JobState::Failed | JobState::Cancelled)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    fn at(day: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::days(day)
    }

    fn job(id: i64, action: Action, params: Value, done_on: i64) -> Job {
        let params: Map<String, Value> = params.as_object().cloned().unwrap_or_default();
        let account = match action.target() {
            crate::domain::TargetAccount::Customer => ("qm:1", "customer"),
            crate::domain::TargetAccount::Managed => ("acc-1", "atlassian"),
        };
        Job {
            params,
            account_id: Some(crate::domain::AccountId::stored(account.0.into())),
            account_type: Some(account.1.into()),
            ..Job::example(id, action, at(done_on))
        }
    }

    /// The sources of an HR rehire that names no other.
    const HR: &[&str] = &["hr"];

    fn email() -> Email {
        Email::parse("ann@example.com").unwrap()
    }

    #[test]
    fn inverses_run_in_reverse_order_on_the_recorded_account() {
        let jobs = [
            job(1, Action::SuspendAccess, json!({}), 0),
            job(2, Action::RemoveFromGroup, json!({ "group_id": "g-1" }), 1),
            job(3, Action::DeactivateAccount, json!({}), 2),
        ];
        let undo = plan(&jobs, &email(), "rehired", false, HR, at(3));
        assert!(undo.irreversible.is_empty());
        assert_eq!(undo.chains.len(), 1);
        let chain = &undo.chains[0];
        assert_eq!(chain.account_id.as_deref(), Some("acc-1"));
        assert_eq!(chain.account_type.as_deref(), Some("atlassian"));
        let actions: Vec<Action> = chain.steps.iter().map(|s| s.action).collect();
        assert_eq!(
            actions,
            [
                Action::EnableAccount,
                Action::AddToGroup,
                Action::RestoreAccess
            ]
        );
        assert_eq!(chain.steps[1].params["group_id"], "g-1");
        assert!(chain.steps.iter().all(|s| s.run_at == at(3)));
    }

    #[test]
    fn irreversible_steps_are_listed_and_the_deletion_window_holds() {
        let jobs = [
            job(1, Action::DeletePortalCustomer, json!({}), 0),
            job(2, Action::RemoveFromDirectory, json!({}), 0),
            job(3, Action::RevokePortalAccess, json!({}), 0),
            job(4, Action::DeleteAccount, json!({}), 0),
        ];
        let inside = plan(&jobs, &email(), "rehired", true, HR, at(14));
        assert_eq!(inside.chains.len(), 1);
        assert_eq!(
            inside.chains[0].steps[0].action,
            Action::CancelDeleteAccount
        );
        assert!(inside.chains[0].approval);
        assert_eq!(inside.irreversible.len(), 3);
        let outside = plan(&jobs, &email(), "rehired", false, HR, at(15));
        assert!(outside.chains.is_empty());
        let late: Vec<&str> = outside
            .irreversible
            .iter()
            .map(|i| i.job.as_str())
            .collect();
        assert!(late.contains(&"4"), "{outside:?}");
        assert!(
            outside
                .irreversible
                .iter()
                .any(|i| i.reason.contains("14-day"))
        );
    }

    #[test]
    fn nothing_is_given_back_twice_and_an_inverse_is_never_undone() {
        let mut restored = job(2, Action::RestoreAccess, json!({}), 1);
        restored.created_at = at(1);
        let jobs = [
            job(1, Action::SuspendAccess, json!({}), 0),
            restored.clone(),
        ];
        assert_eq!(
            plan(&jobs, &email(), "rehired", false, HR, at(2)),
            Undo::default()
        );
        // A failed inverse does not count: the original can be given back again.
        restored.state = JobState::Failed;
        restored.outcome = None;
        let jobs = [job(1, Action::SuspendAccess, json!({}), 0), restored];
        assert_eq!(
            plan(&jobs, &email(), "rehired", false, HR, at(2))
                .chains
                .len(),
            1
        );
    }

    #[test]
    fn only_steps_that_changed_something_are_given_back() {
        let mut dry = job(1, Action::SuspendAccess, json!({}), 0);
        dry.outcome = Some(Outcome::DryRun);
        let mut already = job(2, Action::DeactivateAccount, json!({}), 0);
        already.outcome = Some(Outcome::AlreadyDone);
        let mut pending = job(3, Action::RemoveFromGroup, json!({ "group_id": "g" }), 0);
        pending.state = JobState::Pending;
        pending.outcome = None;
        let mut other = job(4, Action::SuspendAccess, json!({}), 0);
        other.email = Email::parse("bob@example.com").unwrap();
        let undo = plan(
            &[dry, already, pending, other],
            &email(),
            "r",
            false,
            HR,
            at(1),
        );
        assert_eq!(undo, Undo::default());
    }

    #[test]
    fn customer_and_managed_accounts_get_a_chain_each() {
        let jobs = [
            job(
                1,
                Action::RemoveFromServiceDesk,
                json!({ "service_desk_id": "10" }),
                0,
            ),
            job(2, Action::SuspendAccess, json!({}), 1),
        ];
        let undo = plan(&jobs, &email(), "rehired", false, HR, at(2));
        let accounts: Vec<&str> = undo
            .chains
            .iter()
            .map(|c| c.account_id.as_deref().unwrap())
            .collect();
        assert_eq!(accounts, ["acc-1", "qm:1"]);
    }

    #[test]
    fn a_deletion_past_its_window_makes_every_inverse_impossible() {
        let jobs = [
            job(1, Action::SuspendAccess, json!({}), 0),
            job(2, Action::DeactivateAccount, json!({}), 0),
            job(3, Action::DeleteAccount, json!({}), 1),
        ];
        let undo = plan(&jobs, &email(), "rehired", false, HR, at(20));
        assert!(undo.chains.is_empty(), "{undo:?}");
        assert_eq!(undo.irreversible.len(), 3);
        assert!(
            undo.irreversible
                .iter()
                .filter(|i| i.job != "3")
                .all(|i| i.reason.contains("deleted (job 3)")),
            "{undo:?}"
        );
    }

    #[test]
    fn a_running_step_is_planned_and_every_inverse_names_its_original() {
        let mut running = job(2, Action::RemoveFromGroup, json!({ "group_id": "g" }), 1);
        running.state = JobState::Running;
        running.outcome = None;
        let jobs = [job(1, Action::SuspendAccess, json!({}), 0), running];
        let undo = plan(&jobs, &email(), "rehired", false, HR, at(2));
        let steps = &undo.chains[0].steps;
        assert_eq!(steps[0].action, Action::AddToGroup);
        assert_eq!(steps[0].params[UNDOES], "2");
        assert_eq!(steps[0].params["group_id"], "g");
        assert_eq!(steps[1].params[UNDOES], "1");
    }

    #[test]
    fn only_the_undos_own_source_is_given_back_unless_the_rule_names_another() {
        let mut by_hand = job(2, Action::SuspendAccess, json!({}), 1);
        by_hand.source = Some("console".into());
        let mut by_api = job(3, Action::RemoveFromGroup, json!({ "group_id": "g" }), 2);
        by_api.source = Some("api".into());
        let mut unknown = job(4, Action::DeactivateAccount, json!({}), 3);
        unknown.source = None;
        let jobs = [
            job(
                1,
                Action::RemoveFromServiceDesk,
                json!({ "service_desk_id": "10" }),
                0,
            ),
            by_hand,
            by_api,
            unknown,
        ];
        let undo = plan(&jobs, &email(), "rehired", false, HR, at(4));
        let given: Vec<Action> = undo
            .chains
            .iter()
            .flat_map(|c| &c.steps)
            .map(|s| s.action)
            .collect();
        assert_eq!(given, [Action::AddToServiceDesk], "{undo:?}");
        let left: Vec<(&str, &str)> = undo
            .irreversible
            .iter()
            .map(|i| (i.job.as_str(), i.reason.as_str()))
            .collect();
        assert_eq!(left.len(), 3, "{undo:?}");
        assert!(
            left[0].0 == "4" && left[0].1.contains("no source"),
            "{left:?}"
        );
        assert!(
            left[1].0 == "3" && left[1].1.contains("source `api` made it"),
            "{left:?}"
        );
        assert!(
            left[2].0 == "2" && left[2].1.contains("`undo_sources`"),
            "{left:?}"
        );

        let widened = plan(&jobs, &email(), "rehired", false, &["hr", "console"], at(4));
        let given: Vec<Action> = widened
            .chains
            .iter()
            .flat_map(|c| &c.steps)
            .map(|s| s.action)
            .collect();
        assert_eq!(
            given,
            [Action::RestoreAccess, Action::AddToServiceDesk],
            "{widened:?}"
        );
        assert_eq!(widened.irreversible.len(), 2, "{widened:?}");
    }

    #[test]
    fn another_sources_deletion_still_ends_what_can_be_given_back() {
        let mut deleted = job(2, Action::DeleteAccount, json!({}), 1);
        deleted.source = Some("cli".into());
        let jobs = [job(1, Action::SuspendAccess, json!({}), 0), deleted];
        let undo = plan(&jobs, &email(), "rehired", false, HR, at(20));
        assert!(undo.chains.is_empty(), "{undo:?}");
        assert!(
            undo.irreversible
                .iter()
                .any(|i| i.job == "1" && i.reason.contains("deleted (job 2)")),
            "{undo:?}"
        );
    }
}
