//! Proof of offboarding (README, "Proof for auditors"): a person's case, computed from what
//! the store records ([`case`], pure), read from the store ([`people`]), and the time-to-revoke
//! report over the cases of a period ([`report`]).

pub mod case;
pub mod people;
pub mod report;
