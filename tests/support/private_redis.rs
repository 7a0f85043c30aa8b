//! A private `redis-server` for one test, so stopping, freezing or filling
//! it disturbs nobody else.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private Redis for this test alone, so stopping it disturbs nobody.
pub struct PrivateRedis {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
    /// The extra options it was started with, kept for a restart.
    args: Vec<String>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With more `redis-server` options (`--appendfsync always`…).
    pub fn start_with(args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        Self::start_on(port, dir, args)
    }

    /// Its data directory (the AOF directory is inside).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn start_on(port: u16, dir: tempfile::TempDir, args: &[&str]) -> Self {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
            ])
            .arg("--dir")
            .arg(dir.path())
            .args(&args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs Debian's redis-server)");
        let url = format!("redis://127.0.0.1:{port}/0");
        for _ in 0..100 {
            if let Ok(mut c) = redis::Client::open(url.as_str()).unwrap().get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return Self {
                    port,
                    child,
                    dir,
                    args,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        panic!("private redis-server did not start on port {port}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts it again on the same port and data directory (AOF on, so what
    /// Redis acknowledged before the crash is replayed), without the extra
    /// options it was started with, as a hurried restart would.
    pub fn start_again(&mut self) {
        self.start_again_with(&[]);
    }

    /// Starts it again as [`Self::start_again`] does, with the extra options
    /// it was first started with.
    pub fn start_again_as_before(&mut self) {
        let args = std::mem::take(&mut self.args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.start_again_with(&args);
    }

    fn start_again_with(&mut self, args: &[&str]) {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        // The old process is already reaped; dropping its handle is harmless.
        *self = Self::start_on(self.port, dir, args);
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing is
    /// answered, as a stalled host or a long fork would look.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {}", self.child.id());
    }

    /// A connection of the test's own, with a timeout.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
