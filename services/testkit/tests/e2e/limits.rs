//! Abuse limits and dependencies of the REST API: the per-user rate limit, idempotent POSTs,
//! CORS, the request timeout and `/health/services`.

use std::time::Duration;

use blob_testkit::client::Api;
use blob_testkit::stack::{Stack, StackOptions};
use reqwest::Method;
use serde_json::json;

fn options(gateway_env: &[(&'static str, &str)]) -> StackOptions {
    StackOptions {
        extra_env: gateway_env.iter().map(|(k, v)| ("gateway", *k, (*v).to_owned())).collect(),
        ..StackOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_gets_a_per_minute_budget_then_429_with_retry_after() {
    let stack = Stack::start(options(&[("RATE_LIMIT_PER_MINUTE", "5")])).await;
    let api = Api::new(&stack.http_url());
    let busy = api.exchange(&stack.certs.id_token("busy", "busy@example.com")).await;
    let calm = api.exchange(&stack.certs.id_token("calm", "calm@example.com")).await;
    for i in 0..5 {
        let ok = api.call(Method::GET, "/api/v1/children", Some(&busy), None).await;
        assert_eq!(ok.status, 200, "request {i}: {}", ok.body);
    }
    let limited = api.call(Method::GET, "/api/v1/children", Some(&busy), None).await;
    assert_eq!((limited.status, limited.error_code()), (429, "RATE_LIMITED"));
    let retry_after: u64 =
        limited.headers["retry-after"].to_str().unwrap().parse().expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Another parent is not affected.
    let other = api.call(Method::GET, "/api/v1/children", Some(&calm), None).await;
    assert_eq!(other.status, 200);
    let metrics = reqwest::get(format!("{}/metrics", stack.admin_url("gateway")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("gateway_rate_limited_total 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotency_key_replays_the_first_response() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token("parent-i", "i@example.com")).await;
    let other = api.exchange(&stack.certs.id_token("parent-j", "j@example.com")).await;
    let create = |token: String, name: &'static str, key: &'static str| {
        let api = api.clone();
        async move {
            api.call_with(
                Method::POST,
                "/api/v1/children",
                Some(&token),
                Some(json!({"name": name, "grade_level": 1})),
                &[("Idempotency-Key", key)],
            )
            .await
        }
    };
    let first = create(token.clone(), "Ivo", "key-1").await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = create(token.clone(), "Ivo", "key-1").await;
    assert_eq!(again.status, 201);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.data()["child_id"], first.data()["child_id"], "the same child, not a second");
    let listed = api.call(Method::GET, "/api/v1/children", Some(&token), None).await;
    assert_eq!(listed.data().as_array().unwrap().len(), 1);

    let different = create(token.clone(), "Someone else", "key-1").await;
    assert_eq!((different.status, different.error_code()), (409, "CONFLICT"));
    assert_eq!(different.body["error"]["details"]["header"], "Idempotency-Key");
    // Keys are per user: another parent's key-1 is their own, neither replayed nor refused.
    let stranger = create(other.clone(), "Ivo", "key-1").await;
    assert_eq!(stranger.status, 201, "{}", stranger.body);
    assert!(stranger.headers.get("idempotent-replayed").is_none());
    assert_ne!(stranger.data()["child_id"], first.data()["child_id"]);
    let fresh = create(token.clone(), "Ivo", "key-2").await;
    assert_ne!(fresh.data()["child_id"], first.data()["child_id"]);
    let bad = create(token.clone(), "Ivo", "").await;
    assert_eq!((bad.status, bad.error_code()), (400, "VALIDATION_ERROR"));

    // A failed first attempt is not kept: after a validation error the key still works.
    let rejected = api
        .call_with(
            Method::POST,
            "/api/v1/children",
            Some("not-a-token"),
            Some(json!({"name": "Ada", "grade_level": 1})),
            &[("Idempotency-Key", "key-3")],
        )
        .await;
    assert_eq!(rejected.status, 401);
    let retried = create(token.clone(), "Ada", "key-3").await;
    assert_eq!(retried.status, 201, "{}", retried.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_fills_the_idempotency_store_without_signing_in_and_it_keeps_no_token_in_clear() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    // Unauthenticated calls with large bodies and fresh keys: answered, never stored.
    let padding = "x".repeat(60 * 1024);
    for i in 0..20 {
        let key = format!("anonymous-{i}");
        let exchange = api
            .call_with(
                Method::POST,
                "/api/v1/auth/token-exchange",
                None,
                Some(json!({"firebase_token": "not-a-token", "padding": padding})),
                &[("Idempotency-Key", key.as_str())],
            )
            .await;
        assert!(matches!(exchange.status, 400 | 401 | 422), "{}", exchange.body);
        let refused = api
            .call_with(
                Method::POST,
                "/api/v1/children",
                Some("not-a-token"),
                Some(json!({"name": "Ada", "grade_level": 1})),
                &[("Idempotency-Key", key.as_str())],
            )
            .await;
        assert_eq!((refused.status, refused.error_code()), (401, "TOKEN_INVALID"));
    }
    assert_eq!(stack.redis.keys("idempotency:*"), Vec::<String>::new());

    // A signed-in parent's session: kept under the parent's own key, sealed.
    let token = api.exchange(&stack.certs.id_token("parent-seal", "seal@example.com")).await;
    let child_id = api.create_child(&token, "Sealy", 1).await;
    let open = |key: &'static str| {
        let (api, token, child_id) = (api.clone(), token.clone(), child_id.clone());
        async move {
            api.call_with(
                Method::POST,
                "/api/v1/sessions",
                Some(&token),
                Some(json!({"child_id": child_id, "mode": "companion"})),
                &[("Idempotency-Key", key)],
            )
            .await
        }
    };
    let first = open("open-1").await;
    assert_eq!(first.status, 201, "{}", first.body);
    let session_token = first.data()["session_token"].as_str().unwrap().to_owned();
    let again = open("open-1").await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, first.body, "the replay is the first answer, byte for byte");
    let me = api.call(Method::GET, "/api/v1/users/me", Some(&token), None).await;
    let user_id = me.data()["user"]["uid"].as_str().expect("users/me names the user").to_owned();
    assert_eq!(stack.redis.keys("idempotency:*"), [format!("idempotency:{user_id}:open-1")]);
    for secret in [session_token.as_str(), "session_token", "Sealy", child_id.as_str()] {
        assert_eq!(
            stack
                .redis
                .keys_holding(secret)
                .iter()
                .filter(|k| k.starts_with("idempotency:"))
                .count(),
            0,
            "{secret} in clear"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_token_are_limited_per_address() {
    let stack = Stack::start(options(&[("RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "3")])).await;
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token("parent-addr", "addr@example.com")).await;
    let garbage = || {
        let api = api.clone();
        async move {
            api.call(
                Method::POST,
                "/api/v1/auth/token-exchange",
                None,
                Some(json!({"firebase_token": "not-a-token"})),
            )
            .await
        }
    };
    for _ in 0..2 {
        assert_eq!(garbage().await.status, 401);
    }
    let limited = garbage().await;
    assert_eq!((limited.status, limited.error_code()), (429, "RATE_LIMITED"), "{}", limited.body);
    assert!(limited.headers.contains_key("retry-after"));
    let health = api.call(Method::GET, "/health/services", None, None).await;
    assert_eq!(health.status, 429, "{}", health.body);
    // Signed-in requests are counted per user, not per address.
    let children = api.call(Method::GET, "/api/v1/children", Some(&token), None).await;
    assert_eq!(children.status, 200, "{}", children.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_the_configured_origins() {
    let stack = Stack::start(options(&[("CORS_ALLOWED_ORIGINS", "https://app.example.com")])).await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        let http = http.clone();
        let url = format!("{}/api/v1/children", stack.http_url());
        async move {
            http.request(Method::OPTIONS, url)
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "POST")
                .header("Access-Control-Request-Headers", "authorization,idempotency-key")
                .send()
                .await
                .unwrap()
        }
    };
    let allowed = preflight("https://app.example.com").await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.com");
    let methods = allowed.headers()["access-control-allow-methods"].to_str().unwrap().to_owned();
    assert!(methods.contains("POST") && methods.contains("PATCH"), "{methods}");
    let refused = preflight("https://evil.example.com").await;
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_service_times_out_and_health_services_says_which() {
    let mut stack = Stack::start(options(&[("REQUEST_TIMEOUT_SECONDS", "1")])).await;
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token("parent-t", "t@example.com")).await;

    let healthy = api.call(Method::GET, "/health/services", None, None).await;
    let data = healthy.data();
    assert_eq!(data["status"], "healthy", "{data}");
    let names: Vec<&str> = data["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for name in ["session-service", "stt-service", "llm-service", "redis", "cold_store"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert!(data["dependencies"][0]["latency_ms"].is_u64());

    // Redis down: the API says so, and /health/services names it.
    stack.redis.stop();
    let degraded = api.call(Method::GET, "/health/services", None, None).await;
    let redis = degraded.data()["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "redis")
        .unwrap()
        .clone();
    assert_eq!(
        (degraded.data()["status"].as_str(), redis["status"].as_str()),
        (Some("degraded"), Some("unhealthy"))
    );
    stack.redis.restart().await;

    // A frozen session-service: the request gives up after REQUEST_TIMEOUT_SECONDS.
    stack.process("session-service").signal("STOP");
    let slow = api.call(Method::GET, "/api/v1/users/me", Some(&token), None).await;
    stack.process("session-service").signal("CONT");
    // 504 is the gateway's own timeout (a downstream deadline would answer 503).
    assert_eq!((slow.status, slow.error_code()), (504, "SERVICE_UNAVAILABLE"), "{}", slow.body);
    blob_testkit::eventually("the API to answer again", Duration::from_secs(20), || {
        let api = api.clone();
        let token = token.clone();
        async move {
            let response = api.call(Method::GET, "/api/v1/users/me", Some(&token), None).await;
            (response.status == 200).then_some(())
        }
    })
    .await;
}
