//! Stopping the gateway never loses a session: live sockets are suspended and told to reconnect.

use std::time::Duration;

use blob_proto::session::v1::sessions_client::SessionsClient;
use blob_proto::session::v1::{GetSessionRequest, SessionState};
use blob_testkit::client::{Api, VoiceSocket};
use blob_testkit::stack::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_suspends_live_sessions_and_closes_sockets_with_1001() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token("parent-s", "s@example.com")).await;
    let child = api.create_child(&token, "Zoe", 1).await;
    let session = api.open_session(&token, &child).await;
    let session_id = session["session_id"].as_str().unwrap().to_owned();
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &token, &session_id).await;
    assert_eq!(
        socket.next_json(Duration::from_secs(10)).await.unwrap()["action"],
        "session.created"
    );

    let status =
        tokio::task::block_in_place(|| stack.process("gateway").terminate(Duration::from_secs(20)));
    assert!(status.is_some_and(|s| s.success()), "gateway exit: {status:?}");
    assert_eq!(socket.close_code(Duration::from_secs(5)).await, Some(1001));

    let channel =
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", stack.session_port))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let stored = SessionsClient::new(channel)
        .get_session(GetSessionRequest { session_id: session_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.state, SessionState::Suspended as i32, "{stored:?}");
}
