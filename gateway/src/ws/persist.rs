//! The socket's writes to the session-service, off the socket loop: exchanges, trims and pause
//! changes are carried out in order by one task per socket, so a slow store delays the store's
//! own work, never audio or replies. What the client must hear about comes back as [`Done`].

use std::time::Duration;

use blob_proto::session::v1 as session;
use blob_voice_protocol::PlaybackProgress;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::downstream::Downstream;

/// Writes waiting for the store.
const JOB_QUEUE: usize = 32;

/// One write.
#[derive(Debug)]
pub enum Job {
    /// Store an exchange.
    Save {
        /// The exchange.
        turn: session::ConversationTurn,
        /// The child's pauses so far.
        pauses_ms: Vec<u32>,
        /// The turn's trace.
        span: tracing::Span,
    },
    /// Trim a stored reply to what was heard.
    Trim {
        /// The reply's turn and the characters heard.
        progress: PlaybackProgress,
        /// The request's own `meta.request_id`.
        answer_to: Option<String>,
    },
    /// Pause or resume the session.
    SetPaused {
        /// The new state.
        paused: bool,
        /// The request's own `meta.request_id`.
        answer_to: Option<String>,
    },
}

/// The outcome the client must hear about.
#[derive(Debug)]
pub enum Done {
    /// The exchange of this turn was stored (or not).
    Saved {
        /// The turn.
        request_id: String,
        /// Whether the store took it.
        stored: bool,
    },
    /// A trim was stored (or not).
    Trimmed {
        /// What was asked.
        progress: PlaybackProgress,
        /// The request's own `meta.request_id`.
        answer_to: Option<String>,
        /// Whether it was stored.
        stored: bool,
    },
    /// A pause change was stored (or not).
    PauseSet {
        /// The new state.
        paused: bool,
        /// The request's own `meta.request_id`.
        answer_to: Option<String>,
        /// Whether it was stored.
        stored: bool,
    },
}

/// The socket's end of its writer task.
pub struct Persistence {
    jobs: mpsc::Sender<Job>,
    task: JoinHandle<()>,
}

impl Persistence {
    /// Starts the writer for one session; outcomes go to `done`. That channel is unbounded so
    /// the writer never waits on a socket that waits on the writer: each outcome answers one
    /// job from the bounded queue, and the socket reads them in its loop.
    pub fn start<D: Downstream>(
        downstream: D,
        session_id: String,
        user_id: String,
        done: mpsc::UnboundedSender<Done>,
    ) -> Self {
        let (jobs, rx) = mpsc::channel(JOB_QUEUE);
        let task = tokio::spawn(write(downstream, session_id, user_id, rx, done));
        Self { jobs, task }
    }

    /// Queues a write (waiting for room when the store is far behind).
    pub async fn push(&self, job: Job) {
        if self.jobs.send(job).await.is_err() {
            tracing::error!("the session writer has stopped; a write was lost");
        }
    }

    /// Lets the queued writes finish, for at most `grace`, so nothing said is lost when the
    /// socket closes.
    pub async fn finish(self, grace: Duration) {
        drop(self.jobs);
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::error!("the session store did not take the last writes in time");
        }
    }
}

async fn write<D: Downstream>(
    downstream: D,
    session_id: String,
    user_id: String,
    mut jobs: mpsc::Receiver<Job>,
    done: mpsc::UnboundedSender<Done>,
) {
    while let Some(job) = jobs.recv().await {
        let outcome = match job {
            Job::Save { turn, pauses_ms, span } => {
                let request_id = turn.request_id.clone();
                let request = session::AppendTurnsRequest {
                    session_id: session_id.clone(),
                    user_id: user_id.clone(),
                    turns: vec![turn],
                    pause_profile: (!pauses_ms.is_empty())
                        .then_some(session::PauseProfile { pauses_ms }),
                };
                let stored = downstream.append_turns(request).instrument(span).await;
                if let Err(status) = &stored {
                    tracing::error!(%status, "could not save the exchange");
                }
                Some(Done::Saved { request_id, stored: stored.is_ok() })
            }
            Job::Trim { progress, answer_to } => {
                let request = session::TrimTurnRequest {
                    session_id: session_id.clone(),
                    user_id: user_id.clone(),
                    request_id: progress.request_id.clone(),
                    assistant_chars: u32::try_from(progress.chars_spoken).unwrap_or(u32::MAX),
                };
                let stored = downstream.trim_turn(request).await;
                if let Err(status) = &stored {
                    tracing::error!(%status, "could not trim the exchange");
                }
                Some(Done::Trimmed { progress, answer_to, stored: stored.is_ok() })
            }
            Job::SetPaused { paused, answer_to } => {
                let request = session::SetPausedRequest {
                    session_id: session_id.clone(),
                    user_id: user_id.clone(),
                    paused,
                };
                let stored = downstream.set_paused(request).await;
                if let Err(status) = &stored {
                    tracing::error!(%status, "could not change the paused state");
                }
                Some(Done::PauseSet { paused, answer_to, stored: stored.is_ok() })
            }
        };
        if let Some(outcome) = outcome {
            // Once the socket is gone nobody listens: the writes still go on.
            let _ = done.send(outcome);
        }
    }
}
