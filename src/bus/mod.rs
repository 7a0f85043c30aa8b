//! Redis Streams: key names, the connection, the producer that appends one entry
//! per tip, readers for the admin tools, and retention. Entries read back from
//! Redis are treated as untrusted (another process may have written them).

mod alerts;
mod markers;
pub mod names;
pub mod queue;
mod retention;
mod store;
pub mod timing;

pub use alerts::{
    AlertEntry, AlertProducer, AlertReader, Appended, COARSE_APPEND_LUA, MAX_THREAD_TIPS,
    SenderState, StoredAlert, coarse_script, is_stream_id, parse_entry,
};
pub use names::Keys;
pub use queue::WorkQueue;
pub use retention::trim_older_than;
pub use store::{Store, StoreError};
