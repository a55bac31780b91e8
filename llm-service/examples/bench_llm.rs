//! `make bench-llm`: what the llm-service adds to a provider's latency, and how the local model
//! performs on this machine. Prints figures; asserts nothing.
//!
//! 1. Overhead: a provider whose first token comes after a fixed delay, asked directly
//!    (baseline) and through the whole reply path (persona, retries, sentence splitting, output
//!    filter), side by side; the difference is what the service adds.
//! 2. The local model (if `make model-llm` fetched it): load time, time to first token and to
//!    the first sentence, tokens per second, on `LOCAL_THREADS` (default 1) threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use blob_proto::llm::v1::companion_server::Companion;
use blob_proto::llm::v1::{ChildProfile, GenerateReplyRequest, reply_event::Event};
use llm_service::local::{LocalConfig, LocalProvider};
use llm_service::metrics::LlmMetrics;
use llm_service::provider::{ProviderError, ReplyProvider, TextStream};
use llm_service::service::{CompanionService, ReplyPolicy};
use tokio_stream::StreamExt as _;

const FIRST_TOKEN_DELAY: Duration = Duration::from_millis(20);
const ROUNDS: usize = 300;

/// First piece after a fixed delay, then the rest at once.
struct FixedDelay;

#[async_trait]
impl ReplyProvider for FixedDelay {
    fn model(&self) -> &str {
        "fixed-delay"
    }

    async fn reply(&self, _: &GenerateReplyRequest) -> Result<TextStream, ProviderError> {
        let pieces = ["Hello there, ", "friend! ", "What shall we ", "play today?"];
        let stream = async_stream(pieces.iter().map(|p| (*p).to_owned()).collect());
        Ok(stream)
    }
}

fn async_stream(pieces: Vec<String>) -> TextStream {
    Box::pin(futures::stream::unfold((pieces.into_iter(), true), |(mut rest, first)| async move {
        if first {
            tokio::time::sleep(FIRST_TOKEN_DELAY).await;
        }
        rest.next().map(|piece| (Ok(piece), (rest, false)))
    }))
}

fn request(text: &str) -> GenerateReplyRequest {
    GenerateReplyRequest {
        conversation_id: "bench".into(),
        request_id: "bench".into(),
        child: Some(ChildProfile { name: "Mia".into(), grade_level: 1 }),
        user_text: text.into(),
        ..Default::default()
    }
}

fn policy() -> ReplyPolicy {
    ReplyPolicy {
        timeout: Duration::from_secs(120),
        first_token_timeout: Duration::from_secs(60),
        max_retries: 0,
        history_turns: 8,
        history_token_budget: 1500,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn summary(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    (percentile(&samples, 0.5), percentile(&samples, 0.99), samples[samples.len() - 1])
}

async fn overhead() {
    let provider = Arc::new(FixedDelay);
    let mut baseline = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let mut stream = provider.reply(&request("hi")).await.unwrap();
        stream.next().await.unwrap().unwrap();
        baseline.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let service = CompanionService::new(provider, policy(), LlmMetrics::default());
    let mut through = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let mut stream =
            service.generate_reply(tonic::Request::new(request("hi"))).await.unwrap().into_inner();
        loop {
            match stream.next().await.unwrap().unwrap().event {
                Some(Event::Sentence(_)) | Some(Event::Final(_)) => break,
                None => {}
            }
        }
        through.push(started.elapsed().as_secs_f64() * 1000.0);
        while stream.next().await.is_some() {}
    }
    let (b50, b99, bmax) = summary(baseline);
    let (t50, t99, tmax) = summary(through);
    println!(
        "== Service overhead: first text, provider first token after {FIRST_TOKEN_DELAY:?}, {ROUNDS} replies"
    );
    println!("{:<28} {:>9} {:>9} {:>9}", "", "p50 ms", "p99 ms", "max ms");
    println!("{:<28} {b50:>9.2} {b99:>9.2} {bmax:>9.2}", "provider alone (baseline)");
    println!("{:<28} {t50:>9.2} {t99:>9.2} {tmax:>9.2}", "through the service");
    println!("{:<28} {:>9.2} {:>9.2}", "added by the service", t50 - b50, t99 - b99);
    println!(
        "(the service sends its first delta at the first sentence end, so this includes waiting for \"friend! \")"
    );
}

async fn local_model() {
    let Some(path) = blob_testkit::paths::local_llm_model() else {
        println!("\n== Local model: SKIPPED (run `make model-llm`)");
        return;
    };
    let threads: u32 =
        std::env::var("LOCAL_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(1);
    let config = LocalConfig {
        model_path: path.clone(),
        threads,
        context_tokens: 2048,
        max_output_tokens: 120,
        temperature: 0.7,
    };
    let (provider, report) =
        tokio::task::spawn_blocking(move || LocalProvider::load(config)).await.unwrap().unwrap();
    let provider = Arc::new(provider);
    println!("\n== Local model: {} on {threads} thread(s)", path.display());
    println!("load: {:.3} s", report.load_seconds);
    let service = CompanionService::new(provider.clone(), policy(), LlmMetrics::default());
    let prompts = [
        "What is your favourite animal?",
        "Why is the sky blue?",
        "Can you tell me a short story about a cat?",
        "I built a tower with my blocks today!",
        "What do fish eat?",
    ];
    println!(
        "{:<44} {:>10} {:>14} {:>8} {:>8}",
        "prompt", "first tok", "first sentence", "tokens", "tok/s"
    );
    for prompt in prompts {
        // Time to the first token: the provider directly.
        let started = Instant::now();
        let mut raw = provider.reply(&request(prompt)).await.unwrap();
        raw.next().await.unwrap().unwrap();
        let first_token = started.elapsed();
        drop(raw);
        // First sentence and throughput: through the service.
        let started = Instant::now();
        let tokens_start = provider.tokens_generated();
        let mut stream = service
            .generate_reply(tonic::Request::new(request(prompt)))
            .await
            .unwrap()
            .into_inner();
        let mut first_sentence = None;
        while let Some(event) = stream.next().await {
            if let Some(Event::Sentence(_)) = event.unwrap().event {
                first_sentence.get_or_insert_with(|| started.elapsed());
            }
        }
        let total = started.elapsed();
        let tokens = provider.tokens_generated() - tokens_start;
        println!(
            "{:<44} {:>8.0}ms {:>12.0}ms {:>8} {:>8.1}",
            prompt,
            first_token.as_secs_f64() * 1000.0,
            first_sentence.unwrap_or(total).as_secs_f64() * 1000.0,
            tokens,
            tokens as f64 / total.as_secs_f64()
        );
    }
    println!("target: first sentence <= 1000 ms on one core");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    overhead().await;
    local_model().await;
}
