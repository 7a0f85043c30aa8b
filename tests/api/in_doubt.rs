//! When Redis does not answer, a tip may or may not be stored: every channel
//! says so rather than "not received". (Web: tests/api/web_retries.rs;
//! email's 451: tests/api/email.rs.)

use crate::redis_down::PrivateRedis;
use crate::sms_helpers::{spawn_sms_app, twilio_params};

#[tokio::test]
async fn a_texter_is_told_their_text_may_not_have_arrived_and_may_show_twice_if_sent_again() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let (app, _stand_in) = spawn_sms_app(|s| {
        s.redis.url = url;
        s.redis.connect_timeout_ms = 300;
        s.redis.response_timeout_ms = 500;
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
