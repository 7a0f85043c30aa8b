//! The HTTP server's mechanics, under every route: the TLS listener and its
//! admission (`https`), the certificate and its hot reload (`tls`), request
//! read-ahead and body deadlines, the security headers, the drain at shutdown
//! and the named background tasks. Untrusted: every connection and request
//! byte before a route sees it.

pub mod body_deadline;
pub mod drain;
mod headers;
pub mod https;
pub mod read_ahead;
mod tasks;
pub mod tls;

pub use drain::Drain;
pub use headers::{CONTENT_SECURITY_POLICY, PERMISSIONS_POLICY, security_headers};
pub use tasks::BackgroundTasks;
