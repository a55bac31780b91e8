//! The stack on Firestore (the real emulator): data lives there, and when it goes away the API
//! answers 503 `FIRESTORE_UNAVAILABLE`, loses nothing, and recovers when it returns.

use std::time::Duration;

use blob_testkit::client::Api;
use blob_testkit::firestore::{FirestoreEmulator, skip_line};
use blob_testkit::stack::{Stack, StackOptions};
use reqwest::Method;

async fn emulator(test: &str) -> Option<FirestoreEmulator> {
    let emulator = FirestoreEmulator::start("demo-blob-e2e").await;
    if emulator.is_none() {
        assert!(
            std::env::var_os("BLOB_REQUIRE_FIRESTORE_EMULATOR").is_none(),
            "BLOB_REQUIRE_FIRESTORE_EMULATOR is set but the emulator is not installed"
        );
        println!("{}", skip_line(test));
    }
    emulator
}

fn on_firestore(emulator: &FirestoreEmulator) -> StackOptions {
    StackOptions {
        extra_env: vec![
            ("session-service", "COLD_STORE", "firestore".to_owned()),
            ("session-service", "FIRESTORE_EMULATOR_HOST", emulator.host()),
            ("session-service", "FIRESTORE_PROJECT_ID", emulator.project_id().to_owned()),
            ("session-service", "FIRESTORE_TIMEOUT_SECONDS", "2".to_owned()),
        ],
        ..StackOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firestore_down_is_503_firestore_unavailable_and_loses_nothing() {
    let Some(mut emulator) = emulator("firestore_down_is_503_firestore_unavailable").await else {
        return;
    };
    let stack = Stack::start(on_firestore(&emulator)).await;
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token("parent-f", "f@example.com")).await;
    let child_id = api.create_child(&token, "Fay", 2).await;
    let session = api.open_session(&token, &child_id).await;
    let session_id = session["session_id"].as_str().unwrap().to_owned();

    // The family's documents are in Firestore, at the documented paths.
    let base = format!(
        "http://{}/v1/projects/{}/databases/(default)/documents",
        emulator.host(),
        emulator.project_id()
    );
    let http = reqwest::Client::new();
    for path in [
        "users/parent-f".to_owned(),
        format!("users/parent-f/family_links/{child_id}"),
        format!("children/{child_id}"),
        "lessons/counting-to-ten".to_owned(),
    ] {
        let response =
            http.get(format!("{base}/{path}")).bearer_auth("owner").send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} is stored in Firestore");
    }

    emulator.stop();
    let listed = api.call(Method::GET, "/api/v1/children", Some(&token), None).await;
    assert_eq!(listed.status, 503, "{}", listed.body);
    assert_eq!(listed.error_code(), "FIRESTORE_UNAVAILABLE");
    let created = api
        .call(
            Method::POST,
            "/api/v1/children",
            Some(&token),
            Some(serde_json::json!({"name": "Gus", "grade_level": 1})),
        )
        .await;
    assert_eq!(created.error_code(), "FIRESTORE_UNAVAILABLE");
    // Ending needs the archive: it fails whole, and the live session is still there.
    let ended = api
        .call(Method::POST, &format!("/api/v1/sessions/{session_id}/end"), Some(&token), None)
        .await;
    assert_eq!(ended.status, 503, "{}", ended.body);
    assert_eq!(ended.error_code(), "FIRESTORE_UNAVAILABLE");
    let still =
        api.call(Method::GET, &format!("/api/v1/sessions/{session_id}"), Some(&token), None).await;
    assert_eq!(still.data()["state"], "active", "no half-written state");

    // Back again (the emulator restarts empty): requests succeed without restarting anything.
    emulator.restart().await;
    let again =
        blob_testkit::eventually("the cold store to answer again", Duration::from_secs(30), || {
            let api = api.clone();
            let token = token.clone();
            async move {
                let response = api.call(Method::GET, "/api/v1/children", Some(&token), None).await;
                (response.status == 200).then_some(response)
            }
        })
        .await;
    assert!(again.data().is_array(), "{}", again.body);
    let ended = api
        .call(Method::POST, &format!("/api/v1/sessions/{session_id}/end"), Some(&token), None)
        .await;
    assert_eq!(ended.status, 200, "{}", ended.body);
}
