//! Sending a web tip again is safe: the form's submission token (or a
//! program's `Idempotency-Key`) makes a retry of a stored tip answer
//! "received" without storing it twice, including when the first answer
//! was lost to a Redis that did not reply in time; a 503 page hands the tip
//! and its token back.

use std::process::Command;
use std::time::Duration;

use reqwest::Response;

use crate::support::app::{TestApp, error_code, open_tip, spawn_app, spawn_app_with};
use crate::support::private_redis::PrivateRedis;

/// The submission token of a freshly rendered tip form (or a form shown again).
fn token_in(page: &str) -> String {
    let marker = "name=\"submission\" value=\"";
    let start = page.find(marker).expect("the form carries a token") + marker.len();
    let len = page[start..].find('"').unwrap();
    page[start..start + len].to_owned()
}

/// The text a browser sends from the `<textarea>` of a form shown again,
/// by HTML's parsing and form rules: entities decoded, `\r\n` and `\r` read
/// as `\n`, a line break right after the start tag dropped, and every line
/// break sent as `\r\n`.
fn browser_resends(page: &str) -> String {
    let start = page.find("<textarea").unwrap();
    let start = start + page[start..].find('>').unwrap() + 1;
    let len = page[start..].find("</textarea>").unwrap();
    let parsed = page[start..start + len]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let value = parsed.strip_prefix('\n').unwrap_or(&parsed);
    value.replace('\n', "\r\n")
}

async fn fresh_token(app: &TestApp) -> String {
    token_in(&app.get_text("/").await)
}

/// Posts a tip for zone north, urgency now, with `token` in the form's
/// hidden field and `key` as `Idempotency-Key`, when given.
async fn post(
    app: &TestApp,
    accept: &str,
    text: &str,
    token: Option<&str>,
    key: Option<&str>,
) -> Response {
    let mut fields = vec![("text", text), ("zone", "north"), ("urgency", "now")];
    fields.extend(token.map(|t| ("submission", t)));
    let mut request = app
        .client
        .post(app.url("/tips"))
        .header("Accept", accept)
        .form(&fields);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

/// Posts the tip form as a browser does, with `token` in the hidden field.
async fn send_form(app: &TestApp, text: &str, token: &str) -> Response {
    post(app, "text/html", text, Some(token), None).await
}

/// Posts the tip as a program does, with `key` as `Idempotency-Key` if any.
async fn send_json(app: &TestApp, text: &str, key: Option<&str>) -> Response {
    post(app, "application/json", text, None, key).await
}

fn assert_received(r: &Response) {
    assert_eq!(r.status(), 303, "a browser is sent to the thank-you page");
    assert_eq!(r.headers()["location"], "/thanks");
}

/// The texts of the stored tips, oldest first, as a mediator opens them.
async fn stored_texts(app: &TestApp) -> Vec<String> {
    app.alerts()
        .await
        .iter()
        .map(|a| open_tip(a, &app.mediator).unwrap().text)
        .collect()
}

#[tokio::test]
async fn a_tip_sent_again_with_the_same_token_after_a_success_reaches_mediators_once() {
    let app = spawn_app().await;
    let token = fresh_token(&app).await;
    assert!(token.len() >= 22, "at least 128 bits: {token}");
    assert_ne!(token, fresh_token(&app).await, "a new token every render");
    assert_received(&send_form(&app, "a fight at the park", &token).await);
    assert_received(&send_form(&app, "a fight at the park", &token).await);

    let key = "8e03978e-40d5-43e8-bc93-6894a57f9324";
    for _ in 0..2 {
        let r = send_json(&app, "a fight at the store", Some(key)).await;
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["status"], "received");
    }
    assert_eq!(
        stored_texts(&app).await,
        ["a fight at the park", "a fight at the store"]
    );
    // Only a keyed hash of token and tip is kept: neither is anywhere.
    crate::support::canary::assert_nowhere(&app, &[&token, key]);
}

#[tokio::test]
async fn a_tip_sent_again_after_a_pseudonym_key_rotation_is_still_stored_once() {
    let mut app = spawn_app().await;
    let token = fresh_token(&app).await;
    assert_received(&send_form(&app, "before the rotation", &token).await);
    crate::support::app::restart_with_rotated_pseudonym_key(&mut app).await;
    assert_received(&send_form(&app, "before the rotation", &token).await);
    assert_eq!(app.alerts().await.len(), 1, "the old key's marker is found");
}

#[tokio::test]
async fn different_tokens_or_different_tips_under_one_token_are_each_stored() {
    let app = spawn_app().await;
    let (a, b) = (fresh_token(&app).await, fresh_token(&app).await);
    assert_received(&send_form(&app, "same words", &a).await);
    assert_received(&send_form(&app, "same words", &b).await);
    // A token reused for another tip (a program's bug) never swallows it.
    assert_received(&send_form(&app, "other words", &a).await);
    assert_eq!(
        stored_texts(&app).await,
        ["same words", "same words", "other words"]
    );
}

#[tokio::test]
async fn malformed_tokens_are_refused_with_a_precise_code_and_nothing_is_stored() {
    let app = spawn_app().await;
    for bad in [
        "",
        "too-short",
        &"a".repeat(65),
        "has spaces in it, not a token",
    ] {
        let r = post(&app, "application/json", "x", Some(bad), None).await;
        assert_eq!(r.status(), 400, "{bad:?}");
        assert_eq!(error_code(r).await, "invalid-submission-token");
    }
    for bad in [
        "short",
        "\"unclosed-8e03978e-40d5-43e8-bc93",
        "ünïcode-ünïcode-ünïcode",
    ] {
        let r = send_json(&app, "x", Some(bad)).await;
        assert_eq!(r.status(), 400, "{bad:?}");
        assert_eq!(error_code(r).await, "invalid-idempotency-key");
    }
    // Two keys, each well formed: which one would a retry repeat?
    let r = app
        .client
        .post(app.url("/tips"))
        .header("Accept", "application/json")
        .header("Idempotency-Key", "a".repeat(22))
        .header("Idempotency-Key", "b".repeat(22))
        .form(&[("text", "x"), ("zone", "north"), ("urgency", "now")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "invalid-idempotency-key");
    assert!(app.alerts().await.is_empty());
}

/// A gateway on its own Redis that gives up on Redis after half a second.
async fn app_on(redis: &PrivateRedis) -> TestApp {
    let url = redis.url();
    spawn_app_with(|s| {
        s.redis.url = url;
        s.redis.durability = tipwire::config::Durability::Strict;
        s.redis.connect_timeout = std::time::Duration::from_millis(300);
        s.redis.response_timeout = std::time::Duration::from_millis(500);
    })
    .await
}

fn redis_command(redis: &PrivateRedis, args: &[&str]) -> redis::Value {
    let mut c = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut c).unwrap()
}

/// Sends SIGSTOP or SIGCONT to the Redis process (its pid from INFO).
fn signal(redis_pid: &str, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, redis_pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {redis_pid}");
}

fn pid_of(redis: &PrivateRedis) -> String {
    let info: String =
        redis::FromRedisValue::from_redis_value(&redis_command(redis, &["INFO", "server"]))
            .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Waits for Redis to have run what was queued, then returns the texts.
async fn stored_after_resume(app: &TestApp, expected: usize) -> Vec<String> {
    for _ in 0..50 {
        let texts = stored_texts(app).await;
        if texts.len() >= expected {
            return texts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stored_texts(app).await
}

#[tokio::test]
async fn a_tip_whose_append_was_answered_too_late_is_stored_once_when_sent_again() {
    let redis = PrivateRedis::start_with(&["--appendfsync", "always"]);
    let app = app_on(&redis).await;
    // A first tip, so the gateway holds the mediator directory (a script
    // read, which a write pause would hold too).
    assert_received(&send_form(&app, "an earlier tip", &fresh_token(&app).await).await);
    let token = fresh_token(&app).await;
    // Reads go on, writes wait: the replay check passes, the append is
    // queued in Redis and runs after the gateway gave up on its answer.
    redis_command(&redis, &["CLIENT", "PAUSE", "60000", "WRITE"]);
    // Typed after an empty first line, as a browser sends it: the form shown
    // again gives it back without that line.
    let text = "\r\nstored, but the answer came late\r\nby the gym";
    let first = send_form(&app, text, &token).await;
    assert_eq!(first.status(), 503);
    let page = first.text().await.unwrap();
    redis_command(&redis, &["CLIENT", "UNPAUSE"]);
    assert_eq!(
        stored_after_resume(&app, 2).await,
        ["an earlier tip", text],
        "the append the gateway stopped waiting for ran"
    );

    // The tipster presses "Send tip" on the page they were shown.
    assert_eq!(token_in(&page), token);
    let resent = browser_resends(&page);
    assert_eq!(resent, "stored, but the answer came late\r\nby the gym");
    assert_received(&send_form(&app, &resent, &token).await);
    assert_eq!(stored_texts(&app).await.len(), 2, "mediators get it once");
}

#[tokio::test]
async fn a_tip_refused_while_redis_was_frozen_is_shown_again_and_stored_once() {
    let redis = PrivateRedis::start_with(&["--appendfsync", "always"]);
    let app = app_on(&redis).await;
    let token = fresh_token(&app).await;
    let pid = pid_of(&redis);
    signal(&pid, "-STOP");
    let text = "they said <tonight> & \"after school\"";
    let page = send_form(&app, text, &token).await;
    let json_keyed = send_json(&app, "keyed", Some(&"k".repeat(22))).await;
    let json_unkeyed = send_json(&app, "unkeyed", None).await;
    signal(&pid, "-CONT");

    assert_eq!(page.status(), 503);
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert!(page.headers().get("retry-after").is_some());
    let page = page.text().await.unwrap();
    assert!(page.contains("may not have been received"), "{page}");
    assert!(page.contains("It is safe to send it again"), "{page}");
    assert!(
        page.contains("they said &lt;tonight&gt; &amp; &quot;after school&quot;</textarea>"),
        "the tip, escaped, in the form: {page}"
    );
    assert!(page.contains("value=\"north\" selected"), "{page}");
    assert!(page.contains("value=\"now\" checked"), "{page}");
    assert_eq!(
        token_in(&page),
        token,
        "the same token, so sending again is safe"
    );

    assert_eq!(json_keyed.status(), 503);
    let body: serde_json::Value = json_keyed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "store-unavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("may not have been"), "{message}");
    assert!(message.contains("safe to send it again"), "{message}");
    assert_eq!(json_unkeyed.status(), 503);
    let body: serde_json::Value = json_unkeyed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "store-unavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("stored twice"), "{message}");

    // Whatever the frozen Redis ran on waking, the tip is there once.
    let mut sent = send_form(&app, text, &token).await;
    for _ in 0..50 {
        if sent.status() != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        sent = send_form(&app, text, &token).await;
    }
    assert_received(&sent);
    assert_received(&send_form(&app, text, &token).await);
    let texts = stored_texts(&app).await;
    assert_eq!(
        texts.iter().filter(|t| t.as_str() == text).count(),
        1,
        "{texts:?}"
    );
    let mut aof = Vec::new();
    crate::support::canary::files_under(redis.dir(), &mut aof);
    assert!(
        !crate::support::canary::contains(&aof, &token),
        "the token never reaches Redis's files"
    );
    crate::support::canary::assert_nowhere(&app, &[&token]);
}
