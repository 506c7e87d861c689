//! `offboard evidence verify` and `offboard evidence erase` (README, "Proof for auditors").

use clap::Subcommand;

use super::{ConfigArg, Failure, database_url, load, open_store, store_failure};
use crate::domain::Email;
use crate::evidence::{self, pseudonym::Pseudonyms};
use crate::store::{Erased, Erasure};

/// The actor of the audit event `evidence erase` writes on each of the person's jobs.
const ERASE_ACTOR: &str = "operator:cli";

#[derive(Subcommand, Debug)]
pub(super) enum EvidenceCommand {
    /// The time-to-revoke report: one row per case first seen in the period, with its
    /// times, SLA met or missed, and each job's action and outcome.
    Report(super::cases::ReportArgs),
    /// Seal the audit events not sealed yet, then recompute the whole hash chain. Prints
    /// the number of events and the chain's head; exits 1 naming the first event that does
    /// not match.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Pseudonymize one person's records now (a GDPR erasure request): their email and
    /// account ids in jobs, audit events, deliveries and verifications become keyed
    /// pseudonyms. Needs `[evidence] pseudonym_key`; refused while the person has live jobs
    /// or a recheck due.
    Erase {
        /// The person's email address.
        email: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub(super) async fn evidence(command: EvidenceCommand) -> Result<(), Failure> {
    match command {
        EvidenceCommand::Report(args) => super::cases::report(args).await,
        EvidenceCommand::Verify { config } => {
            let store = open_store(&database_url(&config)?).await?;
            match evidence::verify(store.chain())
                .await
                .map_err(store_failure)?
            {
                Ok(intact) => {
                    let head = intact.head.as_ref().map_or_else(
                        || "none".to_owned(),
                        |h| format!("chain_seq {} sha256 {}", h.chain_seq, h.sha256),
                    );
                    println!("audit trail intact: {} events, head {head}", intact.events);
                    Ok(())
                }
                Err(broken) => Err(Failure::Runtime(format!("audit trail broken at {broken}"))),
            }
        }
        EvidenceCommand::Erase { email, config } => {
            let config = load(&config)?;
            let key = config.evidence.pseudonym_key.clone().ok_or_else(|| {
                Failure::Usage(format!(
                    "cannot erase: [evidence] pseudonym_key is not set in {}",
                    config.origin
                ))
            })?;
            let email = Email::parse(&email)
                .map_err(|why| Failure::Usage(format!("not an email address: {why}")))?;
            let pseudonyms = Pseudonyms::new(key);
            let store = open_store(&config.database_url).await?;
            let erasure = Erasure {
                email: email.as_str(),
                pseudonyms: &pseudonyms,
                actor: ERASE_ACTOR,
                refuse_unfinished: true,
            };
            match evidence::erase(store.chain(), erasure)
                .await
                .map_err(store_failure)?
            {
                Erased::Done {
                    pseudonym,
                    jobs,
                    events,
                    deliveries,
                    verifications,
                } => {
                    println!(
                        "pseudonymized as {pseudonym}: {jobs} jobs, {events} audit events, \
                         {deliveries} deliveries, {verifications} verifications"
                    );
                    // Committed already: a failure here leaves copies in SQLite's free
                    // pages, which running the erase again removes.
                    store.chain().compact(true).await.map_err(|e| {
                        Failure::Runtime(format!(
                            "the records are pseudonymized, but the store could not be \
                             compacted ({e}): run `offboard evidence erase` again"
                        ))
                    })
                }
                Erased::Unfinished {
                    live_jobs,
                    rechecks_due,
                } => {
                    let list = |ids: &[crate::domain::JobId]| {
                        ids.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    Err(Failure::Usage(if live_jobs.is_empty() {
                        format!(
                            "cannot erase: the person's case still has a recheck due (after job \
                             {}); erase after the recheck",
                            list(&rechecks_due)
                        )
                    } else {
                        format!(
                            "cannot erase: the person still has live jobs ({}); cancel them or \
                             let them finish first",
                            list(&live_jobs)
                        )
                    }))
                }
            }
        }
    }
}
