//! Hot state in Redis, in the seed key schema:
//!
//! | key | value | time to live |
//! |---|---|---|
//! | `session:{session_id}` | [`SessionRecord`], state `active` | `SESSION_TTL_SECONDS` |
//! | `suspended:{session_id}` | [`SessionRecord`], state `suspended` | `SESSION_RECONNECT_WINDOW_SECONDS` |
//! | `child_session:{child_id}` | the child's current session id | follows its session |
//! | `conversation:{conversation_id}` | [`ConversationRecord`] | `CONVERSATION_TTL_SECONDS` |
//! | `rl:{user_id}` | requests counted in the current rate-limit window | the window |
//! | `idempotency:{key}` | a claim, then the first response to that key | claim, then `IDEMPOTENCY_TTL_SECONDS` |
//! | `events:{session_id}` | the socket's last [`MAX_EVENTS`] outbound events, for replay | session TTL + reconnect window |
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
            open: Script::new(include_str!("lua/open.lua")),
            transition: Script::new(include_str!("lua/transition.lua")),
            append: Script::new(include_str!("lua/append.lua")),
            events: Script::new(include_str!("lua/events.lua")),
            trim: Script::new(include_str!("lua/trim.lua")),
            end: Script::new(include_str!("lua/end.lua")),
            throttle: Script::new(include_str!("lua/throttle.lua")),
            idempotency: Script::new(include_str!("lua/idempotency.lua")),
            idempotency_done: Script::new(include_str!("lua/idempotency_done.lua")),
        }
    }

    /// The time-to-live settings.
    pub fn ttl(&self) -> &Ttls {
        &self.ttl
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
            .invoke_async(&mut self.redis.clone())
            .await?;
        let (outcome, json) = match reply.as_slice() {
            [status] if status == "no_conversation" => return Err(HotError::NoConversation),
            [status] if status == "other_child" => return Err(HotError::OtherChild),
            [outcome, json] => (outcome, json),
            other => return Err(HotError::Corrupt(format!("open returned {other:?}"))),
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
            .invoke_async(&mut self.redis.clone())
            .await?;
        match reply.as_slice() {
            [status] if status == "missing" => Err(HotError::NotFound),
            [status] if status == "forbidden" => Err(HotError::Forbidden),
            [status, _] if status == "stale" => Err(HotError::Stale),
            [before, json] => Ok((before == "suspended", from_json(json)?)),
            other => Err(HotError::Corrupt(format!("transition returned {other:?}"))),
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
    ) -> Result<(u64, u32), HotError> {
        let _timer = self.metrics.time("throttle");
        let (count, ttl): (u64, i64) = self
            .throttle
            .key(format!("rl:{user_id}"))
            .arg(window_seconds)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok((count, ttl.max(1) as u32))
    }

    /// Claims `idempotency:{key}` for the request with `fingerprint`, or reads its first use.
    pub async fn begin_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        claim_seconds: u32,
    ) -> Result<Idempotency, HotError> {
        let _timer = self.metrics.time("idempotency");
        let values: Vec<redis::Value> = self
            .idempotency
            .key(format!("idempotency:{key}"))
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
            .key(format!("idempotency:{key}"))
            .arg(fingerprint)
            .arg(action)
            .arg(status)
            .arg(body)
            .arg(ttl_seconds)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(done == 1)
    }

    /// Deletes conversation snapshots; returns how many existed.
    pub async fn delete_conversations(&self, conversation_ids: &[String]) -> Result<u32, HotError> {
        if conversation_ids.is_empty() {
            return Ok(0);
        }
        let _timer = self.metrics.time("delete_conversations");
        let keys: Vec<String> =
            conversation_ids.iter().map(|id| format!("conversation:{id}")).collect();
        Ok(self.redis.clone().del(keys).await?)
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
            .arg(ttl.as_secs());
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
    serde_json::from_str(json).map_err(|e| HotError::Corrupt(format!("{e}: {json}")))
}
