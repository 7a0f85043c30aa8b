//! Rate limits on the web form: per-client quotas with `Retry-After`, and
//! `X-Forwarded-For` (untrusted) believed only from a configured proxy. And
//! on enrolment: invite guesses do not use up the channel's limit.

use std::time::Duration;

use serde_json::Value;

use crate::support::app::{TestApp, error_code, spawn_app_with};
use crate::support::phone::{Phone, api, invite};

#[tokio::test]
async fn the_request_after_the_quota_gets_429_with_retry_after_and_another_client_is_unaffected() {
    let app = spawn_app_with(|s| {
        s.rate_limits.web.per_client.count = std::num::NonZeroU32::new(3).unwrap();
        s.rate_limits.web.per_client.period = std::time::Duration::from_secs(3600);
        // Requests come through a trusted local proxy, which names the client.
        s.server.trusted_proxies =
            vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()];
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
        s.rate_limits.web.per_client.count = std::num::NonZeroU32::new(2).unwrap();
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
        s.rate_limits.web.global.count = std::num::NonZeroU32::new(2).unwrap();
        s.rate_limits.web.global.period = std::time::Duration::from_secs(3600);
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
    let mut redis = crate::support::private_redis::PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.redis.url = url.clone();
        s.redis.connect_timeout = std::time::Duration::from_millis(300);
        s.redis.response_timeout = std::time::Duration::from_millis(500);
        s.rate_limits.web.global.count = std::num::NonZeroU32::new(1).unwrap();
        s.rate_limits.web.global.period = std::time::Duration::from_secs(3600);
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

/// How many devices are enrolled.
async fn enrolled(app: &TestApp) -> usize {
    tipwire::mediator::devices::Devices::new(app.store.clone())
        .list()
        .await
        .unwrap()
        .len()
}

/// Fails unless `code` is still an open invite (not spent by a refusal).
async fn assert_invite_usable(app: &TestApp, code: &str) {
    let parsed = tipwire::mediator::devices::InviteCode::parse(code).unwrap();
    api(app).invites.peek(&parsed).await.unwrap();
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
        s.server.trusted_proxies =
            vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()];
        s.rate_limits.enrolment.per_client.count = std::num::NonZeroU32::new(2).unwrap();
        s.rate_limits.enrolment.per_client.period = std::time::Duration::from_secs(3_600);
        s.rate_limits.enrolment.global.count = std::num::NonZeroU32::new(3).unwrap();
        s.rate_limits.enrolment.global.period = std::time::Duration::from_secs(3_600);
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
    assert_eq!(enrolled(&app).await, 1);
}

/// The channel's limit still caps enrolments: past it, a valid invite gets
/// 429 with `Retry-After` and stays usable, while a guess still gets the
/// same 403 as every request without a valid invite.
#[tokio::test]
async fn the_enrolment_channels_limit_still_holds_for_valid_invites() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies =
            vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()];
        s.rate_limits.enrolment.global.count = std::num::NonZeroU32::new(2).unwrap();
        s.rate_limits.enrolment.global.period = std::time::Duration::from_secs(3_600);
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
    assert_invite_usable(&app, &code).await;
    for guess in GUESSES {
        let response = enrol_from(&app, "192.0.2.4", &Phone::new().enrolment(guess)).await;
        assert_eq!(response.status(), 403, "{guess}");
        assert_eq!(error_code(response).await, "invite-invalid");
    }
    assert_eq!(enrolled(&app).await, 2);
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
        s.rate_limits.enrolment.per_client.count = std::num::NonZeroU32::new(1).unwrap();
        s.rate_limits.enrolment.per_client.period = std::time::Duration::from_secs(3_600);
        s.rate_limits.enrolment.global.count = std::num::NonZeroU32::new(4).unwrap();
        s.rate_limits.enrolment.global.period = std::time::Duration::from_secs(3_600);
    })
    .await;
    let app = &app;
    let post = move |body: Value| async move {
        crate::support::phone::post_json(app, "/api/v1/devices", &body).await
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
    assert_invite_usable(app, &code).await;
    assert_eq!(enrolled(app).await, 2);
}

/// An answer as someone without a valid invite can see it: status, every
/// header but `date`, and the body.
async fn seen(response: reqwest::Response) -> (u16, Vec<(String, String)>, String) {
    let status = response.status().as_u16();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str() != "date")
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    headers.sort();
    (status, headers, response.text().await.unwrap())
}

/// Attacking a67d779: someone without a valid invite learns nothing from
/// the channel's limit. A guess, a malformed code, an invite already used
/// and one expired get the very same answer, before and after valid
/// enrolments spend the channel's limit (which a holder of a valid invite
/// then sees as 429).
#[tokio::test]
async fn a_guess_gets_the_same_answer_whether_or_not_valid_invites_spent_the_channels_limit() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies =
            vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()];
        s.rate_limits.enrolment.per_client.count = std::num::NonZeroU32::new(100).unwrap();
        s.rate_limits.enrolment.global.count = std::num::NonZeroU32::new(2).unwrap();
        s.rate_limits.enrolment.global.period = std::time::Duration::from_secs(3_600);
    })
    .await;
    let used = invite(&app, &["south"], Duration::from_secs(900)).await;
    let response = enrol_from(&app, "192.0.2.10", &Phone::new().enrolment(&used)).await;
    assert_eq!(response.status(), 201);
    let expired = invite(&app, &["south"], Duration::from_millis(1)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let guesses = [GUESSES[0], GUESSES[1], &used, &expired];
    let guesser = Phone::new();
    let mut before = Vec::new();
    for guess in guesses {
        before.push(seen(enrol_from(&app, "198.51.100.7", &guesser.enrolment(guess)).await).await);
    }
    assert_eq!(before[0].0, 403);
    assert!(before.iter().all(|a| *a == before[0]), "{before:?}");
    // A second valid enrolment spends the channel's limit; a third valid
    // invite is held up.
    let code = invite(&app, &["south"], Duration::from_secs(900)).await;
    let response = enrol_from(&app, "192.0.2.11", &Phone::new().enrolment(&code)).await;
    assert_eq!(response.status(), 201);
    let code = invite(&app, &["south"], Duration::from_secs(900)).await;
    let over = enrol_from(&app, "192.0.2.12", &Phone::new().enrolment(&code)).await;
    assert_eq!(over.status(), 429);
    for (guess, earlier) in guesses.into_iter().zip(&before) {
        let after = seen(enrol_from(&app, "198.51.100.7", &guesser.enrolment(guess)).await).await;
        assert_eq!(after, *earlier, "{guess}");
    }
}

/// Without trusted proxies, `X-Forwarded-For` names no client: guesses
/// claiming a new address each are still one client's.
#[tokio::test]
async fn a_forged_forwarded_for_does_not_buy_an_unproxied_guesser_more_attempts() {
    let app = spawn_app_with(|s| {
        s.rate_limits.enrolment.per_client.count = std::num::NonZeroU32::new(2).unwrap();
        s.rate_limits.enrolment.per_client.period = std::time::Duration::from_secs(3_600);
        s.rate_limits.enrolment.global.count = std::num::NonZeroU32::new(1_000).unwrap();
    })
    .await;
    let guesser = Phone::new();
    let mut answers = Vec::new();
    for i in 1..=3 {
        let forged = format!("203.0.113.{i}");
        let response = enrol_from(&app, &forged, &guesser.enrolment(GUESSES[0])).await;
        answers.push(response.status().as_u16());
    }
    assert_eq!(answers, [403, 403, 429]);
}

/// One invite sent twice at once, from two addresses: one phone is
/// enrolled, the other gets invite-invalid.
#[tokio::test]
async fn an_invite_sent_twice_at_once_enrols_one_phone() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies =
            vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()];
        s.rate_limits.enrolment.global.count = std::num::NonZeroU32::new(1_000).unwrap();
    })
    .await;
    for round in 0..5 {
        let code = invite(&app, &["south"], Duration::from_secs(900)).await;
        let (first, second) = (Phone::new().enrolment(&code), Phone::new().enrolment(&code));
        let (a, b) = tokio::join!(
            enrol_from(&app, "192.0.2.20", &first),
            enrol_from(&app, "192.0.2.21", &second),
        );
        let mut answers = [seen(a).await, seen(b).await].map(|(status, _, body)| (status, body));
        answers.sort();
        assert_eq!(answers[0].0, 201, "round {round}: {answers:?}");
        assert_eq!(answers[1].0, 403, "round {round}: {answers:?}");
        assert!(answers[1].1.contains("\"invite-invalid\""), "{answers:?}");
    }
    assert_eq!(enrolled(&app).await, 5);
}

/// Redis down while the invite is looked up: every attempt, valid invite
/// or not, gets the same 503, and none is charged to the channel's limit.
#[tokio::test]
async fn with_redis_down_every_enrolment_gets_503_and_nothing_is_charged_to_the_channel() {
    let redis = crate::support::private_redis::PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.redis.url = url.clone();
        s.redis.connect_timeout = std::time::Duration::from_millis(300);
        s.redis.response_timeout = std::time::Duration::from_millis(500);
        s.server.trusted_proxies =
            vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()];
        s.rate_limits.enrolment.global.count = std::num::NonZeroU32::new(1).unwrap();
        s.rate_limits.enrolment.global.period = std::time::Duration::from_secs(3_600);
    })
    .await;
    let code = invite(&app, &["south"], Duration::from_secs(900)).await;
    let mut redis = redis;
    redis.kill();
    let phone = Phone::new();
    let mut answers = Vec::new();
    for (i, attempt) in [&code, GUESSES[0], &code].into_iter().enumerate() {
        let client = format!("192.0.2.{}", 30 + i);
        answers.push(seen(enrol_from(&app, &client, &phone.enrolment(attempt)).await).await);
    }
    assert_eq!(answers[0].0, 503);
    assert!(answers[0].2.contains("store-unavailable"), "{answers:?}");
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    redis.start_again();
    let mut status = 0;
    for _ in 0..50 {
        status = enrol_from(&app, "192.0.2.40", &phone.enrolment(&code))
            .await
            .status()
            .as_u16();
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 201, "the outage spent none of the channel's limit");
    drop(redis);
}

/// Behind an onion service bound to ::1, loopback over IPv6 is everyone
/// too: no per-client bucket (past its allowance of 1, a guess still gets
/// 403), and the channel's bucket charged before the lookup.
#[tokio::test]
async fn behind_an_onion_service_on_ipv6_loopback_guesses_pay_the_channels_limit() {
    let app = spawn_app_with(|s| {
        s.server.host = std::net::Ipv6Addr::LOCALHOST.into();
        s.server.mode = tipwire::config::ServerMode::Plaintext;
        s.rate_limits.enrolment.per_client.count = std::num::NonZeroU32::new(1).unwrap();
        s.rate_limits.enrolment.per_client.period = std::time::Duration::from_secs(3_600);
        s.rate_limits.enrolment.global.count = std::num::NonZeroU32::new(3).unwrap();
        s.rate_limits.enrolment.global.period = std::time::Duration::from_secs(3_600);
    })
    .await;
    let url = format!("http://[::1]:{}/api/v1/devices", app.port);
    let mut answers = Vec::new();
    for _ in 0..4 {
        let response = app
            .client
            .post(&url)
            .json(&Phone::new().enrolment(GUESSES[0]))
            .send()
            .await
            .unwrap();
        answers.push(response.status().as_u16());
    }
    assert_eq!(answers, [403, 403, 403, 429]);
}
