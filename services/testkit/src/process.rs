//! A service binary run as a child process, its output kept in a log file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running service, killed when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ServiceProcess {
    /// The operating system's id for the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts `binary` with exactly `env` (plus `PATH`), logging to `log_dir/<name>.log` (after
    /// what an earlier process of that name logged).
    pub fn spawn(name: &str, binary: &Path, env: &[(String, String)], log_dir: &Path) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("creating a log file");
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", std::env::var("BLOB_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("cloning a file handle"))
            .stderr(file);
        let child =
            command.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        Self { name: name.to_owned(), child: Some(child), log }
    }

    /// Sends a signal by name (`STOP` freezes the process, `CONT` thaws it).
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status =
                Command::new("kill").args([format!("-{signal}"), child.id().to_string()]).status();
            assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {}", self.name);
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything the service has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has exited (and with what status).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends SIGTERM and waits up to `grace` for a clean exit; returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let until = std::time::Instant::now() + grace;
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Kills the process at once (a crashed dependency).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until something accepts TCP connections on `port`.
pub async fn wait_for_port(process: &mut ServiceProcess, port: u16, deadline: Duration) {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let open = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok();
        // Checked after the port answers too: a process that failed to bind has exited, and
        // whatever answered is not it.
        if let Some(status) = process.exited() {
            panic!("{} exited with {status}:\n{}", process.name(), process.log());
        }
        if open {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{} did not listen on {port} within {deadline:?}:\n{}",
            process.name(),
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
