//! The ground floor: the vocabulary every other room speaks. Jobs and their states
//! (`job`), the actions and what they touch (`action`), what a delivery asks for (`plan`), validated values (`ids`), the
//! safety policy (`safety`), durations (`duration`) and what an undo gives back (`undo`).
//! Nothing here reads a file, a
//! database or the network.

mod action;
mod answer;
pub mod duration;
mod handover;
mod ids;
mod job;
mod lane;
mod plan;
mod safety;
pub mod undo;

pub use action::*;
pub use answer::{Answer, DeliveryAnswer, Refusal};
pub use handover::*;
pub use ids::*;
pub use job::*;
pub use lane::{Lane, URGENT_WITHIN};
pub use plan::{ManualSource, NewCancel, NewChain, NewStep, Plan};
pub use safety::Safety;
