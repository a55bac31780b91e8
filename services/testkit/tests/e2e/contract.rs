//! Real responses checked against the OpenAPI document the gateway serves: every status seen is
//! documented for its operation, and every body matches the documented schema.

use blob_proto::session::v1 as pb;
use blob_testkit::client::{Api, ApiResponse};
use blob_testkit::stack::{Stack, StackOptions};
use reqwest::Method;
use serde_json::{Value, json};

struct Contract {
    doc: Value,
    checked: usize,
}

impl Contract {
    /// Validates `response` as the answer of `method template`.
    fn check(&mut self, method: &Method, template: &str, response: &ApiResponse) {
        let operation = &self.doc["paths"][template][method.as_str().to_lowercase()];
        assert!(operation.is_object(), "{method} {template} is not in the document");
        let status = response.status.to_string();
        let documented = &operation["responses"][&status];
        assert!(
            documented.is_object(),
            "{method} {template} answered {status}, which the document does not list: {}",
            response.body
        );
        let schema = documented["content"]["application/json"]["schema"].clone();
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"].clone(),
            "allOf": [schema],
        });
        let validator = jsonschema::validator_for(&root)
            .unwrap_or_else(|e| panic!("{method} {template} {status}: bad schema: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(&response.body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status} does not match the document:\n{}\nbody: {}",
            errors.join("\n"),
            response.body
        );
        self.checked += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_responses_match_the_served_openapi_document() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let doc: Value = reqwest::get(format!("{}/openapi.json", stack.http_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let page = reqwest::get(format!("{}/docs", stack.http_url())).await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("FIRESTORE_UNAVAILABLE") && page.contains("/api/v1/children/{child_id}"));
    let mut contract = Contract { doc, checked: 0 };
    let (get, post, patch, delete) = (Method::GET, Method::POST, Method::PATCH, Method::DELETE);

    // Auth.
    let exchange = "/api/v1/auth/token-exchange";
    let firebase = stack.certs.id_token("parent-o", "o@example.com");
    let good =
        api.call(post.clone(), exchange, None, Some(json!({"firebase_token": firebase}))).await;
    contract.check(&post, exchange, &good);
    let token = good.data()["token"].as_str().unwrap().to_owned();
    let bad = api.call(post.clone(), exchange, None, Some(json!({"firebase_token": "x"}))).await;
    contract.check(&post, exchange, &bad);
    let wrong = api.call(post.clone(), exchange, None, Some(json!({"token": "x"}))).await;
    contract.check(&post, exchange, &wrong);
    let refresh = "/api/v1/auth/refresh";
    let firebase = stack.certs.id_token("parent-o", "o@example.com");
    let refreshed =
        api.call(post.clone(), refresh, None, Some(json!({"firebase_token": firebase}))).await;
    contract.check(&post, refresh, &refreshed);

    // Users.
    let me = "/api/v1/users/me";
    contract.check(&get, me, &api.call(get.clone(), me, Some(&token), None).await);
    contract.check(&get, me, &api.call(get.clone(), me, None, None).await);
    let renamed =
        api.call(patch.clone(), me, Some(&token), Some(json!({"display_name": "O"}))).await;
    contract.check(&patch, me, &renamed);
    let unknown = api.call(patch.clone(), me, Some(&token), Some(json!({"x": 1}))).await;
    contract.check(&patch, me, &unknown);

    // Children.
    let children = "/api/v1/children";
    let created = api
        .call(post.clone(), children, Some(&token), Some(json!({"name": "Oli", "grade_level": 1})))
        .await;
    contract.check(&post, children, &created);
    let child = created.data()["child_id"].as_str().unwrap().to_owned();
    let invalid = api
        .call(post.clone(), children, Some(&token), Some(json!({"name": "", "grade_level": 1})))
        .await;
    contract.check(&post, children, &invalid);
    contract.check(&get, children, &api.call(get.clone(), children, Some(&token), None).await);
    let one = "/api/v1/children/{child_id}";
    let child_path = format!("/api/v1/children/{child}");
    contract.check(&get, one, &api.call(get.clone(), &child_path, Some(&token), None).await);
    let missing = api.call(get.clone(), "/api/v1/children/nope", Some(&token), None).await;
    contract.check(&get, one, &missing);
    let patched =
        api.call(patch.clone(), &child_path, Some(&token), Some(json!({"grade_level": 2}))).await;
    contract.check(&patch, one, &patched);
    let bad_patch = api.call(patch.clone(), &child_path, Some(&token), Some(json!({}))).await;
    contract.check(&patch, one, &bad_patch);
    let grants = "/api/v1/children/{child_id}/permissions";
    // Only someone who signed in can be given access.
    api.exchange(&stack.certs.id_token("grandpa", "grandpa@example.com")).await;
    let granted = api
        .call(
            post.clone(),
            &format!("{child_path}/permissions"),
            Some(&token),
            Some(json!({"user_id": "grandpa", "permission": "view"})),
        )
        .await;
    contract.check(&post, grants, &granted);
    let revoke = "/api/v1/children/{child_id}/permissions/{user_id}";
    let revoked = api
        .call(delete.clone(), &format!("{child_path}/permissions/grandpa"), Some(&token), None)
        .await;
    contract.check(&delete, revoke, &revoked);

    // Progress and lessons.
    let mut store = stack.session_client().await;
    store
        .lessons
        .record_progress(pb::RecordProgressRequest {
            user_id: "parent-o".into(),
            child_id: child.clone(),
            lesson_id: "rhyming-words".into(),
            update: Some(pb::record_progress_request::Update::CompletedScore(90)),
        })
        .await
        .unwrap();
    let progress = "/api/v1/children/{child_id}/progress";
    let listed = api.call(get.clone(), &format!("{child_path}/progress"), Some(&token), None).await;
    contract.check(&get, progress, &listed);
    let progress_one = "/api/v1/children/{child_id}/progress/{lesson_id}";
    let found = api
        .call(get.clone(), &format!("{child_path}/progress/rhyming-words"), Some(&token), None)
        .await;
    contract.check(&get, progress_one, &found);
    let never = api
        .call(get.clone(), &format!("{child_path}/progress/kind-words"), Some(&token), None)
        .await;
    contract.check(&get, progress_one, &never);
    contract.check(&get, one, &api.call(get.clone(), &child_path, Some(&token), None).await);
    let lessons = "/api/v1/lessons";
    contract.check(&get, lessons, &api.call(get.clone(), lessons, Some(&token), None).await);
    let bad_query = api.call(get.clone(), "/api/v1/lessons?grade=x", Some(&token), None).await;
    contract.check(&get, lessons, &bad_query);
    let lesson = "/api/v1/lessons/{lesson_id}";
    let shown = api.call(get.clone(), "/api/v1/lessons/shapes-around-us", Some(&token), None).await;
    contract.check(&get, lesson, &shown);
    let absent = api.call(get.clone(), "/api/v1/lessons/none", Some(&token), None).await;
    contract.check(&get, lesson, &absent);

    // Sessions and the conversation.
    let sessions = "/api/v1/sessions";
    let opened =
        api.call(post.clone(), sessions, Some(&token), Some(json!({"child_id": child}))).await;
    contract.check(&post, sessions, &opened);
    let again =
        api.call(post.clone(), sessions, Some(&token), Some(json!({"child_id": child}))).await;
    contract.check(&post, sessions, &again);
    let session_id = opened.data()["session_id"].as_str().unwrap().to_owned();
    let conversation_id = opened.data()["active_conversation_id"].as_str().unwrap().to_owned();
    let session = format!("/api/v1/sessions/{session_id}");
    let templates = ["", "/pause", "/resume"];
    for suffix in templates {
        let method = if suffix.is_empty() { get.clone() } else { post.clone() };
        let response =
            api.call(method.clone(), &format!("{session}{suffix}"), Some(&token), None).await;
        contract.check(&method, &format!("/api/v1/sessions/{{session_id}}{suffix}"), &response);
    }
    let conversation = "/api/v1/conversations/{conversation_id}";
    let read = api
        .call(get.clone(), &format!("/api/v1/conversations/{conversation_id}"), Some(&token), None)
        .await;
    contract.check(&get, conversation, &read);
    let ended = api.call(post.clone(), &format!("{session}/end"), Some(&token), None).await;
    contract.check(&post, "/api/v1/sessions/{session_id}/end", &ended);
    let gone = api.call(get.clone(), &session, Some(&token), None).await;
    contract.check(&get, "/api/v1/sessions/{session_id}", &gone);

    // Erasure and deletion.
    let erase = "/api/v1/children/{child_id}/data";
    let receipt = api.call(delete.clone(), &format!("{child_path}/data"), Some(&token), None).await;
    contract.check(&delete, erase, &receipt);
    let other = api.create_child(&token, "Pip", 0).await;
    let removed =
        api.call(delete.clone(), &format!("/api/v1/children/{other}"), Some(&token), None).await;
    contract.check(&delete, one, &removed);

    // Health.
    for path in ["/health", "/health/ready", "/health/services"] {
        contract.check(&get, path, &api.call(get.clone(), path, None, None).await);
    }
    assert!(contract.checked >= 38, "{} responses checked", contract.checked);

    // The check itself can fail: a body off the document is caught.
    let mut forged = api.call(get.clone(), children, Some(&token), None).await;
    forged.body["data"] = json!([{"child_id": 7, "name": "Pip"}]);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        contract.check(&get, children, &forged);
    }));
    assert!(caught.is_err(), "a child with a numeric id and no permission must not validate");
    forged.status = 418;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        contract.check(&get, children, &forged);
    }));
    assert!(caught.is_err(), "an undocumented status must not validate");
}
