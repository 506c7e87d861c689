//! Reads of customer accounts by id, batched: the jobs that read a customer's own record
//! while an earlier read is out or waiting for its turn (an import drain is thousands of
//! them, each carrying its `account_id`) share one `GET /rest/api/3/user/bulk` instead of one
//! `GET /rest/api/3/user` each.
//!
//! Like the store's batch writers (`crate::batch`), one task reads and the jobs queue for
//! it, so an idle worker reads at once and a busy one pays one request for many jobs. Unlike
//! them, the reader gathers the queue only once the site family's bucket has its token: under
//! the rate limit a read waits its turn behind other jobs' calls, and whoever asks meanwhile
//! goes with it. How many share a read is at most the worker's `concurrency`.
//!
//! The bulk answer settles only the accounts it holds. Which ids it leaves out, and whether
//! it returns portal-only customers at all, is not documented, so an id missing from it is
//! for the job to read singly before it counts as unknown (`execute::read_site_account`).
//!
//! A read also names the ids of the next due jobs that will want a record (an import drain's
//! next entries), up to one bulk read's worth, and keeps what it got for them for 30 s: at a
//! `concurrency` of 4 that is what brings a drain to about one request per job.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::atlassian::{Account, BULK_READ_IDS, CallError, Client};
use crate::domain::{Action, ManualSource, TargetAccount};
use crate::store::Store;

/// Reads waiting for the reader; more wait to be queued.
const QUEUED: usize = 1024;

/// How long a record read ahead answers a job: the guards it feeds (type, email) do not
/// change in seconds, and an import drain claims the jobs read ahead well within it.
const READ_AHEAD_FRESH: Duration = Duration::from_secs(30);

/// What a bulk read says about one id: its record, `None` when the answer does not hold it,
/// or why the read failed.
type Answer = Result<Option<Account>, CallError>;

struct Read {
    account_id: String,
    reply: oneshot::Sender<Answer>,
}

/// The worker's one reader of site accounts by id; it stops once this is dropped.
pub(super) struct SiteAccountReads {
    queue: mpsc::Sender<Read>,
}

/// Records read ahead for jobs not claimed yet, each with when it was read.
#[derive(Default)]
struct ReadAhead {
    records: HashMap<String, (Account, Instant)>,
}

impl ReadAhead {
    /// A fresh record read ahead for `account_id`; each is used once.
    fn take(&mut self, account_id: &str) -> Option<Account> {
        let (account, read_at) = self.records.remove(account_id)?;
        (read_at.elapsed() < READ_AHEAD_FRESH).then_some(account)
    }

    fn has(&self, account_id: &str) -> bool {
        self.records
            .get(account_id)
            .is_some_and(|(_, read_at)| read_at.elapsed() < READ_AHEAD_FRESH)
    }

    fn keep(&mut self, accounts: impl IntoIterator<Item = Account>) {
        self.records
            .retain(|_, (_, read_at)| read_at.elapsed() < READ_AHEAD_FRESH);
        let now = Instant::now();
        for account in accounts {
            self.records
                .insert(account.account_id.clone(), (account, now));
        }
    }
}

/// The ids whose records the next jobs of an import drain will want: manual entries with an
/// `account_id` (README, "Manual and bulk jobs") of the customer actions, due and pending.
async fn upcoming(store: &dyn Store, limit: usize) -> Vec<String> {
    let sources: Vec<&str> = ManualSource::ALL.iter().map(|s| s.as_str()).collect();
    let actions: Vec<&str> = Action::ALL
        .iter()
        .filter(|a| a.target() == TargetAccount::Customer)
        .map(|a| a.as_str())
        .collect();
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    match store.upcoming_account_ids(&sources, &actions, limit).await {
        Ok(ids) => ids,
        Err(e) => {
            // Reading ahead only saves requests: without it each job reads its own.
            tracing::debug!(error = %e, "cannot read the upcoming jobs' account ids");
            Vec::new()
        }
    }
}

impl SiteAccountReads {
    /// Starts the reader; every read goes through `client`, paced like any other call. A
    /// read names at most one bulk read's ids: those of the jobs waiting, and then those of
    /// the next due jobs (`upcoming`), whose records answer them when they are claimed.
    pub(super) fn spawn(client: Client, store: Arc<dyn Store>) -> SiteAccountReads {
        let (queue, mut waiting) = mpsc::channel::<Read>(QUEUED);
        tokio::spawn(async move {
            let mut ahead = ReadAhead::default();
            while let Some(first) = waiting.recv().await {
                if let Some(account) = ahead.take(&first.account_id) {
                    let _ = first.reply.send(Ok(Some(account)));
                    continue;
                }
                let next = upcoming(store.as_ref(), BULK_READ_IDS).await;
                let mut batch = vec![first];
                let read = client
                    .site_users_bulk_gathered(|| {
                        while batch.len() < BULK_READ_IDS {
                            match waiting.try_recv() {
                                Ok(read) => match ahead.take(&read.account_id) {
                                    Some(account) => {
                                        let _ = read.reply.send(Ok(Some(account)));
                                    }
                                    None => batch.push(read),
                                },
                                Err(_) => break,
                            }
                        }
                        let mut ids: Vec<String> =
                            batch.iter().map(|r| r.account_id.clone()).collect();
                        for id in next {
                            if ids.len() >= BULK_READ_IDS {
                                break;
                            }
                            if !ids.contains(&id) && !ahead.has(&id) {
                                ids.push(id);
                            }
                        }
                        ids
                    })
                    .await;
                let ids: Vec<&str> = batch.iter().map(|r| r.account_id.as_str()).collect();
                let answers = answer_each(&ids, read.clone());
                if let Ok(accounts) = read {
                    ahead.keep(
                        accounts
                            .into_iter()
                            .filter(|a| !ids.contains(&a.account_id.as_str())),
                    );
                }
                for (read, answer) in batch.into_iter().zip(answers) {
                    // The job may have gone away (its worker is shutting down).
                    let _ = read.reply.send(answer);
                }
            }
        });
        SiteAccountReads { queue }
    }

    /// The account's record if the bulk read that this id joined holds it; `Ok(None)` if
    /// it does not, which is no answer yet.
    pub(super) async fn read(&self, account_id: &str) -> Answer {
        let (reply, answer) = oneshot::channel();
        let read = Read {
            account_id: account_id.to_owned(),
            reply,
        };
        let stopped = || {
            Err(CallError::Transient {
                detail: "the worker's account reader stopped".into(),
            })
        };
        if self.queue.send(read).await.is_err() {
            return stopped();
        }
        answer.await.unwrap_or_else(|_| stopped())
    }
}

/// One answer per id, in order. A refusal other than 403 may be about one id of the batch
/// (a bulk read names many): then no id counts as answered, and each job reads its own
/// singly, so that it gets the answer the single read gives it. A 403, a rate limit, bad
/// credentials or a server error say the same about every id, and are every job's answer.
fn answer_each(ids: &[&str], read: Result<Vec<Account>, CallError>) -> Vec<Answer> {
    match read {
        Ok(accounts) => {
            let by_id: HashMap<&str, &Account> = accounts
                .iter()
                .map(|account| (account.account_id.as_str(), account))
                .collect();
            ids.iter()
                .map(|id| Ok(by_id.get(id).map(|&account| account.clone())))
                .collect()
        }
        Err(err) if may_be_about_one_id(&err) => ids.iter().map(|_| Ok(None)).collect(),
        Err(err) => ids.iter().map(|_| Err(err.clone())).collect(),
    }
}

fn may_be_about_one_id(err: &CallError) -> bool {
    match err {
        CallError::Rejected { status, .. } => *status != 403,
        CallError::RateLimited { .. }
        | CallError::Unauthorized { .. }
        | CallError::Transient { .. }
        | CallError::NotConfigured { .. }
        | CallError::MissingTarget { .. }
        | CallError::DirectoryNotWritable => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str) -> Account {
        Account {
            account_id: id.into(),
            account_type: "customer".into(),
            email: None,
            status: Some("active".into()),
            directory_status: None,
            membership_status: None,
        }
    }

    #[test]
    fn each_id_gets_its_own_record_or_none() {
        let answers = answer_each(
            &["qm:1", "qm:2", "qm:1"],
            Ok(vec![account("qm:1"), account("qm:9")]),
        );
        assert_eq!(answers[0].as_ref().unwrap(), &Some(account("qm:1")));
        assert_eq!(answers[1].as_ref().unwrap(), &None);
        assert_eq!(
            answers[2].as_ref().unwrap(),
            &Some(account("qm:1")),
            "two jobs on one account"
        );
    }

    #[test]
    fn a_refusal_that_may_be_about_one_id_answers_nobody() {
        let refused = CallError::Rejected {
            status: 400,
            body: "bad accountId".into(),
        };
        let answers = answer_each(&["qm:1", "qm:2"], Err(refused));
        assert!(answers.iter().all(|a| matches!(a, Ok(None))));
    }

    #[test]
    fn a_refusal_of_the_credentials_or_a_rate_limit_is_every_jobs_answer() {
        for err in [
            CallError::Rejected {
                status: 403,
                body: String::new(),
            },
            CallError::RateLimited {
                status: 429,
                wait: None,
            },
        ] {
            let answers = answer_each(&["qm:1", "qm:2"], Err(err));
            assert!(answers.iter().all(Result::is_err));
        }
    }
}
