//! Rate limits on the web form: per-client quotas with `Retry-After`, and
//! `X-Forwarded-For` (untrusted) believed only from a configured proxy. And
//! on enrolment: invite guesses do not use up the channel's limit.

use std::time::Duration;

use serde_json::Value;

use crate::devices::{Phone, api, invite};
use crate::helpers::{TestApp, error_code, spawn_app_with};

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

/// `POST /api/v1/devices` from `client_ip`, as a trusted proxy names it.
async fn enrol_from(app: &TestApp, client_ip: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/devices"))
        .header("X-Forwarded-For", client_ip)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Invite guesses, well-formed codes and not: the first looks the code up,
/// the second is no code at all.
const GUESSES: [&str; 2] = ["abcdefghijklmnopqrstuvwxyz", "not a code"];

/// docs/benchmarks.md (abuse, "Left as they are"): every enrolment attempt
/// took a cell from the channel's limit before the invite was read, so
/// guesses from many addresses, each within its own allowance, spent it and
/// a real phone enrolling meanwhile got 429. Now only a valid invite is
/// charged to it; every guess gets the same 403 as before.
#[tokio::test]
async fn invite_guesses_from_many_addresses_do_not_lock_a_real_phone_out_of_enrolment() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.1".into(), "::1".into()];
        s.rate_limits.enrolment.per_client.count = 2;
        s.rate_limits.enrolment.per_client.per_secs = 3_600;
        s.rate_limits.enrolment.global.count = 3;
        s.rate_limits.enrolment.global.per_secs = 3_600;
    })
    .await;
    let code = invite(&app, &["south"], Duration::from_secs(900)).await;
    // 24 addresses of one IPv6 /48 and a few IPv4 ones, each guessing
    // within its allowance: 48 guesses, 16 times the channel's limit.
    let mut clients: Vec<String> = (0..20).map(|i| format!("2001:db8:7:{i:x}::1")).collect();
    clients.extend((1..=4).map(|i| format!("198.51.100.{i}")));
    let guesser = Phone::new();
    for client in &clients {
        for guess in GUESSES {
            let response = enrol_from(&app, client, &guesser.enrolment(guess)).await;
            assert_eq!(response.status(), 403, "{client} {guess}");
            assert_eq!(error_code(response).await, "invite-invalid");
        }
    }
    // An address that spent its allowance is still refused, even with the
    // right code, which stays usable.
    let over = enrol_from(&app, &clients[0], &Phone::new().enrolment(&code)).await;
    assert_eq!(over.status(), 429);
    assert_eq!(error_code(over).await, "rate-limited");
    // The real phone, at 3 a.m., mid-flood.
    let phone = enrol_from(&app, "203.0.113.9", &Phone::new().enrolment(&code)).await;
    assert_eq!(phone.status(), 201);
    assert_eq!(
        tipwire::mediator::devices::Devices::new(app.store.clone())
            .list()
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The channel's limit still caps enrolments: past it, a valid invite gets
/// 429 with `Retry-After` and stays usable, while a guess still gets the
/// same 403 as every request without a valid invite.
#[tokio::test]
async fn the_enrolment_channels_limit_still_holds_for_valid_invites() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.1".into(), "::1".into()];
        s.rate_limits.enrolment.global.count = 2;
        s.rate_limits.enrolment.global.per_secs = 3_600;
    })
    .await;
    for client in ["192.0.2.1", "192.0.2.2"] {
        let code = invite(&app, &["south"], Duration::from_secs(900)).await;
        let response = enrol_from(&app, client, &Phone::new().enrolment(&code)).await;
        assert_eq!(response.status(), 201);
    }
    let code = invite(&app, &["south"], Duration::from_secs(900)).await;
    let over = enrol_from(&app, "192.0.2.3", &Phone::new().enrolment(&code)).await;
    assert_eq!(over.status(), 429);
    let retry: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1800).contains(&retry), "Retry-After {retry}");
    assert_eq!(error_code(over).await, "rate-limited");
    let parsed = tipwire::mediator::devices::InviteCode::parse(&code).unwrap();
    api(&app).invites.peek(&parsed).await.unwrap();
    for guess in GUESSES {
        let response = enrol_from(&app, "192.0.2.4", &Phone::new().enrolment(guess)).await;
        assert_eq!(response.status(), 403, "{guess}");
        assert_eq!(error_code(response).await, "invite-invalid");
    }
    assert_eq!(
        tipwire::mediator::devices::Devices::new(app.store.clone())
            .list()
            .await
            .unwrap()
            .len(),
        2
    );
}

/// Behind an onion service everyone arrives from loopback, which has no
/// per-client limit (one shared bucket would let one visitor lock every
/// phone out). The channel's limit is then the only bound on guesses, so
/// there it is charged before the invite is read (a guess over it costs no
/// Redis read), once per attempt: a valid enrolment is not charged twice.
#[tokio::test]
async fn behind_an_onion_service_the_enrolment_channels_limit_bounds_guesses_before_the_lookup() {
    let app = spawn_app_with(|s| {
        s.server.mode = tipwire::config::ServerMode::Plaintext;
        s.rate_limits.enrolment.per_client.count = 1;
        s.rate_limits.enrolment.per_client.per_secs = 3_600;
        s.rate_limits.enrolment.global.count = 4;
        s.rate_limits.enrolment.global.per_secs = 3_600;
    })
    .await;
    let app = &app;
    let post = move |body: Value| async move {
        crate::devices::post_json(app, "/api/v1/devices", &body).await
    };
    // Past the per-client allowance of 1: loopback is not one client.
    for guess in GUESSES {
        let response = post(Phone::new().enrolment(guess)).await;
        assert_eq!(response.status(), 403, "{guess}");
        assert_eq!(error_code(response).await, "invite-invalid");
    }
    for _ in 0..2 {
        let code = invite(app, &["south"], Duration::from_secs(900)).await;
        assert_eq!(post(Phone::new().enrolment(&code)).await.status(), 201);
    }
    // Four attempts took four cells: a guess is now refused unread, and so
    // is a valid invite, which stays usable.
    let guess = post(Phone::new().enrolment(GUESSES[0])).await;
    assert_eq!(guess.status(), 429);
    assert_eq!(error_code(guess).await, "rate-limited");
    let code = invite(app, &["south"], Duration::from_secs(900)).await;
    let over = post(Phone::new().enrolment(&code)).await;
    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("retry-after"));
    let parsed = tipwire::mediator::devices::InviteCode::parse(&code).unwrap();
    api(app).invites.peek(&parsed).await.unwrap();
    assert_eq!(
        tipwire::mediator::devices::Devices::new(app.store.clone())
            .list()
            .await
            .unwrap()
            .len(),
        2
    );
}
