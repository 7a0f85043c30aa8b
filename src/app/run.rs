//! Running a built [`Application`]: what tests and the binary reach of it, and
//! the graceful stop on SIGTERM or SIGINT. Untrusted: nothing (signals only).

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;

use super::{Application, Drain};
use crate::bus::{DurabilityWatch, Store};
use crate::outbound::relay::RelayWorker;
use crate::server::tls::ReloadingCert;
use crate::telemetry::Metrics;

impl Application {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The SMTP port and implicit-TLS port, when email is on.
    pub fn smtp_ports(&self) -> Option<(u16, Option<u16>)> {
        self.smtp.as_ref().map(|s| (s.port(), s.tls_port()))
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Graceful stop: refuse new requests, finish those in flight, then stop.
    pub fn drain(&self) -> (Drain, ServerHandle, Duration) {
        (
            self.drain.clone(),
            self.server.handle(),
            self.shutdown_timeout,
        )
    }

    /// The Redis durability check (tests run its step instead of waiting a
    /// minute for the background task).
    pub fn durability(&self) -> Arc<DurabilityWatch> {
        self.durability.clone()
    }

    /// The gateway's metrics (what `/metrics` renders).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The reply relay's delivery worker (tests drive its step directly).
    pub fn relay(&self) -> Arc<RelayWorker> {
        self.relay.clone()
    }

    /// The reloading certificate, when serving TLS.
    pub fn certificate(&self) -> Option<Arc<ReloadingCert>> {
        self.cert.clone()
    }

    /// Runs until the server is stopped, then stops the background tasks.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        if let Some(smtp) = &self.smtp {
            smtp.stop(self.shutdown_timeout).await;
        }
        self.tasks.stop().await;
        result
    }

    /// Runs until SIGTERM or SIGINT, then shuts down gracefully: no new
    /// connections, in-flight requests finish (each tip is one atomic append,
    /// so none is ever half-written), then background tasks stop.
    pub async fn run_until_signalled(self) -> std::io::Result<()> {
        let (drain, handle, timeout) = self.drain();
        let smtp = self.smtp.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: refusing new requests, finishing in-flight ones");
            let smtp_stop = async {
                if let Some(smtp) = smtp {
                    smtp.stop(timeout).await;
                }
            };
            tokio::join!(drain.stop(handle, timeout), smtp_stop);
        });
        self.run_until_stopped().await
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
