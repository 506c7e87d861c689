//! A person's case (README, "Proof for auditors", "A person's case"): when offboard first
//! heard of them, when their offboarding was due, when they lost access, what the
//! verification saw, and whether that met the SLA. Pure: the facts come from the store
//! (`super::people`), the clock and the target from the caller, so the API, the CLI, the
//! report and the worker's `offboard_time_to_revoke_seconds` all compute a case alike.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::duration::Span;
use crate::domain::{Action, JobId, JobState, JobWithEvents, Outcome, time_as_rfc3339};
use crate::store::verifications::VERIFIER;
use crate::store::{Delivery, Verification, VerifiedState};

/// The person's row: when they were first named and the earliest time planned for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub email: String,
    pub first_seen: DateTime<Utc>,
    pub effective_at: DateTime<Utc>,
}

/// One job of the person, as a case needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub job_id: JobId,
    pub action: Action,
    pub state: JobState,
    pub outcome: Option<Outcome>,
    /// When it reached its final state.
    pub finalized_at: Option<DateTime<Utc>>,
}

/// Whether an outcome shows the account as the step wanted it: `done` changed it,
/// `already_done` found it so. `not_found` found nobody and `dry_run` changed nothing, so
/// neither removed any access.
fn shows_removed(outcome: Outcome) -> bool {
    match outcome {
        Outcome::Done | Outcome::AlreadyDone => true,
        Outcome::NotFound | Outcome::DryRun => false,
    }
}

/// When the first access-removing step (`Action::removes_access`) succeeded `done` or
/// `already_done`.
pub fn access_removed_at(steps: &[Step]) -> Option<DateTime<Utc>> {
    steps
        .iter()
        .filter(|s| s.action.removes_access() && s.outcome.is_some_and(shows_removed))
        .filter_map(|s| s.finalized_at)
        .min()
}

/// When the SLA's clock starts: not before offboard heard of the person, and not before
/// their offboarding was due (a leaver announced a month ahead is not late for that month).
pub fn sla_start(first_seen: DateTime<Utc>, effective_at: DateTime<Utc>) -> DateTime<Utc> {
    first_seen.max(effective_at)
}

/// The time from the SLA's start to the removal of access, none before the removal; zero
/// when access went before the start (removed by hand ahead of the planned date). The
/// `offboard_time_to_revoke_seconds` histogram observes this.
pub fn time_to_revoke(
    first_seen: DateTime<Utc>,
    effective_at: DateTime<Utc>,
    access_removed_at: Option<DateTime<Utc>>,
) -> Option<chrono::Duration> {
    let start = sla_start(first_seen, effective_at);
    access_removed_at.map(|removed| (removed - start).max(chrono::Duration::zero()))
}

/// Whether the SLA was met: once access is removed, whether that was within `target` of the
/// start; before, `false` once the deadline passed and `None` while it may still be met.
pub fn sla_met(
    first_seen: DateTime<Utc>,
    effective_at: DateTime<Utc>,
    access_removed_at: Option<DateTime<Utc>>,
    target: Duration,
    now: DateTime<Utc>,
) -> Option<bool> {
    let target = chrono::Duration::from_std(target).unwrap_or(chrono::Duration::MAX);
    let deadline = sla_start(first_seen, effective_at)
        .checked_add_signed(target)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    match access_removed_at {
        Some(removed) => Some(removed <= deadline),
        None if now > deadline => Some(false),
        None => None,
    }
}

/// The SLA of a case: the target (`[evidence] sla`, as the configuration writes it) and
/// whether it was met.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Sla {
    /// `[evidence] sla`, written as the configuration takes it (`24h` reads back as `1d`).
    pub target: String,
    /// True or false once access is removed; false when the deadline passed without
    /// removal; null while it may still be met.
    pub met: Option<bool>,
}

/// A case without its jobs and deliveries: a row of the People list and of the report.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CaseSummary {
    pub email: String,
    #[serde(serialize_with = "time_as_rfc3339")]
    pub first_seen: DateTime<Utc>,
    #[serde(serialize_with = "time_as_rfc3339")]
    pub effective_at: DateTime<Utc>,
    #[serde(serialize_with = "optional_rfc3339")]
    #[schema(value_type = Option<String>)]
    pub access_removed_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "optional_rfc3339")]
    #[schema(value_type = Option<String>)]
    pub verified_at: Option<DateTime<Utc>>,
    /// `verified` or `verification_failed`.
    #[schema(value_type = Option<String>)]
    pub verified_state: Option<VerifiedState>,
    pub sla: Sla,
    #[serde(serialize_with = "optional_rfc3339")]
    #[schema(value_type = Option<String>)]
    pub reactivated_at: Option<DateTime<Utc>>,
    /// The person's jobs, oldest first: for the report's columns, not in the JSON (a case's
    /// `jobs` carry them whole).
    #[serde(skip)]
    pub steps: Vec<Step>,
}

impl CaseSummary {
    /// Computes the case of `person` from their jobs and newest verification, at `now`.
    pub fn compute(
        person: Person,
        steps: Vec<Step>,
        verification: Option<Verification>,
        target: Duration,
        now: DateTime<Utc>,
    ) -> CaseSummary {
        let access_removed_at = access_removed_at(&steps);
        let met = sla_met(
            person.first_seen,
            person.effective_at,
            access_removed_at,
            target,
            now,
        );
        CaseSummary {
            email: person.email,
            first_seen: person.first_seen,
            effective_at: person.effective_at,
            access_removed_at,
            verified_at: verification.as_ref().map(|v| v.verified_at),
            verified_state: verification.as_ref().map(|v| v.state),
            sla: Sla {
                target: Span::from_secs(target.as_secs()).to_string(),
                met,
            },
            reactivated_at: verification.and_then(|v| v.reactivated_at),
            steps,
        }
    }
}

/// A person's case as `GET /api/v1/people/{email}` and `offboard people show --json` give it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Case {
    #[serde(flatten)]
    pub summary: CaseSummary,
    /// Every job of the person (inverses of an undo included), oldest first, each with its
    /// audit events.
    pub jobs: Vec<JobWithEvents>,
    /// The deliveries and manual requests that created those jobs, oldest first.
    pub deliveries: Vec<Delivery>,
    /// Every verification of the person, oldest first, for the timeline (the JSON carries
    /// the newest one's fields).
    #[serde(skip)]
    pub verifications: Vec<Verification>,
}

/// What a moment of a case's timeline is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MomentKind {
    /// A delivery or manual request that created jobs for the person.
    Delivery,
    /// An event of one of the person's jobs.
    Job,
    /// An event of an inverse job, giving back what a step took (an undo on rehire).
    Inverse,
    /// The verification read after the chain ended, seeing what the chain did.
    Verification,
    /// The verification read, contradicting the chain's outcomes.
    VerificationFailed,
    /// The recheck read later.
    Recheck,
    /// The recheck found the account active again.
    Reactivated,
}

impl MomentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MomentKind::Delivery => "delivery",
            MomentKind::Job => "job",
            MomentKind::Inverse => "inverse",
            MomentKind::Verification => "verification",
            MomentKind::VerificationFailed => "verification_failed",
            MomentKind::Recheck => "recheck",
            MomentKind::Reactivated => "reactivated",
        }
    }
}

/// One moment of a case's timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moment {
    pub at: DateTime<Utc>,
    pub kind: MomentKind,
    /// The job it is an event of, if any.
    pub job: Option<JobId>,
    pub what: String,
}

impl Case {
    /// Everything that happened in the case, oldest first: deliveries, every job event
    /// (inverses marked), the verification and the recheck.
    pub fn timeline(&self) -> Vec<Moment> {
        let mut moments = Vec::new();
        for d in &self.deliveries {
            moments.push(Moment {
                at: d.received_at,
                kind: MomentKind::Delivery,
                job: None,
                what: format!(
                    "{} delivery {} {}",
                    d.source,
                    d.delivery_id,
                    d.status.as_str()
                ),
            });
        }
        for job in &self.jobs {
            let j = &job.job;
            let kind = if j.params.contains_key(crate::domain::undo::UNDOES) {
                MomentKind::Inverse
            } else {
                MomentKind::Job
            };
            // The verifier's events are the reads below, told with what they saw.
            for e in job.events.iter().filter(|e| e.actor != VERIFIER) {
                let from = e.from.map_or("new", |s| s.as_str());
                let mut what = format!("{}: {from} → {}", j.action, e.to);
                if !e.detail.is_empty() {
                    what.push_str(&format!(" ({})", e.detail));
                }
                what.push_str(&format!(" by {}", e.actor));
                moments.push(Moment {
                    at: e.at,
                    kind,
                    job: Some(j.id),
                    what,
                });
            }
        }
        for v in &self.verifications {
            let kind = match v.state {
                VerifiedState::Verified => MomentKind::Verification,
                VerifiedState::VerificationFailed => MomentKind::VerificationFailed,
            };
            moments.push(Moment {
                at: v.verified_at,
                kind,
                job: Some(v.job_id),
                what: format!("{}: {}", v.state.as_str(), v.seen),
            });
            if let Some(at) = v.rechecked_at {
                let seen = v.recheck_seen.as_deref().unwrap_or("");
                moments.push(Moment {
                    at,
                    kind: MomentKind::Recheck,
                    job: Some(v.job_id),
                    what: format!("rechecked: {seen}"),
                });
            }
            if let Some(at) = v.reactivated_at {
                moments.push(Moment {
                    at,
                    kind: MomentKind::Reactivated,
                    job: Some(v.job_id),
                    what: "reactivated: the account was found active again".to_owned(),
                });
            }
        }
        moments.sort_by_key(|m| m.at);
        moments
    }
}

fn optional_rfc3339<S: serde::Serializer>(
    at: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => time_as_rfc3339(at, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(hour: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap() + chrono::Duration::hours(hour)
    }

    fn step(id: i64, action: Action, outcome: Option<Outcome>, hour: i64) -> Step {
        Step {
            job_id: JobId(id),
            action,
            state: if outcome.is_some() {
                JobState::Succeeded
            } else {
                JobState::Pending
            },
            outcome,
            finalized_at: outcome.map(|_| at(hour)),
        }
    }

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn access_is_removed_by_the_first_removing_step_that_took_effect() {
        let steps = [
            step(1, Action::RemoveFromGroup, Some(Outcome::Done), 1),
            step(2, Action::SuspendAccess, Some(Outcome::DryRun), 2),
            step(3, Action::RevokePortalAccess, Some(Outcome::NotFound), 3),
            step(4, Action::DeleteAccount, Some(Outcome::AlreadyDone), 5),
            step(5, Action::DeactivateAccount, Some(Outcome::Done), 4),
        ];
        assert_eq!(access_removed_at(&steps), Some(at(4)));
        assert_eq!(
            access_removed_at(&steps[..3]),
            None,
            "dry run, not found, a group"
        );
    }

    #[test]
    fn the_sla_runs_from_the_later_of_first_seen_and_effective_at() {
        // Announced at hour 0 for hour 48: removed at hour 60 is within 24 h of hour 48.
        assert_eq!(
            sla_met(at(0), at(48), Some(at(60)), DAY, at(100)),
            Some(true)
        );
        assert_eq!(
            time_to_revoke(at(0), at(48), Some(at(60))),
            Some(chrono::Duration::hours(12))
        );
        // Named at hour 10 for hour 0 (already past): the clock starts at hour 10.
        assert_eq!(
            sla_met(at(10), at(0), Some(at(34)), DAY, at(100)),
            Some(true)
        );
        assert_eq!(
            sla_met(at(10), at(0), Some(at(35)), DAY, at(100)),
            Some(false)
        );
        // Removed before the planned date: zero, never negative.
        assert_eq!(
            time_to_revoke(at(0), at(48), Some(at(1))),
            Some(chrono::Duration::zero())
        );
    }

    #[test]
    fn an_open_case_is_undecided_until_its_deadline_passes() {
        assert_eq!(sla_met(at(0), at(0), None, DAY, at(24)), None);
        assert_eq!(sla_met(at(0), at(0), None, DAY, at(25)), Some(false));
        assert_eq!(time_to_revoke(at(0), at(0), None), None);
    }

    #[test]
    fn a_summary_carries_the_newest_verification_and_the_target_as_configured() {
        let person = Person {
            email: "a@example.com".into(),
            first_seen: at(0),
            effective_at: at(0),
        };
        let verification = Verification {
            id: 1,
            email: "a@example.com".into(),
            job_id: JobId(1),
            account_id: Some("qm:1".into()),
            verified_at: at(3),
            state: VerifiedState::VerificationFailed,
            seen: "managed status=active".into(),
            recheck_at: Some(at(30)),
            rechecked_at: Some(at(30)),
            recheck_seen: Some("managed status=active".into()),
            reactivated_at: Some(at(30)),
        };
        let case = CaseSummary::compute(
            person,
            vec![step(1, Action::SuspendAccess, Some(Outcome::Done), 2)],
            Some(verification),
            DAY,
            at(40),
        );
        let json = serde_json::to_value(&case).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "email": "a@example.com",
                "first_seen": "2026-03-02T00:00:00.000Z",
                "effective_at": "2026-03-02T00:00:00.000Z",
                "access_removed_at": "2026-03-02T02:00:00.000Z",
                "verified_at": "2026-03-02T03:00:00.000Z",
                "verified_state": "verification_failed",
                "sla": {"target": "1d", "met": true},
                "reactivated_at": "2026-03-03T06:00:00.000Z",
            })
        );
    }

    fn job(id: i64, action: Action, params: serde_json::Value, hour: i64) -> crate::domain::Job {
        crate::domain::Job {
            params: params.as_object().cloned().unwrap_or_default(),
            ..crate::domain::Job::example(id, action, at(hour))
        }
    }

    fn event(hour: i64, actor: &str, detail: &str) -> crate::domain::JobEvent {
        crate::domain::JobEvent {
            at: at(hour),
            from: Some(JobState::Running),
            to: JobState::Succeeded,
            actor: actor.into(),
            detail: detail.into(),
        }
    }

    /// The timeline marks an undo's inverse, and tells the verification from the table (with
    /// its recheck), not twice through the verifier's event on the job.
    #[test]
    fn the_timeline_marks_inverses_and_tells_each_read_once() {
        let person = Person {
            email: "ann@example.com".into(),
            first_seen: at(0),
            effective_at: at(0),
        };
        let verification = Verification {
            id: 1,
            email: "ann@example.com".into(),
            job_id: JobId(1),
            account_id: Some("acc-1".into()),
            verified_at: at(2),
            state: VerifiedState::Verified,
            seen: "managed status=suspended".into(),
            recheck_at: Some(at(26)),
            rechecked_at: Some(at(26)),
            recheck_seen: Some("managed status=active".into()),
            reactivated_at: Some(at(26)),
        };
        let summary =
            CaseSummary::compute(person, Vec::new(), Some(verification.clone()), DAY, at(30));
        let case = Case {
            summary,
            jobs: vec![
                JobWithEvents {
                    job: job(1, Action::SuspendAccess, serde_json::json!({}), 1),
                    events: vec![
                        event(1, "worker:w1", "suspended"),
                        event(2, VERIFIER, "verified: managed status=suspended"),
                    ],
                },
                JobWithEvents {
                    job: job(
                        2,
                        Action::RestoreAccess,
                        serde_json::json!({"undoes": "1"}),
                        28,
                    ),
                    events: vec![event(28, "worker:w1", "restored")],
                },
            ],
            deliveries: Vec::new(),
            verifications: vec![verification],
        };
        let kinds: Vec<(MomentKind, Option<JobId>)> =
            case.timeline().iter().map(|m| (m.kind, m.job)).collect();
        assert_eq!(
            kinds,
            [
                (MomentKind::Job, Some(JobId(1))),
                (MomentKind::Verification, Some(JobId(1))),
                (MomentKind::Recheck, Some(JobId(1))),
                (MomentKind::Reactivated, Some(JobId(1))),
                (MomentKind::Inverse, Some(JobId(2))),
            ]
        );
    }
}
