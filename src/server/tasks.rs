//! Named background tasks that run on a timer and stop cleanly when the server
//! stops. Each task's single step is a plain function elsewhere (retention
//! trim, certificate reload, limiter cleanup) so tests call it directly.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct BackgroundTasks {
    cancel: CancellationToken,
    handles: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
}

impl BackgroundTasks {
    /// Runs `step` every `every`, first after one period, until stopped.
    pub fn every<F, Fut>(&mut self, name: &'static str, every: Duration, mut step: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        let handle = tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticker.tick() => step().await,
                }
            }
            tracing::debug!(task = name, "background task stopped");
        });
        self.handles.push((name, handle));
    }

    /// Runs `step` at every minute boundary of the wall clock, until stopped.
    pub fn every_minute<F, Fut>(&mut self, name: &'static str, mut step: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        use crate::bus::timing::MINUTE_MS;
        let cancel = self.cancel.clone();
        let handle = tokio::spawn(async move {
            loop {
                let now = crate::clock::now_ms();
                let wait = Duration::from_millis(MINUTE_MS - now % MINUTE_MS);
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(wait) => step().await,
                }
            }
            tracing::debug!(task = name, "background task stopped");
        });
        self.handles.push((name, handle));
    }

    /// Runs `task` once, handing it the stop signal: for tasks with a loop of
    /// their own (a blocking stream reader) that return when it fires.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task(self.cancel.clone()));
        self.handles.push((name, handle));
    }

    /// Stops every task and waits for each to finish its current step.
    pub async fn stop(self) {
        self.cancel.cancel();
        for (name, handle) in self.handles {
            if handle.await.is_err() {
                tracing::warn!(task = name, "background task ended abnormally");
            }
        }
    }
}
