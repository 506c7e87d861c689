//! The pause and resume buttons of the header.

use axum::extract::State;
use axum::response::Redirect;

use super::ConsoleError;
use super::session::CheckedPost;
use crate::domain::PauseReason;
use crate::http::AppState;

pub(super) async fn pause(
    State(state): State<AppState>,
    post: CheckedPost,
) -> Result<Redirect, ConsoleError> {
    tracing::warn!("worker paused by an operator in the console");
    state.store.pause(PauseReason::Manual).await?;
    Ok(back(post))
}

pub(super) async fn resume(
    State(state): State<AppState>,
    post: CheckedPost,
) -> Result<Redirect, ConsoleError> {
    tracing::info!("worker resumed by an operator in the console");
    state.store.resume().await?;
    Ok(back(post))
}

/// Back to the page the button was on, but only to a console page: the field comes from the
/// browser, and an open redirect would be a gift to phishers.
fn back(post: CheckedPost) -> Redirect {
    let target = post
        .return_to
        .filter(|path| is_console_path(path))
        .unwrap_or_else(|| "/console".to_owned());
    Redirect::to(&target)
}

fn is_console_path(path: &str) -> bool {
    let rest = path.strip_prefix("/console");
    let within = rest.is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']));
    // Printable ASCII only: also keeps the Location header valid.
    within && !path.contains("//") && path.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::is_console_path;

    #[test]
    fn only_console_paths_are_returned_to() {
        for ok in ["/console", "/console?state=failed", "/console/jobs/3"] {
            assert!(is_console_path(ok), "{ok}");
        }
        for bad in [
            "https://evil.example/console",
            "//evil.example",
            "/console//evil.example",
            "/consolex",
            "/api/v1/jobs",
            "/console/\r\nx",
            "",
        ] {
            assert!(!is_console_path(bad), "{bad}");
        }
    }
}
