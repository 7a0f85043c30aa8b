//! Load client for a running gateway: tips a second by email (SMTP with
//! STARTTLS) against tips a second by the web form (`POST /tips` over HTTPS),
//! alternating for several rounds, each round reported as the ratio
//! SMTP / web, then the median. The machine is shared and noisy, so only the
//! ratio of two figures from the same run means anything.
//! scripts/bench-email.sh starts the gateway and runs this.
//!
//! cargo bench --bench intake_load -- --smtp-port P --https-port Q --ca FILE
//!     --to tips@example.org [--concurrency N] [--seconds S] [--rounds R]
//!     [--host 127.0.0.1] [--server-pid PID]
//!
//! Each load runs N tasks for S seconds, each on a connection of its own
//! opened before the clock starts (web: HTTP/1.1 keep-alive, like `wrk`;
//! SMTP: one STARTTLS session carrying message after message). Only 2xx
//! (or 303) answers and 2xx replies are counted; anything else stops the run.
//! Every message has its own Message-ID; scripts/bench-email.sh checks that
//! each successful send became a stored tip. With
//! `--server-pid` it also reports the gateway's CPU time per message (user +
//! system, from /proc), which time stolen by neighbours does not inflate.
//!
//! The gateway's answers are the only untrusted input; they are checked, never
//! echoed beyond a status line.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use common::{TIMEOUT, cpu_secs, https_client, median};
use lettre::Address;
use reqwest::StatusCode;
use smtp::Template;
use tokio::task::JoinSet;

mod common;
#[path = "common/smtp.rs"]
mod smtp;

/// [`TEXT`], form-encoded, for the "north" zone.
const FORM: &str = "text=Two+groups+arguing+outside+the+corner+store+on+5th%3B+one+said+they+would+come+back+tonight+with+friends.&zone=north&urgency=now";
/// Distinct senders the messages rotate through (each is its own pseudonym,
/// reply thread and per-sender rate-limit key at the gateway).
const SENDERS: usize = 5;

#[derive(Parser)]
#[command(about = "SMTP versus web intake load against a running tipwire gateway")]
struct Args {
    /// The gateway's SMTP port (plain, STARTTLS offered).
    #[arg(long)]
    smtp_port: u16,
    /// The gateway's HTTPS port.
    #[arg(long)]
    https_port: u16,
    /// PEM file of the CA that signed the gateway's certificate; the only root
    /// trusted.
    #[arg(long)]
    ca: PathBuf,
    /// The tip address to send mail to.
    #[arg(long)]
    to: Address,
    /// Connections, each driven by its own task, in each load.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds each load runs.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Rounds of web load then SMTP load.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where the gateway listens: an address or name its certificate holds,
    /// checked by both clients.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The gateway's process id, to report its CPU time per message.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Passed by `cargo bench` to every bench target; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What one load produced.
struct Load {
    sent: u64,
    secs: f64,
    /// Gateway CPU seconds (user + system) used during the load.
    cpu: Option<f64>,
    /// This client's CPU seconds during the load.
    own_cpu: f64,
}

impl Load {
    fn rate(&self) -> f64 {
        self.sent as f64 / self.secs
    }

    /// Gateway CPU milliseconds per message.
    fn cpu_ms(&self) -> Option<f64> {
        self.cpu.map(|c| c * 1000.0 / self.sent as f64)
    }

    /// The share of its one thread this client used: near 1.0, the client
    /// and not the gateway may be what limits the rate.
    fn own_load(&self) -> f64 {
        self.own_cpu / self.secs
    }
}

/// Runs `tasks` (already connected) until `seconds` have passed; the clock
/// stops when the last one has its last answer.
async fn timed<F, Fut>(tasks: Vec<F>, seconds: u64, pid: Option<u32>) -> Result<Load>
where
    F: FnOnce(Instant) -> Fut,
    Fut: Future<Output = Result<u64>> + Send + 'static,
{
    let pid = pid.map(|p| p.to_string());
    let cpu0 = pid.as_deref().map(cpu_secs).transpose()?;
    let own0 = cpu_secs("self")?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut set = JoinSet::new();
    for task in tasks {
        set.spawn(task(deadline));
    }
    let mut sent = 0;
    // The first failure returns, dropping the set, which aborts the others.
    while let Some(done) = set.join_next().await {
        sent += done.context("a load task panicked")??;
    }
    let secs = started.elapsed().as_secs_f64();
    let own_cpu = cpu_secs("self")? - own0;
    let cpu = match (cpu0, pid.as_deref().map(cpu_secs).transpose()?) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    ensure!(sent > 0, "nothing was sent");
    Ok(Load {
        sent,
        secs,
        cpu,
        own_cpu,
    })
}

async fn web_load(args: &Args, ca: &[u8]) -> Result<Load> {
    let base = format!("https://{}:{}", args.host, args.https_port);
    let tips = reqwest::Url::parse(&format!("{base}/tips"))?;
    let mut tasks = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        // A client per task, each keeping one HTTP/1.1 connection: N
        // connections, as wrk -cN and as the N SMTP sessions.
        let client = https_client(ca)?
            .pool_max_idle_per_host(1)
            .timeout(TIMEOUT)
            .build()?;
        // Connect (TLS handshake) before the clock starts.
        let health = client.get(format!("{base}/healthz")).send().await?;
        ensure!(
            health.status().is_success(),
            "GET /healthz answered {}",
            health.status()
        );
        health.bytes().await?;
        let request = client
            .post(tips.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(FORM)
            .build()?;
        tasks.push(move |deadline: Instant| async move {
            let mut sent: u64 = 0;
            while Instant::now() < deadline {
                let request = request
                    .try_clone()
                    .context("the request has a stream body")?;
                let response = client.execute(request).await.context("POST /tips")?;
                let status = response.status();
                // Read the body to the end so the connection is reused.
                let body = response.bytes().await.context("reading the answer")?;
                // 200 with JSON, as asked for; 303 is the browser's answer.
                if !(status.is_success() || status == StatusCode::SEE_OTHER) {
                    bail!(
                        "POST /tips answered {status}: {}",
                        String::from_utf8_lossy(body.get(..200).unwrap_or(&body))
                    );
                }
                sent += 1;
            }
            anyhow::Ok(sent)
        });
    }
    timed(tasks, args.seconds, args.server_pid).await
}

async fn smtp_load(
    args: &Args,
    ca: &[u8],
    templates: &std::sync::Arc<Vec<Template>>,
    run: &str,
) -> Result<Load> {
    let server = tokio::net::lookup_host((args.host.as_str(), args.smtp_port))
        .await?
        .next()
        .context("the SMTP host has no address")?;
    let mut tasks = Vec::with_capacity(args.concurrency);
    for task in 0..args.concurrency {
        // Connected before the clock starts.
        let mut conn = smtp::open(server, None, &args.host, ca).await?;
        let templates = templates.clone();
        let run = run.to_owned();
        tasks.push(move |deadline: Instant| async move {
            let mut sent: u64 = 0;
            let mut raw = Vec::with_capacity(1024);
            while Instant::now() < deadline {
                // Senders rotate per message; tasks start at different ones.
                let template = templates
                    .get((task + sent as usize) % templates.len())
                    .context("no templates")?;
                template.write(format_args!("{run}.{task}.{sent}"), &mut raw);
                // The socket is ours, so lettre sets no timeout on it.
                let reply = tokio::time::timeout(TIMEOUT, conn.send(&template.envelope, &raw))
                    .await
                    .context("no SMTP reply within the timeout")?
                    .context("sending a message over SMTP")?;
                ensure!(
                    reply.is_positive(),
                    "the gateway answered {} to a message",
                    reply.code()
                );
                sent += 1;
            }
            // Outside the count; a failed QUIT changes nothing measured.
            let _ = conn.quit().await;
            anyhow::Ok(sent)
        });
    }
    timed(tasks, args.seconds, args.server_pid).await
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    ensure!(args.seconds > 0, "--seconds must be at least 1");
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    let ca = std::fs::read(&args.ca).with_context(|| format!("reading {}", args.ca.display()))?;
    let templates = (0..SENDERS)
        .map(|i| {
            let from: Address = format!("tipster{i}@senders.bench").parse()?;
            Template::new(&from, &args.to)
        })
        .collect::<Result<Vec<_>>>()?;
    let templates = std::sync::Arc::new(templates);
    // A run-unique part of every Message-ID, so a second run against the
    // same Redis prefix is not taken for retries.
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());

    // One thread, like wrk -t1: the client shares the cores with the gateway
    // and should take as little of them as it can.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        println!(
            "intake load: {} connections each, {} s per load, {} rounds, web then SMTP in each round",
            args.concurrency, args.seconds, args.rounds
        );
        let (mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
        let (mut web_sent, mut smtp_sent) = (0, 0);
        for round in 1..=args.rounds {
            let web = web_load(&args, &ca).await.context("web load")?;
            let smtp = smtp_load(&args, &ca, &templates, &format!("{run}.{round}"))
                .await
                .context("SMTP load")?;
            web_sent += web.sent;
            smtp_sent += smtp.sent;
            let ratio = smtp.rate() / web.rate();
            ratios.push(ratio);
            println!(
                "round {round}/{}: web {:.1} msgs/s ({} in {:.2} s)  SMTP {:.1} msgs/s ({} in {:.2} s)  ratio SMTP/web {ratio:.2}",
                args.rounds,
                web.rate(),
                web.sent,
                web.secs,
                smtp.rate(),
                smtp.sent,
                smtp.secs,
            );
            let client = format!(
                "load client busy: web {:.0}%, SMTP {:.0}% of its thread",
                web.own_load() * 100.0,
                smtp.own_load() * 100.0
            );
            if let (Some(w), Some(s)) = (web.cpu_ms(), smtp.cpu_ms()) {
                // Web CPU over SMTP CPU: the throughput ratio the two would
                // have if only the gateway's own CPU time counted.
                cpu_ratios.push(w / s);
                println!(
                    "           gateway CPU per message: web {w:.3} ms, SMTP {s:.3} ms  CPU ratio web/SMTP {:.2}  {client}",
                    w / s
                );
            } else {
                println!("           {client}");
            }
        }
        println!(
            "median ratio SMTP/web msgs/s = {:.2}   ({} rounds)",
            median(&mut ratios),
            args.rounds
        );
        if !cpu_ratios.is_empty() {
            println!(
                "median CPU ratio web/SMTP    = {:.2}   (gateway CPU time per message; steal-time free)",
                median(&mut cpu_ratios)
            );
        }
        println!(
            "sent: web={web_sent} smtp={smtp_sent} total={}",
            web_sent + smtp_sent
        );
        Ok(())
    })
}
