//! Rate limits on the web form: per-client quotas with `Retry-After`, and
//! `X-Forwarded-For` (untrusted) believed only from a configured proxy.

use crate::helpers::{error_code, spawn_app_with};

#[tokio::test]
async fn the_request_after_the_quota_gets_429_with_retry_after_and_another_client_is_unaffected() {
    let app = spawn_app_with(|s| {
        s.rate_limits.web.per_client.count = 3;
        s.rate_limits.web.per_client.per_secs = 3600;
        // Requests come through a trusted local proxy, which names the client.
        s.server.trusted_proxies = vec!["127.0.0.1".into(), "::1".into()];
    })
    .await;
    let send = |client_ip: &'static str, accept: &'static str| {
        app.client
            .post(app.url("/tips"))
            .header("X-Forwarded-For", client_ip)
            .header("Accept", accept)
            .form(&[("text", "flood"), ("zone", "north"), ("urgency", "fyi")])
            .send()
    };
    for _ in 0..3 {
        assert_eq!(
            send("198.51.100.7", "application/json")
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let limited = send("198.51.100.7", "application/json").await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1200).contains(&retry), "Retry-After {retry}");
    assert_eq!(error_code(limited).await, "rate-limited");

    let page = send("198.51.100.7", "text/html").await.unwrap();
    assert_eq!(page.status(), 429);
    assert!(page.headers().contains_key("retry-after"));
    let text = page.text().await.unwrap();
    assert!(text.contains("Please wait a little"), "{text}");

    assert_eq!(
        send("198.51.100.8", "application/json")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.alerts().await.len(),
        4,
        "refused requests stored nothing"
    );

    // /metrics is not served to proxied addresses; read what it would render.
    assert_eq!(
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let metrics = app.metrics.render();
    assert!(
        metrics.contains("tipwire_rate_limited_total{channel=\"web\",scope=\"client\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_does_not_dodge_the_limit() {
    let app = spawn_app_with(|s| {
        s.rate_limits.web.per_client.count = 2;
    })
    .await;
    for (i, expected) in [200, 200, 429].into_iter().enumerate() {
        let r = app
            .client
            .post(app.url("/tips"))
            .header("X-Forwarded-For", format!("192.0.2.{i}"))
            .header("Accept", "application/json")
            .form(&[("text", "spoof"), ("zone", "north"), ("urgency", "fyi")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), expected);
    }
}

#[tokio::test]
async fn junk_forms_do_not_use_up_the_channels_limit_for_real_tips() {
    let app = spawn_app_with(|s| {
        s.rate_limits.web.global.count = 2;
        s.rate_limits.web.global.per_secs = 3600;
    })
    .await;
    let form = "application/x-www-form-urlencoded";
    let post = |content_type: &'static str, body: Vec<u8>| {
        app.client
            .post(app.url("/tips"))
            .header("Content-Type", content_type)
            .header("Accept", "application/json")
            .body(body)
            .send()
    };
    let junk: [(&str, &[u8], u16); 3] = [
        ("text/plain", b"text=a&zone=north&urgency=now", 415),
        (form, b"text=%zz&zone=north&urgency=now", 400),
        (form, b"zone=north&urgency=now", 422),
    ];
    for (content_type, body, status) in junk {
        assert_eq!(
            post(content_type, body.to_vec()).await.unwrap().status(),
            status
        );
    }
    let oversized = vec![b'a'; app.settings.server.max_body_bytes * 2];
    assert_eq!(post(form, oversized).await.unwrap().status(), 413);

    let tip = || post(form, b"text=real&zone=north&urgency=now".to_vec());
    for _ in 0..2 {
        assert_eq!(tip().await.unwrap().status(), 200);
    }
    // The channel's limit still holds, for tips.
    let limited = tip().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(error_code(limited).await, "rate-limited");
    assert_eq!(app.alerts().await.len(), 2);
}

/// A keyed tip's replay marker is looked up in Redis: only once the tip is
/// within the channel's limit. Looked up before it, a flood of keyed tips
/// (from many addresses, or from everyone behind an onion service, where no
/// per-client limit applies) would cost a store round trip each, unlimited.
/// With Redis gone, a tip over the limit shows which came first: 429, not 503.
#[tokio::test]
async fn a_keyed_tip_over_the_channels_limit_is_refused_before_the_store_is_asked() {
    let mut redis = crate::redis_down::PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.redis.url = url.clone();
        s.redis.connect_timeout_ms = 300;
        s.redis.response_timeout_ms = 500;
        s.rate_limits.web.global.count = 1;
        s.rate_limits.web.global.per_secs = 3600;
    })
    .await;
    let keyed = |key: &'static str| {
        app.client
            .post(app.url("/tips"))
            .header("Accept", "application/json")
            .header("Idempotency-Key", key)
            .form(&[("text", "real"), ("zone", "north"), ("urgency", "now")])
            .send()
    };
    assert_eq!(
        keyed("a-key-for-the-first-tip").await.unwrap().status(),
        200
    );
    redis.kill();
    let over = keyed("a-key-for-the-second-tip").await.unwrap();
    assert_eq!(over.status(), 429);
    assert_eq!(error_code(over).await, "rate-limited");
}
