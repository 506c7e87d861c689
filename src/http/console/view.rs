//! The parts every console page shares: the document, the header with the worker's state,
//! times (absolute and relative), state badges and links. maud escapes every value spliced in.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use crate::domain::{JobState, PauseReason, WorkerState};

/// Which part of the console a page belongs to, for the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Jobs,
    Deliveries,
    People,
    Customers,
    Import,
}

/// What the header of a signed-in page shows.
pub(super) struct Chrome {
    pub section: Section,
    pub worker: WorkerState,
    pub dry_run: bool,
    /// The checks that failed in the latest `doctor` run.
    pub doctor_failures: Vec<String>,
    /// This process's use of each API family's budget, and any 429 hold (README, "Running
    /// several replicas").
    pub budget: Vec<crate::atlassian::FamilyUse>,
    pub csrf: String,
    /// This page's path and query, where the pause and resume buttons come back to.
    pub here: String,
}

pub(super) fn document(title: &str, chrome: Option<&Chrome>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · offboard" }
                link rel="stylesheet" href="/console/style.css";
            }
            body {
                @if let Some(chrome) = chrome {
                    (header(chrome))
                } @else {
                    header.top { span.brand { "offboard" } }
                }
                main { (content) }
            }
        }
    }
}

fn header(chrome: &Chrome) -> Markup {
    let nav = |section: Section, href: &str, label: &str| {
        html! {
            a href=(href) aria-current=[(chrome.section == section).then_some("page")] { (label) }
        }
    };
    html! {
        header.top {
            a.brand href="/console" { "offboard" }
            nav {
                (nav(Section::Jobs, "/console", "Jobs"))
                (nav(Section::Deliveries, "/console/deliveries", "Deliveries"))
                (nav(Section::People, "/console/people", "People"))
                (nav(Section::Customers, "/console/customers", "Customers"))
                (nav(Section::Import, "/console/import", "Import"))
            }
            div.worker {
                @if chrome.worker.paused {
                    span.badge.state-failed { "Worker paused" }
                    span.why { (pause_explanation(chrome.worker.reason)) }
                    (header_button(chrome, "/console/worker/resume", "Resume worker"))
                } @else {
                    span.badge.state-succeeded { "Worker running" }
                    (header_button(chrome, "/console/worker/pause", "Pause worker"))
                }
                @if !chrome.doctor_failures.is_empty() {
                    span.badge.state-failed.doctor
                        title={ "offboard doctor failed: " (chrome.doctor_failures.join(", ")) " — run `offboard doctor` for how to fix each" } {
                        "Doctor: " (chrome.doctor_failures.len()) " failing"
                    }
                }
                @for family in &chrome.budget {
                    @if let Some(held) = family.paused_for {
                        span.badge.state-failed.budget
                            title={ "Atlassian answered 429: every request of the " (family.family.as_str()) " family waits until its reset" } {
                            (family.family.as_str()) " held " (held.as_secs() + 1) " s (429)"
                        }
                    } @else {
                        span.badge.budget
                            title={ "requests per second to the " (family.family.as_str()) " family lately, of requests_per_second for the whole fleet" } {
                            (family.family.as_str()) " " (format!("{:.1}", family.recent_rate)) "/" (format!("{}", family.rate)) " rps"
                        }
                    }
                }
                @if chrome.dry_run {
                    span.badge.dry title="dry_run = true: jobs resolve their target and record what they would do, nothing changes in Atlassian" { "Dry run" }
                } @else {
                    span.badge.live title="dry_run = false: approved and due jobs change accounts in Atlassian" { "Live" }
                }
            }
            form.logout method="post" action="/console/logout" {
                (csrf_field(&chrome.csrf))
                button.link type="submit" { "Log out" }
            }
        }
    }
}

fn header_button(chrome: &Chrome, action: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf_field(&chrome.csrf))
            input type="hidden" name="return_to" value=(chrome.here);
            button type="submit" { (label) }
        }
    }
}

pub(super) fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

fn pause_explanation(reason: Option<PauseReason>) -> &'static str {
    match reason {
        Some(PauseReason::Manual) => "by an operator",
        Some(PauseReason::Auth) => {
            "Atlassian rejected the credentials (401): fix them, then resume"
        }
        Some(PauseReason::Permission) => {
            "the site credentials lack \"Browse users and groups\", so lookups would find nobody: grant it, then resume"
        }
        Some(PauseReason::BlastRadius) => {
            "the hourly action limit (max_actions_per_hour) was reached: check what ran, then resume"
        }
        None => "",
    }
}

pub(super) fn state_label(state: JobState) -> &'static str {
    match state {
        JobState::Pending => "pending",
        JobState::AwaitingApproval => "awaiting approval",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

pub(super) fn state_badge(state: JobState) -> Markup {
    html! { span class={ "badge state-" (state.as_str()) } { (state_label(state)) } }
}

pub(super) fn job_link(id: impl std::fmt::Display) -> Markup {
    html! { a href={ "/console/jobs/" (id) } { "#" (id) } }
}

/// An absolute UTC time with how far it is from now underneath.
pub(super) fn when(at: &DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(crate::domain::rfc3339(at)) {
            (at.format("%Y-%m-%d %H:%M UTC"))
            br;
            span.relative { (relative(*at, now)) }
        }
    }
}

/// "in 3 days", "5 min ago", "just now": rounded to the nearest unit, so a job due in 29 days
/// and 23 hours reads "in 30 days".
pub(super) fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    let seconds = (at - now).num_seconds();
    let distance = seconds.abs();
    if distance < MINUTE {
        return "just now".to_owned();
    }
    let rounded = |unit: i64| (distance + unit / 2) / unit;
    let amount = |n: i64, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let text = if rounded(MINUTE) < 60 {
        format!("{} min", rounded(MINUTE))
    } else if rounded(HOUR) < 24 {
        amount(rounded(HOUR), "hour", "hours")
    } else if rounded(DAY) < 60 {
        amount(rounded(DAY), "day", "days")
    } else if rounded(30 * DAY) < 24 {
        amount(rounded(30 * DAY), "month", "months")
    } else {
        amount(rounded(365 * DAY), "year", "years")
    };
    if seconds > 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Percent-encodes a query value (an email typed into the filter, say).
pub(super) fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn relative_times_read_like_speech() {
        let now = Utc::now();
        let cases = [
            (Duration::seconds(10), "just now"),
            (Duration::seconds(-59), "just now"),
            (Duration::minutes(5), "in 5 min"),
            (Duration::minutes(-5), "5 min ago"),
            (Duration::minutes(80), "in 1 hour"),
            (Duration::minutes(59) + Duration::seconds(50), "in 1 hour"),
            (Duration::days(30) - Duration::minutes(2), "in 30 days"),
            (Duration::hours(-23), "23 hours ago"),
            (Duration::days(3) + Duration::minutes(1), "in 3 days"),
            (Duration::days(-1), "1 day ago"),
            (Duration::days(90), "in 3 months"),
            (Duration::days(-800), "2 years ago"),
        ];
        for (offset, expected) in cases {
            assert_eq!(relative(now + offset, now), expected, "{offset:?}");
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_value("a+b@x.io"), "a%2Bb%40x.io");
        assert_eq!(query_value("é &"), "%C3%A9%20%26");
    }

    #[test]
    fn values_are_escaped() {
        let page = document("<script>", None, html! { p { ("<b>\"x\"</b>") } }).into_string();
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("&lt;b&gt;&quot;x&quot;&lt;/b&gt;"));
        assert!(!page.contains("<b>"));
    }
}
