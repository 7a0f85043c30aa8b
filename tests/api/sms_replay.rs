//! Replayed signed keyword webhooks (issue 10, item 10): a captured STOP or
//! START, replayed later with its valid signature, must change nothing.

use crate::support::app::{TestApp, restart_with_rotated_pseudonym_key};
use crate::support::sms::{StandIn, now, spawn_sms_app, telnyx_event, twilio_params};
use tipwire::domain::ThreadId;
use tipwire::outbound::relay::Kind;

const TIPSTER: &str = "+15557650101";

/// Whether a reply queued to the thread now reaches the tipster (`true`) or is
/// suppressed by an opt-out (`false`). Behaviour, not storage layout.
async fn replies_reach(app: &TestApp, stand_in: &StandIn, thread: &ThreadId) -> bool {
    // Whatever answers the webhooks queued (Telnyx) go first.
    while app.relay.step().await.unwrap() != Default::default() {}
    let before = stand_in.sent().len();
    app.queue_reply(thread, "are you safe?", Kind::Reply).await;
    let report = app.relay.step().await.unwrap();
    assert_eq!(report.sent + report.suppressed, 1, "{report:?}");
    stand_in.sent().len() > before
}

#[tokio::test]
async fn a_replayed_twilio_stop_or_start_changes_nothing_and_answers_nothing() {
    let (app, stand_in) = spawn_sms_app(|_| {}).await;
    app.twilio(&twilio_params(TIPSTER, "fight at the court", "SMreplay0"))
        .await;
    let thread = ThreadId::parse(&app.alerts().await[0].entry.thread).unwrap();

    let stop = twilio_params(TIPSTER, "STOP", "SMreplay1");
    let start = twilio_params(TIPSTER, "START", "SMreplay2");
    let first_stop = app.twilio(&stop).await.text().await.unwrap();
    assert!(first_stop.contains("no more texts"), "{first_stop}");
    let first_start = app.twilio(&start).await.text().await.unwrap();
    assert!(first_start.contains("texts resumed"), "{first_start}");
    assert!(replies_reach(&app, &stand_in, &thread).await);

    // The captured STOP, replayed after the tipster opted back in.
    let replay = app.twilio(&stop).await;
    assert_eq!(replay.status(), 200);
    let answer = replay.text().await.unwrap();
    assert!(
        replies_reach(&app, &stand_in, &thread).await,
        "a replayed STOP must not silence the tipster"
    );
    assert!(answer.ends_with("<Response/>"), "{answer}");

    // The tipster stops again; the captured START, replayed, must not lift it.
    app.twilio(&twilio_params(TIPSTER, "STOP", "SMreplay3"))
        .await;
    assert!(!replies_reach(&app, &stand_in, &thread).await);
    let replay = app.twilio(&start).await;
    assert_eq!(replay.status(), 200);
    let answer = replay.text().await.unwrap();
    assert!(
        !replies_reach(&app, &stand_in, &thread).await,
        "a replayed START must not lift an opt-out"
    );
    assert!(answer.ends_with("<Response/>"), "{answer}");
    assert_eq!(app.alerts().await.len(), 1, "keywords are never tips");
}

#[tokio::test]
async fn a_replayed_telnyx_stop_or_start_changes_nothing_and_queues_nothing() {
    let (app, stand_in) = spawn_sms_app(|_| {}).await;
    let tip = telnyx_event(TIPSTER, "crowd at the store", "replay-tip");
    assert_eq!(app.telnyx(&tip, now()).await.status(), 200);
    let thread = ThreadId::parse(&app.alerts().await[0].entry.thread).unwrap();

    // Captured with their signatures and timestamps; replayed inside the
    // provider's 300 s window, where only the marker can refuse them.
    let (stop, stop_at) = (telnyx_event(TIPSTER, "STOP", "replay-stop"), now());
    let (start, start_at) = (telnyx_event(TIPSTER, "START", "replay-start"), now());
    assert_eq!(app.telnyx(&stop, stop_at).await.status(), 200);
    assert_eq!(app.telnyx(&start, start_at).await.status(), 200);
    assert!(replies_reach(&app, &stand_in, &thread).await);
    let sent = stand_in.sent().len();

    let replay = app.telnyx(&stop, stop_at).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.text().await.unwrap(), "{}");
    let queued = app.relay.step().await.unwrap();
    assert!(
        replies_reach(&app, &stand_in, &thread).await,
        "a replayed STOP must not silence the tipster"
    );
    assert_eq!(
        queued,
        Default::default(),
        "a replay queues no confirmation"
    );
    assert_eq!(stand_in.sent().len(), sent + 1, "only the reply went out");

    let stop_again = telnyx_event(TIPSTER, "STOP", "replay-stop-2");
    assert_eq!(app.telnyx(&stop_again, now()).await.status(), 200);
    assert!(!replies_reach(&app, &stand_in, &thread).await);
    let replay = app.telnyx(&start, start_at).await;
    assert_eq!(replay.status(), 200);
    let queued = app.relay.step().await.unwrap();
    assert!(
        !replies_reach(&app, &stand_in, &thread).await,
        "a replayed START must not lift an opt-out"
    );
    assert_eq!(
        queued,
        Default::default(),
        "a replay queues no confirmation"
    );
}

#[tokio::test]
async fn a_webhook_replayed_after_a_pseudonym_key_rotation_changes_nothing() {
    let (mut app, stand_in) = spawn_sms_app(|_| {}).await;
    let tip = twilio_params(TIPSTER, "shots near the park", "SMrotate0");
    app.twilio(&tip).await;
    let thread = ThreadId::parse(&app.alerts().await[0].entry.thread).unwrap();
    let stop = twilio_params(TIPSTER, "STOP", "SMrotate1");
    app.twilio(&stop).await;
    app.twilio(&twilio_params(TIPSTER, "START", "SMrotate2"))
        .await;
    assert!(replies_reach(&app, &stand_in, &thread).await);

    restart_with_rotated_pseudonym_key(&mut app).await;

    let replay = app.twilio(&tip).await;
    assert_eq!(replay.status(), 200);
    assert!(
        replay.text().await.unwrap().ends_with("<Response/>"),
        "a replayed tip is answered with silence"
    );
    assert_eq!(
        app.alerts().await.len(),
        1,
        "a replayed tip is not stored again"
    );
    let replay = app.twilio(&stop).await;
    assert_eq!(replay.status(), 200);
    assert!(replay.text().await.unwrap().ends_with("<Response/>"));
    assert!(
        replies_reach(&app, &stand_in, &thread).await,
        "a STOP replayed after the rotation must not silence the tipster"
    );
}
