//! The REST API the app codes against: users, children, permissions, erasure, progress,
//! lessons, conversations and token refresh — shapes, errors, and one family never reaching
//! another's data.

use std::time::Duration;

use blob_proto::session::v1 as pb;
use blob_testkit::client::{Api, ApiResponse, VoiceSocket};
use blob_testkit::stack::{Stack, StackOptions};
use reqwest::Method;
use serde_json::json;

const QUICK: Duration = Duration::from_secs(10);

async fn signed_in(stack: &Stack, api: &Api, uid: &str) -> String {
    api.exchange(&stack.certs.id_token(uid, &format!("{uid}@example.com"))).await
}

fn assert_denied(response: &ApiResponse, what: &str, secret: &str) {
    assert!(
        [403, 404].contains(&response.status),
        "{what}: expected 403/404, got {} {}",
        response.status,
        response.body
    );
    let code = response.error_code();
    assert!(["FORBIDDEN", "NOT_FOUND"].contains(&code), "{what}: {code}");
    assert!(response.body.get("data").is_none(), "{what}: no data in an error");
    assert!(!response.body.to_string().contains(secret), "{what} leaks: {}", response.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_family_reaches_nothing_on_any_route() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let token_a = signed_in(&stack, &api, "parent-a").await;
    let token_b = signed_in(&stack, &api, "parent-b").await;
    let child = api.create_child(&token_a, "Secretname", 1).await;
    let session = api.open_session(&token_a, &child).await;
    let session_id = session["session_id"].as_str().unwrap().to_owned();
    let conversation_id = session["active_conversation_id"].as_str().unwrap().to_owned();
    let mut store = stack.session_client().await;
    store
        .sessions
        .append_turns(pb::AppendTurnsRequest {
            session_id: session_id.clone(),
            user_id: "parent-a".into(),
            turns: vec![pb::ConversationTurn {
                request_id: "r1".into(),
                user_text: "my secret word is pineapple".into(),
                assistant_text: "I will keep it safe".into(),
                created_at_ms: 0,
                interrupted: false,
            }],
            pause_profile: None,
        })
        .await
        .unwrap();

    let routes: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, format!("/api/v1/children/{child}"), None),
        (Method::PATCH, format!("/api/v1/children/{child}"), Some(json!({"name": "Hacked"}))),
        (Method::DELETE, format!("/api/v1/children/{child}"), None),
        (
            Method::POST,
            format!("/api/v1/children/{child}/permissions"),
            Some(json!({"user_id": "parent-b", "permission": "manage"})),
        ),
        (Method::DELETE, format!("/api/v1/children/{child}/permissions/parent-a"), None),
        (Method::DELETE, format!("/api/v1/children/{child}/data"), None),
        (Method::GET, format!("/api/v1/children/{child}/progress"), None),
        (Method::GET, format!("/api/v1/children/{child}/progress/counting-to-ten"), None),
        (Method::POST, "/api/v1/sessions".to_owned(), Some(json!({"child_id": child}))),
        (Method::GET, format!("/api/v1/sessions/{session_id}"), None),
        (Method::POST, format!("/api/v1/sessions/{session_id}/pause"), None),
        (Method::POST, format!("/api/v1/sessions/{session_id}/resume"), None),
        (Method::POST, format!("/api/v1/sessions/{session_id}/end"), None),
        (Method::GET, format!("/api/v1/conversations/{conversation_id}"), None),
    ];
    for (method, path, body) in routes {
        let response = api.call(method.clone(), &path, Some(&token_b), body).await;
        assert_denied(&response, &format!("{method} {path}"), "Secretname");
        assert!(!response.body.to_string().contains("pineapple"));
    }
    let listed = api.call(Method::GET, "/api/v1/children", Some(&token_b), None).await;
    assert_eq!(listed.data(), &json!([]));
    let me = api.call(Method::GET, "/api/v1/users/me", Some(&token_b), None).await;
    assert_eq!(me.data()["children"], json!([]));
    assert!(me.data()["active_session"].is_null());

    // Parent A's data is untouched by all of that.
    let child_view =
        api.call(Method::GET, &format!("/api/v1/children/{child}"), Some(&token_a), None).await;
    assert_eq!(child_view.data()["child"]["name"], "Secretname");
    assert_eq!(child_view.data()["active_session"]["session_id"], session_id.as_str());
    assert_eq!(child_view.data()["active_session"]["conversation_id"], conversation_id.as_str());
    let conversation = api
        .call(
            Method::GET,
            &format!("/api/v1/conversations/{conversation_id}"),
            Some(&token_a),
            None,
        )
        .await;
    let data = conversation.data();
    assert_eq!(data["turns"][0]["user_text"], "my secret word is pineapple");
    assert_eq!(data["overview"]["turn_count"], 1);
    assert_eq!(data["overview"]["last_user_text"], "my secret word is pineapple");
    assert!(data["overview"]["started_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_me_shows_the_family_and_what_is_live() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let token = signed_in(&stack, &api, "parent-m").await;
    let first = api.create_child(&token, "Ann", 0).await;
    let second = api.create_child(&token, "Ben", 2).await;

    let me = api.call(Method::GET, "/api/v1/users/me", Some(&token), None).await;
    let data = me.data();
    assert_eq!(data["user"]["uid"], "parent-m");
    assert_eq!(data["user"]["email"], "parent-m@example.com");
    assert_eq!(data["user"]["role"], "parent");
    for field in ["created_at", "last_login_at"] {
        assert!(data["user"][field].as_str().unwrap().ends_with('Z'), "{field}");
    }
    let names: Vec<&str> =
        data["children"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Ann", "Ben"]);
    assert_eq!(data["children"][0]["permission"], "manage");
    assert!(data["active_child"].is_null() && data["active_session"].is_null());
    assert_eq!(data["feature_flags"]["voice"], true);
    // The proof of concept's flags and fields, as its app reads them.
    assert_eq!(
        data["feature_flags"],
        json!({
            "companion_mode": true, "biometric_enabled": false, "lesson_mode_enabled": false,
            "voice": true, "lessons": true, "legacy_audio": data["feature_flags"]["legacy_audio"],
        })
    );
    assert_eq!(data["user"]["is_active"], true);
    assert!(data["feature_flags"]["legacy_audio"].is_boolean());

    let session = api.open_session(&token, &second).await;
    let me = api.call(Method::GET, "/api/v1/users/me", Some(&token), None).await;
    let data = me.data();
    assert_eq!(data["active_child"]["child_id"], second.as_str());
    assert_eq!(data["active_session"]["session_id"], session["session_id"]);
    assert_eq!(data["active_session"]["state"], "active");
    let active = &data["active_session"];
    assert_eq!(active["status"], "active");
    assert_eq!(active["conversation_id"], session["active_conversation_id"]);
    assert_eq!(active["started_at"], active["created_at"]);
    assert!(active["started_at"].as_str().unwrap().ends_with('Z'), "{active}");
    assert_eq!(active["ws_required"], true);
    assert_eq!(data["children"].as_array().unwrap().len(), 2, "{first} is still listed");

    let renamed = api
        .call(Method::PATCH, "/api/v1/users/me", Some(&token), Some(json!({"display_name": "Mum"})))
        .await;
    assert_eq!(renamed.data()["display_name"], "Mum");
    let me = api.call(Method::GET, "/api/v1/users/me", Some(&token), None).await;
    assert_eq!(me.data()["user"]["display_name"], "Mum");
    let unknown = api
        .call(Method::PATCH, "/api/v1/users/me", Some(&token), Some(json!({"role": "admin"})))
        .await;
    assert_eq!((unknown.status, unknown.error_code()), (422, "VALIDATION_ERROR"));
    let wrong_type = api
        .call(Method::PATCH, "/api/v1/users/me", Some(&token), Some(json!({"display_name": 7})))
        .await;
    assert_eq!((wrong_type.status, wrong_type.error_code()), (422, "VALIDATION_ERROR"));
    let too_long = api
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&token),
            Some(json!({"display_name": "x".repeat(129)})),
        )
        .await;
    assert_eq!(too_long.error_code(), "VALIDATION_ERROR");
    let anonymous = api.call(Method::GET, "/api/v1/users/me", None, None).await;
    assert_eq!((anonymous.status, anonymous.error_code()), (401, "TOKEN_INVALID"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_are_changed_shared_revoked_and_erased() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let mum = signed_in(&stack, &api, "mum").await;
    let nan = signed_in(&stack, &api, "nan").await;
    let child = api.create_child(&mum, "Cleo", 1).await;
    let path = format!("/api/v1/children/{child}");

    let detail = api.call(Method::GET, &path, Some(&mum), None).await;
    let data = detail.data();
    let shown = &data["child"];
    assert_eq!((shown["name"].as_str(), shown["grade_level"].as_i64()), (Some("Cleo"), Some(1)));
    assert_eq!(shown["permission"], "manage");
    assert_eq!(
        data["latest_progress"],
        json!({"mastery_score": 0.0, "lessons_completed": 0, "last_lesson_id": null, "last_accessed": null})
    );
    assert!(data["latest_lesson"].is_null() && data["active_session"].is_null());

    let patched = api
        .call(Method::PATCH, &path, Some(&mum), Some(json!({"name": "Cleo B", "grade_level": 2})))
        .await;
    assert_eq!(
        (patched.data()["name"].as_str(), patched.data()["grade_level"].as_i64()),
        (Some("Cleo B"), Some(2))
    );
    for (bad, status) in [
        (json!({}), 400),
        (json!({"grade_level": 13}), 400),
        (json!({"name": ""}), 400),
        (json!({"nickname": "x"}), 422),
        (json!({"grade_level": "two"}), 400),
        (json!({"grade_level": 1.5}), 422),
        (json!({"current_level": "Top Level"}), 400),
    ] {
        let response = api.call(Method::PATCH, &path, Some(&mum), Some(bad.clone())).await;
        assert_eq!((response.status, response.error_code()), (status, "VALIDATION_ERROR"), "{bad}");
    }

    // Nan may view.
    let grants = format!("{path}/permissions");
    let bad_grant = api
        .call(
            Method::POST,
            &grants,
            Some(&mum),
            Some(json!({"user_id": "nan", "permission": "owner"})),
        )
        .await;
    assert_eq!(bad_grant.error_code(), "VALIDATION_ERROR");
    let granted = api
        .call(
            Method::POST,
            &grants,
            Some(&mum),
            Some(json!({"user_id": "nan", "permission": "view"})),
        )
        .await;
    let link = granted.data();
    assert_eq!(
        (link["user_id"].as_str(), link["permission"].as_str()),
        (Some("nan"), Some("view"))
    );
    assert_eq!(link["granted_by"], "mum");
    let seen = api.call(Method::GET, &path, Some(&nan), None).await;
    assert_eq!(seen.data()["child"]["permission"], "view");
    let talk = api
        .call(Method::POST, "/api/v1/sessions", Some(&nan), Some(json!({"child_id": child})))
        .await;
    assert_eq!((talk.status, talk.error_code()), (403, "FORBIDDEN"));
    let delete = api.call(Method::DELETE, &path, Some(&nan), None).await;
    assert_eq!((delete.status, delete.error_code()), (403, "FORBIDDEN"));

    // Revoked: Nan's token still names the child, but access ends at once.
    let revoked = api.call(Method::DELETE, &format!("{grants}/nan"), Some(&mum), None).await;
    assert_eq!(revoked.data()["revoked"], true);
    let gone = api.call(Method::GET, &path, Some(&nan), None).await;
    assert_eq!((gone.status, gone.error_code()), (404, "NOT_FOUND"));
    let again = api.call(Method::DELETE, &format!("{grants}/nan"), Some(&mum), None).await;
    assert_eq!(again.data()["revoked"], false);
    // Her own id means leaving, which the child's only manager may not do.
    let own = api.call(Method::DELETE, &format!("{grants}/mum"), Some(&mum), None).await;
    assert_eq!((own.status, own.error_code()), (409, "CONFLICT"), "{}", own.body);

    // Erasure: a receipt, then nothing.
    let session = api.open_session(&mum, &child).await;
    let erased = api.call(Method::DELETE, &format!("{path}/data"), Some(&mum), None).await;
    let receipt = erased.data();
    assert_eq!(receipt["child_id"], child.as_str());
    assert_eq!(receipt["deleted"]["children"], 1);
    assert_eq!(receipt["deleted"]["family_links"], 1);
    assert_eq!(receipt["deleted"]["active_sessions"], 1);
    assert!(receipt["erased_at"].as_str().unwrap().ends_with('Z'));
    let gone = api.call(Method::GET, &path, Some(&mum), None).await;
    assert_eq!(gone.error_code(), "NOT_FOUND");
    let session_path = format!("/api/v1/sessions/{}", session["session_id"].as_str().unwrap());
    let ended = api.call(Method::GET, &session_path, Some(&mum), None).await;
    assert_eq!(ended.error_code(), "NOT_FOUND");

    // A soft-deleted child disappears from every list.
    let other = api.create_child(&mum, "Dot", 0).await;
    let deleted =
        api.call(Method::DELETE, &format!("/api/v1/children/{other}"), Some(&mum), None).await;
    assert_eq!(deleted.data()["child_id"], other.as_str());
    let listed = api.call(Method::GET, "/api/v1/children", Some(&mum), None).await;
    assert_eq!(listed.data(), &json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lessons_and_progress_are_served_from_the_store() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let token = signed_in(&stack, &api, "parent-l").await;
    let child = api.create_child(&token, "Lu", 0).await;

    let all = api.call(Method::GET, "/api/v1/lessons", Some(&token), None).await;
    let lessons = all.data().as_array().unwrap().clone();
    assert!(lessons.len() >= 6);
    for field in ["lesson_id", "title", "subject", "difficulty", "description"] {
        assert!(lessons[0][field].is_string(), "{field}: {}", lessons[0]);
    }
    let math =
        api.call(Method::GET, "/api/v1/lessons?subject=math&grade=0", Some(&token), None).await;
    let math = math.data().as_array().unwrap();
    assert!(!math.is_empty());
    assert!(math.iter().all(|l| l["subject"] == "math" && l["grade_level"] == 0));
    let by_name = api
        .call(Method::GET, "/api/v1/lessons?subject=math&grade=kindergarten", Some(&token), None)
        .await;
    assert_eq!(by_name.data().as_array().unwrap(), math, "a grade's name filters like its number");
    for query in ["grade=abc", "difficulty=extreme", "colour=red"] {
        let bad =
            api.call(Method::GET, &format!("/api/v1/lessons?{query}"), Some(&token), None).await;
        assert_eq!((bad.status, bad.error_code()), (400, "VALIDATION_ERROR"), "{query}");
    }
    let lesson = api.call(Method::GET, "/api/v1/lessons/counting-to-ten", Some(&token), None).await;
    let steps = lesson.data()["steps"].as_array().unwrap();
    assert_eq!(steps[0]["number"], 1);
    assert_eq!(lesson.data()["step_count"], steps.len());
    let missing = api.call(Method::GET, "/api/v1/lessons/no-such-lesson", Some(&token), None).await;
    assert_eq!((missing.status, missing.error_code()), (404, "NOT_FOUND"));

    let progress_path = format!("/api/v1/children/{child}/progress");
    let none = api.call(Method::GET, &progress_path, Some(&token), None).await;
    assert_eq!(none.data(), &json!([]));
    let mut store = stack.session_client().await;
    for update in [
        pb::record_progress_request::Update::Started(true),
        pb::record_progress_request::Update::StepCompleted(pb::StepCompleted {
            step: 2,
            score: 80,
        }),
    ] {
        store
            .lessons
            .record_progress(pb::RecordProgressRequest {
                user_id: "parent-l".into(),
                child_id: child.clone(),
                lesson_id: "counting-to-ten".into(),
                update: Some(update),
            })
            .await
            .unwrap();
    }
    let listed = api.call(Method::GET, &progress_path, Some(&token), None).await;
    let first = &listed.data()[0];
    assert_eq!(
        (first["lesson_id"].as_str(), first["status"].as_str()),
        (Some("counting-to-ten"), Some("in_progress"))
    );
    assert_eq!((first["best_score"].as_i64(), first["attempts"].as_i64()), (Some(80), Some(1)));
    assert_eq!(first["completed_steps"], json!([2]));
    assert!(first["completed_at"].is_null());
    let one = api
        .call(Method::GET, &format!("{progress_path}/counting-to-ten"), Some(&token), None)
        .await;
    assert_eq!(one.data()["best_score"], 80);
    let never =
        api.call(Method::GET, &format!("{progress_path}/kind-words"), Some(&token), None).await;
    assert_eq!((never.status, never.error_code()), (404, "NOT_FOUND"));
    let detail =
        api.call(Method::GET, &format!("/api/v1/children/{child}"), Some(&token), None).await;
    assert_eq!(detail.data()["latest_lesson"]["lesson_id"], "counting-to-ten");
    let latest = &detail.data()["latest_progress"];
    assert_eq!(
        (&latest["last_lesson_id"], &latest["lessons_completed"], &latest["mastery_score"]),
        (&json!("counting-to-ten"), &json!(0), &json!(0.0)),
        "a lesson in progress is the latest but not yet mastered"
    );
    assert_eq!(latest["last_accessed"], first["updated_at"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_gives_a_new_token_and_leaves_the_live_session_alone() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let token = signed_in(&stack, &api, "parent-r").await;
    let child = api.create_child(&token, "Rio", 1).await;
    let session = api.open_session(&token, &child).await;
    let session_id = session["session_id"].as_str().unwrap().to_owned();
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &token, &session_id).await;
    socket.wait_for("session.created", QUICK).await;

    let firebase = stack.certs.id_token("parent-r", "parent-r@example.com");
    let refreshed = api
        .call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"firebase_token": firebase})))
        .await;
    let data = refreshed.data();
    let new_token = data["token"].as_str().unwrap().to_owned();
    assert!(data["expires_in"].as_u64().unwrap() > 0);
    let me = api.call(Method::GET, "/api/v1/users/me", Some(&new_token), None).await;
    assert_eq!(me.data()["user"]["uid"], "parent-r");

    // The socket and its session carry on as before.
    socket.request("pause", json!({}), "p1").await;
    let paused = socket.wait_for("session.paused", QUICK).await;
    assert_eq!(paused["action"], "session.paused");
    let state = api
        .call(Method::GET, &format!("/api/v1/sessions/{session_id}"), Some(&new_token), None)
        .await;
    assert_eq!(state.data()["session_id"], session_id.as_str());
    assert_eq!((&state.data()["state"], &state.data()["paused"]), (&json!("active"), &json!(true)));

    let garbage = api
        .call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"firebase_token": "nope"})))
        .await;
    assert_eq!((garbage.status, garbage.error_code()), (401, "TOKEN_INVALID"));
    let stranger = stack.certs.id_token("never-signed-in", "x@example.com");
    let unknown = api
        .call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"firebase_token": stranger})))
        .await;
    assert_eq!((unknown.status, unknown.error_code()), (401, "TOKEN_INVALID"));
}

/// The proof of concept's session request, as the app sends it: `mode: "companion"`, and the
/// socket address from `ws_url` with the app's own `?token=…&session_id=…`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_session_request_opens_a_companion_session_whose_ws_url_the_app_completes() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let token = signed_in(&stack, &api, "companion-parent").await;
    let child_id = api.create_child(&token, "Mia", 1).await;

    let body = json!({ "child_id": child_id, "mode": "companion" });
    let opened = api.call(Method::POST, "/api/v1/sessions", Some(&token), Some(body)).await;
    assert_eq!(opened.status, 201, "{}", opened.body);
    let session = opened.data();
    assert_eq!(session["mode"], "companion");
    let ws_url = session["ws_url"].as_str().unwrap();
    assert!(ws_url.ends_with("/ws/voice") && !ws_url.contains('?'), "a bare address: {ws_url}");
    let session_id = session["session_id"].as_str().unwrap();
    let mut socket =
        VoiceSocket::connect_url(&format!("{ws_url}?token={token}&session_id={session_id}")).await;
    let hello = socket.next_json(QUICK).await.expect("a greeting");
    assert_eq!(hello["action"], "session.created");

    // Without a mode the session is the same companion session; any other mode is refused.
    let again = api.open_session(&token, &child_id).await;
    assert_eq!(
        (again["session_id"].as_str(), again["mode"].as_str()),
        (Some(session_id), Some("companion"))
    );
    let body = json!({ "child_id": child_id, "mode": "lesson" });
    let refused = api.call(Method::POST, "/api/v1/sessions", Some(&token), Some(body)).await;
    assert_eq!((refused.status, refused.error_code()), (400, "VALIDATION_ERROR"));
    assert_eq!(refused.body["error"]["details"]["field"], "mode");
    socket.close().await;
}
