//! When Redis does not answer, a tip may or may not be stored: every channel
//! says so rather than "not received". (Web: tests/api/web_retries.rs;
//! email's 451: tests/api/email.rs.)

use reqwest::Method;

use crate::support::app::spawn_app_with;
use crate::support::private_redis::PrivateRedis;
use crate::support::push::{call, mediator};
use crate::support::sms::{spawn_sms_app, twilio_params};

#[tokio::test]
async fn a_texter_is_told_their_text_may_not_have_arrived_and_may_show_twice_if_sent_again() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let (app, _stand_in) = spawn_sms_app(|s| {
        s.redis.url = url;
        s.redis.connect_timeout = std::time::Duration::from_millis(300);
        s.redis.response_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    redis.kill();
    let r = app
        .twilio(&twilio_params(
            "+15557654321",
            "is anyone there",
            "SM00000000000000000000000000in-doubt",
        ))
        .await;
    assert_eq!(
        r.status(),
        200,
        "Twilio does not retry: the answer is TwiML"
    );
    let twiml = r.text().await.unwrap();
    assert!(
        twiml.contains("could not confirm that your message reached us: it may not have"),
        "{twiml}"
    );
    assert!(twiml.contains("may then see it twice"), "{twiml}");
}

#[tokio::test]
async fn a_mediator_request_that_found_redis_down_is_told_about_the_request_not_a_tip() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.redis.url = url;
        s.redis.connect_timeout = std::time::Duration::from_millis(300);
        s.redis.response_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    let m = mediator(&app, &["north"], false).await;
    redis.kill();
    // The mediator app shows this message after "Not sent: " (a reply) or
    // as the reason a list did not load: it is about their request, and
    // promises no single copy (a reply sent again is sent again).
    let r = call(
        &app,
        Method::POST,
        &format!("/api/v1/threads/{}/replies", "0f".repeat(16)),
        Some(&m),
        true,
        Some(serde_json::json!({ "text": "We hear you." })),
    )
    .await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "store-unavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.contains("tip"), "{message}");
    assert!(!message.contains("only once"), "{message}");
    assert!(message.contains("may not have"), "{message}");
}
