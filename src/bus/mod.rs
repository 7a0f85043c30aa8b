//! Redis Streams: key names, the connection, the producer that appends one entry
//! per tip, readers for the admin tools, and retention; the one work queue
//! (`queue`, with `retries`), the one timer set for every deadline
//! (`timers`), and every Lua script (`scripts`, one `.lua` file each).
//! Entries read back from Redis are treated as untrusted (another process may
//! have written them).

mod alerts;
pub mod durability;
mod markers;
pub mod names;
mod purge;
pub mod queue;
mod retention;
pub mod retries;
pub(crate) mod scripts;
mod store;
pub mod timers;
pub mod timing;

pub use alerts::{
    AlertEntry, AlertProducer, AlertReader, Appended, MAX_THREAD_TIPS, OPT_OUT_MARGIN_SECS,
    SenderState, StoredAlert, backfill_summaries, coarse_script, is_stream_id, parse_entry,
};
pub use durability::{Checked, DurabilityWatch};
pub use names::Keys;
pub use purge::{Purged, purge_before, purge_thread};
pub use queue::WorkQueue;
pub use retention::{migrate_opt_outs, trim_older_than};
pub use retries::Retries;
pub use store::{Store, StoreError};
pub use timers::TimerSet;
