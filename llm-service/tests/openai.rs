//! The OpenAI-compatible provider against a local server speaking the chat-completions
//! streaming format, through the production client and the whole reply path.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use blob_proto::llm::v1::companion_server::Companion;
use blob_proto::llm::v1::{GenerateReplyRequest, reply_event::Event};
use llm_service::gemini::SAFE_FALLBACK;
use llm_service::metrics::LlmMetrics;
use llm_service::openai::{OpenAiConfig, OpenAiProvider};
use llm_service::service::{CompanionService, ReplyPolicy};
use tokio_stream::StreamExt as _;

/// What the fake answers, in turn.
#[derive(Clone)]
enum Answer {
    /// These SSE bytes, in these chunks.
    Chunks(Vec<String>),
    /// An HTTP error.
    Status(u16),
}

/// A request as received: its Authorization header and JSON body.
type Received = (Option<String>, serde_json::Value);

#[derive(Clone, Default)]
struct Fake {
    answers: Arc<Mutex<Vec<Answer>>>,
    requests: Arc<Mutex<Vec<Received>>>,
}

async fn completions(
    State(fake): State<Fake>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    fake.requests.lock().unwrap().push((auth, serde_json::from_str(&body).unwrap()));
    let answer = {
        let mut answers = fake.answers.lock().unwrap();
        if answers.is_empty() { Answer::Status(500) } else { answers.remove(0) }
    };
    match answer {
        Answer::Status(code) => {
            (StatusCode::from_u16(code).unwrap(), r#"{"error":{"message":"try later"}}"#)
                .into_response()
        }
        Answer::Chunks(chunks) => {
            let stream = tokio_stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>))
                .throttle(Duration::from_millis(5));
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }
    }
}

async fn start(answers: Vec<Answer>) -> (Fake, String) {
    let fake = Fake { answers: Arc::new(Mutex::new(answers)), ..Fake::default() };
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, base)
}

fn service(base: &str) -> CompanionService {
    let provider = OpenAiProvider::new(
        reqwest::Client::new(),
        OpenAiConfig {
            api_base: base.to_owned(),
            api_key: Some("sk-test".to_owned().into()),
            model: "tiny-chat".into(),
            max_output_tokens: 80,
            temperature: 0.5,
        },
    );
    CompanionService::new(
        Arc::new(provider),
        ReplyPolicy {
            timeout: Duration::from_secs(5),
            first_token_timeout: Duration::from_secs(2),
            max_retries: 2,
            history_turns: 8,
            history_token_budget: 1500,
        },
        LlmMetrics::default(),
    )
}

fn sse(texts: &[&str]) -> String {
    let mut out = String::new();
    for text in texts {
        let chunk = serde_json::json!({"choices": [{"index": 0, "delta": {"content": text}}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out
}

async fn reply(service: &CompanionService) -> Result<(Vec<String>, String), tonic::Status> {
    let request = GenerateReplyRequest {
        conversation_id: "c".into(),
        request_id: "r".into(),
        user_text: "Hello!".into(),
        ..Default::default()
    };
    let mut stream = service.generate_reply(tonic::Request::new(request)).await?.into_inner();
    let mut sentences = Vec::new();
    while let Some(event) = stream.next().await {
        match event?.event {
            Some(Event::Sentence(sentence)) => {
                assert_eq!(sentence.index as usize, sentences.len(), "sentences come in order");
                sentences.push(sentence.text)
            }
            Some(Event::Final(last)) => return Ok((sentences, last.text)),
            None => {}
        }
    }
    panic!("no final event")
}

#[tokio::test]
async fn a_stream_split_inside_json_arrives_sentence_by_sentence() {
    let body = sse(&["Hi there", ", friend! ", "What shall ", "we play?"]);
    // Cut the bytes at odd places, inside the JSON of an event.
    let chunks: Vec<String> =
        body.as_bytes().chunks(17).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
    let (fake, base) = start(vec![Answer::Chunks(chunks)]).await;
    let (sentences, full) = reply(&service(&base)).await.unwrap();
    assert_eq!(full, "Hi there, friend! What shall we play?");
    assert_eq!(sentences, ["Hi there, friend!", "What shall we play?"]);
    let requests = fake.requests.lock().unwrap();
    let (auth, body) = &requests[0];
    assert_eq!(auth.as_deref(), Some("Bearer sk-test"));
    assert_eq!(body["model"], "tiny-chat");
    assert_eq!(body["stream"], true);
    assert_eq!(body["messages"][0]["role"], "system");
    assert!(body["messages"][0]["content"].as_str().unwrap().contains("Blob"));
    assert_eq!(body["messages"][1], serde_json::json!({"role": "user", "content": "Hello!"}));
}

#[tokio::test]
async fn a_rate_limit_is_retried_then_answered() {
    let (fake, base) =
        start(vec![Answer::Status(429), Answer::Chunks(vec![sse(&["All good now."])])]).await;
    let (_, full) = reply(&service(&base)).await.unwrap();
    assert_eq!(full, "All good now.");
    assert_eq!(fake.requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_is_unavailable() {
    let (fake, base) = start(vec![]).await;
    let status = reply(&service(&base)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(fake.requests.lock().unwrap().len(), 3, "first try and two retries");
}

#[tokio::test]
async fn a_content_filter_becomes_a_gentle_redirect() {
    let filtered = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"content_filter\"}]}\n\n";
    let (_, base) = start(vec![Answer::Chunks(vec![filtered.to_owned()])]).await;
    let (_, full) = reply(&service(&base)).await.unwrap();
    assert_eq!(full.trim(), SAFE_FALLBACK.trim());
}

#[tokio::test]
async fn malformed_data_is_an_error_not_a_garbled_reply() {
    let (_, base) = start(vec![Answer::Chunks(vec!["data: {not json\n\n".to_owned()])]).await;
    let status = reply(&service(&base)).await.unwrap_err();
    assert_ne!(status.code(), tonic::Code::Ok);
}
