//! Mediators and their devices: the directory of enrolled recipients (public
//! age keys) by zone, which decides who can open a tip; the alert state
//! machine (claim, release, resolve, reassign); escalation when nobody
//! claims an alert in time; the devices themselves (enrolment from an
//! invite, challenge-signature login, sessions, revocation) and the live
//! feed of alert changes. The HTTP routes over this domain are in `api`.

pub mod claims;
pub mod devices;
mod directory;
pub mod escalation;
pub mod live;
pub mod offboarding;
pub mod revocations;

pub use claims::{
    AlertEvent, AlertState, AlertStates, AlertStatus, Claim, ClaimError, DeviceId, Outcome,
    UnknownOutcome,
};
pub use directory::{DirectoryError, MediatorDirectory, MediatorRecord, NewMediator, Routing};
pub use escalation::{
    EscalationError, EscalationPolicy, EscalationWorker, Escalations, Fired, Stage,
};
