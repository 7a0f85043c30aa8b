//! Forged senders against the email thread (issue 10, item 4). The From line
//! is unauthenticated, so it must not read or change anyone's state: only
//! the thread token our replies carry (`tips+<token>@`) joins a thread or
//! stops and restarts its replies.

use crate::support::app::TestApp;
use crate::support::email::{Sink, TIP_ADDRESS, spawn_email_app};
use tipwire::domain::ThreadId;
use tipwire::outbound::relay::Kind;

const TIPSTER: &str = "resident.tipster@example.net";

async fn send(app: &TestApp, from: &str, to: &str, text: &str) -> String {
    let mail = lettre::Message::builder()
        .from(from.parse().unwrap())
        .to(to.parse().unwrap())
        .subject("re")
        .body(text.to_owned())
        .unwrap();
    let envelope =
        lettre::address::Envelope::new(Some(from.parse().unwrap()), vec![to.parse().unwrap()])
            .unwrap();
    let raw = mail.formatted();
    lettre::AsyncTransport::send_raw(&app.lettre(false), &envelope, &raw)
        .await
        .map(|r| format!("{} {}", r.code(), r.message().collect::<Vec<_>>().join(" ")))
        .unwrap_or_else(|e| e.to_string())
}

/// The thread of the newest alert.
async fn last_thread(app: &TestApp) -> String {
    app.alerts().await.last().unwrap().entry.thread.clone()
}

/// Queues a mediator's reply on `thread` and runs the relay once: the
/// outcome counts.
async fn reply_on(app: &TestApp, thread: &str) -> tipwire::outbound::relay::StepReport {
    let thread = ThreadId::parse(thread).unwrap();
    app.queue_reply(&thread, "Are you safe?", Kind::Reply).await;
    app.relay.step().await.unwrap()
}

fn header<'a>(raw: &'a str, name: &str) -> &'a str {
    raw.split("\r\n\r\n")
        .next()
        .unwrap()
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        })
        .unwrap()
}

/// A gateway whose replies go to a local relay sink.
async fn app_with_relay() -> (Sink, TestApp) {
    let sink = Sink::start(0);
    let ca_file = sink.ca_file();
    let app = spawn_email_app(|s| {
        s.email.outbound.enabled = true;
        s.email.outbound.relay_host = "localhost".into();
        s.email.outbound.relay_port = sink.port;
        s.email.outbound.ca_file = ca_file;
    })
    .await;
    (sink, app)
}

/// The From address of the newest reply the relay received.
fn last_reply_from(sink: &Sink) -> String {
    let (_, raw) = sink.received().last().unwrap().clone();
    let raw = String::from_utf8(raw).unwrap();
    let from = header(&raw, "From");
    from.rsplit_once('<')
        .map_or(from, |(_, a)| a.trim_end_matches('>'))
        .to_owned()
}

#[tokio::test]
async fn forged_senders_cannot_stop_restart_probe_or_join_a_tipsters_thread() {
    let (sink, app) = app_with_relay().await;
    assert!(
        send(&app, TIPSTER, TIP_ADDRESS, "A tip.")
            .await
            .starts_with("250")
    );
    let thread = last_thread(&app).await;
    assert_eq!(reply_on(&app, &thread).await.sent, 1);
    let received = sink.received();
    let (envelope, raw) = received.last().unwrap();
    let raw = String::from_utf8(raw.clone()).unwrap();
    // The reply comes from the tip address tagged with the thread's token.
    let from = header(&raw, "From");
    let token_address = from
        .rsplit_once('<')
        .map_or(from, |(_, a)| a.trim_end_matches('>'))
        .to_owned();
    assert!(token_address.starts_with("tips+"), "{token_address}");
    assert!(token_address.ends_with("@tips.example.org"));
    assert!(envelope.contains(TIPSTER));

    // A stranger writing as the tipster to the plain address: STOP, START
    // and a message get one and the same answer, whatever the tipster's
    // state, and change nothing.
    let ordinary = send(&app, TIPSTER, TIP_ADDRESS, "I am the tipster, honest.").await;
    let stop = send(&app, TIPSTER, TIP_ADDRESS, "STOP").await;
    let start = send(&app, TIPSTER, TIP_ADDRESS, "START").await;
    assert_eq!(ordinary, "250 2.0.0 Message accepted");
    assert_eq!(stop, ordinary);
    assert_eq!(start, ordinary);
    // None of them joined the tipster's thread.
    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 4);
    let threads: std::collections::HashSet<&str> =
        alerts.iter().map(|a| a.entry.thread.as_str()).collect();
    assert_eq!(
        threads.len(),
        4,
        "every bare-address mail is its own thread"
    );
    // And the tipster still gets replies.
    assert_eq!(reply_on(&app, &thread).await.sent, 1);

    // The tipster, answering from the token address, stops and restarts.
    let stopped = send(&app, TIPSTER, &token_address, "STOP").await;
    assert!(stopped.contains("no more mail"), "{stopped}");
    assert_eq!(reply_on(&app, &thread).await.suppressed, 1);
    // The opted-out state cannot be probed: after a forged START to the
    // plain address (the same answer as before) replies stay stopped.
    assert_eq!(send(&app, TIPSTER, TIP_ADDRESS, "START").await, ordinary);
    assert_eq!(reply_on(&app, &thread).await.suppressed, 1);
    let restarted = send(&app, TIPSTER, &token_address, "start").await;
    assert!(
        restarted.contains("reach this address again"),
        "{restarted}"
    );
    assert_eq!(reply_on(&app, &thread).await.sent, 1);

    // A message to the token address joins the thread; replies still go to
    // the address that started it, whoever holds the token.
    let before = app.alerts().await.len();
    assert!(
        send(
            &app,
            "someone.else@example.org",
            &token_address,
            "More detail."
        )
        .await
        .starts_with("250")
    );
    assert_eq!(app.alerts().await.len(), before + 1);
    assert_eq!(last_thread(&app).await, thread);
    assert_eq!(reply_on(&app, &thread).await.sent, 1);
    let (envelope, _) = sink.received().last().unwrap().clone();
    assert!(envelope.contains(TIPSTER), "{envelope}");
    assert!(!envelope.contains("someone.else"), "{envelope}");
}

/// A token the gateway never issued names no thread: a stranger who makes
/// one up and writes "as" the tipster through it must not create a thread
/// whose replies go to the tipster, and so cannot stop or restart the
/// tipster's replies through it.
#[tokio::test]
async fn a_made_up_token_cannot_stop_or_restart_a_tipsters_replies() {
    let (sink, app) = app_with_relay().await;
    assert!(
        send(&app, TIPSTER, TIP_ADDRESS, "A tip.")
            .await
            .starts_with("250")
    );
    let thread = last_thread(&app).await;
    assert_eq!(reply_on(&app, &thread).await.sent, 1);

    // The stranger's own token, "from" the tipster: a message, then STOP.
    let minted = "tips+0123456789abcdef01234567@tips.example.org";
    let ordinary = send(&app, TIPSTER, minted, "Hello again.").await;
    assert_eq!(ordinary, "250 2.0.0 Message accepted");
    assert_ne!(last_thread(&app).await, thread);
    send(&app, TIPSTER, minted, "STOP").await;
    assert_eq!(
        reply_on(&app, &thread).await.sent,
        1,
        "a forged STOP through a made-up token silenced the tipster"
    );

    // The tipster stops replies through the real token; a forged START
    // through the made-up one does not lift it.
    let token_address = last_reply_from(&sink);
    assert!(
        send(&app, TIPSTER, &token_address, "STOP")
            .await
            .contains("no more mail")
    );
    assert_eq!(reply_on(&app, &thread).await.suppressed, 1);
    send(&app, TIPSTER, minted, "START").await;
    assert_eq!(
        reply_on(&app, &thread).await.suppressed,
        1,
        "a forged START through a made-up token lifted the tipster's opt-out"
    );
}

/// A tipster's answer quotes our reply, and with it the From address that
/// carries the thread's token: the token is a capability over the thread
/// (join it, stop and restart its replies), so it does not reach the
/// mediators' phones with the tip.
#[tokio::test]
async fn the_thread_token_quoted_in_an_answer_is_not_stored_in_the_tip() {
    let (sink, app) = app_with_relay().await;
    send(&app, TIPSTER, TIP_ADDRESS, "A tip.").await;
    let thread = last_thread(&app).await;
    assert_eq!(reply_on(&app, &thread).await.sent, 1);
    let token_address = last_reply_from(&sink);
    let token = token_address
        .split_once('+')
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(token, _)| token.to_owned())
        .unwrap();
    let answer = format!(
        "Yes, I am safe.\r\n\r\nOn Monday, Tip line <{token_address}> wrote:\r\n> Are you safe?\r\n> ({})",
        token.to_ascii_uppercase()
    );
    assert!(
        send(&app, TIPSTER, &token_address, &answer)
            .await
            .starts_with("250")
    );
    let alerts = app.alerts().await;
    let alert = alerts.last().unwrap();
    assert_eq!(alert.entry.thread, thread);
    let doc = crate::support::app::open_tip(alert, &app.escrow).unwrap();
    let stored = serde_json::to_string(&doc).unwrap().to_ascii_lowercase();
    assert!(stored.contains("yes, i am safe."), "{stored}");
    assert!(
        !stored.contains(&token),
        "the token reached the tip: {stored}"
    );
    // Nor Redis (the thread id is a hash of it), disk, logs or metrics.
    crate::support::canary::assert_nowhere(&app, &[token.as_str(), &token.to_ascii_uppercase()]);
}
