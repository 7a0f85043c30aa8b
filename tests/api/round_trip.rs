//! Round trips: a tip posted over HTTPS opens for exactly the right mediators
//! and escrow, as the directory changes, and through the CLI and `age`.

use std::process::Command;

use crate::support::app::{add_mediator, age_cli_open, open_tip, spawn_app};
use tipwire::crypto::IdentityKey;
use tipwire::mediator::MediatorDirectory;

#[tokio::test]
async fn a_tip_sent_over_https_opens_for_the_mediator_and_escrow_with_the_exact_text() {
    let app = spawn_app().await;
    let text = "Two groups arguing outside the store on 5th,\r\nsomeone said they'd come back tonight. ñ ✓";

    let response = app.post_tip(text, "north", "now").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "received");

    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 1);
    let entry = &alerts[0].entry;
    assert_eq!(entry.zone, "north");
    assert_eq!(entry.priority, "now");
    assert_eq!(entry.channel, "web");
    assert_eq!(entry.pseudonym, "");
    assert_eq!(entry.key_version, "e1.p1");
    assert_eq!(entry.received % 60, 0, "received is rounded to the minute");
    assert!(
        alerts[0]
            .id
            .starts_with(&format!("{}-", entry.received * 1000)),
        "{}",
        alerts[0].id
    );

    for identity in [&app.mediator, &app.escrow] {
        let doc = open_tip(&alerts[0], identity).expect("recipient opens the tip");
        assert_eq!(doc.text, text);
        assert_eq!(doc.tip_id, entry.tip_id.as_str());
        assert_eq!(doc.zone, "north");
    }
    assert!(open_tip(&alerts[0], &IdentityKey::generate()).is_none());
}

#[tokio::test]
async fn a_browser_is_redirected_to_a_thank_you_page_that_does_not_echo_the_tip() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/tips"))
        .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .form(&[
            ("text", "canary-echo-7731"),
            ("zone", "unsure"),
            ("urgency", "fyi"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/thanks");
    let page = app.get_text("/thanks").await;
    assert!(page.contains("Your tip reached the team"));
    assert!(!page.contains("canary-echo-7731"));
    assert_eq!(app.alerts().await.len(), 1);
}

#[tokio::test]
async fn tips_go_to_their_zone_supervisors_and_escrow_and_unsure_tips_to_everyone() {
    let app = spawn_app().await;
    let south = add_mediator(&app.store, "South", &["south"], false).await;
    let supervisor = add_mediator(&app.store, "Lead", &[], true).await;

    assert_eq!(
        app.post_tip("north thing", "north", "today").await.status(),
        200
    );
    assert_eq!(
        app.post_tip("somewhere", "unsure", "now").await.status(),
        200
    );
    let alerts = app.alerts().await;
    let (north, unsure) = (&alerts[0], &alerts[1]);
    assert!(open_tip(north, &app.mediator).is_some());
    assert!(open_tip(north, &supervisor).is_some());
    assert!(open_tip(north, &app.escrow).is_some());
    assert!(
        open_tip(north, &south).is_none(),
        "another zone's mediator cannot open it"
    );
    for id in [&app.mediator, &south, &supervisor, &app.escrow] {
        assert_eq!(open_tip(unsure, id).unwrap().text, "somewhere");
    }
}

#[tokio::test]
async fn a_removed_mediator_is_not_a_recipient_of_the_next_tip() {
    let app = spawn_app().await;
    // The first tip makes the gateway cache who can open tips for "north".
    assert_eq!(
        app.post_tip("before removal", "north", "today")
            .await
            .status(),
        200
    );
    let directory = MediatorDirectory::new(app.store.clone());
    let id = directory.list().await.unwrap()[0].id.clone();
    directory.remove(&id).await.unwrap();
    assert_eq!(
        app.post_tip("after removal", "north", "today")
            .await
            .status(),
        200
    );
    let alerts = app.alerts().await;
    assert_eq!(
        open_tip(&alerts[0], &app.mediator).unwrap().text,
        "before removal"
    );
    assert!(
        open_tip(&alerts[1], &app.mediator).is_none(),
        "the cached routing was not used after the change"
    );
    assert_eq!(
        open_tip(&alerts[1], &app.escrow).unwrap().text,
        "after removal"
    );
}

#[tokio::test]
async fn a_mediator_added_while_running_receives_the_next_tip() {
    let app = spawn_app().await;
    assert_eq!(app.post_tip("first", "south", "today").await.status(), 200);
    let newcomer = add_mediator(&app.store, "New", &["south"], false).await;
    assert_eq!(app.post_tip("second", "south", "today").await.status(), 200);
    let alerts = app.alerts().await;
    assert!(open_tip(&alerts[0], &newcomer).is_none());
    assert_eq!(open_tip(&alerts[1], &newcomer).unwrap().text, "second");
}

#[tokio::test]
async fn tips_for_a_team_too_large_to_seal_inline_open_for_each_of_them() {
    // More recipients than are sealed inline (32): the seal runs on the
    // blocking pool, and each phone and escrow still open the same text.
    let app = spawn_app().await;
    let mut team = Vec::new();
    for i in 0..40 {
        team.push(add_mediator(&app.store, &format!("Mediator {i}"), &["south"], false).await);
    }
    let texts: Vec<String> = (0..4).map(|i| format!("large team tip {i}")).collect();
    let posts = texts.iter().map(|t| app.post_tip(t, "south", "now"));
    for response in futures_util::future::join_all(posts).await {
        assert_eq!(response.status(), 200);
    }
    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 4);
    for alert in &alerts {
        let opened: Vec<String> = team
            .iter()
            .chain(std::iter::once(&app.escrow))
            .map(|identity| open_tip(alert, identity).unwrap().text)
            .collect();
        assert!(opened.iter().all(|t| t == &opened[0]), "{opened:?}");
        assert!(texts.contains(&opened[0]), "{opened:?}");
    }
}

#[tokio::test]
async fn an_exported_tip_opens_with_the_reference_age_tool() {
    let app = spawn_app().await;
    let text = "exported tip: meet at the park, 9pm";
    assert_eq!(app.post_tip(text, "north", "today").await.status(), 200);
    let tip_id = app.alerts().await[0].entry.tip_id.to_string();

    let out = app.dir.path().join("export");
    let status = Command::new(env!("CARGO_BIN_EXE_tipwire"))
        .args([
            "--config",
            app.cli_config().to_str().unwrap(),
            "export",
            "--out",
            out.to_str().unwrap(),
            "--since",
            "1d",
        ])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("exported 1 tips"));

    let identity = app.dir.path().join("mediator.identity");
    std::fs::write(
        &identity,
        format!("{}\n", app.mediator.to_secret_string().as_str()),
    )
    .unwrap();
    let file = out.join(format!("{tip_id}.age"));
    let doc: tipwire::domain::TipDocument =
        serde_json::from_slice(&age_cli_open(&identity, &file)).unwrap();
    assert_eq!(doc.text, text);
    assert_eq!(doc.tip_id, tip_id);
}

#[tokio::test]
async fn alerts_tail_prints_the_decrypted_tip_for_the_operator() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_tip("tail me: fight brewing at the court", "north", "now")
            .await
            .status(),
        200
    );
    let identity = app.dir.path().join("mediator.identity");
    std::fs::write(
        &identity,
        format!("# test\n{}\n", app.mediator.to_secret_string().as_str()),
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tipwire"))
        .args([
            "--config",
            app.cli_config().to_str().unwrap(),
            "alerts",
            "tail",
            "--identity",
            identity.to_str().unwrap(),
            "--from-start",
            "--count",
            "1",
        ])
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), output)
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("tail me: fight brewing at the court"),
        "{stdout}"
    );
    assert!(stdout.contains("zone north"), "{stdout}");
}
