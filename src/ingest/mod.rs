//! Ingestion, between what arrives (a webhook, a manual request) and the store: a delivery
//! is verified (`verify`), then planned (`plan`): the source's rules mapped, the undos it asks
//! for named, the guards applied. The store gets one typed plan, a [`NewDelivery`], and
//! records it in one transaction (`crate::store`).

pub mod json_body;
pub mod verify;

use chrono::Utc;
use serde_json::Value;

use crate::config::{Config, Source};
use crate::domain::undo::{Undo, UndoAsked};
use crate::domain::{ManualSource, NewCancel, NewChain, Plan};
use crate::rules;
use crate::store::{Dedupe, DeliveryContent, NewDelivery};
use sha2::{Digest, Sha256};

pub use verify::{Refused, Verified, VerifiedDelivery, verify};

/// The plan of a manual request (`crate::manual`): `key` names it, `body` is what was
/// submitted, for its SHA-256; the caller is authenticated, so its key alone names it.
pub fn manual(
    config: &Config,
    source: ManualSource,
    key: &str,
    body: &[u8],
    chains: Vec<NewChain>,
) -> NewDelivery {
    NewDelivery {
        source: source.as_str().to_owned(),
        delivery_id: key.to_owned(),
        body_sha256: hex::encode(Sha256::digest(body)),
        dedupe: Dedupe::SignedId,
        received_at: Utc::now(),
        max_attempts: config.worker.max_attempts,
        content: DeliveryContent::guarded(Vec::new(), chains, None, &config.safety),
    }
}

/// The plan of a verified delivery from `source`, ready for the store.
pub fn plan(config: &Config, source: &Source, delivery: VerifiedDelivery) -> NewDelivery {
    let content = map_payload(config, source, &delivery.payload);
    NewDelivery {
        source: source.name.clone(),
        delivery_id: delivery.delivery_id,
        body_sha256: delivery.body_sha256,
        dedupe: delivery.dedupe,
        received_at: delivery.received_at,
        max_attempts: config.worker.max_attempts,
        content,
    }
}

/// Applies the source's rules; protected people are refused here, before any job exists. A
/// cancel rule with `undo` asks the store to work out what to give back.
fn map_payload(config: &Config, source: &Source, payload: &Value) -> DeliveryContent {
    let now = Utc::now();
    let plans = match rules::map_delivery(&source.rules, payload, now) {
        Ok(plans) => plans,
        Err(unmappable) => {
            tracing::warn!(error = %unmappable, "webhook unmappable");
            return DeliveryContent::Unmappable {
                error: unmappable.to_string(),
            };
        }
    };
    let mut cancels = Vec::new();
    let mut chains = Vec::new();
    let mut undo: Option<Undo> = None;
    for plan in plans {
        match plan {
            Plan::Cancel {
                rule,
                email,
                undo: wanted,
                approval,
                undo_sources,
            } => {
                if wanted {
                    // Planned by the store, inside the transaction that records the
                    // delivery, from the jobs it sees there.
                    let sources = std::iter::once(source.name.clone())
                        .chain(undo_sources)
                        .collect();
                    undo.get_or_insert_with(Undo::default)
                        .asked
                        .push(UndoAsked {
                            email: email.clone(),
                            rule: rule.clone(),
                            approval,
                            sources,
                            approval_above: config.safety.approval_above,
                        });
                }
                cancels.push(NewCancel { email, rule });
            }
            Plan::Chain(chain) => chains.push(chain),
        }
    }
    DeliveryContent::guarded(cancels, chains, undo, &config.safety)
}
