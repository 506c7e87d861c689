//! Every error leaves as `{"error","message"}` (README, HTTP API), also those no handler wrote:
//! axum's own refusals of a malformed path, a repeated query parameter, a wrong content type
//! or method come as plain text or with no body at all. This layer rewrites them on the way
//! out, for every route, so no extractor or route added later can leak one.
//!
//! The console's HTML error pages are left as they are, and so is every JSON answer.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// axum's rejection texts are one line; anything longer is cut, not echoed whole.
const MAX_MESSAGE_BYTES: usize = 300;

pub async fn json_rejections(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json_or_html(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE_BYTES * 4)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        cut(&text, MAX_MESSAGE_BYTES).to_owned()
    };
    let json = ApiError::Rejected { status, message }.into_response();
    // Keep what the refusal said besides its body (e.g. `Allow` on a 405).
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.remove(CONTENT_TYPE);
    let (json_parts, json_body) = json.into_parts();
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, Body::new(json_body))
}

fn is_json_or_html(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with("text/html"))
}

fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
