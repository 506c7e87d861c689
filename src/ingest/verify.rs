//! Verifying a delivery: on the raw bytes with the source's scheme, then parsed, held to the
//! source's body timestamp, and named by its dedupe key (README, "Repeated deliveries").

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::Source;
use crate::store::Dedupe;
use crate::verify::{
    BodyTimestampError, Scheme, Verified as SchemeVerified, VerifyError, check_body_timestamp,
    is_hibob_ping,
};

/// Delivery ids longer than this are replaced by their hash: they are keys, not payloads.
const MAX_DELIVERY_ID_LEN: usize = 200;

/// What verifying a body gave.
#[derive(Debug)]
pub enum Verified {
    /// HiBob's setup call: answered at once, nothing verified, nothing recorded.
    Ping,
    Delivery(VerifiedDelivery),
}

/// A delivery whose signature held, parsed, with the key it is told apart by.
#[derive(Debug)]
pub struct VerifiedDelivery {
    /// The sender's id as the API shows it (or the body's hash where there is none).
    pub delivery_id: String,
    pub body_sha256: String,
    /// A signed id alone, or an unsigned one together with the body's hash.
    pub dedupe: Dedupe,
    pub received_at: DateTime<Utc>,
    pub payload: Value,
}

/// Why a body was refused; nothing was recorded.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Verified, but not JSON (or a key repeated in an object).
    #[error("{0}")]
    InvalidJson(String),
    /// The source's `timestamp_pointer` names no readable time in the body.
    #[error("the body has no readable timestamp at {0}")]
    MissingTimestamp(String),
}

/// Verifies `body` as `source`'s sender signed it, at `now`.
pub fn verify(
    source: &Source,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Verified, Refused> {
    // HiBob's setup call must get a fast 2xx before any verification or JSON handling.
    if source.verifier.scheme == Scheme::HiBob && is_hibob_ping(body) {
        return Ok(Verified::Ping);
    }
    let verified = source
        .verifier
        .verify(headers, body, now)
        .inspect_err(|e| tracing::warn!(reason = e.code(), "rejected webhook"))?;
    // Parsed only after verification, which ran on the bytes as received (any BOM included).
    let payload = super::json_body::parse(body).map_err(|e| {
        tracing::warn!("verified webhook is not JSON");
        Refused::InvalidJson(e.to_string())
    })?;
    let received_at = Utc::now();
    check_body_time(source, &payload, received_at)?;
    let body_sha256 = hex::encode(Sha256::digest(body));
    let (delivery_id, id_signed) = delivery_id(source, &verified, headers, &payload, &body_sha256);
    let dedupe = if id_signed {
        Dedupe::SignedId
    } else {
        Dedupe::UnsignedId {
            replay_since: received_at - source.replay_window.to_chrono(),
        }
    };
    Ok(Verified::Delivery(VerifiedDelivery {
        delivery_id,
        body_sha256,
        dedupe,
        received_at,
        payload,
    }))
}

/// The source's `timestamp_pointer`, if any, held to its tolerance. A body without a
/// readable time there is refused like a stale one, naming the pointer.
fn check_body_time(source: &Source, payload: &Value, now: DateTime<Utc>) -> Result<(), Refused> {
    let Some(pointer) = &source.timestamp_pointer else {
        return Ok(());
    };
    check_body_timestamp(payload, pointer, source.verifier.tolerance, now).map_err(|e| {
        tracing::warn!(reason = %e, "rejected webhook");
        match e {
            BodyTimestampError::Stale => Refused::Verify(VerifyError::StaleTimestamp),
            BodyTimestampError::Unreadable => Refused::MissingTimestamp(pointer.clone()),
        }
    })
}

/// The delivery id: the source's `id_header` or `id_pointer`, else the scheme's own id, else
/// the SHA-256 of the raw body; and whether the id is signed, so that it alone names the
/// delivery (README, "Repeated deliveries"). An empty or blank id is no id.
///
/// An id is signed only where nobody but the sender could have named the same body otherwise:
/// a pointer into a body the scheme signs, or the scheme's own signed id, and then only on a
/// source without `id_header`, whose header anybody may drop, blank or set to take the first
/// copy's place. The body's hash, used where there is no id, is never a signed id. Either
/// way a replay that changes only how it is named is held to the replay window.
fn delivery_id(
    source: &Source,
    verified: &SchemeVerified,
    headers: &HeaderMap,
    payload: &Value,
    body_sha256: &str,
) -> (String, bool) {
    let scheme = &source.verifier.scheme;
    let present = |id: &String| !id.trim().is_empty();
    let from_header = source
        .id_header
        .as_ref()
        .and_then(|name| headers.get(name))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(present)
        .map(|id| (id, false));
    let from_pointer = || {
        source
            .id_pointer
            .as_deref()
            .and_then(|p| payload.pointer(p))
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(present)
            .map(|id| (id, scheme.signs_body()))
    };
    let from_scheme = || {
        verified
            .delivery_id
            .clone()
            .filter(present)
            .map(|id| (id, scheme.signs_delivery_id()))
    };
    let Some((id, signed_where_found)) = from_header.or_else(from_pointer).or_else(from_scheme)
    else {
        return (format!("sha256:{body_sha256}"), false);
    };
    let signed = signed_where_found && source.id_header.is_none();
    if id.len() <= MAX_DELIVERY_ID_LEN {
        (id, signed)
    } else {
        (
            format!("sha256:{}", hex::encode(Sha256::digest(id.as_bytes()))),
            signed,
        )
    }
}
