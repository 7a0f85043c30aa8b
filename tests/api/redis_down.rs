//! Redis going away: tips are refused with 503 and nothing is acknowledged;
//! when Redis is back the same gateway takes tips again, without a restart.

use std::time::Duration;

use crate::support::app::{error_code, spawn_app_with};
use crate::support::private_redis::PrivateRedis;

#[tokio::test]
async fn redis_down_means_503_and_nothing_acknowledged_and_the_gateway_recovers_by_itself() {
    let redis = PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.redis.url = url.clone();
        s.redis.connect_timeout = std::time::Duration::from_millis(300);
        s.redis.response_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    assert_eq!(
        app.post_tip("before the outage", "north", "now")
            .await
            .status(),
        200
    );

    let mut redis = redis;
    redis.kill();
    let r = app.post_tip("during the outage", "north", "now").await;
    assert_eq!(r.status(), 503);
    assert_eq!(error_code(r).await, "store-unavailable");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "/readyz fails while Redis is down");
    let page = app
        .client
        .post(app.url("/tips"))
        .header("Accept", "text/html")
        .form(&[("text", "x"), ("zone", "north"), ("urgency", "now")])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503);
    assert!(page.headers().get("retry-after").is_some());
    let text = page.text().await.unwrap();
    assert!(
        text.contains("could not confirm that your tip was received"),
        "{text}"
    );
    redis.start_again();

    // Redis is back (same port, AOF replayed): no restart of the gateway.
    let mut recovered = false;
    for _ in 0..50 {
        if app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "/readyz recovers without a restart");
    assert_eq!(
        app.post_tip("after the outage", "north", "now")
            .await
            .status(),
        200
    );

    let texts: Vec<String> = app
        .alerts()
        .await
        .iter()
        .map(|a| crate::support::app::open_tip(a, &app.escrow).unwrap().text)
        .collect();
    assert_eq!(
        texts,
        ["before the outage", "after the outage"],
        "the acknowledged tip survived the crash; the refused one is absent"
    );
    drop(redis);
}
