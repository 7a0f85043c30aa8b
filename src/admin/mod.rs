//! The library half of the admin CLI: keys, mediators, following and exporting
//! alerts, and the development setup. The binary parses arguments and prints;
//! the logic lives here so tests drive it directly. Inputs are operator input
//! (trusted to mean what they say, still validated); stream entries are not.

pub mod alerts;
pub mod dev;
pub mod export;
pub mod keys;
pub mod mediators;
pub mod purge;

use crate::bus::Store;
use crate::config::Settings;

/// Opens the store named by the configuration.
pub fn store(settings: &Settings) -> Result<Store, crate::bus::StoreError> {
    Store::new(&settings.redis)
}
