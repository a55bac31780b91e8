//! Hot state in Redis, in the seed key schema:
//!
//! | key | value | time to live |
//! |---|---|---|
//! | `session:{session_id}` | [`SessionRecord`], state `active` | `SESSION_TTL_SECONDS` |
//! | `suspended:{session_id}` | [`SessionRecord`], state `suspended` | `SESSION_RECONNECT_WINDOW_SECONDS` |
//! | `child_session:{child_id}` | the child's current session id | follows its session |
//! | `conversation:{conversation_id}` | [`ConversationRecord`] | `CONVERSATION_TTL_SECONDS` |
//! | `rl:{user_id}` | requests counted in the current rate-limit window | the window |
//! | `token_gen:{user_id}` | the user's token generation, raised by signing out | 2 days (longer than any token) |
//! | `idempotency:{user_id}:{key}` | a claim, then the user's first (sealed) response to that key | claim, then `IDEMPOTENCY_TTL_SECONDS` |
//! | `events:{session_id}` | the socket's last [`MAX_EVENTS`] outbound events, for replay | session TTL + reconnect window |
//! | `child_keys:{child_id}` | every key above that holds the child's words: sessions, replay logs, conversations (what erasure deletes) | the longest of those, refreshed on each write |
//!
//! Pause, resume, attach and end are published on `session_signals:{session_id}`.
//!
//! Every transition that reads and writes more than one key runs as one Lua script, so two
//! devices, or a socket closing while a turn is appended, never interleave half-way. The scripts
//! build some key names from stored ids, so they need a single Redis, not a cluster.

use redis::aio::ConnectionManager;
use redis::{AsyncCommands as _, Script};

use crate::config::Ttls;
use crate::metrics::SessionMetrics;
use crate::record::{ConversationRecord, SessionRecord, TurnRecord};
use crate::timestamp::Timestamp;

/// What can go wrong with hot state.
#[derive(Debug, thiserror::Error)]
pub enum HotError {
    /// `NOT_FOUND`: no active or suspended session with that id (never existed, ended or expired).
    #[error("session not found")]
    NotFound,
    /// `PERMISSION_DENIED`: the session belongs to another user.
    #[error("session belongs to another user")]
    Forbidden,
    /// `FAILED_PRECONDITION`: a newer socket has taken the session over.
    #[error("a newer connection holds the session")]
    Stale,
    /// `NOT_FOUND`: no such conversation (never existed, expired, or another user's).
    #[error("conversation not found")]
    NoConversation,
    /// `PERMISSION_DENIED`: the conversation is with another child.
    #[error("the conversation is with another child")]
    OtherChild,
    /// `UNAVAILABLE`: Redis could not be reached or did not answer in time.
    #[error("redis unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    /// `INTERNAL`: Redis answered something we cannot read.
    #[error("unexpected hot state: {0}")]
    Corrupt(String),
}

impl From<redis::RedisError> for HotError {
    fn from(err: redis::RedisError) -> Self {
        if err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
        {
            Self::Unavailable(err)
        } else {
            Self::Corrupt(err.to_string())
        }
    }
}

/// The result of create-or-discover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenOutcome {
    /// No session existed: a new one was made with a new conversation.
    Created,
    /// No session existed: a new one was made continuing the conversation asked for.
    Reattached,
    /// The child's active session was returned as it is.
    Discovered,
    /// The child's suspended session was made active again.
    Resumed,
}

/// A session transition run by `transition.lua`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// A voice socket connects: resume if suspended, count the connection.
    Attach,
    /// Make a suspended session active again.
    Resume,
    /// Keep the session for the reconnect window only.
    Suspend,
    /// Set the paused flag.
    Pause,
    /// Clear the paused flag.
    Unpause,
}

impl Transition {
    fn as_arg(self) -> &'static str {
        match self {
            Self::Attach => "attach",
            Self::Resume => "resume",
            Self::Suspend => "suspend",
            Self::Pause => "pause",
            Self::Unpause => "unpause",
        }
    }
}

/// Events kept per session for replay.
pub const MAX_EVENTS: usize = 200;
/// Most bytes of outbound events kept for replay per session (the oldest go first).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Most exchanges kept in a conversation record (the oldest go first).
pub const MAX_CONVERSATION_TURNS: usize = 200;
/// Most bytes of a conversation record (the oldest exchanges go first): with the replay log,
/// an attach answer stays far below gRPC's 4 MiB message limit.
pub const MAX_CONVERSATION_BYTES: usize = 256 * 1024;

/// The Redis side of the session-service. Cheap to clone.
#[derive(Clone)]
pub struct HotStore {
    redis: ConnectionManager,
    ttl: Ttls,
    metrics: SessionMetrics,
    open: Script,
    transition: Script,
    append: Script,
    events: Script,
    trim: Script,
    end: Script,
    throttle: Script,
    idempotency: Script,
    idempotency_done: Script,
    erase: Script,
}

/// What a claim on an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// First use: the caller runs the request.
    Claimed,
    /// The first request with the key is still running.
    InProgress,
    /// The key was used for another request (or by another user).
    Mismatch,
    /// The stored response of the first use.
    Replay {
        /// HTTP status.
        status: u32,
        /// Response body.
        body: String,
    },
}

/// What [`HotStore::throttle`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Requests in the current window (0 when not counted).
    pub count: u64,
    /// Seconds left in the window.
    pub seconds_left: u32,
    /// The token's generation is older than the user's: they signed out since.
    pub signed_out: bool,
}

/// What [`HotStore::erase_child`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HotErasure {
    /// Conversation snapshots.
    pub conversations: u32,
    /// Sessions (active or suspended).
    pub sessions: u32,
    /// Replay logs of outbound events.
    pub event_logs: u32,
}

/// A script that writes a child's keys, with the index helper it calls.
fn indexed(body: &str) -> Script {
    Script::new(&format!("{}{body}", include_str!("lua/index.lua")))
}

/// One stored outbound event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventRecord {
    /// Its per-session sequence number.
    pub seq: u64,
    /// The message as sent.
    pub json: String,
}

impl HotStore {
    /// Wraps a connection manager; operations are timed into `metrics`.
    pub fn new(redis: ConnectionManager, ttl: Ttls, metrics: SessionMetrics) -> Self {
        Self {
            redis,
            ttl,
            metrics,
            open: indexed(include_str!("lua/open.lua")),
            transition: indexed(include_str!("lua/transition.lua")),
            append: indexed(include_str!("lua/append.lua")),
            events: indexed(include_str!("lua/events.lua")),
            trim: indexed(include_str!("lua/trim.lua")),
            end: Script::new(include_str!("lua/end.lua")),
            throttle: Script::new(include_str!("lua/throttle.lua")),
            idempotency: Script::new(include_str!("lua/idempotency.lua")),
            idempotency_done: Script::new(include_str!("lua/idempotency_done.lua")),
            erase: Script::new(include_str!("lua/erase.lua")),
        }
    }

    /// The time-to-live settings.
    pub fn ttl(&self) -> &Ttls {
        &self.ttl
    }

    /// How long `child_keys:{child_id}` lives after each write: as long as the longest-lived
    /// key it names.
    fn index_ttl(&self) -> u64 {
        self.ttl.conversation.max(self.ttl.session + self.ttl.reconnect_window).as_secs()
    }

    /// Deletes every hot key of the child: what its index names (sessions live, suspended or
    /// expired, their replay logs, their conversations) and `more_keys` found elsewhere.
    pub async fn erase_child(
        &self,
        child_id: &str,
        more_keys: &[String],
    ) -> Result<HotErasure, HotError> {
        let _timer = self.metrics.time("erase_child");
        let mut invocation = self.erase.prepare_invoke();
        invocation.key(format!("child_keys:{child_id}")).key(format!("child_session:{child_id}"));
        for key in more_keys {
            invocation.arg(key);
        }
        let (conversations, sessions, event_logs): (u32, u32, u32) =
            invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(HotErasure { conversations, sessions, event_logs })
    }

    /// Create-or-discover the session of `child_id` for `user_id`. A new session continues
    /// `conversation_id` when given: it must be the same user's and child's, and still kept.
    pub async fn open(
        &self,
        user_id: &str,
        child_id: &str,
        mode: &str,
        conversation_id: Option<&str>,
    ) -> Result<(OpenOutcome, SessionRecord), HotError> {
        let _timer = self.metrics.time("open");
        let now = Timestamp::now();
        let fresh = SessionRecord {
            session_id: uuid::Uuid::new_v4().to_string(),
            user_id: user_id.to_owned(),
            child_id: child_id.to_owned(),
            state: "active".to_owned(),
            conversation_id: uuid::Uuid::new_v4().to_string(),
            mode: mode.to_owned(),
            paused: false,
            created_at: now,
            last_activity_at: now,
            connection_count: 0,
        };
        let fresh_json = to_json(&fresh)?;
        let reply: Vec<String> = self
            .open
            .key(format!("child_session:{child_id}"))
            .arg(&fresh_json)
            .arg(&fresh.session_id)
            .arg(self.ttl.session.as_secs())
            .arg(now.to_string())
            .arg(conversation_id.unwrap_or_default())
            .arg(user_id)
            .arg(child_id)
            .arg(self.ttl.conversation.as_secs())
            .arg(self.index_ttl())
            .invoke_async(&mut self.redis.clone())
            .await?;
        let (outcome, json) = match reply.as_slice() {
            [status] if status == "no_conversation" => return Err(HotError::NoConversation),
            [status] if status == "other_child" => return Err(HotError::OtherChild),
            [outcome, json] => (outcome, json),
            other => {
                return Err(HotError::Corrupt(format!("open returned {} values", other.len())));
            }
        };
        let outcome = match outcome.as_str() {
            "created" => OpenOutcome::Created,
            "reattached" => OpenOutcome::Reattached,
            "discovered" => OpenOutcome::Discovered,
            "resumed" => OpenOutcome::Resumed,
            other => return Err(HotError::Corrupt(format!("open returned {other:?}"))),
        };
        Ok((outcome, from_json(json)?))
    }

    /// An active or suspended session.
    pub async fn get(&self, session_id: &str) -> Result<SessionRecord, HotError> {
        let _timer = self.metrics.time("get");
        let mut redis = self.redis.clone();
        let (active, suspended): (Option<String>, Option<String>) = redis::pipe()
            .get(format!("session:{session_id}"))
            .get(format!("suspended:{session_id}"))
            .query_async(&mut redis)
            .await?;
        match active.or(suspended) {
            Some(json) => from_json(&json),
            None => Err(HotError::NotFound),
        }
    }

    /// Runs one transition; `user_id` must own the session (empty skips the check). `epoch`
    /// (suspend only, 0 = any) is the suspending socket's epoch.
    /// Returns whether the session was suspended before, and the session after.
    pub async fn transition(
        &self,
        session_id: &str,
        user_id: &str,
        transition: Transition,
        epoch: u32,
    ) -> Result<(bool, SessionRecord), HotError> {
        let _timer = self.metrics.time("transition");
        let reply: Vec<String> = self
            .transition
            .key(format!("session:{session_id}"))
            .key(format!("suspended:{session_id}"))
            .arg(transition.as_arg())
            .arg(user_id)
            .arg(Timestamp::now().to_string())
            .arg(self.ttl.session.as_secs())
            .arg(self.ttl.reconnect_window.as_secs())
            .arg(epoch)
            .arg(self.index_ttl())
            .invoke_async(&mut self.redis.clone())
            .await?;
        match reply.as_slice() {
            [status] if status == "missing" => Err(HotError::NotFound),
            [status] if status == "forbidden" => Err(HotError::Forbidden),
            [status, _] if status == "stale" => Err(HotError::Stale),
            [before, json] => Ok((before == "suspended", from_json(json)?)),
            other => Err(HotError::Corrupt(format!("transition returned {} values", other.len()))),
        }
    }

    /// Removes every hot key of a session (after it was archived), atomically; returns whether
    /// the session was still there. The conversation stays until its own time to live.
    pub async fn remove(&self, session: &SessionRecord) -> Result<bool, HotError> {
        let _timer = self.metrics.time("remove");
        let removed: u32 = self
            .end
            .key(format!("session:{}", session.session_id))
            .key(format!("suspended:{}", session.session_id))
            .key(format!("events:{}", session.session_id))
            .key(format!("child_session:{}", session.child_id))
            .arg(&session.session_id)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(removed > 0)
    }

    /// The child's current (active or suspended) session, if any.
    pub async fn child_session(&self, child_id: &str) -> Result<Option<SessionRecord>, HotError> {
        let _timer = self.metrics.time("child_session");
        let pointer: Option<String> =
            self.redis.clone().get(format!("child_session:{child_id}")).await?;
        match pointer {
            None => Ok(None),
            Some(session_id) => match self.get(&session_id).await {
                Ok(session) => Ok(Some(session)),
                Err(HotError::NotFound) => Ok(None),
                Err(other) => Err(other),
            },
        }
    }

    /// Counts one request against `rl:{user_id}`; returns the count in the current window and
    /// the seconds left in it.
    pub async fn throttle(
        &self,
        user_id: &str,
        window_seconds: u32,
        count: bool,
        token_generation: u64,
    ) -> Result<Throttled, HotError> {
        let _timer = self.metrics.time("throttle");
        let (count, ttl, signed_out): (u64, i64, i64) = self
            .throttle
            .key(format!("rl:{user_id}"))
            .key(format!("token_gen:{user_id}"))
            .arg(window_seconds)
            .arg(if count { "1" } else { "0" })
            .arg(token_generation)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(Throttled { count, seconds_left: ttl.max(1) as u32, signed_out: signed_out == 1 })
    }

    /// The user's token generation: tokens carrying an older one were signed out.
    pub async fn token_generation(&self, user_id: &str) -> Result<u64, HotError> {
        let _timer = self.metrics.time("token_generation");
        let current: Option<u64> = self.redis.clone().get(format!("token_gen:{user_id}")).await?;
        Ok(current.unwrap_or(0))
    }

    /// Moves the user to a new token generation, kept `keep_seconds` (at least as long as any
    /// token lives); returns it.
    pub async fn sign_out(&self, user_id: &str, keep_seconds: u64) -> Result<u64, HotError> {
        let _timer = self.metrics.time("sign_out");
        let key = format!("token_gen:{user_id}");
        let (generation, _): (u64, i64) = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .expire(&key, keep_seconds as i64)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(generation)
    }

    /// Deletes every stored idempotent response of `owner` (an account being deleted); how
    /// many. A walk of the keyspace with `SCAN`, in steps, never blocking the server: fine for
    /// a rare request, which this is.
    pub async fn forget_idempotency(&self, owner: &str) -> Result<u64, HotError> {
        let _timer = self.metrics.time("forget_idempotency");
        let pattern = format!("idempotency:{}:*", glob_escape(owner));
        let mut redis = self.redis.clone();
        let (mut cursor, mut removed) = (0u64, 0u64);
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut redis)
                .await?;
            if !keys.is_empty() {
                let deleted: u64 = redis::cmd("UNLINK").arg(&keys).query_async(&mut redis).await?;
                removed += deleted;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// Claims `idempotency:{owner}:{key}` for the request with `fingerprint`, or reads its
    /// first use.
    pub async fn begin_idempotent(
        &self,
        owner: &str,
        key: &str,
        fingerprint: &str,
        claim_seconds: u32,
    ) -> Result<Idempotency, HotError> {
        let _timer = self.metrics.time("idempotency");
        let values: Vec<redis::Value> = self
            .idempotency
            .key(format!("idempotency:{owner}:{key}"))
            .arg(fingerprint)
            .arg(claim_seconds)
            .invoke_async(&mut self.redis.clone())
            .await?;
        let text = |i: usize| -> Result<String, HotError> {
            let value = values.get(i).cloned().unwrap_or(redis::Value::Nil);
            redis::from_redis_value(value).map_err(|e| HotError::Corrupt(e.to_string()))
        };
        Ok(match text(0)?.as_str() {
            "claimed" => Idempotency::Claimed,
            "in_progress" => Idempotency::InProgress,
            "mismatch" => Idempotency::Mismatch,
            "replay" => Idempotency::Replay {
                status: text(1)?.parse().map_err(|_| HotError::Corrupt("status".into()))?,
                body: text(2)?,
            },
            other => return Err(HotError::Corrupt(format!("idempotency returned {other}"))),
        })
    }

    /// Stores the response of a claimed key for `ttl_seconds`, or (with `None`) releases the
    /// claim. Returns whether the claim was still this request's.
    pub async fn complete_idempotent(
        &self,
        owner: &str,
        key: &str,
        fingerprint: &str,
        response: Option<(u32, &str)>,
        ttl_seconds: u32,
    ) -> Result<bool, HotError> {
        let _timer = self.metrics.time("idempotency");
        let (action, status, body) = match response {
            Some((status, body)) => ("store", status, body),
            None => ("release", 0, ""),
        };
        let done: i64 = self
            .idempotency_done
            .key(format!("idempotency:{owner}:{key}"))
            .arg(fingerprint)
            .arg(action)
            .arg(status)
            .arg(body)
            .arg(ttl_seconds)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(done == 1)
    }

    /// The conversation; [`HotError::NoConversation`] when it is not kept (never existed or
    /// expired), [`HotError::Forbidden`] when it is another user's.
    pub async fn conversation(
        &self,
        conversation_id: &str,
        owner_user_id: &str,
    ) -> Result<ConversationRecord, HotError> {
        let _timer = self.metrics.time("conversation");
        let json: Option<String> =
            self.redis.clone().get(format!("conversation:{conversation_id}")).await?;
        match json {
            Some(json) => {
                let record: ConversationRecord = from_json(&json)?;
                if record.owner_user_id != owner_user_id {
                    return Err(HotError::Forbidden);
                }
                Ok(record)
            }
            None => Err(HotError::NoConversation),
        }
    }

    /// Appends turns to the session's conversation, and replaces the child's pauses kept with
    /// it when given; returns the new turn count.
    pub async fn append(
        &self,
        session_id: &str,
        user_id: &str,
        turns: &[TurnRecord],
        pauses_ms: Option<&[u32]>,
    ) -> Result<u32, HotError> {
        let _timer = self.metrics.time("append");
        let reply: (String, Option<u32>) = self
            .append
            .key(format!("session:{session_id}"))
            .key(format!("suspended:{session_id}"))
            .arg(user_id)
            .arg(to_json(&turns)?)
            .arg(Timestamp::now().to_string())
            .arg(self.ttl.session.as_secs())
            .arg(self.ttl.conversation.as_secs())
            .arg(pauses_ms.map(|pauses| to_json(&pauses)).transpose()?.unwrap_or_default())
            .arg(self.index_ttl())
            .arg(MAX_CONVERSATION_TURNS)
            .arg(MAX_CONVERSATION_BYTES)
            .invoke_async(&mut self.redis.clone())
            .await
            .map(|v: Vec<redis::Value>| decode_status(&v))??;
        match reply {
            (status, Some(count)) if status == "ok" => Ok(count),
            (status, _) if status == "missing" => Err(HotError::NotFound),
            (status, _) if status == "forbidden" => Err(HotError::Forbidden),
            (status, _) => Err(HotError::Corrupt(format!("append returned {status:?}"))),
        }
    }

    /// Stores outbound events for replay (the last [`MAX_EVENTS`] are kept).
    pub async fn record_events(
        &self,
        session_id: &str,
        user_id: &str,
        events: &[EventRecord],
    ) -> Result<(), HotError> {
        let _timer = self.metrics.time("record_events");
        let ttl = self.ttl.session + self.ttl.reconnect_window;
        let mut invocation = self.events.prepare_invoke();
        invocation
            .key(format!("events:{session_id}"))
            .key(format!("session:{session_id}"))
            .key(format!("suspended:{session_id}"))
            .arg(user_id)
            .arg(MAX_EVENTS)
            .arg(ttl.as_secs())
            .arg(self.index_ttl())
            .arg(MAX_EVENT_BYTES);
        for event in events {
            invocation.arg(to_json(event)?);
        }
        let reply: Vec<redis::Value> = invocation.invoke_async(&mut self.redis.clone()).await?;
        match decode_status(&reply)?.0.as_str() {
            "ok" => Ok(()),
            "missing" => Err(HotError::NotFound),
            "forbidden" => Err(HotError::Forbidden),
            other => Err(HotError::Corrupt(format!("events returned {other:?}"))),
        }
    }

    /// The highest stored sequence number and the events after `after` (none when `None`).
    pub async fn events_after(
        &self,
        session_id: &str,
        after: Option<u64>,
    ) -> Result<(u64, Vec<EventRecord>), HotError> {
        let _timer = self.metrics.time("events_after");
        let raw: Vec<String> =
            self.redis.clone().lrange(format!("events:{session_id}"), 0, -1).await?;
        let events: Vec<EventRecord> =
            raw.iter().map(|json| from_json(json)).collect::<Result<_, _>>()?;
        let last = events.iter().map(|e| e.seq).max().unwrap_or_default();
        let replay = match after {
            Some(after) => events.into_iter().filter(|e| e.seq > after).collect(),
            None => Vec::new(),
        };
        Ok((last, replay))
    }

    /// Cuts Blob's answer of the exchange `request_id` to `heard` (only ever shortens).
    pub async fn trim(
        &self,
        session_id: &str,
        user_id: &str,
        request_id: &str,
        heard: &str,
    ) -> Result<u32, HotError> {
        let _timer = self.metrics.time("trim");
        let reply: Vec<redis::Value> = self
            .trim
            .key(format!("session:{session_id}"))
            .key(format!("suspended:{session_id}"))
            .arg(user_id)
            .arg(request_id)
            .arg(heard)
            .arg(self.ttl.conversation.as_secs())
            .arg(self.index_ttl())
            .invoke_async(&mut self.redis.clone())
            .await?;
        match decode_status(&reply)? {
            (status, Some(count)) if status == "ok" => Ok(count),
            (status, _) if status == "missing" || status == "no_turn" => Err(HotError::NotFound),
            (status, _) if status == "forbidden" => Err(HotError::Forbidden),
            (status, _) => Err(HotError::Corrupt(format!("trim returned {status:?}"))),
        }
    }

    /// Announces that a session ended to the sockets watching it.
    pub async fn publish_ended(&self, session_id: &str) -> Result<(), HotError> {
        let _timer = self.metrics.time("publish_ended");
        let payload = r#"{"kind":"ended","epoch":0}"#;
        let _: i64 =
            self.redis.clone().publish(format!("session_signals:{session_id}"), payload).await?;
        Ok(())
    }

    /// Counts active and suspended sessions (a SCAN: for a sampled gauge, not a hot path).
    pub async fn count_states(&self) -> Result<(u64, u64), HotError> {
        let mut redis = self.redis.clone();
        let mut counts = [0u64; 2];
        for (i, pattern) in ["session:*", "suspended:*"].iter().enumerate() {
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut redis)
                    .await?;
                counts[i] += keys.len() as u64;
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok((counts[0], counts[1]))
    }

    /// Answers PING (readiness).
    pub async fn ping(&self) -> Result<(), HotError> {
        let _timer = self.metrics.time("ping");
        let _: String = redis::cmd("PING").query_async(&mut self.redis.clone()).await?;
        Ok(())
    }
}

/// A script's `{status, count?}` reply.
fn decode_status(values: &[redis::Value]) -> Result<(String, Option<u32>), HotError> {
    let status = match values.first() {
        Some(value) => redis::from_redis_value::<String>(value.clone())
            .map_err(|e| HotError::Corrupt(e.to_string()))?,
        None => return Err(HotError::Corrupt("script returned nothing".into())),
    };
    let count = values.get(1).and_then(|v| redis::from_redis_value::<u32>(v.clone()).ok());
    Ok((status, count))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, HotError> {
    serde_json::to_string(value).map_err(|e| HotError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, HotError> {
    // Never the stored text itself in the error (it is logged): it may hold a child's words.
    serde_json::from_str(json)
        .map_err(|e| HotError::Corrupt(format!("{e} in a record of {} bytes", json.len())))
}

/// `text` matched literally in a `SCAN MATCH` pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_record_is_reported_without_its_text() {
        let stored = r#"{"turns":[{"user_text":"my secret is pineapple"}"#;
        let err = from_json::<ConversationRecord>(stored).unwrap_err().to_string();
        assert!(!err.contains("pineapple"), "{err}");
        assert!(err.contains(&format!("{} bytes", stored.len())), "{err}");
    }
}
