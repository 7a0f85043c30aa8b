//! A Redis that could lose acknowledged tips (AOF off, fsync not on every
//! write, an evicting memory policy, or one that hides its configuration) is
//! refused at start-up, and `/readyz` fails when Redis becomes such a Redis
//! while the gateway runs. Each test has its own redis-server.

use std::time::Duration;

use tipwire::config::{Durability, Settings};

use crate::support::app::{TestApp, try_spawn_app_with};
use crate::support::private_redis::PrivateRedis;

/// The durable set-up the docs ask for, plus `extra` options.
fn durable_redis(extra: &[&str]) -> PrivateRedis {
    let mut args = vec![
        "--appendfsync",
        "always",
        "--maxmemory-policy",
        "noeviction",
    ];
    args.extend_from_slice(extra);
    PrivateRedis::start_with(&args)
}

fn on(redis: &PrivateRedis, mode: Durability) -> impl FnOnce(&mut Settings) {
    let url = redis.url();
    move |s: &mut Settings| {
        s.redis.url = url;
        s.redis.durability = mode;
    }
}

/// The start-up refusal's message.
async fn refusal(redis: &PrivateRedis, mode: Durability) -> String {
    match try_spawn_app_with(on(redis, mode)).await {
        Ok(_) => panic!("a gateway started under {mode:?} on a Redis that should be refused"),
        Err(e) => e.to_string(),
    }
}

async fn started(redis: &PrivateRedis, mode: Durability) -> TestApp {
    try_spawn_app_with(on(redis, mode)).await.unwrap()
}

/// Starts under `mode`, is ready and stores a tip.
async fn started_and_ready(redis: &PrivateRedis, mode: Durability) {
    let app = started(redis, mode).await;
    assert_eq!(readyz(&app).await.0, 200);
    assert_eq!(
        app.post_tip("stored", "north", "now").await.status(),
        200,
        "{mode:?}"
    );
    assert_eq!(app.alerts().await.len(), 1);
}

async fn readyz(app: &TestApp) -> (u16, String) {
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn config_set(redis: &PrivateRedis, name: &str, value: &str) {
    let mut c = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(&mut c)
        .unwrap();
}

#[tokio::test]
async fn the_default_refuses_a_redis_that_fsyncs_every_second_and_names_the_fix() {
    // Redis's own default: AOF on, appendfsync everysec.
    let redis = PrivateRedis::start();
    let msg = refusal(&redis, Durability::Strict).await;
    assert!(msg.starts_with("redis.durability:"), "{msg}");
    assert!(msg.contains("appendfsync everysec"), "{msg}");
    assert!(
        msg.contains("Fix: run CONFIG SET appendfsync always"),
        "{msg}"
    );
    assert!(msg.contains("\"everysec-accepted\""), "{msg}");

    // The operator's explicit override starts it, and it is ready.
    started_and_ready(&redis, Durability::EverysecAccepted).await;
}

#[tokio::test]
async fn a_redis_without_aof_is_refused_and_an_evicting_one_even_under_every_override() {
    let no_aof = PrivateRedis::start_with(&["--appendonly", "no"]);
    for mode in [
        Durability::Strict,
        Durability::EverysecAccepted,
        Durability::UnverifiedAccepted,
    ] {
        let msg = refusal(&no_aof, mode).await;
        assert!(msg.contains("appendonly no"), "{msg}");
        assert!(msg.contains("CONFIG SET appendonly yes"), "{msg}");
    }
    drop(no_aof);

    let evicting = durable_redis(&["--maxmemory-policy", "allkeys-lru"]);
    for mode in [
        Durability::Strict,
        Durability::EverysecAccepted,
        Durability::UnverifiedAccepted,
        Durability::DangerousNoPersistence,
    ] {
        let msg = refusal(&evicting, mode).await;
        assert!(msg.contains("maxmemory-policy allkeys-lru"), "{msg}");
        assert!(
            msg.contains("CONFIG SET maxmemory-policy noeviction"),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn a_redis_that_hides_its_configuration_needs_the_unverified_override() {
    // As managed services do: CONFIG renamed away, or forbidden to the user.
    for hidden in [
        durable_redis(&["--rename-command", "CONFIG", ""]),
        durable_redis(&[
            "--user", "default", "on", "nopass", "~*", "&*", "+@all", "-config",
        ]),
    ] {
        let msg = refusal(&hidden, Durability::Strict).await;
        assert!(msg.contains("refused CONFIG GET"), "{msg}");
        assert!(msg.contains("\"unverified-accepted\""), "{msg}");

        started_and_ready(&hidden, Durability::UnverifiedAccepted).await;
    }
}

#[tokio::test]
async fn readyz_fails_while_redis_is_reconfigured_to_lose_tips_and_recovers_after() {
    let redis = durable_redis(&[]);
    let app = started(&redis, Durability::Strict).await;
    assert_eq!(readyz(&app).await, (200, "ready\n".to_owned()));

    config_set(&redis, "appendfsync", "everysec");
    assert!(matches!(
        app.durability.step().await.unwrap(),
        tipwire::bus::Checked::Refused(_)
    ));
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503);
    assert!(body.contains("could lose acknowledged tips"), "{body}");
    assert!(
        !body.contains("appendfsync"),
        "the public body names no Redis setting: {body}"
    );

    config_set(&redis, "appendfsync", "always");
    assert!(matches!(
        app.durability.step().await.unwrap(),
        tipwire::bus::Checked::Durable
    ));
    assert_eq!(readyz(&app).await.0, 200);
}

#[tokio::test]
async fn readyz_asks_again_when_redis_comes_back_and_refuses_a_replacement_that_loses_tips() {
    let mut redis = durable_redis(&[]);
    let app = started(&redis, Durability::Strict).await;
    assert_eq!(readyz(&app).await.0, 200);

    redis.kill();
    assert_eq!(readyz(&app).await.0, 503);
    // Back on the same port and data, but started without `appendfsync
    // always` (Redis's default everysec), as a hurried restart would.
    redis.start_again();
    let mut body = String::new();
    for _ in 0..50 {
        let (status, text) = readyz(&app).await;
        assert_eq!(status, 503, "{text}");
        body = text;
        if body.contains("could lose acknowledged tips") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(body.contains("could lose acknowledged tips"), "{body}");
}
