//! The SMS channel against the real app, real Redis and a local stand-in for
//! each provider's REST API.

use crate::support::app::{add_mediator, error_code, open_tip};
use crate::support::photo::jpeg_with_exif;
use crate::support::sms::{
    PROGRAM_NUMBER, ZONE_NUMBER, now, spawn_sms_app, telnyx_event, telnyx_event_to, twilio_params,
    twilio_params_to,
};
use tipwire::crypto::IdentityKey;
use tipwire::domain::ThreadId;

use tipwire::outbound::relay::Kind;

const TIPSTER: &str = "+15557654321";

/// Webhook parameters, expected status, expected error code.
type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);

async fn body(r: reqwest::Response) -> String {
    r.text().await.unwrap()
}

#[tokio::test]
async fn a_twilio_text_becomes_a_sealed_tip_that_opens_to_the_exact_text() {
    let (app, _stand_in) = spawn_sms_app(|_| {}).await;
    let text = "Two crews beefing on Maple & 3rd, said they'd settle it tonight <for real>";
    let r = app
        .twilio(&twilio_params(
            TIPSTER,
            text,
            "SM11111111111111111111111111111111",
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    let twiml = body(r).await;
    assert!(
        twiml.contains("<Response><Message>Thank you. Your tip reached the team."),
        "{twiml}"
    );

    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 1);
    let e = &alerts[0].entry;
    assert_eq!((e.channel.as_str(), e.zone.as_str()), ("sms", "unsure"));
    assert!(e.pseudonym.starts_with("p1_") && !e.pseudonym.contains("5557654321"));
    assert_eq!(e.thread, ThreadId::for_pseudonym(&e.pseudonym).to_string());
    for id in [&app.mediator, &app.escrow] {
        assert_eq!(open_tip(&alerts[0], id).unwrap().text, text);
    }

    // The same tipster's next text joins the same thread.
    app.twilio(&twilio_params(
        TIPSTER,
        "also: one has a car",
        "SM22222222222222222222222222222222",
    ))
    .await;
    let alerts = app.alerts().await;
    assert_eq!(alerts[1].entry.thread, alerts[0].entry.thread);
}

#[tokio::test]
async fn spanish_texts_are_acknowledged_in_spanish() {
    let (app, _stand_in) = spawn_sms_app(|_| {}).await;
    let r = app
        .twilio(&twilio_params(
            TIPSTER,
            "Hola, hay una pelea en la esquina ahora",
            "SM3",
        ))
        .await;
    assert!(body(r).await.contains("Gracias. Su aviso llegó al equipo."));
}

#[tokio::test]
async fn a_reply_reaches_the_tipsters_number_through_twilio() {
    let (app, stand_in) = spawn_sms_app(|_| {}).await;
    app.twilio(&twilio_params(TIPSTER, "need someone at the park", "SM4"))
        .await;
    let thread = ThreadId::parse(&app.alerts().await[0].entry.thread).unwrap();
    app.queue_reply(&thread, "We are on our way. Stay safe.", Kind::Reply)
        .await;

    let report = app.relay.step().await.unwrap();
    assert_eq!(report.sent, 1);
    let sent = stand_in.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].provider, sent[0].to.as_str(), sent[0].from.as_str()),
        ("twilio", TIPSTER, PROGRAM_NUMBER)
    );
    assert_eq!(sent[0].body, "We are on our way. Stay safe.");
    assert_eq!(
        app.relay.step().await.unwrap(),
        Default::default(),
        "sent once"
    );
}

#[tokio::test]
async fn stop_silences_every_further_text_and_start_resumes() {
    let (app, stand_in) = spawn_sms_app(|_| {}).await;
    app.twilio(&twilio_params(TIPSTER, "fight brewing", "SM5"))
        .await;
    let thread = ThreadId::parse(&app.alerts().await[0].entry.thread).unwrap();

    let stop = body(app.twilio(&twilio_params(TIPSTER, "STOP", "SM6")).await).await;
    assert!(stop.contains("you will get no more texts"), "{stop}");
    let again = body(
        app.twilio(&twilio_params(TIPSTER, "unsubscribe", "SM7"))
            .await,
    )
    .await;
    assert!(
        again.ends_with("<Response/>"),
        "one confirmation, then silence: {again}"
    );
    let tip_after_stop = body(
        app.twilio(&twilio_params(TIPSTER, "they are here now", "SM8"))
            .await,
    )
    .await;
    assert!(
        tip_after_stop.ends_with("<Response/>"),
        "no acknowledgement to an opted-out number"
    );
    assert_eq!(
        app.alerts().await.len(),
        2,
        "tips still arrive; keywords are not tips"
    );

    app.queue_reply(&thread, "are you safe?", Kind::Reply).await;
    let report = app.relay.step().await.unwrap();
    assert_eq!((report.sent, report.suppressed), (0, 1));
    assert!(stand_in.sent().is_empty());

    let start = body(app.twilio(&twilio_params(TIPSTER, "START", "SM9")).await).await;
    assert!(start.contains("texts resumed"), "{start}");
    app.queue_reply(&thread, "are you safe?", Kind::Reply).await;
    assert_eq!(app.relay.step().await.unwrap().sent, 1);
    assert_eq!(stand_in.sent().len(), 1);
}

#[tokio::test]
async fn help_answers_with_the_program_name_how_to_stop_and_the_rates_notice() {
    let (app, _stand_in) = spawn_sms_app(|s| s.sms.program_name = "Safe Streets".into()).await;
    let help = body(app.twilio(&twilio_params(TIPSTER, "HELP", "SM10")).await).await;
    for part in ["Safe Streets", "STOP", "Msg &amp; data rates may apply"] {
        assert!(help.contains(part), "{part} in {help}");
    }
    assert!(app.alerts().await.is_empty());
}

#[tokio::test]
async fn a_replayed_webhook_is_answered_200_and_stored_once() {
    let (app, _stand_in) = spawn_sms_app(|_| {}).await;
    let params = twilio_params(
        TIPSTER,
        "same message twice",
        "SM12121212121212121212121212121212",
    );
    assert_eq!(app.twilio(&params).await.status(), 200);
    let replay = app.twilio(&params).await;
    assert_eq!(replay.status(), 200);
    assert!(body(replay).await.ends_with("<Response/>"));
    assert_eq!(app.alerts().await.len(), 1);
}

#[tokio::test]
async fn a_forged_or_missing_twilio_signature_gets_403_and_nothing_is_stored() {
    let (app, _stand_in) = spawn_sms_app(|_| {}).await;
    let params = twilio_params(TIPSTER, "forged", "SM13");
    let forged = crate::support::sms::twilio_signature(
        "not-the-token",
        "https://tips.example.org/webhooks/sms/twilio",
        &params,
    );
    let r = app.twilio_signed(&params, &forged).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "signature-invalid");
    let r = app.twilio_signed(&params, "").await;
    assert_eq!(r.status(), 403);
    assert!(app.alerts().await.is_empty());
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("tipwire_webhook_signature_failures_total{provider=\"twilio\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_telnyx_text_becomes_a_tip_and_the_acknowledgement_goes_through_the_relay() {
    let (app, stand_in) = spawn_sms_app(|_| {}).await;
    let r = app
        .telnyx(
            &telnyx_event(TIPSTER, "shots fired last night, more coming", "msg-1"),
            now(),
        )
        .await;
    assert_eq!(r.status(), 200);
    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        open_tip(&alerts[0], &app.escrow).unwrap().text,
        "shots fired last night, more coming"
    );

    assert_eq!(app.relay.step().await.unwrap().sent, 1);
    let sent = stand_in.sent();
    assert_eq!(
        (sent[0].provider, sent[0].to.as_str(), sent[0].from.as_str()),
        ("telnyx", TIPSTER, PROGRAM_NUMBER)
    );
    assert!(sent[0].body.starts_with("Thank you."));

    // A replay of the same event is one tip.
    assert_eq!(
        app.telnyx(
            &telnyx_event(TIPSTER, "shots fired last night, more coming", "msg-1"),
            now()
        )
        .await
        .status(),
        200
    );
    assert_eq!(app.alerts().await.len(), 1);
}

#[tokio::test]
async fn telnyx_stale_timestamps_and_bad_signatures_are_refused() {
    let (app, _stand_in) = spawn_sms_app(|_| {}).await;
    let event = telnyx_event(TIPSTER, "late", "msg-2");
    let r = app.telnyx(&event, now() - 301).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "timestamp-stale");
    let r = app
        .client
        .post(app.url("/webhooks/sms/telnyx"))
        .header("Content-Type", "application/json")
        .header("telnyx-timestamp", now().to_string())
        .header("telnyx-signature-ed25519", "AAAA")
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "signature-invalid");
    assert!(app.alerts().await.is_empty());
}

#[tokio::test]
async fn bad_sms_input_is_refused_precisely_and_stores_nothing() {
    let (app, _stand_in) = spawn_sms_app(|_| {}).await;
    let long = "x".repeat(1601);
    let mut missing_from = twilio_params(TIPSTER, "hi", "SM20");
    missing_from.retain(|(k, _)| *k != "From");
    let mut unknown_to = twilio_params(TIPSTER, "hi", "SM21");
    unknown_to.retain(|(k, _)| *k != "To");
    unknown_to.push(("To", "+15559999999"));
    let cases: Vec<Case> = vec![
        (missing_from, 422, "missing-field"),
        (
            twilio_params("5557654321abc", "hi", "SM22"),
            422,
            "invalid-sender",
        ),
        (twilio_params(TIPSTER, &long, "SM23"), 422, "field-too-long"),
        (unknown_to, 422, "unknown-number"),
    ];
    for (params, status, code) in cases {
        let r = app.twilio(&params).await;
        assert_eq!(r.status(), status, "{code}");
        assert_eq!(error_code(r).await, code);
    }
    // Invalid UTF-8 cannot even be signed over: refused before anything else.
    let r = app
        .client
        .post(app.url("/webhooks/sms/twilio"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", "x")
        .body(b"Body=%FF&From=%2B15557654321".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), error_code(r).await.as_str()),
        (400, "invalid-utf8")
    );
    let r = app.telnyx(b"{\"data\": [not json", now()).await;
    assert_eq!(
        (r.status().as_u16(), error_code(r).await.as_str()),
        (400, "malformed-body")
    );
    assert!(app.alerts().await.is_empty());
}

#[tokio::test]
async fn a_flooding_number_gets_one_polite_notice_per_window_and_costs_nothing_more() {
    let (app, _stand_in) = spawn_sms_app(|s| {
        s.rate_limits.sms.per_client.count = std::num::NonZeroU32::new(2).unwrap()
    })
    .await;
    for i in 0..2 {
        let sid = format!("SM3{i}");
        assert!(
            body(app.twilio(&twilio_params(TIPSTER, "flood", &sid)).await)
                .await
                .contains("Thank you")
        );
    }
    let third = body(app.twilio(&twilio_params(TIPSTER, "flood", "SM32")).await).await;
    assert!(third.contains("Please wait a little"), "{third}");
    let fourth = body(app.twilio(&twilio_params(TIPSTER, "flood", "SM33")).await).await;
    assert!(fourth.ends_with("<Response/>"), "{fourth}");
    assert_eq!(app.alerts().await.len(), 2);
    let other = body(
        app.twilio(&twilio_params("+15550002222", "different person", "SM34"))
            .await,
    )
    .await;
    assert!(other.contains("Thank you"));
}

#[tokio::test]
async fn failed_sends_are_retried_with_backoff_then_dead_lettered() {
    let (app, stand_in) = spawn_sms_app(|s| s.relay.max_attempts = 3).await;
    app.twilio(&twilio_params(TIPSTER, "hello", "SM40")).await;
    let thread = ThreadId::parse(&app.alerts().await[0].entry.thread).unwrap();

    stand_in.state.lock().unwrap().fail_next = 1;
    app.queue_reply(&thread, "first try fails", Kind::Reply)
        .await;
    let t0 = tipwire::clock::now_ms();
    assert_eq!(app.relay.step_at(t0).await.unwrap().retried, 1);
    // Retries are due on minute boundaries: not before, within two minutes.
    let due = tipwire::bus::timing::coarse_due(t0, 2);
    assert_eq!(app.relay.step_at(due - 1).await.unwrap().sent, 0);
    let report = app.relay.step_at(due).await.unwrap();
    assert_eq!(report.sent, 1, "{report:?}");
    assert_eq!(stand_in.sent()[0].body, "first try fails");

    stand_in.state.lock().unwrap().fail_next = 100;
    app.queue_reply(&thread, "never gets through", Kind::Reply)
        .await;
    let mut dead = 0;
    let mut at = due;
    for _ in 0..10 {
        dead += app.relay.step_at(at).await.unwrap().dead;
        at += 120_000;
    }
    assert_eq!(dead, 1);
    let mut conn = app.store.conn().await.unwrap();
    let dead_len: u64 = redis::cmd("XLEN")
        .arg(app.store.keys().outbound_dead())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(dead_len, 1);
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("tipwire_replies_total{outcome=\"dead\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn no_canary_from_a_text_reaches_redis_logs_metrics_or_disk() {
    let (app, stand_in) = spawn_sms_app(|_| {}).await;
    let run = crate::support::app::random_hex(8);
    let digits: String = run.bytes().map(|b| char::from(b'0' + b % 10)).collect();
    let number = format!("+1999{digits}");
    let sid = format!("SMCANARY{run}");
    let zip = format!("CANARYZIP{run}");
    let city = format!("CANARYCITY{run}");
    let account = format!("ACCANARY{run}");
    let mut params = twilio_params(&number, "canary tip text", &sid);
    params.retain(|(k, _)| !["FromZip", "FromCity", "AccountSid"].contains(k));
    params.extend([
        ("FromZip", zip.as_str()),
        ("FromCity", city.as_str()),
        ("AccountSid", account.as_str()),
    ]);
    assert_eq!(app.twilio(&params).await.status(), 200);
    // The reply path handles the number in clear, in memory only.
    let thread = ThreadId::parse(&app.alerts().await[0].entry.thread).unwrap();
    app.queue_reply(&thread, "reply to canary", Kind::Reply)
        .await;
    assert_eq!(app.relay.step().await.unwrap().sent, 1);
    assert_eq!(
        stand_in.sent()[0].to,
        number,
        "the reply did reach the number"
    );

    let bare = number.trim_start_matches('+').to_owned();
    crate::support::canary::assert_nowhere(&app, &[&number, &bare, &sid, &zip, &city, &account]);
}

#[tokio::test]
async fn mms_photos_are_sealed_without_their_metadata_and_other_types_are_refused_politely() {
    let (app, stand_in) = spawn_sms_app(|_| {}).await;
    let canary = format!("CANARY-GPS-{}", crate::support::app::random_hex(8));
    let photo = jpeg_with_exif(&canary);
    let photo_url = stand_in.serve_media("ME0001", "image/jpeg", photo.clone());
    let pdf_url = stand_in.serve_media("ME0002", "application/pdf", b"%PDF-1.4 CANARY".to_vec());
    let mut params = twilio_params(TIPSTER, "photo of the car", "SM50");
    params.retain(|(k, _)| *k != "NumMedia");
    params.extend([
        ("NumMedia", "2"),
        ("MediaUrl0", photo_url.as_str()),
        ("MediaContentType0", "image/jpeg"),
        ("MediaUrl1", pdf_url.as_str()),
        ("MediaContentType1", "application/pdf"),
    ]);
    let twiml = body(app.twilio(&params).await).await;
    assert!(twiml.contains("We could only take photos"), "{twiml}");

    let alerts = app.alerts().await;
    let doc = open_tip(&alerts[0], &app.mediator).unwrap();
    assert_eq!(doc.text, "photo of the car");
    assert_eq!(doc.attachments.len(), 1);
    assert_eq!(doc.attachments[0].content_type, "image/jpeg");
    assert!(
        !crate::support::canary::contains(&doc.attachments[0].data, &canary),
        "EXIF is gone"
    );
    assert!(
        crate::support::canary::contains(&photo, &canary),
        "the original carried it"
    );
    assert!(doc.attachments[0].data.starts_with(&[0xFF, 0xD8]));
    let decoded = jpeg_decoder::Decoder::new(doc.attachments[0].data.as_slice())
        .decode()
        .unwrap();
    assert_eq!(
        decoded.len(),
        16 * 12 * 3,
        "the stripped photo still decodes"
    );
}

#[tokio::test]
async fn a_webhook_signed_with_either_token_is_accepted_during_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let second = dir.path().join("second-token");
    std::fs::write(&second, "the-new-token").unwrap();
    std::fs::set_permissions(&second, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (app, _stand_in) =
        spawn_sms_app(|s| s.sms.twilio.auth_token_files.push(second.clone())).await;
    let url = "https://tips.example.org/webhooks/sms/twilio";
    let old = twilio_params(TIPSTER, "signed with the old token", "SM60");
    assert_eq!(app.twilio(&old).await.status(), 200);
    let new = twilio_params(TIPSTER, "signed with the new token", "SM61");
    let signature = crate::support::sms::twilio_signature("the-new-token", url, &new);
    assert_eq!(app.twilio_signed(&new, &signature).await.status(), 200);
    assert_eq!(app.alerts().await.len(), 2);
}

#[tokio::test]
async fn a_json_webhook_is_verified_by_its_body_hash() {
    use sha2::Digest;
    let (app, _stand_in) = spawn_sms_app(|_| {}).await;
    let body = serde_json::to_vec(&serde_json::json!({
        "From": TIPSTER, "To": PROGRAM_NUMBER, "Body": "json body tip", "MessageSid": "SM70"
    }))
    .unwrap();
    let hash = hex::encode(sha2::Sha256::digest(&body));
    let url = format!("https://tips.example.org/webhooks/sms/twilio?bodySHA256={hash}");
    let signature =
        crate::support::sms::twilio_signature(crate::support::sms::AUTH_TOKEN, &url, &[]);
    let send = |body: Vec<u8>| {
        app.client
            .post(app.url(&format!("/webhooks/sms/twilio?bodySHA256={hash}")))
            .header("Content-Type", "application/json")
            .header("X-Twilio-Signature", &signature)
            .body(body)
            .send()
    };
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    assert_eq!(send(tampered).await.unwrap().status(), 403);
    assert_eq!(send(body).await.unwrap().status(), 200);
    let alerts = app.alerts().await;
    assert_eq!(
        open_tip(&alerts[0], &app.escrow).unwrap().text,
        "json body tip"
    );
}

#[tokio::test]
async fn the_reply_command_queues_a_message_the_relay_delivers() {
    let (app, stand_in) = spawn_sms_app(|_| {}).await;
    app.twilio(&twilio_params(TIPSTER, "please call back", "SM80"))
        .await;
    let thread = app.alerts().await[0].entry.thread.clone();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tipwire"))
        .args([
            "--config",
            app.cli_config().to_str().unwrap(),
            "reply",
            "--thread",
            &thread,
            "--text",
            "A mediator will text you soon.",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.relay.step().await.unwrap().sent, 1);
    assert_eq!(stand_in.sent()[0].body, "A mediator will text you soon.");
    assert_eq!(stand_in.sent()[0].to, TIPSTER);
}

#[tokio::test]
async fn a_telnyx_stop_queues_one_confirmation_and_then_suppresses_replies() {
    let (app, stand_in) = spawn_sms_app(|_| {}).await;
    let tip = telnyx_event(TIPSTER, "crowd gathering at the bus stop", "msg-stop-1");
    assert_eq!(app.telnyx(&tip, now()).await.status(), 200);
    // Delivered before the STOP: an acknowledgement still queued when the
    // tipster opts out is a reply like any other and is suppressed.
    assert_eq!(
        app.relay.step().await.unwrap().sent,
        1,
        "the acknowledgement"
    );
    let thread = ThreadId::parse(&app.alerts().await[0].entry.thread).unwrap();

    let stop = telnyx_event(TIPSTER, "STOP", "msg-stop-2");
    assert_eq!(app.telnyx(&stop, now()).await.status(), 200);
    let report = app.relay.step().await.unwrap();
    assert_eq!(
        (report.sent, report.suppressed),
        (1, 0),
        "the confirmation is compliance and goes to the opted-out number"
    );
    let sent = stand_in.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0].body.starts_with("Thank you."), "{}", sent[0].body);
    assert!(sent[1].body.contains("no more texts"), "{}", sent[1].body);
    assert_eq!(
        (sent[1].provider, sent[1].to.as_str(), sent[1].from.as_str()),
        ("telnyx", TIPSTER, PROGRAM_NUMBER)
    );
    assert_eq!(app.alerts().await.len(), 1, "a keyword is not a tip");

    let again = telnyx_event(TIPSTER, "STOP", "msg-stop-3");
    assert_eq!(app.telnyx(&again, now()).await.status(), 200);
    assert_eq!(
        app.relay.step().await.unwrap(),
        Default::default(),
        "one confirmation, then silence"
    );
    assert_eq!(stand_in.sent().len(), 2);

    app.queue_reply(&thread, "are you safe?", Kind::Reply).await;
    let report = app.relay.step().await.unwrap();
    assert_eq!((report.sent, report.suppressed), (0, 1));
    assert_eq!(stand_in.sent().len(), 2, "nothing new reached the provider");
}

#[tokio::test]
async fn a_telnyx_help_is_answered_through_the_relay() {
    let (app, stand_in) = spawn_sms_app(|s| s.sms.program_name = "Safe Streets".into()).await;
    let r = app
        .telnyx(&telnyx_event(TIPSTER, "HELP", "msg-help-1"), now())
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        !body(r).await.contains("rates"),
        "Telnyx gets a bare 200; the answer goes through the relay"
    );
    assert_eq!(app.relay.step().await.unwrap().sent, 1);
    let sent = stand_in.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (sent[0].provider, sent[0].to.as_str(), sent[0].from.as_str()),
        ("telnyx", TIPSTER, PROGRAM_NUMBER)
    );
    for part in ["Safe Streets", "STOP", "Msg & data rates may apply"] {
        assert!(sent[0].body.contains(part), "{part} in {}", sent[0].body);
    }
    assert!(app.alerts().await.is_empty(), "HELP is not a tip");
}

#[tokio::test]
async fn telnyx_fields_never_reach_redis_logs_or_metrics() {
    let (app, stand_in) = spawn_sms_app(|_| {}).await;
    let run = crate::support::app::random_hex(8);
    let digits: String = run.bytes().map(|b| char::from(b'0' + b % 10)).collect();
    let number = format!("+1999{digits}");
    let message_id = format!("CANARY-MSG-{run}");
    let forged_id = format!("CANARY-FORGED-{run}");
    let stop_id = format!("CANARY-STOP-{run}");
    let event_id = format!("CANARY-EVENT-{run}");
    let carrier = format!("CANARY-CARRIER-{run}");
    let text = format!("CANARY-TEXT-{run} they said tonight at the park");
    let event = |text: &str, id: &str| {
        let mut event: serde_json::Value =
            serde_json::from_slice(&telnyx_event(&number, text, id)).unwrap();
        event["data"]["id"] = event_id.clone().into();
        event["data"]["payload"]["from"]["carrier"] = carrier.clone().into();
        serde_json::to_vec(&event).unwrap()
    };

    assert_eq!(
        app.telnyx(&event(&text, &message_id), now()).await.status(),
        200
    );
    assert_eq!(app.alerts().await.len(), 1);
    // The number is handled in clear, in memory only: the acknowledgement
    // (sent before the STOP, which would suppress it) and the confirmation.
    assert_eq!(app.relay.step().await.unwrap().sent, 1);
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let forged = app
        .telnyx_signed_by(&forger, &event("forged tip", &forged_id), now())
        .await;
    assert_eq!(forged.status(), 403);
    assert_eq!(
        app.telnyx(&event("STOP", &stop_id), now()).await.status(),
        200
    );
    assert_eq!(
        app.alerts().await.len(),
        1,
        "neither the forgery nor STOP is a tip"
    );
    assert_eq!(app.relay.step().await.unwrap().sent, 1);
    let sent = stand_in.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|s| s.to == number), "{sent:?}");

    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("tipwire_webhook_signature_failures_total{provider=\"telnyx\"} 1"),
        "the forgery took the refusal path: {metrics}"
    );
    let bare = number.trim_start_matches('+').to_owned();
    crate::support::canary::assert_nowhere(
        &app,
        &[
            &number,
            &bare,
            &message_id,
            &forged_id,
            &stop_id,
            &event_id,
            &carrier,
            &text,
            &format!("CANARY-TEXT-{run}"),
        ],
    );
}

#[tokio::test]
async fn the_acknowledgement_is_configurable_and_can_be_turned_off() {
    let (app, _stand_in) = spawn_sms_app(|s| {
        s.sms.acknowledgement.en = "Got it. Stay safe.".into();
        s.sms.acknowledgement.es = String::new();
    })
    .await;
    let en = body(
        app.twilio(&twilio_params(
            TIPSTER,
            "there is a fight at the corner now",
            "SM90",
        ))
        .await,
    )
    .await;
    assert!(en.contains("<Message>Got it. Stay safe.</Message>"), "{en}");
    let es = body(
        app.twilio(&twilio_params(
            TIPSTER,
            "Hola, hay una pelea en la esquina ahora",
            "SM91",
        ))
        .await,
    )
    .await;
    assert!(es.ends_with("<Response/>"), "{es}");
    assert_eq!(app.alerts().await.len(), 2);
}

/// An SMS gateway where `ZONE_NUMBER` is the "south" line and `PROGRAM_NUMBER`
/// is unmapped, with a "south" mediator beside the test's "north" one.
async fn spawn_zoned_sms_app() -> (
    crate::support::app::TestApp,
    crate::support::sms::StandIn,
    IdentityKey,
) {
    let (app, stand_in) = spawn_sms_app(|s| {
        let zone_number = tipwire::domain::PhoneNumber::parse(ZONE_NUMBER).unwrap();
        s.sms.numbers.push(zone_number.clone());
        s.sms
            .zone_numbers
            .push((zone_number, tipwire::domain::Zone::parse("south").unwrap()));
    })
    .await;
    let south = add_mediator(&app.store, "South", &["south"], false).await;
    (app, stand_in, south)
}

#[tokio::test]
async fn a_twilio_text_to_a_zone_number_is_sealed_to_that_zone_only() {
    let (app, stand_in, south) = spawn_zoned_sms_app().await;
    let r = app
        .twilio(&twilio_params_to(
            TIPSTER,
            ZONE_NUMBER,
            "fight at the south court",
            "SM90",
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert!(body(r).await.contains("Thank you."));
    let alerts = app.alerts().await;
    let e = &alerts[0].entry;
    assert_eq!((e.channel.as_str(), e.zone.as_str()), ("sms", "south"));
    for id in [&south, &app.escrow] {
        assert_eq!(
            open_tip(&alerts[0], id).unwrap().text,
            "fight at the south court"
        );
    }
    assert!(
        open_tip(&alerts[0], &app.mediator).is_none(),
        "the north mediator cannot open a text to the south line"
    );

    // The same tipster's text to the unmapped number joins the same thread
    // but is "not sure": each text takes its own number's zone.
    app.twilio(&twilio_params(TIPSTER, "and more near the library", "SM91"))
        .await;
    let alerts = app.alerts().await;
    assert_eq!(alerts[1].entry.zone, "unsure");
    assert_eq!(alerts[1].entry.thread, alerts[0].entry.thread);
    for id in [&app.mediator, &south, &app.escrow] {
        assert!(open_tip(&alerts[1], id).is_some());
    }

    // Replies still come from the number the tipster first texted.
    let thread = ThreadId::parse(&alerts[0].entry.thread).unwrap();
    app.queue_reply(&thread, "Someone is coming.", Kind::Reply)
        .await;
    assert_eq!(app.relay.step().await.unwrap().sent, 1);
    let sent = stand_in.sent();
    assert_eq!(
        (sent[0].provider, sent[0].to.as_str(), sent[0].from.as_str()),
        ("twilio", TIPSTER, ZONE_NUMBER)
    );
}

#[tokio::test]
async fn a_telnyx_text_to_a_zone_number_is_sealed_to_that_zone_only() {
    let (app, stand_in, south) = spawn_zoned_sms_app().await;
    let r = app
        .telnyx(
            &telnyx_event_to(TIPSTER, ZONE_NUMBER, "crew gathering on 5th", "msg-90"),
            now(),
        )
        .await;
    assert_eq!(r.status(), 200);
    let alerts = app.alerts().await;
    let e = &alerts[0].entry;
    assert_eq!((e.channel.as_str(), e.zone.as_str()), ("sms", "south"));
    for id in [&south, &app.escrow] {
        assert_eq!(
            open_tip(&alerts[0], id).unwrap().text,
            "crew gathering on 5th"
        );
    }
    assert!(open_tip(&alerts[0], &app.mediator).is_none());
    // The acknowledgement goes out from the south line.
    assert_eq!(app.relay.step().await.unwrap().sent, 1);
    let sent = stand_in.sent();
    assert_eq!(
        (sent[0].provider, sent[0].to.as_str(), sent[0].from.as_str()),
        ("telnyx", TIPSTER, ZONE_NUMBER)
    );
}

#[tokio::test]
async fn a_text_to_an_unmapped_program_number_stays_not_sure_with_either_provider() {
    let (app, stand_in, south) = spawn_zoned_sms_app().await;
    app.twilio(&twilio_params("+15557654000", "twilio, no zone", "SM92"))
        .await;
    app.telnyx(
        &telnyx_event("+15557654001", "telnyx, no zone", "msg-92"),
        now(),
    )
    .await;
    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 2);
    for alert in &alerts {
        assert_eq!(alert.entry.zone, "unsure");
        for id in [&app.mediator, &south, &app.escrow] {
            assert!(open_tip(alert, id).is_some());
        }
    }
    assert_eq!(app.relay.step().await.unwrap().sent, 1);
    assert_eq!(stand_in.sent()[0].from, PROGRAM_NUMBER);
}
