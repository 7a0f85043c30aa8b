//! Retention: alerts older than the configured number of days are trimmed,
//! on demand and by the gateway's own timer, and newer ones are kept.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tipwire::bus::trim_older_than;

use crate::helpers::{spawn_app, spawn_app_with};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Writes an entry dated `secs` ago directly, as an old tip would be.
async fn old_entry(app: &crate::helpers::TestApp, age_secs: u64) {
    let mut conn = app.store.conn().await.unwrap();
    let id = format!("{}-0", (now() - age_secs) * 1000);
    let _: String = redis::cmd("XADD")
        .arg(app.store.keys().alerts())
        .arg(id)
        .arg("tip_id")
        .arg(tipwire::domain::TipId::random().as_str())
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn tips_past_retention_are_trimmed_and_newer_ones_kept() {
    let app = spawn_app().await;
    old_entry(&app, 40 * 86_400).await;
    assert_eq!(app.post_tip("fresh", "north", "now").await.status(), 200);
    let removed = trim_older_than(&app.store, now() - 30 * 86_400)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        crate::helpers::open_tip(&alerts[0], &app.escrow)
            .unwrap()
            .text,
        "fresh"
    );
}

#[tokio::test]
async fn the_gateway_trims_by_itself_on_its_timer() {
    let app = spawn_app_with(|s| {
        s.retention.days = 1;
        s.retention.sweep_interval_secs = 1;
    })
    .await;
    old_entry(&app, 2 * 86_400).await;
    let mut conn = app.store.conn().await.unwrap();
    let mut len: u64 = 1;
    for _ in 0..50 {
        len = redis::cmd("XLEN")
            .arg(app.store.keys().alerts())
            .query_async(&mut conn)
            .await
            .unwrap();
        if len == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(len, 0, "the retention task removed the two-day-old entry");
}
