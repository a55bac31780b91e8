//! The `blob` command line and local sign-in, against the real stack.

use blob_testkit::TempDir;
use blob_testkit::client::Api;
use blob_testkit::paths::{binary, speech_clip};
use blob_testkit::stack::{Stack, StackOptions};
use reqwest::Method;
use serde_json::json;

fn local_mode() -> StackOptions {
    StackOptions {
        extra_env: vec![
            ("gateway", "AUTH_PROVIDER", "local".to_owned()),
            ("gateway", "FIREBASE_PROJECT_ID", "demo-blob-e2e".to_owned()),
        ],
        ..StackOptions::default()
    }
}

/// Runs `blob ARGS…` with its state in `dir`; returns stdout, panicking with both streams on
/// failure.
async fn blob(stack: &Stack, dir: &TempDir, args: &[&str]) -> String {
    let output = tokio::process::Command::new(binary("blob"))
        .args(args)
        .env("BLOB_GATEWAY", stack.http_url())
        .env("BLOB_CLI_STATE", dir.path().join("cli.json"))
        .output()
        .await
        .expect("blob runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(output.status.success(), "blob {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_talks_to_blob_and_the_next_run_continues_the_conversation() {
    let stack = Stack::start(local_mode()).await;
    let dir = TempDir::new("blob-cli");
    let login = blob(&stack, &dir, &["login", "--email", "parent@example.com"]).await;
    assert!(login.contains("signed in as parent@example.com (0 children)"), "{login}");
    let added = blob(&stack, &dir, &["child", "add", "Noa", "--grade", "0"]).await;
    assert!(added.trim_end().ends_with("Noa (kindergarten)"), "{added}");

    let wav = speech_clip("test-audio/utt2.wav");
    let wav = wav.to_str().unwrap();
    let first = blob(&stack, &dir, &["talk", "--wav", wav, "--child", "Noa", "--fast"]).await;
    assert!(first.contains("(created)") && first.contains("new session"), "{first}");
    assert!(first.contains(r#"heard: "Why is the sky blue?""#), "{first}");
    let heard = first.find("heard:").unwrap();
    let reply = first.find("Blob: ").expect("Blob's reply");
    assert!(heard < reply && first[heard..].contains("after the last word"), "{first}");

    // A later run, as after closing the app: the same conversation, nothing signed in again.
    let second = blob(&stack, &dir, &["talk", "--wav", wav, "--child", "Noa", "--fast"]).await;
    assert!(second.contains("(resumed)"), "{second}");
    assert!(second.contains("session resumed (reconnected): 1 exchanges so far"), "{second}");
    let conversation = |out: &str| {
        out.lines().next().and_then(|l| l.rsplit_once("conversation ")).map(|(_, c)| c.to_owned())
    };
    assert_eq!(conversation(&first), conversation(&second));

    let shown = blob(&stack, &dir, &["session", "show", "--child", "Noa"]).await;
    assert!(shown.contains("\"state\": \"suspended\""), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_sign_in_exists_only_in_local_mode_and_checks_the_email() {
    let firebase = Stack::start(StackOptions::default()).await;
    let api = Api::new(&firebase.http_url());
    let body = json!({"email": "parent@example.com"});
    let response =
        api.call(Method::POST, "/api/v1/auth/local-sign-in", None, Some(body.clone())).await;
    assert_eq!((response.status, response.error_code()), (404, "NOT_FOUND"), "{:?}", response.body);
    // The browser console is off outside local mode too (CONSOLE_ENABLED's default).
    let console = api.call(Method::GET, "/console", None, None).await;
    assert_eq!((console.status, console.error_code()), (404, "NOT_FOUND"));
    drop(firebase);

    let local = Stack::start(local_mode()).await;
    let api = Api::new(&local.http_url());
    let response = api.call(Method::POST, "/api/v1/auth/local-sign-in", None, Some(body)).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let data = response.data();
    assert!(data["token"].as_str().is_some_and(|t| t.len() > 20), "{data}");
    assert_eq!(data["user"]["email"], "parent@example.com");
    // The same email is the same account.
    let again = api
        .call(
            Method::POST,
            "/api/v1/auth/local-sign-in",
            None,
            Some(json!({"email": "Parent@Example.com"})),
        )
        .await;
    assert_eq!(again.data()["user"]["uid"], data["user"]["uid"]);
    let bad = api
        .call(Method::POST, "/api/v1/auth/local-sign-in", None, Some(json!({"email": "nobody"})))
        .await;
    assert_eq!((bad.status, bad.error_code()), (400, "VALIDATION_ERROR"));
    assert_eq!(bad.body["error"]["details"]["field"], "email");
}

/// The browser console in headless Chromium (playwright-core), the microphone faked from a real
/// speech WAV: sign in, add a child, hold to talk, see what Blob heard and answered, reconnect and
/// see the conversation resume. The screenshot is kept in `target/test-artifacts/console.png`.
/// Needs `chromium` (apt) and `npm ci` in `services/testkit/browser` (`.ci/run` does both):
/// without them the test prints a SKIPPED line, unless `BLOB_REQUIRE_BROWSER` is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_console_talks_to_blob() {
    let root = blob_testkit::paths::workspace_root();
    let driver = root.join("services/testkit/browser");
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ready = std::path::Path::new(&chromium).is_file()
        && driver.join("node_modules/playwright-core").is_dir();
    if !ready {
        assert!(
            std::env::var_os("BLOB_REQUIRE_BROWSER").is_none(),
            "BLOB_REQUIRE_BROWSER is set but {chromium} or {}/node_modules is missing",
            driver.display()
        );
        println!("SKIPPED the_browser_console_talks_to_blob: no chromium or playwright-core");
        return;
    }
    // As `make run` serves it: local sign-in and the production end of turn (Smart Turn), which
    // the real speech below lets decide.
    let mut options = local_mode();
    options.extra_env.push(("stt-service", "TURN_MODE", "smart".to_owned()));
    let stack = Stack::start(options).await;
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("console.png");
    let _ = std::fs::remove_file(&screenshot);
    // Real speech, so that it sounds like a microphone: "Go forward ten meters."
    // Chromium's fake capture reads the file by an absolute path without `..` (else: silence).
    let wav = speech_clip("speech/ps_goforward.wav").canonicalize().unwrap();
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(180),
        tokio::process::Command::new("node")
            .arg(driver.join("console.mjs"))
            .arg(stack.http_url())
            .arg(&wav)
            .arg(&screenshot)
            .env("CHROMIUM_PATH", &chromium)
            .output(),
    )
    .await
    .expect("the browser run finishes")
    .expect("node runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(output.status.success(), "the console run failed:\n{stdout}\n{stderr}");
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).expect("a JSON summary");
    let heard = blob_testkit::client::normalize(result["transcript"].as_str().unwrap());
    assert!(heard.starts_with("go forward"), "{result}");
    assert!(!result["reply"].as_str().unwrap().is_empty(), "{result}");
    assert_eq!(result["pageErrors"], serde_json::json!([]), "{result}");
    assert!(screenshot.is_file(), "no screenshot at {}", screenshot.display());
}
