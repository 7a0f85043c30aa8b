//! Graceful stop: requests in flight when the gateway stops are either
//! acknowledged and stored, or fail without storing anything; never half done.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::support::app::{open_tip, spawn_app_with};

/// Senders looping at once, the most requests they send together, and how
/// long the whole exchange may take.
const SENDERS: usize = 4;
const MAX_REQUESTS: usize = 200;
const DEADLINE: Duration = Duration::from_secs(10);
/// The pause between a sender's requests once the stop has begun, so that the
/// budget outlasts even a stop that runs into its timeout.
const PACE_WHILE_STOPPING: Duration = Duration::from_millis(20);

/// One request: its number and its status, or why it failed.
type Outcome = (usize, Result<u16, reqwest::Error>);

#[tokio::test]
async fn a_graceful_stop_leaves_no_tip_half_done() {
    // A short drain, so that the senders, within their budget, are still
    // sending when the stop completes, even when it runs into its timeout.
    let app =
        spawn_app_with(|s| s.server.shutdown_timeout = std::time::Duration::from_secs(1)).await;
    let deadline = Instant::now() + DEADLINE;
    let issued = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let stopping = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));
    let first_ack = Arc::new(Notify::new());

    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/tips");
            let (issued, in_flight, stopping, stopped, first_ack) = (
                issued.clone(),
                in_flight.clone(),
                stopping.clone(),
                stopped.clone(),
                first_ack.clone(),
            );
            tokio::spawn(async move {
                let mut outcomes: Vec<Outcome> = Vec::new();
                while !stopped.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let i = issued.fetch_add(1, Ordering::SeqCst);
                    if i >= MAX_REQUESTS {
                        break;
                    }
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    let status = client
                        .post(&url)
                        .header("Accept", "application/json")
                        .timeout(Duration::from_secs(5))
                        .form(&[
                            ("text", format!("in flight {i}").as_str()),
                            ("zone", "north"),
                            ("urgency", "now"),
                        ])
                        .send()
                        .await
                        .map(|r| r.status().as_u16());
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    if matches!(status, Ok(200)) {
                        // `notify_one` keeps a permit, so a waiter that comes
                        // later still wakes.
                        first_ack.notify_one();
                    }
                    outcomes.push((i, status));
                    // No await between requests before the stop: whenever
                    // another task runs, every sender is inside a request.
                    if stopping.load(Ordering::SeqCst) {
                        tokio::time::sleep(PACE_WHILE_STOPPING).await;
                    }
                }
                outcomes
            })
        })
        .collect();

    tokio::time::timeout(DEADLINE, first_ack.notified())
        .await
        .expect("a tip was acknowledged before the stop");
    // The test runtime has one thread, so this reads a settled count.
    let in_flight_at_stop = in_flight.load(Ordering::SeqCst);
    stopping.store(true, Ordering::SeqCst);
    let stop_began = Instant::now();
    tokio::time::timeout(
        DEADLINE,
        app.drain.stop(app.handle.clone(), Duration::from_secs(1)),
    )
    .await
    .expect("the stop completes");
    let stop_took = stop_began.elapsed();
    stopped.store(true, Ordering::SeqCst);

    let mut outcomes = Vec::new();
    for sender in senders {
        outcomes.extend(sender.await.unwrap());
    }
    let acknowledged: BTreeSet<String> = outcomes
        .iter()
        .filter(|(_, status)| matches!(status, Ok(200)))
        .map(|(i, _)| format!("in flight {i}"))
        .collect();
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|(i, status)| status.as_ref().err().map(|e| format!("{i}: {e:?}")))
        .collect();
    assert!(
        in_flight_at_stop > 0,
        "requests were in flight when the stop began"
    );
    assert!(
        !acknowledged.is_empty(),
        "at least one tip was acknowledged"
    );
    assert!(outcomes.len() <= MAX_REQUESTS);

    let stored_list: Vec<String> = app
        .alerts()
        .await
        .iter()
        .map(|a| open_tip(a, &app.escrow).unwrap().text)
        .collect();
    let stored: BTreeSet<String> = stored_list.iter().cloned().collect();
    assert_eq!(stored.len(), stored_list.len(), "no tip is stored twice");
    // Not assert_eq: the two full sets would bury the difference.
    assert!(
        stored == acknowledged,
        "every acknowledged tip is stored, and only those: stored but not \
         acknowledged {:?}, acknowledged but not stored {:?}; {} sent, {} in \
         flight when the stop began, the stop took {stop_took:?}; failures: {failed:#?}",
        stored.difference(&acknowledged).collect::<Vec<_>>(),
        acknowledged.difference(&stored).collect::<Vec<_>>(),
        outcomes.len(),
        in_flight_at_stop,
    );
    assert!(
        app.client.get(app.url("/healthz")).send().await.is_err(),
        "the server no longer accepts connections"
    );
}
