//! The `blob.llm.v1.Companion` gRPC service: streams a provider's reply sentence by sentence,
//! each checked by the output filter, then one final event.
//!
//! Resilience: the reply has an overall deadline and a first-text deadline; a provider that is
//! rate limited, unavailable or silent before its first text is retried with jittered
//! exponential backoff while the deadline allows. Once text has been sent nothing is retried
//! (the child would hear it twice). A blocked or empty reply becomes a gentle line in Blob's
//! voice, never an error the child hears.

use std::sync::Arc;
use std::time::{Duration, Instant};

use blob_kit::ErrorKind;
use blob_proto::llm::v1::companion_server::Companion;
use blob_proto::llm::v1::{
    GenerateReplyRequest, ReplyEvent, ReplyFinal, Role, Sentence, Turn, reply_event::Event,
};
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::breaker::{BreakerPolicy, CircuitBreaker};
use crate::filter::{OutputFilter, REPLACEMENT};
use crate::gemini::SAFE_FALLBACK;
use crate::metrics::LlmMetrics;
use crate::provider::{ProviderError, ReplyProvider, TextStream};
use crate::sentences::SentenceSplitter;
use crate::shape::{ReplyBudget, Shaper, Verdict};

/// Longest child utterance accepted, in bytes.
const MAX_USER_TEXT_BYTES: usize = 4 * 1024;
/// First backoff before a retry; doubled each time, with ±50 % jitter.
const BACKOFF: Duration = Duration::from_millis(200);

/// Deadlines, retries and history of one reply.
#[derive(Debug, Clone, Copy)]
pub struct ReplyPolicy {
    /// The longest a whole reply may take.
    pub timeout: Duration,
    /// The longest the provider may take to produce its first text, per attempt.
    pub first_token_timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Most earlier turns (messages) sent to the model.
    pub history_turns: usize,
    /// Most tokens of earlier turns sent to the model (estimated at four characters a token).
    pub history_token_budget: usize,
}

/// The service over one provider, with an optional fallback.
#[derive(Clone)]
pub struct CompanionService {
    provider: Arc<dyn ReplyProvider>,
    fallback: Option<Arc<dyn ReplyProvider>>,
    breaker: Arc<CircuitBreaker>,
    policy: ReplyPolicy,
    metrics: LlmMetrics,
    filter: Arc<OutputFilter>,
    budget: ReplyBudget,
}

impl CompanionService {
    /// A service answering with `provider` under `policy`, with no fallback.
    pub fn new(provider: Arc<dyn ReplyProvider>, policy: ReplyPolicy, metrics: LlmMetrics) -> Self {
        let breaker = BreakerPolicy { failures: 5, cooldown: Duration::from_secs(30) };
        Self::with_fallback(provider, None, breaker, policy, metrics)
    }

    /// A service whose `fallback` answers while `provider` fails or its circuit is open.
    pub fn with_fallback(
        provider: Arc<dyn ReplyProvider>,
        fallback: Option<Arc<dyn ReplyProvider>>,
        breaker: BreakerPolicy,
        policy: ReplyPolicy,
        metrics: LlmMetrics,
    ) -> Self {
        Self {
            provider,
            fallback,
            breaker: Arc::new(CircuitBreaker::new(breaker)),
            policy,
            metrics,
            filter: Arc::new(OutputFilter::default()),
            budget: ReplyBudget::default(),
        }
    }

    /// The same service, holding every reply to `budget` instead of the default.
    pub fn with_budget(self, budget: ReplyBudget) -> Self {
        Self { budget, ..self }
    }

    /// The first text of the reply and the model giving it: the provider while its circuit is
    /// closed, else (or when it fails) the fallback.
    async fn first_text(
        &self,
        request: &GenerateReplyRequest,
        deadline: tokio::time::Instant,
    ) -> Result<(TextStream, Option<String>, String), ProviderError> {
        let primary_error = if self.breaker.allows() {
            match self.first_text_from(&*self.provider, request, deadline).await {
                Ok((stream, first)) => {
                    self.breaker.success();
                    return Ok((stream, first, self.provider.model().to_owned()));
                }
                Err(err) => {
                    if self.breaker.failure() {
                        tracing::warn!(error = %err, "provider circuit opened");
                    }
                    err
                }
            }
        } else {
            ProviderError::Unavailable("provider circuit open".into())
        };
        let Some(fallback) = &self.fallback else {
            return Err(primary_error);
        };
        tracing::warn!(error = %primary_error, fallback = fallback.model(), "answering with the fallback");
        self.metrics.fallbacks.inc();
        let (stream, first) = self.first_text_from(&**fallback, request, deadline).await?;
        Ok((stream, first, fallback.model().to_owned()))
    }

    /// Opens a provider's stream and waits for its first text, retrying what can be retried.
    async fn first_text_from(
        &self,
        provider: &dyn ReplyProvider,
        request: &GenerateReplyRequest,
        deadline: tokio::time::Instant,
    ) -> Result<(TextStream, Option<String>), ProviderError> {
        let mut attempt = 0;
        loop {
            let result = self.attempt(provider, request, deadline).await;
            match result {
                Err(err) if err.retryable() && attempt < self.policy.max_retries => {
                    let backoff = jittered(BACKOFF * 2u32.pow(attempt));
                    if tokio::time::Instant::now() + backoff >= deadline {
                        return Err(err);
                    }
                    tracing::info!(error = %err, attempt, backoff_ms = backoff.as_millis() as u64, "retrying the provider");
                    self.metrics.error(err.metric_kind());
                    self.metrics.retries.inc();
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn attempt(
        &self,
        provider: &dyn ReplyProvider,
        request: &GenerateReplyRequest,
        deadline: tokio::time::Instant,
    ) -> Result<(TextStream, Option<String>), ProviderError> {
        let first_deadline =
            deadline.min(tokio::time::Instant::now() + self.policy.first_token_timeout);
        let timed_out = || ProviderError::Timeout("no text from the provider in time".into());
        let mut stream = tokio::time::timeout_at(first_deadline, provider.reply(request))
            .await
            .map_err(|_| timed_out())??;
        match tokio::time::timeout_at(first_deadline, stream.next()).await {
            Ok(Some(Ok(text))) => Ok((stream, Some(text))),
            Ok(Some(Err(err))) => Err(err),
            Ok(None) => Ok((stream, None)),
            Err(_) => Err(timed_out()),
        }
    }
}

/// The most recent turns within the turn count and the token budget, oldest first, starting
/// with the child's words (models expect the user to speak first).
pub fn recent_history(history: &[Turn], max_turns: usize, token_budget: usize) -> Vec<Turn> {
    let mut kept = Vec::new();
    let mut tokens = 0;
    for turn in history.iter().rev().take(max_turns) {
        let cost = turn.text.chars().count().div_ceil(4) + 4;
        if tokens + cost > token_budget {
            break;
        }
        tokens += cost;
        kept.push(turn.clone());
    }
    kept.reverse();
    let first_user = kept.iter().position(|t| t.role == Role::User as i32).unwrap_or(kept.len());
    kept.split_off(first_user)
}

/// `base` ± 50 %.
fn jittered(base: Duration) -> Duration {
    let factor = 0.5 + rand::random::<f64>();
    base.mul_f64(factor)
}

#[tonic::async_trait]
impl Companion for CompanionService {
    type GenerateReplyStream = ReceiverStream<Result<ReplyEvent, Status>>;

    async fn generate_reply(
        &self,
        request: Request<GenerateReplyRequest>,
    ) -> Result<Response<Self::GenerateReplyStream>, Status> {
        let mut request = request.into_inner();
        request.history = recent_history(
            &request.history,
            self.policy.history_turns,
            self.policy.history_token_budget,
        );
        if request.user_text.trim().is_empty() {
            return Err(ErrorKind::InvalidArgument.status("user_text is required"));
        }
        if request.user_text.len() > MAX_USER_TEXT_BYTES {
            return Err(ErrorKind::InvalidArgument.status("user_text too long"));
        }
        let span = tracing::info_span!(
            "llm.reply",
            conversation_id = %request.conversation_id,
            request_id = %request.request_id,
            model = %self.provider.model(),
            ttft_ms = tracing::field::Empty,
            chars = tracing::field::Empty,
        );
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.policy.timeout;
        let (tx, rx) = mpsc::channel(32);
        let reply = Reply {
            tx,
            filter: Arc::clone(&self.filter),
            metrics: self.metrics.clone(),
            splitter: SentenceSplitter::default(),
            shaper: Shaper::new(self.budget),
            sentences: 0,
            full: String::new(),
        };
        if let Some(concern) = crate::concern::check(&request.user_text) {
            // Not a question for any model: Blob sends the child to a trusted grown-up.
            tracing::warn!(parent: &span, concern = concern.label(), "the child's words need a grown-up");
            self.metrics.concern(concern.label());
            let line: TextStream =
                Box::pin(futures::stream::iter([Ok(concern.reply().to_owned())]));
            let model = format!("safety:{}", concern.label());
            tokio::spawn(reply.run(line, None, deadline, model, started).instrument(span));
            return Ok(Response::new(ReceiverStream::new(rx)));
        }
        let (text_stream, first, model) =
            self.first_text(&request, deadline).instrument(span.clone()).await.map_err(|err| {
                self.metrics.error(err.metric_kind());
                tracing::warn!(parent: &span, error = %err, "provider failed");
                err.kind().status(format!("the model could not answer: {}", err.kind_label()))
            })?;
        span.record("ttft_ms", started.elapsed().as_millis() as u64);
        self.metrics.first_token.observe(started.elapsed().as_secs_f64());

        tokio::spawn(reply.run(text_stream, first, deadline, model, started).instrument(span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// One reply being streamed to the caller.
struct Reply {
    tx: mpsc::Sender<Result<ReplyEvent, Status>>,
    filter: Arc<OutputFilter>,
    metrics: LlmMetrics,
    splitter: SentenceSplitter,
    /// Holds the reply to the length a child can follow.
    shaper: Shaper,
    /// Sentences sent so far.
    sentences: u32,
    /// What was sent so far.
    full: String,
}

impl Reply {
    async fn run(
        mut self,
        mut stream: TextStream,
        first: Option<String>,
        deadline: tokio::time::Instant,
        model: String,
        started: Instant,
    ) {
        let mut next = first.map(Ok);
        loop {
            let text = match next.take() {
                Some(item) => Some(item),
                None => match tokio::select! {
                    item = tokio::time::timeout_at(deadline, stream.next()) => item,
                    () = self.tx.closed() => {
                        tracing::debug!("caller went away; reply abandoned");
                        return;
                    }
                } {
                    Ok(item) => item,
                    Err(_) => {
                        self.metrics.error("timeout");
                        let status = ErrorKind::DeadlineExceeded.status("the model took too long");
                        let _ = self.tx.send(Err(status)).await;
                        return;
                    }
                },
            };
            match text {
                Some(Ok(text)) => {
                    let mut spent = false;
                    for sentence in self.splitter.push(&text) {
                        match self.shape(&sentence).await {
                            Some(true) => {}
                            Some(false) => {
                                spent = true;
                                break;
                            }
                            None => {
                                tracing::debug!("caller went away; reply abandoned");
                                return;
                            }
                        }
                    }
                    if spent {
                        break;
                    }
                }
                Some(Err(err)) => {
                    self.metrics.error(err.metric_kind());
                    tracing::warn!(error = %err, "provider failed mid-reply");
                    let status = err
                        .kind()
                        .status(format!("the model could not answer: {}", err.kind_label()));
                    let _ = self.tx.send(Err(status)).await;
                    return;
                }
                None => break,
            }
        }
        // Nothing more is read: a reply cut at its budget cancels the provider's request here.
        drop(stream);
        if !self.shaper.spent()
            && let Some(rest) = self.splitter.finish()
            && self.shape(&rest).await.is_none()
        {
            return;
        }
        if let Some(reason) = self.shaper.stopped() {
            self.metrics.shaped(reason);
        }
        for change in self.shaper.changes() {
            self.metrics.shaped(change);
        }
        if self.full.trim().is_empty() {
            self.metrics.filtered("empty");
            if !self.send_sentence(SAFE_FALLBACK.to_owned()).await {
                return;
            }
        }
        let full = self.full.trim().to_owned();
        tracing::Span::current().record("chars", full.chars().count() as u64);
        self.metrics.replies.inc();
        self.metrics.reply.observe(started.elapsed().as_secs_f64());
        let event = ReplyEvent {
            event: Some(Event::Final(ReplyFinal {
                text: full,
                model,
                latency_ms: started.elapsed().as_millis() as u32,
            })),
        };
        let _ = self.tx.send(Ok(event)).await;
    }

    /// Holds one of the model's sentences to the reply's shape and sends what is to be said:
    /// `Some(true)` to go on, `Some(false)` once the budget is spent, `None` when the caller
    /// has gone.
    async fn shape(&mut self, sentence: &str) -> Option<bool> {
        match self.shaper.admit(sentence) {
            Verdict::Say(text) => {
                if !self.send_sentence(text).await {
                    return None;
                }
                Some(!self.shaper.spent())
            }
            Verdict::Skip => Some(true),
            Verdict::Stop => Some(false),
        }
    }

    /// Filters and sends one sentence; false when the caller has gone.
    async fn send_sentence(&mut self, sentence: String) -> bool {
        let sentence = match self.filter.check(&sentence) {
            Ok(()) => sentence,
            Err(reason) => {
                tracing::warn!(reason, "a sentence of the reply was replaced by the output filter");
                self.metrics.filtered(reason);
                REPLACEMENT.to_owned()
            }
        };
        if !self.full.is_empty() {
            self.full.push(' ');
        }
        self.full.push_str(&sentence);
        let index = self.sentences;
        self.sentences += 1;
        let event = ReplyEvent { event: Some(Event::Sentence(Sentence { index, text: sentence })) };
        self.tx.send(Ok(event)).await.is_ok()
    }
}

impl ProviderError {
    /// A short, non-sensitive label for the client.
    pub fn kind_label(&self) -> &'static str {
        match self {
            Self::RateLimited(_) => "rate limited",
            Self::Unavailable(_) => "provider unavailable",
            Self::Timeout(_) => "provider timed out",
            Self::Rejected(_) => "request rejected",
        }
    }

    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::Rejected(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(role: Role, text: &str) -> Turn {
        Turn { role: role.into(), text: text.into() }
    }

    #[test]
    fn history_keeps_the_recent_turns_within_the_budget() {
        let history: Vec<Turn> = (0..10)
            .flat_map(|i| {
                [
                    turn(Role::User, &format!("child {i}")),
                    turn(Role::Assistant, &format!("blob {i}")),
                ]
            })
            .collect();
        let kept = recent_history(&history, 8, 10_000);
        assert_eq!(kept.len(), 8);
        assert_eq!(kept[0].text, "child 6");
        let kept = recent_history(&history, 8, 25);
        assert!(kept.len() < 8 && !kept.is_empty());
        assert_eq!(kept[0].role, Role::User as i32, "starts with the child");
        let long = vec![turn(Role::User, &"x".repeat(10_000)), turn(Role::Assistant, "short")];
        assert!(recent_history(&long, 8, 100).is_empty(), "a model turn alone is dropped");
    }
}
