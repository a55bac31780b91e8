//! `LLM_PROVIDER=local`: an instruction-tuned GGUF model run in-process with llama.cpp.
//!
//! The model is loaded once; one dedicated worker thread owns it and one context (a llama.cpp
//! context is not `Send`), generates one reply at a time and streams its text as it is decoded.
//! The context keeps the tokens of the last prompt and reply: the next prompt, which begins
//! with the same persona and history, only decodes what is new — on one core a cold persona
//! prompt alone takes about a second. Replies waiting for the worker queue up to a bound; beyond it the
//! provider answers "unavailable" at once. When the caller drops the stream (the child barged
//! in, or the gateway gave up) generation stops at the next token and the worker moves on.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use blob_proto::llm::v1::{GenerateReplyRequest, Role};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use crate::persona::system_instruction;
use crate::provider::{ProviderError, ReplyProvider, TextStream};

/// llama.cpp's backend: initialised once per process, shared by every model.
fn backend() -> anyhow::Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("starting llama.cpp: {e}"))
}

/// Replies that may wait for the worker.
const QUEUE: usize = 4;
/// Tokens decoded per batch while reading the prompt.
const BATCH: usize = 512;
/// ChatML, for model files that carry no chat template.
const CHATML: &str = "chatml";

/// Settings of the local provider.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalConfig {
    /// `LOCAL_MODEL_PATH`: the GGUF file.
    pub model_path: PathBuf,
    /// `LOCAL_THREADS` (default 1).
    pub threads: u32,
    /// `LOCAL_CONTEXT_TOKENS` (default 2048): prompt plus reply.
    pub context_tokens: u32,
    /// `LLM_MAX_OUTPUT_TOKENS`.
    pub max_output_tokens: u32,
    /// `LLM_TEMPERATURE`.
    pub temperature: f32,
}

/// Where a reply's text goes.
type Reply = mpsc::Sender<Result<String, ProviderError>>;

struct Job {
    /// (role, text), system first.
    messages: Vec<(String, String)>,
    out: Reply,
    /// Only evaluate the prompt into the cache: nothing is generated or sent.
    warm_up: bool,
}

/// Replies from a local GGUF model.
pub struct LocalProvider {
    jobs: SyncSender<Job>,
    model: String,
    counts: Arc<Counts>,
}

/// What the worker has done, for tests and logs.
#[derive(Debug, Default)]
struct Counts {
    /// Tokens generated, all replies together.
    tokens: AtomicU64,
    /// Replies stopped early because their reader went away.
    cancelled: AtomicU64,
}

/// How long loading took, for logs and the benchmark.
#[derive(Debug, Clone, Copy)]
pub struct LoadReport {
    /// Seconds from opening the file to a usable model.
    pub load_seconds: f64,
}

impl LocalProvider {
    /// Loads the model (on the calling thread; call it from a blocking context) and starts the
    /// worker thread.
    pub fn load(config: LocalConfig) -> anyhow::Result<(Self, LoadReport)> {
        let started = Instant::now();
        let backend = backend()?;
        let model =
            LlamaModel::load_from_file(backend, &config.model_path, &LlamaModelParams::default())
                .map_err(|e| anyhow::anyhow!("loading {}: {e}", config.model_path.display()))?;
        let report = LoadReport { load_seconds: started.elapsed().as_secs_f64() };
        let name = config
            .model_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "local".to_owned());
        let template = match model.chat_template(None) {
            Ok(template) => template,
            Err(err) => {
                tracing::warn!(error = %err, "the model has no chat template: using ChatML");
                LlamaChatTemplate::new(CHATML)?
            }
        };
        let (jobs, queue) = sync_channel::<Job>(QUEUE);
        let counts = Arc::new(Counts::default());
        let worker_counts = Arc::clone(&counts);
        std::thread::Builder::new()
            .name("local-llm".to_owned())
            .spawn(move || worker(backend, model, template, config, queue, &worker_counts))?;
        let provider = Self { jobs, model: name, counts };
        provider.warm_up()?;
        Ok((provider, report))
    }

    /// Queues a prompt to evaluate and nothing to generate: the model's pages are read in and
    /// Blob's persona (the part every child shares) goes into the context's cache, so the first
    /// child of the day does not wait for either.
    fn warm_up(&self) -> anyhow::Result<()> {
        let (out, _) = mpsc::channel(1);
        let request = GenerateReplyRequest { user_text: "Hello!".to_owned(), ..Default::default() };
        self.jobs
            .try_send(Job { messages: messages(&request), out, warm_up: true })
            .map_err(|_| anyhow::anyhow!("the local model's queue refused its warm-up"))?;
        Ok(())
    }

    /// Tokens generated so far, all replies together.
    pub fn tokens_generated(&self) -> u64 {
        self.counts.tokens.load(Ordering::Relaxed)
    }

    /// Replies stopped early because nobody was reading them any more.
    pub fn cancelled(&self) -> u64 {
        self.counts.cancelled.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl ReplyProvider for LocalProvider {
    fn model(&self) -> &str {
        &self.model
    }

    async fn reply(&self, request: &GenerateReplyRequest) -> Result<TextStream, ProviderError> {
        let (out, text) = mpsc::channel(64);
        let job = Job { messages: messages(request), out, warm_up: false };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ProviderError::Unavailable("the local model is busy".to_owned()));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ProviderError::Unavailable("the local model stopped".to_owned()));
            }
        }
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(text)))
    }
}

/// The chat: Blob's persona, the recent history, then what the child just said.
fn messages(request: &GenerateReplyRequest) -> Vec<(String, String)> {
    let mut messages = vec![("system".to_owned(), system_instruction(request.child.as_ref()))];
    for turn in request.history.iter().filter(|t| !t.text.trim().is_empty()) {
        let role = if turn.role == i32::from(Role::Assistant) { "assistant" } else { "user" };
        messages.push((role.to_owned(), turn.text.clone()));
    }
    messages.push(("user".to_owned(), request.user_text.clone()));
    messages
}

fn worker(
    backend: &'static LlamaBackend,
    model: LlamaModel,
    template: LlamaChatTemplate,
    config: LocalConfig,
    queue: Receiver<Job>,
    counts: &Counts,
) {
    let threads = config.threads.max(1) as i32;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(config.context_tokens.max(512)))
        .with_n_batch(BATCH as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut context = match model.new_context(backend, params) {
        Ok(context) => context,
        Err(err) => {
            tracing::error!(error = %err, "cannot create a llama.cpp context");
            while let Ok(job) = queue.recv() {
                let _ = job.out.blocking_send(Err(ProviderError::Unavailable(err.to_string())));
            }
            return;
        }
    };
    // The tokens whose keys and values the context holds, in order.
    let mut cached: Vec<LlamaToken> = Vec::new();
    while let Ok(job) = queue.recv() {
        if !job.warm_up && job.out.is_closed() {
            counts.cancelled.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let out = job.out.clone();
        let generated =
            generate(&model, &template, &config, &mut context, &mut cached, job, counts);
        if let Err(err) = generated {
            tracing::warn!(error = %err, "local generation failed");
            // Start the next reply from a clean context.
            context.clear_kv_cache();
            cached.clear();
            let _ = out.blocking_send(Err(ProviderError::Unavailable(err.to_string())));
        }
    }
}

/// Prompt text for the chat, with the model's template (ChatML if the model's own fails).
fn prompt(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    messages: &[(String, String)],
) -> anyhow::Result<String> {
    let chat = messages
        .iter()
        .map(|(role, text)| LlamaChatMessage::new(role.clone(), text.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    match model.apply_chat_template(template, &chat, true) {
        Ok(prompt) => Ok(prompt),
        Err(_) => Ok(model.apply_chat_template(&LlamaChatTemplate::new(CHATML)?, &chat, true)?),
    }
}

fn generate(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    config: &LocalConfig,
    context: &mut LlamaContext<'_>,
    cached: &mut Vec<LlamaToken>,
    job: Job,
    counts: &Counts,
) -> anyhow::Result<()> {
    let vocab = model.vocab();
    let budget = config.context_tokens.max(512) as usize;
    let reply_tokens = config.max_output_tokens as usize;
    // Drop the oldest history until the prompt fits beside the reply (the system message and
    // the child's words always stay).
    let Job { messages, out, warm_up } = job;
    let mut messages = messages;
    let tokens = loop {
        let text = prompt(model, template, &messages)?;
        let tokens = vocab.tokenize(text.as_bytes(), false, true);
        if tokens.len() + reply_tokens <= budget || messages.len() <= 2 {
            break tokens;
        }
        messages.remove(1);
    };
    if tokens.len() + reply_tokens > budget {
        anyhow::bail!("the prompt ({} tokens) does not fit the context", tokens.len());
    }
    // Keep what the context already holds of this prompt (at least one token is decoded
    // again, so there are fresh logits to sample from).
    let common = cached.iter().zip(&tokens).take_while(|(a, b)| a == b).count();
    let mut keep = common.min(tokens.len() - 1);
    if !context.clear_kv_cache_seq(Some(0), Some(keep as u32), None)? {
        // The cache could not be cut there: start from an empty one.
        context.clear_kv_cache();
        keep = 0;
    }
    cached.truncate(keep);
    decode_prompt(context, cached, &tokens[keep..])?;
    if warm_up {
        tracing::info!(tokens = tokens.len(), "local model warmed up");
        return Ok(());
    }
    stream_reply(model, config, context, cached, &out, counts)
}

/// Decodes `new` after the `cached` tokens, asking for logits of the last one.
fn decode_prompt(
    context: &mut LlamaContext<'_>,
    cached: &mut Vec<LlamaToken>,
    new: &[LlamaToken],
) -> anyhow::Result<()> {
    let mut batch = LlamaBatch::new(BATCH, 1);
    let start = cached.len();
    let last = start + new.len() - 1;
    for (chunk_index, chunk) in new.chunks(BATCH).enumerate() {
        batch.clear();
        for (i, token) in chunk.iter().enumerate() {
            let position = start + chunk_index * BATCH + i;
            batch.add(*token, position as i32, &[0], position == last)?;
        }
        context.decode(&mut batch)?;
    }
    cached.extend_from_slice(new);
    Ok(())
}

/// Samples and streams the reply after a decoded prompt.
fn stream_reply(
    model: &LlamaModel,
    config: &LocalConfig,
    context: &mut LlamaContext<'_>,
    cached: &mut Vec<LlamaToken>,
    out: &Reply,
    counts: &Counts,
) -> anyhow::Result<()> {
    let vocab = model.vocab();
    let reply_tokens = config.max_output_tokens as usize;
    let mut batch = LlamaBatch::new(1, 1);
    let mut sampler = LlamaSampler::chain_simple([
        LlamaSampler::penalties(vocab.n_tokens(), 64, 1.15, 0.0, 0.0),
        LlamaSampler::top_k(40),
        LlamaSampler::top_p(0.9, 1),
        LlamaSampler::temp(config.temperature),
        LlamaSampler::dist(rand::random()),
    ]);
    let mut pending: Vec<u8> = Vec::new();
    for _ in 0..reply_tokens {
        // -1: the last output of the last decode (the prompt's last token, then each new one).
        let token = sampler.sample(context, -1);
        sampler.accept(token);
        counts.tokens.fetch_add(1, Ordering::Relaxed);
        if vocab.is_eog(token) {
            break;
        }
        pending.extend(vocab.token_to_piece(token, false, None));
        // Send whole characters only; a multi-byte character may span tokens.
        let valid = match std::str::from_utf8(&pending) {
            Ok(text) => text.len(),
            Err(err) => err.valid_up_to(),
        };
        if valid > 0 {
            let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
            pending.drain(..valid);
            if out.blocking_send(Ok(text)).is_err() {
                tracing::debug!("reply cancelled: generation stopped");
                counts.cancelled.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        batch.clear();
        batch.add(token, cached.len() as i32, &[0], true)?;
        context.decode(&mut batch)?;
        cached.push(token);
    }
    if !pending.is_empty() {
        let _ = out.blocking_send(Ok(String::from_utf8_lossy(&pending).into_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use blob_proto::llm::v1::{ChildProfile, Turn};

    #[test]
    fn the_chat_is_persona_history_then_the_child() {
        let request = GenerateReplyRequest {
            child: Some(ChildProfile { name: "Mia".into(), grade_level: 1 }),
            history: vec![
                Turn { role: Role::User.into(), text: "I like cats".into() },
                Turn { role: Role::Assistant.into(), text: "Cats are great!".into() },
                Turn { role: Role::User.into(), text: "  ".into() },
            ],
            user_text: "Do cats dream?".into(),
            ..Default::default()
        };
        let chat = messages(&request);
        let roles: Vec<&str> = chat.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert!(chat[0].1.contains("Mia"));
        assert_eq!(chat[3].1, "Do cats dream?");
    }
}
