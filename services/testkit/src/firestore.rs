//! The real Cloud Firestore emulator (Debian package `google-cloud-cli-firestore-emulator`),
//! started on a free port for one test run.
//!
//! The package cannot be installed from Debian's own archive, so where it is absent
//! [`FirestoreEmulator::start`] returns `None` and the caller prints a skip line.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The package that ships the emulator.
pub const PACKAGE: &str = "google-cloud-cli-firestore-emulator";

/// A running emulator, stopped (with its JVM) when dropped.
#[derive(Debug)]
pub struct FirestoreEmulator {
    child: Child,
    launcher: PathBuf,
    port: u16,
    project_id: String,
    log: PathBuf,
}

/// The emulator's launcher: `FIRESTORE_EMULATOR_BIN`, or the file the package installed.
pub fn launcher() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FIRESTORE_EMULATOR_BIN") {
        return Some(PathBuf::from(path));
    }
    let listing = Command::new("dpkg").args(["-L", PACKAGE]).output().ok()?;
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(PathBuf::from)
        .find(|p| p.file_name().is_some_and(|n| n == "cloud_firestore_emulator") && p.is_file())
}

impl FirestoreEmulator {
    /// Starts the emulator for `project_id` (which should be `demo-*`) and waits until it
    /// answers; `None` when the emulator is not installed.
    pub async fn start(project_id: &str) -> Option<Self> {
        let launcher = launcher()?;
        let port = crate::free_port();
        let log = std::env::temp_dir().join(format!("blob-firestore-{port}.log"));
        let child = spawn(&launcher, port, project_id, &log);
        let emulator = Self { child, launcher, port, project_id: project_id.to_owned(), log };
        emulator.wait_ready().await;
        Some(emulator)
    }

    async fn wait_ready(&self) {
        let url = format!("http://{}/", self.host());
        let client = reqwest::Client::new();
        crate::eventually("the Firestore emulator to answer", Duration::from_secs(60), || {
            let (client, url) = (client.clone(), url.clone());
            async move { client.get(&url).send().await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
    }

    /// Starts it again on the same port after [`FirestoreEmulator::stop`] (empty: the emulator
    /// keeps nothing).
    pub async fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self.launcher, self.port, &self.project_id, &self.log);
        self.wait_ready().await;
    }

    /// `127.0.0.1:port`, the value for `FIRESTORE_EMULATOR_HOST`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The project the emulator was started for.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// Deletes every document of the default database.
    pub async fn reset(&self) {
        let url = format!(
            "http://{}/emulator/v1/projects/{}/databases/(default)/documents",
            self.host(),
            self.project_id
        );
        let response = reqwest::Client::new().delete(&url).send().await.expect("resetting");
        assert!(response.status().is_success(), "reset: {}", response.status());
    }

    /// What the emulator has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the emulator (a dead dependency).
    pub fn stop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

impl Drop for FirestoreEmulator {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn spawn(launcher: &std::path::Path, port: u16, project_id: &str, log: &std::path::Path) -> Child {
    let file = std::fs::File::create(log).expect("creating the emulator log");
    Command::new(launcher)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--project_id", project_id])
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("cloning a file handle"))
        .stderr(file)
        // Its own process group, so the JVM the script starts goes down with it.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", launcher.display()))
}

/// The line a test prints when it cannot run against the emulator: never a silent pass.
pub fn skip_line(test: &str) -> String {
    format!(
        "SKIPPED {test}: the Firestore emulator is not installed (Debian package {PACKAGE}, \
         or set FIRESTORE_EMULATOR_BIN)"
    )
}
