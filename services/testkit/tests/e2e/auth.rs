//! Tokens and families: bad tokens get the envelope, sockets get their close codes, and one
//! family never reaches another's session.

use std::time::Duration;

use blob_testkit::client::{Api, VoiceSocket};
use blob_testkit::stack::{JWT_SECRET, Stack, StackOptions};
use reqwest::Method;

const QUICK: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_families_are_checked_everywhere() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let exchange = |token: String| {
        let api = api.clone();
        async move {
            api.call(
                Method::POST,
                "/api/v1/auth/token-exchange",
                None,
                Some(serde_json::json!({ "firebase_token": token })),
            )
            .await
        }
    };

    // A good exchange has the documented shape.
    let good = exchange(stack.certs.id_token("parent-a", "a@example.com")).await;
    assert_eq!(good.status, 200);
    let data = good.data();
    assert_eq!(data["user"]["uid"], "parent-a");
    assert_eq!(data["user"]["email"], "a@example.com");
    assert_eq!(data["user"]["role"], "parent");
    assert!(data["children"].as_array().unwrap().is_empty());
    let token_a = data["token"].as_str().unwrap().to_owned();

    // Bad Firebase tokens: 401 in the envelope with a stable code.
    let garbage = exchange("not-a-token".into()).await;
    assert_eq!((garbage.status, garbage.error_code()), (401, "TOKEN_INVALID"));
    let mut claims = stack.certs.claims("parent-a", "a@example.com");
    claims["aud"] = "someone-else".into();
    let wrong_aud = exchange(stack.certs.sign(&claims)).await;
    assert_eq!((wrong_aud.status, wrong_aud.error_code()), (401, "TOKEN_INVALID"));
    let mut claims = stack.certs.claims("parent-a", "a@example.com");
    let now = jsonwebtoken::get_current_timestamp();
    claims["exp"] = (now - 600).into();
    claims["iat"] = (now - 4000).into();
    claims["auth_time"] = (now - 4000).into();
    let expired = exchange(stack.certs.sign(&claims)).await;
    assert_eq!((expired.status, expired.error_code()), (401, "TOKEN_EXPIRED"));

    // Malformed and incomplete bodies: 4xx in the same envelope.
    let malformed = api.call(Method::POST, "/api/v1/auth/token-exchange", None, None).await;
    assert_eq!((malformed.status, malformed.error_code()), (415, "VALIDATION_ERROR"));
    let wrong_field = api
        .call(
            Method::POST,
            "/api/v1/auth/token-exchange",
            None,
            Some(serde_json::json!({"token": "x"})),
        )
        .await;
    assert_eq!((wrong_field.status, wrong_field.error_code()), (422, "VALIDATION_ERROR"));

    // The REST API wants a valid access token.
    let missing = api.call(Method::GET, "/api/v1/children", None, None).await;
    assert_eq!((missing.status, missing.error_code()), (401, "TOKEN_INVALID"));
    let forged = api.call(Method::GET, "/api/v1/children", Some("abc.def.ghi"), None).await;
    assert_eq!((forged.status, forged.error_code()), (401, "TOKEN_INVALID"));
    let stale = expired_backend_token("parent-a");
    let stale_rest = api.call(Method::GET, "/api/v1/children", Some(&stale), None).await;
    assert_eq!((stale_rest.status, stale_rest.error_code()), (401, "TOKEN_EXPIRED"));
    let unknown_route = api.call(Method::GET, "/api/v1/nope", Some(&token_a), None).await;
    assert_eq!((unknown_route.status, unknown_route.error_code()), (404, "NOT_FOUND"));

    // Children: validation and the family boundary.
    let bad_child = api
        .call(
            Method::POST,
            "/api/v1/children",
            Some(&token_a),
            Some(serde_json::json!({"name": "", "grade_level": 1})),
        )
        .await;
    assert_eq!((bad_child.status, bad_child.error_code()), (400, "VALIDATION_ERROR"));
    assert_eq!(bad_child.body["error"]["details"]["field"], "name");
    let child_a = api.create_child(&token_a, "Mia", 1).await;
    let listed = api.call(Method::GET, "/api/v1/children", Some(&token_a), None).await;
    assert_eq!(listed.data()[0]["child_id"], child_a.as_str());
    assert_eq!(listed.data()[0]["permission"], "manage");
    // A new exchange lists the child in the token's answer.
    let again = exchange(stack.certs.id_token("parent-a", "a@example.com")).await;
    assert_eq!(again.data()["children"][0]["child_id"], child_a.as_str());

    let token_b = api.exchange(&stack.certs.id_token("parent-b", "b@example.com")).await;
    let foreign = api
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(&token_b),
            Some(serde_json::json!({"child_id": child_a})),
        )
        .await;
    assert_eq!((foreign.status, foreign.error_code()), (404, "NOT_FOUND"));
    assert!(foreign.body.get("data").is_none());

    // Voice socket admission, in the documented order.
    let session_a = api.open_session(&token_a, &child_a).await;
    let session_id = session_a["session_id"].as_str().unwrap();
    let mut socket = VoiceSocket::connect(&stack.ws_url(), "garbage", session_id).await;
    assert_eq!(socket.close_code(QUICK).await, Some(1008));
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &stale, session_id).await;
    assert_eq!(socket.close_code(QUICK).await, Some(4001));
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &token_a, "no-such-session").await;
    assert_eq!(socket.close_code(QUICK).await, Some(4002));
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &token_b, session_id).await;
    assert_eq!(socket.close_code(QUICK).await, Some(4003));

    // The session token opens its own session's socket, and no other.
    let session_token = session_a["session_token"].as_str().unwrap();
    let mut socket = VoiceSocket::connect(&stack.ws_url(), session_token, session_id).await;
    assert_eq!(socket.next_json(QUICK).await.unwrap()["action"], "session.created");
    socket.close().await;
    let child_a2 = api.create_child(&token_a, "Noah", 2).await;
    let other_session = api.open_session(&token_a, &child_a2).await;
    let mut socket = VoiceSocket::connect(
        &stack.ws_url(),
        session_token,
        other_session["session_id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(socket.close_code(QUICK).await, Some(1008));
    let as_rest = api.call(Method::GET, "/api/v1/children", Some(session_token), None).await;
    assert_eq!((as_rest.status, as_rest.error_code()), (401, "TOKEN_INVALID"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_and_messages_get_error_events_not_disconnects() {
    // Without the proof of concept's raw PCM, so a frame without the header is an error.
    let mut options = StackOptions::default();
    options.extra_env.push(("gateway", "LEGACY_BINARY_SUPPORT", "false".to_owned()));
    let stack = Stack::start(options).await;
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token("parent-f", "f@example.com")).await;
    let child = api.create_child(&token, "Ava", 2).await;
    let session = api.open_session(&token, &child).await;
    let mut socket =
        VoiceSocket::connect(&stack.ws_url(), &token, session["session_id"].as_str().unwrap())
            .await;
    socket.next_json(QUICK).await.unwrap();

    let thread = uuid::Uuid::new_v4();
    let cases: [(Vec<u8>, &str); 5] = [
        (vec![0xB1, 0x04, 1], "INVALID_FRAME"),
        (
            blob_client::protocol::AudioFrame::encode(1, thread, &[0; 4])
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 0 { 0xAA } else { b })
                .collect(),
            "INVALID_FRAME",
        ),
        (
            blob_client::protocol::AudioFrame::encode(1, thread, &[0; 4])
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 1 { 0x03 } else { b })
                .collect(),
            "UNSUPPORTED_VERSION",
        ),
        (blob_client::protocol::AudioFrame::encode(1, thread, &[0; 5]), "INVALID_AUDIO"),
        (blob_client::protocol::AudioFrame::encode(1, thread, &vec![0; 40_000]), "FRAME_TOO_LARGE"),
    ];
    for (frame, code) in cases {
        socket.send_binary(frame).await;
        let error = socket.next_json(QUICK).await.expect("an error event");
        assert_eq!(
            (error["type"].as_str(), error["action"].as_str()),
            (Some("error"), Some("error"))
        );
        assert_eq!(error["payload"]["code"], code, "{error}");
        assert!(error["payload"]["message"].is_string());
    }
    socket.send_text("{not json").await;
    assert_eq!(socket.next_json(QUICK).await.unwrap()["payload"]["code"], "INVALID_MESSAGE");
    socket.send_text(r#"{"type":"request","action":"dance","payload":{}}"#).await;
    assert_eq!(socket.next_json(QUICK).await.unwrap()["payload"]["code"], "UNKNOWN_ACTION");
    socket
        .send_text(r#"{"type":"request","action":"ping","payload":{},"meta":{"request_id":"r-1"}}"#)
        .await;
    let pong = socket.next_json(QUICK).await.unwrap();
    assert_eq!(
        (pong["action"].as_str(), pong["meta"]["request_id"].as_str()),
        (Some("pong"), Some("r-1"))
    );
    socket.close().await;
}

/// A backend token signed with the stack's secret that expired a minute ago.
fn expired_backend_token(sub: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        "sub": sub, "email": "", "role": "parent", "children": [], "token_use": "access",
        "iat": now - 3600, "exp": now - 60, "iss": "blob-gateway", "aud": "blob-app",
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}
