//! Health: gRPC health on every gRPC service, `GET /health` on the gateway.

use blob_testkit::client::Api;
use blob_testkit::stack::{Stack, StackOptions};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_reports_serving() {
    let stack = Stack::start(StackOptions::default()).await;
    for (port, service) in [
        (stack.stt_port, "blob.stt.v1.SpeechToText"),
        (stack.llm_port, "blob.llm.v1.Companion"),
        (stack.session_port, "blob.session.v1.Families"),
        (stack.session_port, "blob.session.v1.Sessions"),
        (stack.session_port, "blob.session.v1.Lessons"),
        (stack.session_port, "blob.session.v1.EdgeGuard"),
    ] {
        let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        for name in ["", service] {
            let status = client
                .check(HealthCheckRequest { service: name.to_owned() })
                .await
                .unwrap_or_else(|e| panic!("{service} health {name:?}: {e}"))
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32, "{service} {name:?}");
        }
        let unknown = client.check(HealthCheckRequest { service: "no.such.Service".into() }).await;
        assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
    }

    let health =
        Api::new(&stack.http_url()).call(reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.data()["status"], "healthy");
    // The proof of concept's deploy check reads a top-level `status`.
    assert_eq!(health.body["status"], "ok");
    assert_eq!(health.data()["service"], "gateway");
    blob_testkit::client::assert_meta(&health.body);
}
