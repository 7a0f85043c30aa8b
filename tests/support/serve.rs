//! `tipwire serve` as a child process, for the tests that kill, stop and
//! restart the real binary (escalation across processes, hostile load, fault
//! injection): the config file, the start with its output in a log file, the
//! ports it logs, readiness, SIGKILL. Every wait has a deadline.

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tipwire::config::Settings;

/// The longest a child may take to log its ports or to become ready.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// Writes the config file of a child: port 0 (it logs the port it got), one
/// worker, a one-second drain, the TLS files, Redis (URL, prefix, timeouts
/// and durability check) and keys of `settings`, log level info, then
/// `extra` (more TOML tables, each with its header).
pub fn write_config(path: &Path, settings: &Settings, extra: &str) {
    let s = settings;
    std::fs::write(
        path,
        format!(
            r#"[server]
host = "127.0.0.1"
port = 0
workers = 1
shutdown_timeout_secs = 1

[tls]
cert_path = "{cert}"
key_path = "{key}"

[redis]
url = "{url}"
key_prefix = "{prefix}"
connect_timeout_ms = {connect}
response_timeout_ms = {response}
durability = "{durability}"

[keys]
dir = "{keys}"

[log]
filter = "info"

{extra}
"#,
            cert = s.tls.cert_path.display(),
            key = s.tls.key_path.display(),
            url = s.redis.url,
            prefix = s.redis.key_prefix,
            connect = s.redis.connect_timeout.as_millis(),
            response = s.redis.response_timeout.as_millis(),
            durability = s.redis.durability.as_str(),
            keys = s.keys.dir.display(),
        ),
    )
    .unwrap();
}

/// One `tipwire serve` child. Dropping it kills it.
pub struct Serve {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
    pub https: u16,
    /// The SMTP port, when the child was started expecting one.
    pub smtp: Option<u16>,
    /// Print the log when dropped during a failing test; off when the owner
    /// prints every child's log itself.
    pub echo_log: bool,
}

impl Serve {
    /// Starts `tipwire serve --config config` with its output in `log` and
    /// returns once it logged its HTTPS port (and its SMTP port, with
    /// `smtp`). The config file is the whole configuration: `TIPWIRE_`
    /// variables of the test's environment are not passed on.
    pub async fn start(name: &str, config: &Path, log: &Path, smtp: bool) -> Self {
        let out = File::create(log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tipwire"));
        command
            .arg("--config")
            .arg(config)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TIPWIRE_") {
                command.env_remove(key);
            }
        }
        let mut serve = Self {
            name: name.to_owned(),
            child: command.spawn().unwrap(),
            log: log.to_owned(),
            https: 0,
            smtp: None,
            echo_log: true,
        };
        let until = Instant::now() + START_PATIENCE;
        loop {
            if let Some(status) = serve.child.try_wait().unwrap() {
                panic!("gateway {name} exited at start-up ({status})");
            }
            let text = serve.log_text();
            let https = logged_port(&text, "tipwire listening");
            let smtp_port = logged_port(&text, "smtp listening");
            if let Some(https) = https
                && (!smtp || smtp_port.is_some())
            {
                serve.https = https;
                serve.smtp = smtp_port;
                return serve;
            }
            assert!(
                Instant::now() < until,
                "gateway {name} did not log its ports within {START_PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `/readyz` answers 200 (Redis reachable), failing if the
    /// child exits or the deadline passes.
    pub async fn wait_ready(&mut self, client: &reqwest::Client) {
        let ready = format!("https://localhost:{}/readyz", self.https);
        let until = Instant::now() + START_PATIENCE;
        loop {
            self.assert_running();
            if let Ok(r) = client.get(&ready).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < until,
                "gateway {} was not ready within {START_PATIENCE:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: the process gets no chance to drain or stop its tasks.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "gateway {} was still running until SIGKILL, not exited before it ({status})",
            self.name
        );
    }

    pub fn assert_running(&mut self) {
        assert_eq!(
            self.child.try_wait().unwrap(),
            None,
            "gateway {} is still running",
            self.name
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A `/proc/<pid>/status` figure in KiB (`VmRSS`, `VmHWM`: the peak).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.echo_log && std::thread::panicking() {
            eprintln!(
                "──── gateway {}: {} ────\n{}",
                self.name,
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// The port from a start-up line such as `... tipwire listening port=N ...`.
pub fn logged_port(log: &str, marker: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let digits: String = line
        .split_once("port=")?
        .1
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
