//! Priority lanes (README, "Lanes"): an urgent termination never waits behind a bulk
//! clean-up. Every job gets its lane when it is created, and the claim takes the lanes in
//! [`Lane::BY_PRIORITY`] order.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How soon after its delivery a webhook's step must be due to be urgent.
pub const URGENT_WITHIN: TimeDelta = TimeDelta::minutes(1);

/// A job's lane.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// A webhook's step due within [`URGENT_WITHIN`] of its delivery.
    Urgent,
    /// A webhook's step planned for later.
    Scheduled,
    /// A manual or imported job, a customer-page job, an undo's inverse.
    Bulk,
}

impl Lane {
    /// The order in which the claim takes due jobs; `Ord` on `Lane` is the same order.
    pub const BY_PRIORITY: [Lane; 3] = [Lane::Urgent, Lane::Scheduled, Lane::Bulk];

    pub const fn as_str(self) -> &'static str {
        match self {
            Lane::Urgent => "urgent",
            Lane::Scheduled => "scheduled",
            Lane::Bulk => "bulk",
        }
    }

    /// The lane of a webhook's step that runs at `run_at`, for a delivery received at
    /// `received_at`.
    pub fn of_webhook_step(run_at: DateTime<Utc>, received_at: DateTime<Utc>) -> Lane {
        if run_at <= received_at + URGENT_WITHIN {
            Lane::Urgent
        } else {
            Lane::Scheduled
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Lane {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Lane::BY_PRIORITY
            .into_iter()
            .find(|lane| lane.as_str() == s)
            .ok_or_else(|| format!("unknown lane `{s}` (expected urgent, scheduled or bulk)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_step_is_urgent_when_due_within_a_minute() {
        let at = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(Lane::of_webhook_step(at, at), Lane::Urgent);
        assert_eq!(
            Lane::of_webhook_step(at - TimeDelta::days(1), at),
            Lane::Urgent
        );
        assert_eq!(Lane::of_webhook_step(at + URGENT_WITHIN, at), Lane::Urgent);
        assert_eq!(
            Lane::of_webhook_step(at + URGENT_WITHIN + TimeDelta::seconds(1), at),
            Lane::Scheduled
        );
        for lane in Lane::BY_PRIORITY {
            assert_eq!(lane.as_str().parse::<Lane>().unwrap(), lane);
        }
        assert!("later".parse::<Lane>().is_err());
    }
}
