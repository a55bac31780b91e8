//! The real local model (Qwen2.5-Coder-1.5B-Instruct, from `make model-llm`) through the whole reply
//! path: persona, streaming, the per-sentence output filter, the final event, and cancellation.

use std::sync::Arc;
use std::time::Duration;

use blob_proto::llm::v1::companion_server::Companion;
use blob_proto::llm::v1::{ChildProfile, GenerateReplyRequest, reply_event::Event};
use blob_testkit::paths::local_llm_model;
use llm_service::local::{LocalConfig, LocalProvider};
use llm_service::metrics::LlmMetrics;
use llm_service::provider::ReplyProvider as _;
use llm_service::service::{CompanionService, ReplyPolicy};
use tokio_stream::StreamExt as _;

fn model_or_skip(test: &str) -> Option<std::path::PathBuf> {
    let model = local_llm_model();
    if model.is_none() {
        assert!(
            std::env::var_os("BLOB_REQUIRE_LOCAL_MODEL").is_none(),
            "BLOB_REQUIRE_LOCAL_MODEL is set but the model is missing: run `make model-llm`"
        );
        println!("SKIPPED {test}: no local model (run `make model-llm`)");
    }
    model
}

fn config(path: std::path::PathBuf) -> LocalConfig {
    LocalConfig {
        model_path: path,
        threads: 1,
        context_tokens: 2048,
        max_output_tokens: 60,
        temperature: 0.7,
    }
}

fn request(text: &str) -> GenerateReplyRequest {
    GenerateReplyRequest {
        conversation_id: "c".into(),
        request_id: "r".into(),
        child: Some(ChildProfile { name: "Mia".into(), grade_level: 1 }),
        user_text: text.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_model_streams_a_filtered_reply() {
    let Some(path) = model_or_skip("the_local_model_streams_a_filtered_reply") else { return };
    let (provider, report) = tokio::task::spawn_blocking(move || LocalProvider::load(config(path)))
        .await
        .unwrap()
        .unwrap();
    assert!(report.load_seconds >= 0.0);
    let service = CompanionService::new(
        Arc::new(provider),
        ReplyPolicy {
            timeout: Duration::from_secs(60),
            first_token_timeout: Duration::from_secs(30),
            max_retries: 0,
            history_turns: 8,
            history_token_budget: 1500,
        },
        LlmMetrics::default(),
    );
    let mut stream = service
        .generate_reply(tonic::Request::new(request("What is your favourite animal?")))
        .await
        .unwrap()
        .into_inner();
    let mut sentences = Vec::new();
    let mut last = None;
    while let Some(event) = stream.next().await {
        match event.unwrap().event {
            Some(Event::Sentence(sentence)) => sentences.push(sentence.text),
            Some(Event::Final(done)) => last = Some(done),
            None => {}
        }
    }
    let last = last.expect("a final event");
    assert!(!last.text.trim().is_empty(), "a non-empty reply");
    assert!(!sentences.is_empty(), "streamed in pieces");
    assert_eq!(sentences.join(" "), last.text.trim(), "the sentences make up the reply");
    assert!(last.model.contains("qwen2.5-coder-1.5b"), "{}", last.model);
    println!("local model replied: {:?}", last.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_stops_generation_and_frees_the_model() {
    let Some(path) = model_or_skip("dropping_the_stream_stops_generation") else { return };
    let mut settings = config(path);
    settings.max_output_tokens = 400;
    let (provider, _) =
        tokio::task::spawn_blocking(move || LocalProvider::load(settings)).await.unwrap().unwrap();
    // Start a long reply, take one piece, and walk away.
    let mut first =
        provider.reply(&request("Tell me a very long story about a dragon.")).await.unwrap();
    let piece = first.next().await.expect("a first piece").unwrap();
    assert!(!piece.is_empty());
    drop(first);
    // The worker notices at its next token and takes the next reply at once: a second reply
    // completes even though the first one asked for 400 tokens.
    let mut second = provider.reply(&request("Hi!")).await.unwrap();
    let mut text = String::new();
    while let Some(piece) = second.next().await {
        text.push_str(&piece.unwrap());
    }
    assert!(!text.trim().is_empty());
    assert_eq!(provider.cancelled(), 1, "the abandoned reply stopped early");
    println!("tokens generated for both replies: {}", provider.tokens_generated());
}
