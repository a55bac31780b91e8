//! Findings of the security review, each closed by a test over the real stack: consent to
//! family grants, members who never see each other's uid, signing out everywhere, and the
//! accounts Firebase vouches for.

use std::time::Duration;

use base64::Engine as _;
use blob_testkit::client::{Api, VoiceSocket};
use blob_testkit::stack::{Stack, StackOptions};
use reqwest::Method;
use serde_json::json;

const QUICK: Duration = Duration::from_secs(10);

fn token_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_need_a_signed_in_grantee_who_can_leave_and_nobody_sees_anothers_uid() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let mum = api.exchange(&stack.certs.id_token("uid-mum", "mum@example.com")).await;
    let child = api.create_child(&mum, "Ivy", 1).await;
    let grants = format!("/api/v1/children/{child}/permissions");
    let grant = |body: serde_json::Value| {
        let (api, mum, grants) = (api.clone(), mum.clone(), grants.clone());
        async move { api.call(Method::POST, &grants, Some(&mum), Some(body)).await }
    };

    // Nobody is added to a family before they signed in.
    let early = grant(json!({"email": "dad@example.com", "permission": "interact"})).await;
    assert_eq!((early.status, early.error_code()), (409, "CONFLICT"), "{}", early.body);
    let by_id = grant(json!({"user_id": "uid-dad", "permission": "interact"})).await;
    assert_eq!((by_id.status, by_id.error_code()), (409, "CONFLICT"), "{}", by_id.body);
    let both = grant(json!({"email": "a@b.c", "user_id": "x", "permission": "view"})).await;
    assert_eq!((both.status, both.error_code()), (400, "VALIDATION_ERROR"));

    // Dad signs in; Mum shares by email, and never learns his uid.
    let dad = api.exchange(&stack.certs.id_token("uid-dad", "Dad@Example.com")).await;
    let granted = grant(json!({"email": "DAD@example.com", "permission": "interact"})).await;
    assert_eq!(granted.status, 200, "{}", granted.body);
    assert_eq!(granted.data()["permission"], "interact");
    assert_eq!(granted.data()["granted_by"], "uid-mum");
    assert!(!granted.body.to_string().contains("uid-dad"), "{}", granted.body);

    // Dad talks; Mum sees that a session is open, not whose uid opened it.
    let opened = api.open_session(&dad, &child).await;
    assert_eq!(opened["child_id"], child.as_str());
    let seen = api.call(Method::GET, &format!("/api/v1/children/{child}"), Some(&mum), None).await;
    assert_eq!(seen.data()["active_session"]["opened_by_you"], false, "{}", seen.body);
    assert!(!seen.body.to_string().contains("uid-dad"), "{}", seen.body);
    let me = api.call(Method::GET, "/api/v1/users/me", Some(&dad), None).await;
    assert_eq!(me.data()["active_session"]["opened_by_you"], true, "{}", me.body);
    assert!(!me.body.to_string().contains("uid-mum"), "{}", me.body);

    // The backend token names the user, not the family.
    let claims = token_claims(&mum);
    assert!(claims.get("children").is_none(), "{claims}");
    assert_eq!(claims["sub"], "uid-mum");

    // The only manager cannot leave; Dad can, and his session ends with his access.
    let mum_leaves = api.call(Method::DELETE, &format!("{grants}/me"), Some(&mum), None).await;
    assert_eq!((mum_leaves.status, mum_leaves.error_code()), (409, "CONFLICT"));
    let dad_revokes_mum =
        api.call(Method::DELETE, &format!("{grants}/mum@example.com"), Some(&dad), None).await;
    assert_eq!((dad_revokes_mum.status, dad_revokes_mum.error_code()), (403, "FORBIDDEN"));
    let dad_leaves = api.call(Method::DELETE, &format!("{grants}/me"), Some(&dad), None).await;
    assert_eq!(dad_leaves.status, 200, "{}", dad_leaves.body);
    assert_eq!(dad_leaves.data()["revoked"], true);
    let gone = api.call(Method::GET, &format!("/api/v1/children/{child}"), Some(&dad), None).await;
    assert_eq!((gone.status, gone.error_code()), (404, "NOT_FOUND"));
    let session = format!("/api/v1/sessions/{}", opened["session_id"].as_str().unwrap());
    let ended = api.call(Method::GET, &session, Some(&dad), None).await;
    assert_eq!(ended.status, 404, "his session ended with his access: {}", ended.body);

    // Shared again, then taken away by email.
    let again = grant(json!({"email": "dad@example.com", "permission": "view"})).await;
    assert_eq!(again.status, 200, "{}", again.body);
    let revoked =
        api.call(Method::DELETE, &format!("{grants}/dad@example.com"), Some(&mum), None).await;
    assert_eq!(revoked.data()["revoked"], true, "{}", revoked.body);

    // At most 8 people per child.
    for i in 0..7 {
        let uid = format!("uid-aunt-{i}");
        api.exchange(&stack.certs.id_token(&uid, &format!("aunt{i}@example.com"))).await;
        let shared = grant(json!({"user_id": uid, "permission": "view"})).await;
        assert_eq!(shared.status, 200, "{}", shared.body);
    }
    api.exchange(&stack.certs.id_token("uid-one-more", "more@example.com")).await;
    let full = grant(json!({"email": "more@example.com", "permission": "view"})).await;
    assert_eq!((full.status, full.error_code()), (409, "CONFLICT"), "{}", full.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_has_at_most_twenty_children() {
    let stack = Stack::start(StackOptions {
        extra_env: vec![("gateway", "RATE_LIMIT_PER_MINUTE", "0".to_owned())],
        ..StackOptions::default()
    })
    .await;
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token("uid-many", "many@example.com")).await;
    for i in 0..20 {
        api.create_child(&token, &format!("Kid {i}"), 1).await;
    }
    let one_more = api
        .call(
            Method::POST,
            "/api/v1/children",
            Some(&token),
            Some(json!({"name": "Kid 21", "grade_level": 1})),
        )
        .await;
    assert_eq!((one_more.status, one_more.error_code()), (409, "CONFLICT"), "{}", one_more.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_refuses_every_earlier_token_on_rest_and_on_the_socket() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let firebase = stack.certs.id_token("uid-out", "out@example.com");
    let token = api.exchange(&firebase).await;
    let other_phone = api.exchange(&firebase).await;
    let child = api.create_child(&token, "Oli", 1).await;
    let opened = api.open_session(&token, &child).await;
    let session_id = opened["session_id"].as_str().unwrap().to_owned();
    let session_token = opened["session_token"].as_str().unwrap().to_owned();
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &token, &session_id).await;
    socket.next_json(QUICK).await.expect("a greeting");

    let out = api.call(Method::POST, "/api/v1/auth/logout", Some(&token), None).await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(
        (out.data()["signed_out"].as_bool(), out.data()["sessions_ended"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(socket.close_code(QUICK).await, Some(1000), "the session they held ended");

    for old in [&token, &other_phone] {
        let refused = api.call(Method::GET, "/api/v1/users/me", Some(old), None).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (401, "TOKEN_INVALID"),
            "{}",
            refused.body
        );
    }
    // The socket refuses the old tokens too, the session token included.
    let reopened = api.open_session(&api.exchange(&firebase).await, &child).await;
    let new_session = reopened["session_id"].as_str().unwrap();
    for (old, session) in [(&token, new_session), (&session_token, session_id.as_str())] {
        let url = format!("{}?token={old}&session_id={session}", stack.ws_url());
        let mut refused = VoiceSocket::connect_url(&url).await;
        assert_eq!(refused.close_code(QUICK).await, Some(4001));
    }
    // Signing in again works.
    let fresh = api.exchange(&firebase).await;
    let me = api.call(Method::GET, "/api/v1/users/me", Some(&fresh), None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let url = format!("{}?token={fresh}&session_id={new_session}", stack.ws_url());
    let mut socket = VoiceSocket::connect_url(&url).await;
    let hello = socket.next_json(QUICK).await.expect("a greeting");
    assert_eq!(hello["type"], "event", "{hello}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_and_unverified_accounts_are_refused() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let exchange = |claims: serde_json::Value| {
        let (api, token) = (api.clone(), stack.certs.sign(&claims));
        async move {
            api.call(
                Method::POST,
                "/api/v1/auth/token-exchange",
                None,
                Some(json!({ "firebase_token": token })),
            )
            .await
        }
    };
    let mut unverified = stack.certs.claims("uid-u", "u@example.com");
    unverified["email_verified"] = false.into();
    let refused = exchange(unverified).await;
    assert_eq!((refused.status, refused.error_code()), (403, "FORBIDDEN"), "{}", refused.body);
    let mut anonymous = stack.certs.claims("uid-anon", "");
    anonymous["firebase"] = json!({"identities": {}, "sign_in_provider": "anonymous"});
    anonymous.as_object_mut().unwrap().remove("email");
    anonymous["email_verified"] = false.into();
    let refused = exchange(anonymous).await;
    assert_eq!((refused.status, refused.error_code()), (403, "FORBIDDEN"), "{}", refused.body);
    let fine = exchange(stack.certs.claims("uid-v", "v@example.com")).await;
    assert_eq!(fine.status, 200, "{}", fine.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_account_erases_what_only_it_reaches_and_leaves_the_rest_to_the_family() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let mum = api.exchange(&stack.certs.id_token("uid-mum", "mum@example.com")).await;
    let dad = api.exchange(&stack.certs.id_token("uid-dad", "dad@example.com")).await;
    let gran = api.exchange(&stack.certs.id_token("uid-gran", "gran@example.com")).await;
    // Ivy is Mum's alone; Leo is shared with Dad, who manages too; Zed with Gran, who views.
    let ivy = api.create_child(&mum, "Ivy", 1).await;
    let leo = api.create_child(&mum, "Leo", 2).await;
    let zed = api.create_child(&mum, "Zed", 0).await;
    let share = |child: &str, email: &str, permission: &str| {
        let path = format!("/api/v1/children/{child}/permissions");
        let body = json!({"email": email, "permission": permission});
        let (api, mum) = (api.clone(), mum.clone());
        async move {
            let granted = api.call(Method::POST, &path, Some(&mum), Some(body)).await;
            assert_eq!(granted.status, 200, "{}", granted.body);
        }
    };
    share(&leo, "dad@example.com", "manage").await;
    share(&zed, "gran@example.com", "view").await;

    // Mum is Zed's only manager and Gran can still see Zed: refused, nothing changed.
    let refused = api.call(Method::DELETE, "/api/v1/users/me", Some(&mum), None).await;
    assert_eq!((refused.status, refused.error_code()), (409, "CONFLICT"), "{}", refused.body);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains(&zed), "{}", refused.body);
    let still = api.call(Method::GET, "/api/v1/users/me", Some(&mum), None).await;
    assert_eq!(still.data()["children"].as_array().unwrap().len(), 3, "{}", still.body);
    share(&zed, "gran@example.com", "manage").await;

    // Mum talks to Ivy and holds a session for Leo; one of her POSTs is kept for replay.
    let ivy_session = api.open_session(&mum, &ivy).await;
    let ivy_session_id = ivy_session["session_id"].as_str().unwrap();
    let mut ivys = VoiceSocket::connect(&stack.ws_url(), &mum, ivy_session_id).await;
    ivys.wait_for("session.created", QUICK).await;
    let leo_session = api.open_session(&mum, &leo).await;
    let mut leos =
        VoiceSocket::connect(&stack.ws_url(), &mum, leo_session["session_id"].as_str().unwrap())
            .await;
    leos.wait_for("session.created", QUICK).await;
    let replayed = api
        .call_with(
            Method::POST,
            &format!("/api/v1/sessions/{ivy_session_id}/pause"),
            Some(&mum),
            None,
            &[("Idempotency-Key", "pause-once")],
        )
        .await;
    assert_eq!(replayed.status, 200, "{}", replayed.body);
    assert!(!stack.redis.keys("idempotency:uid-mum:*").is_empty());

    let deleted = api.call(Method::DELETE, "/api/v1/users/me", Some(&mum), None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let receipt = deleted.data();
    assert_eq!(receipt["user_id"], "uid-mum");
    let erased = receipt["erased_children"].as_array().unwrap();
    assert_eq!(erased.len(), 1, "{receipt}");
    assert_eq!(erased[0]["child_id"], ivy.as_str());
    assert_eq!(erased[0]["deleted"]["children"], 1);
    assert_eq!(erased[0]["deleted"]["active_sessions"], 1);
    let mut left: Vec<&str> =
        receipt["left_children"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    left.sort_unstable();
    let mut expected = vec![leo.as_str(), zed.as_str()];
    expected.sort_unstable();
    assert_eq!(left, expected);
    assert_eq!(receipt["sessions_ended"], 1, "Leo's session, which Mum held");
    assert_eq!(receipt["idempotent_responses"], 1);
    assert_eq!(receipt["user_record"], true);
    assert!(receipt["erased_at"].as_str().unwrap().ends_with('Z'));

    // Both of Mum's sockets end; her token is dead on REST and on the socket.
    assert_eq!(ivys.close_code(QUICK).await, Some(1000));
    assert_eq!(leos.close_code(QUICK).await, Some(1000));
    let dead = api.call(Method::GET, "/api/v1/users/me", Some(&mum), None).await;
    assert_eq!((dead.status, dead.error_code()), (401, "TOKEN_INVALID"), "{}", dead.body);
    // No key is named for Mum but the generation that keeps her old tokens dead (and the
    // rate-limit counter, a number gone within the minute).
    let named: Vec<String> =
        stack.redis.keys("*uid-mum*").into_iter().filter(|k| !k.starts_with("rl:")).collect();
    assert_eq!(named, ["token_gen:uid-mum"]);
    assert!(stack.redis.keys_holding(&ivy).is_empty(), "{:?}", stack.redis.keys_holding(&ivy));

    // The family keeps what it shares: Dad still manages Leo, Gran Zed; Ivy is gone.
    let leo_now = api.call(Method::GET, &format!("/api/v1/children/{leo}"), Some(&dad), None).await;
    assert_eq!(leo_now.status, 200, "{}", leo_now.body);
    let zed_now =
        api.call(Method::GET, &format!("/api/v1/children/{zed}"), Some(&gran), None).await;
    assert_eq!(zed_now.data()["child"]["permission"], "manage", "{}", zed_now.body);
    // Nobody can share with the deleted account: it never signed in again.
    let path = format!("/api/v1/children/{leo}/permissions");
    let body = json!({"email": "mum@example.com", "permission": "view"});
    let regrant = api.call(Method::POST, &path, Some(&dad), Some(body)).await;
    assert_eq!((regrant.status, regrant.error_code()), (409, "CONFLICT"), "{}", regrant.body);

    // Signing in again starts a new, empty account.
    let again = api.exchange(&stack.certs.id_token("uid-mum", "mum@example.com")).await;
    let me = api.call(Method::GET, "/api/v1/users/me", Some(&again), None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert!(me.data()["children"].as_array().unwrap().is_empty(), "{}", me.body);
    let ivy_gone =
        api.call(Method::GET, &format!("/api/v1/children/{ivy}"), Some(&again), None).await;
    assert_eq!(ivy_gone.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_service_reaches_redis_over_tls() {
    // The stack's Redis takes TCP connections over TLS only (its plain port is off).
    let stack = Stack::start(StackOptions { redis_tls: true, ..StackOptions::default() }).await;
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token("uid-tls", "tls@example.com")).await;
    let child = api.create_child(&token, "Ada", 1).await;
    let opened = api.open_session(&token, &child).await;
    let session_id = opened["session_id"].as_str().unwrap();
    assert_eq!(stack.redis.keys(&format!("session:{session_id}")).len(), 1);
    let health = api.call(Method::GET, "/health/services", None, None).await;
    assert_eq!(health.status, 200, "{}", health.body);

    // The session's signals travel over the TLS pub/sub connection too: ending it closes
    // the socket.
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &token, session_id).await;
    socket.wait_for("session.created", QUICK).await;
    let path = format!("/api/v1/sessions/{session_id}/end");
    let ended = api.call(Method::POST, &path, Some(&token), None).await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    assert_eq!(socket.close_code(QUICK).await, Some(1000));
}
