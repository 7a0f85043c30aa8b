//! Anonymity: identifying data planted in a request must appear nowhere at
//! rest (Redis, files), in logs or in metrics.

use crate::support::app::{form_body, logs, random_hex, spawn_app, spawn_app_with};
use crate::support::canary::assert_nowhere;

#[tokio::test]
async fn no_canary_from_a_tip_request_reaches_redis_logs_metrics_or_disk() {
    let app = spawn_app().await;
    let run = random_hex(10);
    let text = format!("CANARY-TEXT-{run} fight at the corner");
    let agent = format!("CANARY-UA-{run}");
    let forwarded = format!("203.0.113.{}", u8::from_str_radix(&run[..2], 16).unwrap());
    let forwarded_canary = format!("CANARY-XFF-{run}");
    let extra = format!("CANARY-HDR-{run}");
    let query = format!("CANARY-QUERY-{run}");
    let zone = format!("canary-zone-{run}");

    let send = |body: String, path: String| {
        app.client
            .post(app.url(&path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .header("User-Agent", &agent)
            .header(
                "X-Forwarded-For",
                format!("{forwarded}, {forwarded_canary}"),
            )
            .header("X-Tipster-Note", &extra)
            .body(body)
            .send()
    };
    let ok = send(
        form_body(&[("text", &text), ("zone", "north"), ("urgency", "now")]),
        format!("/tips?ref={query}"),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    // A refused tip takes the error paths; they must not leak either.
    let refused = send(
        form_body(&[("text", &text), ("zone", &zone), ("urgency", "now")]),
        "/tips".into(),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 422);

    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 1);
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("tipwire_tips_accepted_total{channel=\"web\"} 1"),
        "{metrics}"
    );

    assert_nowhere(
        &app,
        &[
            &text,
            &agent,
            &forwarded,
            &forwarded_canary,
            &extra,
            &query,
            &zone,
            &format!("CANARY-TEXT-{run}"),
        ],
    );
    let logs = logs();
    assert!(
        logs.contains("tip sealed and appended"),
        "the log capture works"
    );
    // The only loopback addresses in the log are listeners the servers
    // announce; a client's ephemeral address would show up as another port.
    let listeners: Vec<&str> = logs
        .match_indices("listening on: 127.0.0.1:")
        .map(|(i, m)| &logs[i + m.len()..])
        .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap())
        .collect();
    for (i, m) in logs.match_indices("127.0.0.1:") {
        let port = logs[i + m.len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap();
        assert!(
            listeners.contains(&port),
            "a client address in the logs: {}",
            &logs[i.saturating_sub(200)..i + 30]
        );
    }
}

#[tokio::test]
async fn a_forwarded_for_canary_from_a_trusted_proxy_is_used_but_never_stored() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies =
            vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()];
        s.rate_limits.web.per_client.count = std::num::NonZeroU32::new(1).unwrap();
        s.rate_limits.web.per_client.period = std::time::Duration::from_secs(3600);
    })
    .await;
    let run = random_hex(10);
    // Three digits in the last octet, so no other address has this one as a
    // prefix; 198.51.100.0/24 is TEST-NET-2, nobody's real address.
    let octet = |hex: &str| 100 + u16::from(u8::from_str_radix(hex, 16).unwrap()) % 150;
    let client = format!("198.51.100.{}", octet(&run[..2]));
    let neighbour = format!("198.51.100.{}", octet(&run[..2]) + 1);
    let text = format!("CANARY-TEXT-{run} fight at the corner");
    let agent = format!("CANARY-UA-{run}");

    let send = |forwarded: &str| {
        app.client
            .post(app.url("/tips"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .header("User-Agent", &agent)
            .header("X-Forwarded-For", forwarded)
            .body(form_body(&[
                ("text", &text),
                ("zone", "north"),
                ("urgency", "now"),
            ]))
            .send()
    };
    assert_eq!(send(&client).await.unwrap().status(), 200);
    // The forwarded address is believed: the same client is now limited (the
    // refusal path must not leak it either) and another one is not.
    assert_eq!(send(&client).await.unwrap().status(), 429);
    assert_eq!(send(&neighbour).await.unwrap().status(), 200);
    assert_eq!(app.alerts().await.len(), 2);

    assert!(
        logs().contains("tip sealed and appended"),
        "the log capture works"
    );
    assert_nowhere(
        &app,
        &[
            &client,
            &neighbour,
            &text,
            &agent,
            &format!("CANARY-TEXT-{run}"),
        ],
    );
}
