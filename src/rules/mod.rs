//! Payload → job plans: the `[[sources.rules]]` of a source, compiled once at start and applied
//! to every verified delivery (README, Rules).
//!
//! A rule reads the body with JSON Pointers (RFC 6901). `when` gates the rule on the whole body;
//! `for_each` fans it out over an array, with `where` choosing elements and `email`,
//! `account_id` and `at` read relative to each element (an `email` of `""` takes the element
//! itself, for arrays of plain addresses). A delivery is mapped all or nothing: one element that
//! cannot be mapped makes the whole delivery [`Unmappable`] (HTTP 422), so a half-understood
//! payload never offboards half a list.
//!
//! Times: `at` is a `YYYY-MM-DD` date (midnight in `timezone`), an RFC 3339 timestamp, or epoch
//! milliseconds (a JSON integer or an all-digit string). `delay` and each step's `after` are
//! exact spans added to that instant, not calendar days, so `1d` across a DST change is 24
//! hours.
//!
//! The rooms, in the order a rule goes through them:
//! - `spec`: [`RuleSpec`], what the TOML says;
//! - `compile`: [`Rule::compile`], which checks a spec once, at start, into a [`Rule`];
//! - `apply`: [`map_delivery`] and [`Rule::apply`], a rule read against one body;
//! - `instant`: the `at` formats and the arithmetic of delays.

mod apply;
mod compile;
mod instant;
mod spec;

pub use apply::{Unmappable, map_delivery};
pub use compile::Rule;
pub use instant::parse_instant;
pub use spec::{ActionSpec, ActionTable, RuleSpec};

#[cfg(test)]
mod tests;
