//! The sealing-only ceiling: how many tips a second this machine can seal with
//! age to N recipients on T threads, with nothing else in the way. The gateway
//! benchmark (scripts/bench.sh) compares `POST /tips` against this figure from
//! the same run.
//!
//! cargo bench --bench sealing -- [--recipients N] [--threads T] [--seconds S]

use std::time::{Duration, Instant};

use tipwire::crypto::{IdentityKey, seal};
use tipwire::domain::{Channel, Priority, TipDocument};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let recipients = arg("--recipients", 10) as usize;
    let threads = arg(
        "--threads",
        std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
    ) as usize;
    let seconds = arg("--seconds", 5);

    let keys: Vec<_> = (0..recipients)
        .map(|_| IdentityKey::generate().to_public())
        .collect();
    // The same document a typical web tip produces (≈ 300 bytes of JSON).
    let document = serde_json::to_vec(&TipDocument {
        v: 1,
        tip_id: "0123456789abcdef0123456789abcdef".into(),
        channel: Channel::Web,
        zone: "north".into(),
        priority: Priority::Now,
        received: 1_700_000_040,
        thread: "fedcba9876543210fedcba9876543210".into(),
        subject: None,
        text: "Two groups arguing outside the corner store on 5th; one said they would come back tonight with friends.".into(),
        attachments: Vec::new(),
        withheld: Vec::new(),
    })
    .unwrap();

    let deadline = Duration::from_secs(seconds);
    let started = Instant::now();
    let sealed: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let keys = &keys;
                let document = &document;
                scope.spawn(move || {
                    let mut n = 0u64;
                    let start = Instant::now();
                    while start.elapsed() < deadline {
                        std::hint::black_box(seal(document, keys).unwrap());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let rate = sealed as f64 / started.elapsed().as_secs_f64();
    println!(
        "seal-only recipients={recipients} threads={threads} seconds={seconds} sealed={sealed} rate={rate:.0}/s"
    );
}
