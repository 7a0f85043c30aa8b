use std::time::Duration;

use crate::helpers::{open_tip, spawn_app};

#[tokio::test]
async fn a_graceful_stop_leaves_no_tip_half_done() {
    let app = spawn_app().await;
    let sends: Vec<_> = (0..20)
        .map(|i| {
            let client = app.client.clone();
            let url = app.url("/tips");
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("Accept", "application/json")
                    .form(&[
                        ("text", format!("in flight {i}").as_str()),
                        ("zone", "north"),
                        ("urgency", "now"),
                    ])
                    .send()
                    .await;
                (i, r.map(|r| r.status().as_u16()))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    tokio::time::timeout(Duration::from_secs(10), app.handle.stop(true))
        .await
        .unwrap();

    let mut acknowledged = Vec::new();
    for send in sends {
        let (i, result) = send.await.unwrap();
        if matches!(result, Ok(200)) {
            acknowledged.push(format!("in flight {i}"));
        }
    }
    let mut stored: Vec<String> = app
        .alerts()
        .await
        .iter()
        .map(|a| open_tip(a, &app.escrow).unwrap().text)
        .collect();
    acknowledged.sort();
    stored.sort();
    assert_eq!(
        stored, acknowledged,
        "every acknowledged tip is stored, and only those"
    );
    assert!(
        app.client.get(app.url("/healthz")).send().await.is_err(),
        "the server no longer accepts connections"
    );
}
