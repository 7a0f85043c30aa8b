//! The admin CLI as an administrator runs it: the real binary.

use std::process::{Command, Output};

use crate::support::app::spawn_app;

fn tipwire(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tipwire"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn keys_init_refuses_to_overwrite_and_keys_show_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!("[keys]\ndir = \"{}\"\n", dir.path().join("keys").display()),
    )
    .unwrap();
    let escrow = dir.path().join("escrow.identity");

    let first = tipwire(
        &config,
        &["keys", "init", "--escrow-out", escrow.to_str().unwrap()],
    );
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("Move it offline"));
    let escrow_before = std::fs::read(&escrow).unwrap();

    let again = tipwire(
        &config,
        &[
            "keys",
            "init",
            "--escrow-out",
            dir.path().join("other").to_str().unwrap(),
        ],
    );
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(&escrow).unwrap(), escrow_before);

    let show = tipwire(&config, &["keys", "show"]);
    assert!(show.status.success(), "{}", stderr(&show));
    let listing = stdout(&show);
    for kind in ["escrow", "relay", "pseudonym"] {
        assert!(listing.contains(kind), "{listing}");
    }
    assert!(listing.contains("e1.p1"));
    let relay = std::fs::read_to_string(dir.path().join("keys/relay.v1.key")).unwrap();
    let secret_line = relay
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    let pseudonym = std::fs::read_to_string(dir.path().join("keys/pseudonym.v1.key")).unwrap();
    assert!(!listing.contains(secret_line) && !listing.contains(pseudonym.trim()));
    assert!(!listing.contains("AGE-SECRET-KEY"));

    let rotated = tipwire(&config, &["keys", "rotate", "pseudonym"]);
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    assert!(stdout(&tipwire(&config, &["keys", "show"])).contains("e1.p2"));
}

#[tokio::test]
async fn mediators_are_added_listed_and_removed_with_the_cli() {
    let app = spawn_app().await;
    let config = app.cli_config();
    let recipient = tipwire::crypto::IdentityKey::generate()
        .to_public()
        .to_string();

    let bad_zone = tipwire(
        &config,
        &[
            "mediator",
            "add",
            "--name",
            "Dee",
            "--zone",
            "atlantis",
            "--recipient",
            &recipient,
        ],
    );
    assert!(!bad_zone.status.success());
    assert!(
        stderr(&bad_zone).contains("--zone atlantis"),
        "{}",
        stderr(&bad_zone)
    );
    let bad_key = tipwire(
        &config,
        &[
            "mediator",
            "add",
            "--name",
            "Dee",
            "--zone",
            "south",
            "--recipient",
            "age1bogus",
        ],
    );
    assert!(
        stderr(&bad_key).contains("--recipient"),
        "{}",
        stderr(&bad_key)
    );

    let added = tipwire(
        &config,
        &[
            "mediator",
            "add",
            "--name",
            "Dee",
            "--zone",
            "south,east",
            "--recipient",
            &recipient,
        ],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let list = stdout(&tipwire(&config, &["mediator", "list"]));
    assert!(
        list.contains("Dee") && list.contains("east,south") && list.contains(&recipient),
        "{list}"
    );
    let id = list
        .lines()
        .find(|l| l.contains("Dee"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    let removed = tipwire(&config, &["mediator", "remove", &id]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(!stdout(&tipwire(&config, &["mediator", "list"])).contains("Dee"));
}

#[tokio::test]
async fn serve_refuses_a_bad_setting_and_names_it_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tipwire"))
        .arg("serve")
        .env("TIPWIRE_SERVER__MODE", "plaintext")
        .env("TIPWIRE_SERVER__HOST", "0.0.0.0")
        .env("TIPWIRE_KEYS__DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("server.mode") && err.contains("Fix:"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_tipwire"))
        .arg("serve")
        .env("TIPWIRE_SERVER__PORT", "0")
        .env("TIPWIRE_KEYS__DIR", dir.path().join("none"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("keys.dir") && err.contains("tipwire keys init"),
        "{err}"
    );
}
