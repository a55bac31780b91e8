//! The reply path against a local server speaking the Gemini wire format: retries, deadlines,
//! safety, malformed data, the output filter and cancellation, through the production client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use blob_proto::llm::v1::companion_server::Companion;
use blob_proto::llm::v1::{GenerateReplyRequest, reply_event::Event};
use blob_testkit::gemini::{self, DEFAULT_REPLY, FakeGemini, Script};
use llm_service::config::{GeminiAuth, GeminiConfig};
use llm_service::filter::REPLACEMENT;
use llm_service::gemini::{GeminiProvider, SAFE_FALLBACK};
use llm_service::metrics::LlmMetrics;
use llm_service::service::{CompanionService, ReplyPolicy};
use tokio_stream::StreamExt as _;

fn service(
    fake: &FakeGemini,
    timeout: Duration,
    first_token: Duration,
    retries: u32,
) -> CompanionService {
    let config = GeminiConfig {
        api_base: fake.base_url(),
        auth: GeminiAuth::ApiKey(gemini::API_KEY.to_owned().into()),
        model: "gemini-test".into(),
        max_output_tokens: 100,
        temperature: 0.5,
    };
    let provider = GeminiProvider::new(reqwest::Client::new(), config).unwrap();
    CompanionService::new(
        Arc::new(provider),
        policy(timeout, first_token, retries),
        LlmMetrics::default(),
    )
}

fn policy(timeout: Duration, first_token: Duration, retries: u32) -> ReplyPolicy {
    ReplyPolicy {
        timeout,
        first_token_timeout: first_token,
        max_retries: retries,
        history_turns: 8,
        history_token_budget: 1500,
    }
}

fn request() -> tonic::Request<GenerateReplyRequest> {
    tonic::Request::new(GenerateReplyRequest {
        conversation_id: "c".into(),
        request_id: "r".into(),
        user_text: "Tell me a story".into(),
        ..Default::default()
    })
}

/// The sentences and the final text of a reply, or its error status.
async fn reply(service: &CompanionService) -> Result<(Vec<String>, String), tonic::Status> {
    let mut stream = service.generate_reply(request()).await?.into_inner();
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
    panic!("the stream ended without a final event")
}

const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_normal_stream_arrives_sentence_by_sentence() {
    let fake = FakeGemini::start().await;
    let (sentences, full) = reply(&service(&fake, LONG, LONG, 2)).await.unwrap();
    assert_eq!(full, DEFAULT_REPLY);
    assert_eq!(
        sentences,
        [
            "Once upon a time, a friendly dragon learned to share.",
            "What should the dragon do next?"
        ]
    );
}

#[tokio::test]
async fn rate_limits_are_retried() {
    let fake = FakeGemini::start().await;
    fake.push(Script::Fail(429));
    fake.push(Script::Fail(503));
    let (_, full) = reply(&service(&fake, LONG, LONG, 2)).await.unwrap();
    assert_eq!(full, DEFAULT_REPLY);
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn an_outage_fails_within_the_deadline() {
    let fake = FakeGemini::start().await;
    for _ in 0..20 {
        fake.push(Script::Fail(503));
    }
    let started = Instant::now();
    let err = reply(&service(&fake, Duration::from_secs(1), LONG, 10)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    assert!(fake.requests().len() >= 2, "retried while the deadline allowed");
}

#[tokio::test]
async fn a_stalled_first_token_is_retried() {
    let fake = FakeGemini::start().await;
    fake.push(Script::Slow {
        chunks: vec![String::new(), "Too late.".into()],
        pause: Duration::from_secs(5),
    });
    let started = Instant::now();
    let (_, full) = reply(&service(&fake, LONG, Duration::from_millis(500), 1)).await.unwrap();
    assert_eq!(full, DEFAULT_REPLY);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn safety_blocks_become_a_gentle_redirect() {
    let fake = FakeGemini::start().await;
    fake.push(Script::Raw(
        "data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"}}\r\n\r\n".into(),
    ));
    let (_, full) = reply(&service(&fake, LONG, LONG, 0)).await.unwrap();
    assert_eq!(full, SAFE_FALLBACK);
    fake.push(Script::Raw("data: {\"candidates\":[{\"finishReason\":\"SAFETY\"}]}\r\n\r\n".into()));
    let (_, full) = reply(&service(&fake, LONG, LONG, 0)).await.unwrap();
    assert_eq!(full, SAFE_FALLBACK);
    // An empty reply is not silence for the child either.
    fake.push(Script::Raw("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}]},\"finishReason\":\"STOP\"}]}\r\n\r\n".into()));
    let (_, full) = reply(&service(&fake, LONG, LONG, 0)).await.unwrap();
    assert_eq!(full, SAFE_FALLBACK);
}

#[tokio::test]
async fn malformed_data_is_an_error_and_not_retried() {
    let fake = FakeGemini::start().await;
    fake.push(Script::Raw("data: {not json\r\n\r\n".into()));
    let err = reply(&service(&fake, LONG, LONG, 3)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal);
    assert_eq!(fake.requests().len(), 1);
    assert!(!err.message().contains("not json"), "no provider detail reaches the caller");
}

#[tokio::test]
async fn every_sentence_passes_the_output_filter() {
    let fake = FakeGemini::start().await;
    fake.push_reply("Call me at 555-123-4567 tonight. Or write to blob@example.com. Bye for now!");
    let (sentences, full) = reply(&service(&fake, LONG, LONG, 0)).await.unwrap();
    assert_eq!(
        sentences,
        [REPLACEMENT.to_owned(), REPLACEMENT.to_owned(), "Bye for now!".to_owned()]
    );
    assert_eq!(full, format!("{REPLACEMENT} {REPLACEMENT} Bye for now!"));
}

#[tokio::test]
async fn dropping_the_reply_stops_generation_at_the_provider() {
    let fake = FakeGemini::start().await;
    fake.push(Script::Slow {
        chunks: vec!["Once upon a time. ".into(), "And then...".into()],
        pause: Duration::from_secs(30),
    });
    let service = service(&fake, Duration::from_secs(60), LONG, 0);
    let mut stream = service.generate_reply(request()).await.unwrap().into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(first.event, Some(Event::Sentence(_))));
    drop(stream);
    blob_testkit::eventually(
        "the provider connection to drop",
        Duration::from_secs(10),
        || async { (fake.abandoned() == 1).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn the_fallback_answers_and_the_circuit_spares_a_failing_provider() {
    use llm_service::breaker::BreakerPolicy;
    use llm_service::bypass::BypassProvider;

    let fake = FakeGemini::start().await;
    for _ in 0..10 {
        fake.push(Script::Fail(503));
    }
    let config = GeminiConfig {
        api_base: fake.base_url(),
        auth: GeminiAuth::ApiKey(gemini::API_KEY.to_owned().into()),
        model: "gemini-test".into(),
        max_output_tokens: 100,
        temperature: 0.5,
    };
    let service = CompanionService::with_fallback(
        Arc::new(GeminiProvider::new(reqwest::Client::new(), config).unwrap()),
        Some(Arc::new(BypassProvider)),
        BreakerPolicy { failures: 2, cooldown: Duration::from_secs(60) },
        policy(LONG, LONG, 0),
        LlmMetrics::default(),
    );
    for _ in 0..4 {
        let (_, full) = reply(&service).await.expect("Blob still answers");
        assert!(full.starts_with("That sounds wonderful"), "{full}");
    }
    // Two failures opened the circuit: the next replies did not call the provider at all.
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vertex_ai_takes_the_same_path_with_an_oauth_token() {
    let fake = FakeGemini::start().await;
    let dir = blob_testkit::TempDir::new("blob-vertex");
    let credentials = dir.path().join("service-account.json");
    tokio::task::block_in_place(|| gemini::write_service_account(&credentials, &fake.token_uri()));
    let config = GeminiConfig {
        api_base: fake.base_url(),
        auth: GeminiAuth::Vertex {
            project: "blob-test".into(),
            location: "europe-west4".into(),
            credentials: Some(credentials),
            metadata_base: "http://127.0.0.1:9".into(),
        },
        model: "gemini-test".into(),
        max_output_tokens: 100,
        temperature: 0.5,
    };
    let provider = GeminiProvider::new(reqwest::Client::new(), config).unwrap();
    assert_eq!(
        provider.url(),
        format!(
            "{}/v1/projects/blob-test/locations/europe-west4/publishers/google/models/gemini-test:streamGenerateContent?alt=sse",
            fake.base_url()
        )
    );
    let service =
        CompanionService::new(Arc::new(provider), policy(LONG, LONG, 0), LlmMetrics::default());
    for _ in 0..2 {
        let (_, full) = reply(&service).await.unwrap();
        assert_eq!(full, DEFAULT_REPLY);
    }
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].model_and_method.starts_with("projects/blob-test/locations/europe-west4/"));
    assert_eq!(fake.token_requests(), 1, "the access token is cached");
}

#[tokio::test]
async fn vertex_ai_on_a_cloud_machine_gets_its_token_from_the_metadata_server() {
    let fake = FakeGemini::start().await;
    let config = GeminiConfig {
        api_base: fake.base_url(),
        auth: GeminiAuth::Vertex {
            project: "blob-test".into(),
            location: "us-central1".into(),
            credentials: None,
            metadata_base: fake.base_url(),
        },
        model: "gemini-test".into(),
        max_output_tokens: 100,
        temperature: 0.5,
    };
    let provider = GeminiProvider::new(reqwest::Client::new(), config).unwrap();
    let service =
        CompanionService::new(Arc::new(provider), policy(LONG, LONG, 0), LlmMetrics::default());
    let (_, full) = reply(&service).await.unwrap();
    assert_eq!(full, DEFAULT_REPLY);
    assert_eq!(fake.token_requests(), 1);
}

#[tokio::test]
async fn a_long_reply_ends_on_a_whole_sentence_and_the_rest_is_never_generated() {
    let fake = FakeGemini::start().await;
    // A model that lectures: a heading, a list, emoji and far more than three sentences, the
    // rest of it coming slowly (as a model writes).
    let mut chunks: Vec<String> = vec![
        "## Why is the sky blue? 🌈\n".into(),
        "The sky looks **blue** because of sunlight. ".into(),
        "- Sunlight has *every* colour in it.\n".into(),
        "Blue light bounces around the most. ".into(),
    ];
    chunks.extend((0..20).map(|i| format!("Here is more fact number {i}. ")));
    fake.push(Script::Slow { chunks, pause: Duration::from_millis(200) });
    let service = service(&fake, Duration::from_secs(60), LONG, 0);
    let (sentences, full) = reply(&service).await.unwrap();
    assert_eq!(
        sentences,
        [
            "Why is the sky blue?",
            "The sky looks blue because of sunlight.",
            "Sunlight has every colour in it.",
        ],
        "three sentences, spoken: no markdown, no list marker, no emoji"
    );
    assert_eq!(full, sentences.join(" "));
    // The reply ended at its budget: the provider's stream was cancelled, not read to its end.
    blob_testkit::eventually("the provider request to be cancelled", LONG, || async {
        (fake.abandoned() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_reply_over_the_word_budget_stops_before_the_sentence_that_would_pass_it() {
    use llm_service::shape::ReplyBudget;
    let fake = FakeGemini::start().await;
    fake.push_reply(
        "Spiders have eight legs. They spin silk to make webs and catch flies for dinner every single day. Isn't that neat?",
    );
    let budget = ReplyBudget { max_sentences: 5, max_words: 12 };
    let service = service(&fake, LONG, LONG, 0).with_budget(budget);
    let (sentences, _) = reply(&service).await.unwrap();
    assert_eq!(sentences, ["Spiders have eight legs."]);
}

#[tokio::test]
async fn words_that_need_a_grown_up_never_reach_the_model() {
    let fake = FakeGemini::start().await;
    let service = service(&fake, LONG, LONG, 0);
    let request = tonic::Request::new(GenerateReplyRequest {
        conversation_id: "c".into(),
        request_id: "r".into(),
        user_text: "A man in a car said he has puppies and wants me to come with him.".into(),
        ..Default::default()
    });
    let mut stream = service.generate_reply(request).await.unwrap().into_inner();
    let mut sentences = Vec::new();
    let mut model = String::new();
    while let Some(event) = stream.next().await {
        match event.unwrap().event {
            Some(Event::Sentence(sentence)) => sentences.push(sentence.text),
            Some(Event::Final(last)) => model = last.model,
            None => {}
        }
    }
    assert_eq!(model, "safety:stranger");
    assert_eq!(sentences.len(), 3, "{sentences:?}");
    assert!(sentences[2].contains("grown-up you trust"), "{sentences:?}");
    assert!(fake.requests().is_empty(), "the model was not asked");
    // An ordinary question still goes to the model.
    let (_, full) = reply(&service).await.unwrap();
    assert_eq!(full, DEFAULT_REPLY);
    assert_eq!(fake.requests().len(), 1);
}
