//! A hand-over step, start to end (README, "Hand-over before removal"): resolve the leaver
//! as every step does, resolve the successor once per chain, then find the leaver's items by
//! owner, move them, and read what Atlassian shows afterwards. What moved and what stayed is
//! written to the job after every batch (`HandedOver`, with an event naming the items), so a
//! crash loses nothing: the re-run follows the bulk tasks it started, then finds only what
//! the leaver still owns.

mod successor;

use std::time::Duration;

use super::Worker;
use super::execute::{self, Lookups, Step, classify_error};
use crate::atlassian::handover::{DASHBOARDS_PER_EDIT, ISSUES_PER_EDIT, ItemAnswer};
use crate::atlassian::{CallError, Client};
use crate::domain::{ApiFamily, HandOver, HandedOver, Job, Outcome};

/// The most items one event names: an event's detail is bounded (`MAX_DETAIL_BYTES`).
const ITEMS_PER_EVENT: usize = 100;
/// How long one attempt follows a bulk task before it lets go, at most: half the job's lease
/// is the other bound, so the lease never runs out while a task is followed. The task stays
/// recorded and the next attempt follows it on.
const FOLLOW_FOR: Duration = Duration::from_secs(600);
/// The longest wait between two looks at a bulk task.
const POLL_AT_MOST: Duration = Duration::from_secs(2);

impl Worker {
    /// The next step of a hand-over job.
    pub(super) async fn hand_over(&self, job: &Job, kind: HandOver, earlier: Option<&Job>) -> Step {
        match self.try_hand_over(job, kind, earlier).await {
            Ok(step) | Err(step) => step,
        }
    }

    async fn try_hand_over(
        &self,
        job: &Job,
        kind: HandOver,
        earlier: Option<&Job>,
    ) -> Result<Step, Step> {
        for family in [ApiFamily::Site, ApiFamily::Admin] {
            if !self.client.is_configured(family) {
                return Err(Step::failed(
                    "atlassian_not_configured",
                    format!(
                        "{} looks people up in the org directory and moves items on the site: \
                         it needs the {} credentials in [atlassian], which are not configured",
                        job.action,
                        family.as_str()
                    ),
                ));
            }
        }
        let lookups = Lookups {
            client: &self.client,
            site_accounts: &self.site_accounts,
        };
        let (leaver, newly_resolved) = execute::resolve(&lookups, job, earlier).await?;
        execute::check_account(&self.config.safety, job, &leaver)?;
        let fallback = self.config.handover.fallback_successor.as_ref();
        let (successor, newly_named) =
            successor::resolve(&self.client, job, earlier, fallback, &leaver.account_id).await?;
        if newly_resolved || newly_named {
            self.record_account(job, &leaver, Some(&successor)).await?;
        }
        let mut run = Run {
            worker: self,
            job,
            kind,
            leaver: leaver.account_id,
            successor,
            done: job.handover.clone().unwrap_or_default(),
        };
        // What stayed is found again on every run: the leaver may since have lost it.
        run.done.kept.clear();
        match kind {
            HandOver::Filters => run.filters().await,
            HandOver::Dashboards => run.dashboards().await,
            HandOver::OpenIssues => run.open_issues().await,
            HandOver::ProjectLeads => run.project_leads().await,
            HandOver::AutomationRules => run.automation_rules().await,
        }
    }
}

/// One run of a hand-over step.
struct Run<'a> {
    worker: &'a Worker,
    job: &'a Job,
    kind: HandOver,
    leaver: String,
    successor: String,
    done: HandedOver,
}

impl Run<'_> {
    fn client(&self) -> &Client {
        &self.worker.client
    }

    fn item(&self, id: &str) -> String {
        format!("{}:{id}", self.kind.item_kind())
    }

    /// In dry run, what would move, and nothing else.
    fn dry_run(&self, items: &[String]) -> Option<Step> {
        self.worker.config.dry_run.then(|| Step::Succeeded {
            outcome: Outcome::DryRun,
            detail: format!(
                "dry run: would give {} item(s) of the leaver to account {}: {}",
                items.len(),
                self.successor,
                list(items)
            ),
        })
    }

    /// Writes what moved and what stayed, with an event for this batch.
    async fn record(&self, detail: String) -> Result<(), Step> {
        let mut delay = Duration::from_millis(200);
        for _ in 0..8 {
            match self
                .worker
                .store
                .record_handover(self.job, &self.done, &detail)
                .await
            {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    return Err(Step::Transient {
                        detail: "the lease was lost during the hand-over; the re-run goes on \
                                 with what the leaver still owns"
                            .into(),
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?delay, "cannot record the hand-over's progress; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        Err(Step::Transient {
            detail: "cannot record the hand-over's progress: the store is unavailable".into(),
        })
    }

    /// Records the answers of one batch of items (`filter:10001`), in events of at most
    /// [`ITEMS_PER_EVENT`] items.
    async fn answered(&mut self, answers: Vec<(String, ItemAnswer)>) -> Result<(), Step> {
        for chunk in answers.chunks(ITEMS_PER_EVENT) {
            let mut moved = Vec::new();
            let mut kept = Vec::new();
            for (item, answer) in chunk {
                let item = item.clone();
                match answer {
                    ItemAnswer::Accepted => {
                        self.done.moved(item.clone());
                        moved.push(item);
                    }
                    ItemAnswer::Refused(why) => {
                        self.done.kept(item.clone(), why.clone());
                        kept.push(format!("{item} ({why})"));
                    }
                }
            }
            self.record(self.batch_detail(&moved, &kept)).await?;
        }
        Ok(())
    }

    fn batch_detail(&self, moved: &[String], kept: &[String]) -> String {
        let mut detail = format!(
            "{}: gave {} item(s) to account {}",
            self.job.action,
            moved.len(),
            self.successor
        );
        if !moved.is_empty() {
            detail.push_str(&format!(": {}", moved.join(", ")));
        }
        if !kept.is_empty() {
            detail.push_str(&format!("; refused: {}", kept.join(", ")));
        }
        detail
    }

    /// Reads the leaver's items again: an item whose move was accepted and that the leaver
    /// still owns was not moved.
    async fn read_back(&mut self, still_owned: Vec<String>) -> Result<(), Step> {
        let contradicted: Vec<String> = still_owned
            .iter()
            .map(|id| self.item(id))
            .filter(|item| self.done.moved.contains(item))
            .collect();
        if contradicted.is_empty() {
            return Ok(());
        }
        for item in &contradicted {
            self.done.kept(
                item.clone(),
                "the move was accepted, but the leaver still owns it when read back".into(),
            );
        }
        self.record(format!(
            "{}: read back as still the leaver's: {}",
            self.job.action,
            list(&contradicted)
        ))
        .await
    }

    /// The step's end: done when everything found moved, `handover_incomplete` when something
    /// stayed with the leaver (so the chain's removal does not run), `already_done` when the
    /// leaver owned nothing of the kind.
    fn finish(&self) -> Step {
        let kept: Vec<String> = self
            .done
            .kept
            .iter()
            .map(|kept| format!("{} ({})", kept.item, kept.reason))
            .collect();
        let moved = &self.done.moved;
        let summary = format!(
            "{} item(s) given to account {}: {}",
            moved.len(),
            self.successor,
            list(moved)
        );
        if !kept.is_empty() && self.kind != HandOver::AutomationRules {
            return Step::failed(
                format!("handover_incomplete:kept={}", kept.len()),
                format!(
                    "{summary}; {} item(s) stayed with the leaver: {}",
                    kept.len(),
                    kept.join(", ")
                ),
            );
        }
        let kept_note = if kept.is_empty() {
            String::new()
        } else {
            format!(
                "; {} rule(s) still name the leaver and must be transferred by hand \
                 (Automation, Transfer user): {}",
                kept.len(),
                kept.join(", ")
            )
        };
        Step::Succeeded {
            outcome: if moved.is_empty() && kept.is_empty() {
                Outcome::AlreadyDone
            } else {
                Outcome::Done
            },
            detail: format!("{summary}{kept_note}"),
        }
    }

    async fn filters(mut self) -> Result<Step, Step> {
        let found = self.call(self.client().owned_filters(&self.leaver)).await?;
        if let Some(step) = self.dry_run(&self.items(&found)) {
            return Ok(step);
        }
        for chunk in found.chunks(ITEMS_PER_EVENT) {
            let mut answers = Vec::with_capacity(chunk.len());
            for id in chunk {
                let answer = self
                    .call(self.client().change_filter_owner(id, &self.successor))
                    .await?;
                answers.push((self.item(id), answer));
            }
            self.answered(answers).await?;
        }
        if !found.is_empty() {
            let still = self.call(self.client().owned_filters(&self.leaver)).await?;
            self.read_back(still).await?;
        }
        Ok(self.finish())
    }

    async fn dashboards(mut self) -> Result<Step, Step> {
        let found = self
            .call(self.client().owned_dashboards(&self.leaver))
            .await?;
        if let Some(step) = self.dry_run(&self.items(&found)) {
            return Ok(step);
        }
        for chunk in found.chunks(DASHBOARDS_PER_EDIT) {
            let answers = self
                .call(
                    self.client()
                        .change_dashboard_owners(chunk, &self.successor),
                )
                .await?
                .into_iter()
                .map(|(id, answer)| (self.item(&id), answer))
                .collect();
            self.answered(answers).await?;
        }
        if !found.is_empty() {
            let still = self
                .call(self.client().owned_dashboards(&self.leaver))
                .await?;
            self.read_back(still).await?;
        }
        Ok(self.finish())
    }

    async fn open_issues(mut self) -> Result<Step, Step> {
        // A task an earlier run started is followed first: searching before it ends would
        // find its issues still assigned to the leaver and reassign them twice.
        for task in self.done.tasks.clone() {
            self.follow(&task).await?;
        }
        let found = self.call(self.client().open_issues(&self.leaver)).await?;
        if let Some(step) = self.dry_run(&self.items(&found)) {
            return Ok(step);
        }
        for chunk in found.chunks(ISSUES_PER_EDIT) {
            let task = self
                .call(self.client().reassign_issues(chunk, &self.successor))
                .await?;
            self.done.tasks.push(task.clone());
            self.record(format!(
                "{}: bulk task {task} reassigns {} issue(s) to account {}, without notifications",
                self.job.action,
                chunk.len(),
                self.successor
            ))
            .await?;
            self.follow(&task).await?;
        }
        if !found.is_empty() {
            let still = self.call(self.client().open_issues(&self.leaver)).await?;
            self.read_back(still).await?;
        }
        Ok(self.finish())
    }

    /// Follows a bulk task until it ends, then records the issues it changed and those it
    /// could not.
    async fn follow(&mut self, task: &str) -> Result<(), Step> {
        let started = tokio::time::Instant::now();
        let follow_for = FOLLOW_FOR.min(self.worker.config.worker.lease / 2);
        let mut wait = Duration::from_millis(100);
        let ended = loop {
            let seen = self.call(self.client().bulk_task(task)).await?;
            if seen.has_ended() {
                break seen;
            }
            if started.elapsed() >= follow_for {
                return Err(Step::Transient {
                    detail: format!(
                        "bulk task {task} is still {} after {follow_for:?}; the next attempt \
                         follows it on",
                        seen.status
                    ),
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(POLL_AT_MOST);
        };
        self.done.tasks.retain(|t| t != task);
        let mut answers: Vec<(String, ItemAnswer)> = ended
            .processed()
            .into_iter()
            .map(|id| (self.item(&id), ItemAnswer::Accepted))
            .collect();
        answers.extend(
            ended
                .failed()
                .into_iter()
                .map(|(id, why)| (self.item(&id), ItemAnswer::Refused(why))),
        );
        if answers.is_empty() {
            return self
                .record(format!(
                    "{}: bulk task {task} ended {} and changed nothing",
                    self.job.action, ended.status
                ))
                .await;
        }
        self.answered(answers).await
    }

    async fn project_leads(mut self) -> Result<Step, Step> {
        let led = self.call(self.client().led_by(&self.leaver)).await?;
        let items: Vec<String> = led
            .projects
            .iter()
            .map(|key| format!("project:{key}"))
            .chain(led.components.iter().map(|id| format!("component:{id}")))
            .collect();
        if let Some(step) = self.dry_run(&items) {
            return Ok(step);
        }
        let mut answers = Vec::new();
        for key in &led.projects {
            let answer = self
                .call(self.client().change_project_lead(key, &self.successor))
                .await?;
            answers.push((format!("project:{key}"), answer));
        }
        for id in &led.components {
            let answer = self
                .call(self.client().change_component_lead(id, &self.successor))
                .await?;
            answers.push((format!("component:{id}"), answer));
        }
        self.answered(answers).await?;
        Ok(self.finish())
    }

    async fn automation_rules(mut self) -> Result<Step, Step> {
        let automation = self.call(self.client().automation()).await?;
        let rules = self
            .call(self.client().rules_of(&automation, &self.leaver))
            .await?;
        let found: Vec<String> = rules
            .iter()
            .map(|rule| format!("{} \"{}\"", self.item(&rule.uuid), rule.name))
            .collect();
        if !rules.is_empty() {
            self.record(format!(
                "{}: {} rule(s) name the leaver as author or actor: {}",
                self.job.action,
                rules.len(),
                found.join(", ")
            ))
            .await?;
        }
        if let Some(step) = self.dry_run(&found) {
            return Ok(step);
        }
        let mut answers = Vec::new();
        for rule in &rules {
            let handed = self
                .client()
                .hand_over_rule(&automation, &rule.uuid, &self.leaver, &self.successor)
                .await;
            let answer = match handed {
                Ok(true) => ItemAnswer::Accepted,
                Ok(false) => ItemAnswer::Refused(
                    "the Rule Management API accepted the change, but the rule still names \
                     the leaver"
                        .into(),
                ),
                Err(CallError::Rejected { status, body }) => {
                    ItemAnswer::Refused(format!("HTTP {status}: {body}"))
                }
                Err(e) => return Err(classify_error(e, "the automation rule hand-over")),
            };
            answers.push((self.item(&rule.uuid), answer));
        }
        self.answered(answers).await?;
        Ok(self.finish())
    }

    fn items(&self, ids: &[String]) -> Vec<String> {
        ids.iter().map(|id| self.item(id)).collect()
    }

    /// A call's result, or the step its error makes.
    async fn call<T>(&self, call: impl Future<Output = Result<T, CallError>>) -> Result<T, Step> {
        call.await.map_err(|e| {
            classify_error(
                e,
                &format!("{} ({})", self.job.action, self.kind.item_kind()),
            )
        })
    }
}

/// Ids for a message, at most [`ITEMS_PER_EVENT`] of them.
fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    let shown: Vec<&str> = items
        .iter()
        .take(ITEMS_PER_EVENT)
        .map(String::as_str)
        .collect();
    let more = items.len().saturating_sub(ITEMS_PER_EVENT);
    if more > 0 {
        format!(
            "{} and {more} more (the job's handover lists them all)",
            shown.join(", ")
        )
    } else {
        shown.join(", ")
    }
}
