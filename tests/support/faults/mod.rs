//! The fault-injection rig (tests/api/faults/): a `tipwire serve` child on a
//! private Redis, tipsters flooding every channel, and the ledger that holds
//! the alert stream to what they were told.

pub mod flood;
pub mod ledger;
pub mod rig;
