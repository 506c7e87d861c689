//! Reading cases from the store (README, "A person's case"): one person's case whole, and
//! pages of cases walked by (first_seen, email) over the `people` index, filtered in Rust
//! by the rules of [`super::case`], so that the SLA is decided in one place.
//!
//! The filters on verification read their people from indexes of `verifications` (`Among`),
//! so they walk only people some verification named. The SLA filter walks people until it
//! has `limit` matches, but never more than [`WALK_BUDGET`] of them per request: where few
//! match, it answers a shorter page with a cursor to go on from, instead of reading the
//! whole store in one request.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::case::{Case, CaseSummary, Person};
use crate::domain::{JobEvent, JobId, JobWithEvents};
use crate::store::{Among, PeopleRange, Store, StoreResult, VerifiedState};

/// The most people one request of the list walks (README, "A person's case").
pub const WALK_BUDGET: usize = 5000;
/// People read per round trip when a filter may skip many.
const BATCH: u32 = 500;

/// `sla=met|missed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlaFilter {
    Met,
    Missed,
}

impl std::str::FromStr for SlaFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "met" => Ok(SlaFilter::Met),
            "missed" => Ok(SlaFilter::Missed),
            other => Err(format!("sla must be `met` or `missed`, not `{other}`")),
        }
    }
}

/// The filters of the People list.
#[derive(Clone, Debug, Default)]
pub struct CaseFilter {
    pub sla: Option<SlaFilter>,
    /// Only cases whose newest verification failed.
    pub verification_failed: bool,
    /// Only cases found active again by a recheck.
    pub reactivated: bool,
    /// First seen at or after.
    pub from: Option<DateTime<Utc>>,
    /// First seen before.
    pub to: Option<DateTime<Utc>>,
    pub after: Option<Cursor>,
    pub limit: u32,
}

impl CaseFilter {
    fn narrows(&self) -> bool {
        self.sla.is_some() || self.verification_failed || self.reactivated
    }

    /// The people an index of the verifications can narrow the walk to.
    fn among(&self) -> Option<Among> {
        if self.verification_failed {
            Some(Among::InState(VerifiedState::VerificationFailed))
        } else if self.reactivated {
            Some(Among::Reactivated)
        } else {
            None
        }
    }

    fn admits(&self, case: &CaseSummary) -> bool {
        let sla = match self.sla {
            None => true,
            Some(SlaFilter::Met) => case.sla.met == Some(true),
            Some(SlaFilter::Missed) => case.sla.met == Some(false),
        };
        let verification = !self.verification_failed
            || case.verified_state == Some(VerifiedState::VerificationFailed);
        let reactivated = !self.reactivated || case.reactivated_at.is_some();
        sla && verification && reactivated
    }
}

/// Where a page of cases goes on from: the (first_seen, email) of the last case walked.
/// Opaque to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub first_seen: DateTime<Utc>,
    pub email: String,
}

impl Cursor {
    pub fn parse(text: &str) -> Result<Cursor, String> {
        let invalid = || "after is not a cursor this list gave out".to_owned();
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (micros, email) = text.split_once(' ').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        let first_seen = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        Ok(Cursor {
            first_seen,
            email: email.to_owned(),
        })
    }

    fn of(case: &CaseSummary) -> Cursor {
        Cursor {
            first_seen: case.first_seen,
            email: case.email.clone(),
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = format!("{} {}", self.first_seen.timestamp_micros(), self.email);
        f.write_str(&URL_SAFE_NO_PAD.encode(text))
    }
}

/// A page of cases and where the next one starts (none after the last).
#[derive(Clone, Debug)]
pub struct CasePage {
    pub cases: Vec<CaseSummary>,
    pub next_after: Option<Cursor>,
}

/// One person's case, or none when no delivery or request ever named them.
pub async fn case(
    store: &dyn Store,
    email: &str,
    sla: Duration,
    now: DateTime<Utc>,
) -> StoreResult<Option<Case>> {
    let reads = store.case_reads();
    let email = email.to_ascii_lowercase();
    let Some(person) = reads.person(&email).await? else {
        return Ok(None);
    };
    let mut summary = summaries(store, vec![person], sla, now)
        .await?
        .pop()
        .expect("one summary per person");
    summary.steps.clear();
    let jobs = reads.jobs_of(&email).await?;
    let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    let mut events: HashMap<JobId, Vec<JobEvent>> = HashMap::new();
    for (id, event) in reads.events_of(&ids).await? {
        events.entry(id).or_default().push(event);
    }
    let keys: BTreeSet<(String, String)> = jobs
        .iter()
        .filter_map(|j| Some((j.source.clone()?, j.delivery_id.clone()?)))
        .collect();
    let keys: Vec<(String, String)> = keys.into_iter().collect();
    let deliveries = reads.deliveries_of(&keys).await?;
    let mut verifications = store.verifications().verifications_of(&email).await?;
    verifications.reverse();
    let jobs = jobs
        .into_iter()
        .map(|job| JobWithEvents {
            events: events.remove(&job.id).unwrap_or_default(),
            job,
        })
        .collect();
    Ok(Some(Case {
        summary,
        jobs,
        deliveries,
        verifications,
    }))
}

/// The person's time to revoke (`super::case::time_to_revoke`), read from the store: none
/// while their access is not removed, or when nobody of that email was named. What
/// `offboard_time_to_revoke_seconds` observes once the person's access is removed.
pub async fn time_to_revoke_of(
    store: &dyn Store,
    email: &str,
) -> StoreResult<Option<chrono::Duration>> {
    let reads = store.case_reads();
    let email = email.to_ascii_lowercase();
    let Some(person) = reads.person(&email).await? else {
        return Ok(None);
    };
    let steps: Vec<_> = reads
        .steps_of(std::slice::from_ref(&email))
        .await?
        .into_iter()
        .map(|(_, step)| step)
        .collect();
    Ok(super::case::time_to_revoke(
        person.first_seen,
        person.effective_at,
        super::case::access_removed_at(&steps),
    ))
}

/// The cases of these people, in the same order.
pub async fn summaries(
    store: &dyn Store,
    people: Vec<Person>,
    sla: Duration,
    now: DateTime<Utc>,
) -> StoreResult<Vec<CaseSummary>> {
    let reads = store.case_reads();
    let emails: Vec<String> = people.iter().map(|p| p.email.clone()).collect();
    let mut steps: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (email, step) in reads.steps_of(&emails).await? {
        steps.entry(email).or_default().push(step);
    }
    let mut verifications: BTreeMap<String, _> = reads
        .newest_verifications_of(&emails)
        .await?
        .into_iter()
        .map(|v| (v.email.clone(), v))
        .collect();
    Ok(people
        .into_iter()
        .map(|person| {
            let steps = steps.remove(&person.email).unwrap_or_default();
            let verification = verifications.remove(&person.email);
            CaseSummary::compute(person, steps, verification, sla, now)
        })
        .collect())
}

/// A page of the cases `filter` admits, by (first_seen, email).
pub async fn list(
    store: &dyn Store,
    filter: &CaseFilter,
    sla: Duration,
    now: DateTime<Utc>,
) -> StoreResult<CasePage> {
    let limit = filter.limit.max(1) as usize;
    let batch = if filter.narrows() {
        BATCH
    } else {
        filter.limit.max(1)
    };
    let mut range = PeopleRange {
        from: filter.from,
        to: filter.to,
        after: filter
            .after
            .as_ref()
            .map(|c| (c.first_seen, c.email.clone())),
        among: filter.among(),
        limit: batch,
    };
    let mut cases = Vec::new();
    let mut walked = 0;
    loop {
        let people = store.case_reads().people(&range).await?;
        let read = people.len();
        for case in summaries(store, people, sla, now).await? {
            walked += 1;
            let cursor = Cursor::of(&case);
            range.after = Some((cursor.first_seen, cursor.email.clone()));
            if filter.admits(&case) {
                cases.push(case);
            }
            if cases.len() == limit || walked >= WALK_BUDGET {
                return Ok(CasePage {
                    cases,
                    next_after: Some(cursor),
                });
            }
        }
        if read < batch as usize {
            return Ok(CasePage {
                cases,
                next_after: None,
            });
        }
    }
}

/// Calls `each` with every case first seen in `[from, to)`, in (first_seen, email) order,
/// reading `BATCH` people at a time.
pub async fn each_case(
    store: &dyn Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    sla: Duration,
    now: DateTime<Utc>,
    mut each: impl FnMut(CaseSummary),
) -> StoreResult<()> {
    let mut range = PeopleRange {
        from: Some(from),
        to: Some(to),
        after: None,
        among: None,
        limit: BATCH,
    };
    loop {
        let people = store.case_reads().people(&range).await?;
        let read = people.len();
        if let Some(last) = people.last() {
            range.after = Some((last.first_seen, last.email.clone()));
        }
        for case in summaries(store, people, sla, now).await? {
            each(case);
        }
        if read < BATCH as usize {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_written_and_refuses_anything_else() {
        let cursor = Cursor {
            first_seen: DateTime::from_timestamp_micros(1_767_225_600_123_456).unwrap(),
            email: "a b@example.com".into(),
        };
        assert_eq!(Cursor::parse(&cursor.to_string()).unwrap(), cursor);
        assert!(Cursor::parse("not a cursor").is_err());
        assert!(Cursor::parse(&URL_SAFE_NO_PAD.encode("x y")).is_err());
    }
}
