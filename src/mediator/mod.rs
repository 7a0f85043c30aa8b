//! Mediators and their devices. For now: the directory of enrolled recipients
//! (public age keys) by zone, which decides who can open a tip.

mod directory;

pub use directory::{DirectoryError, MediatorDirectory, MediatorRecord, NewMediator, Routing};
