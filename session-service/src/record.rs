//! The JSON documents kept in Redis, and their conversion to the gRPC messages.
//!
//! Field names are the same in Redis, gRPC and the REST API (snake_case). Times are
//! [`Timestamp`]s: RFC 3339 UTC strings in Redis (Lua's JSON encoder would round large
//! integers) and Unix milliseconds in gRPC.

use blob_proto::session::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::config::Ttls;
use crate::timestamp::Timestamp;

/// `session:{session_id}` and `suspended:{session_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session's id (a UUID).
    pub session_id: String,
    /// The parent who opened it.
    pub user_id: String,
    /// The child it is for.
    pub child_id: String,
    /// `active` or `suspended` (an ended session is no longer hot).
    pub state: String,
    /// The conversation this session continues.
    pub conversation_id: String,
    /// What kind of session (`conversation`).
    pub mode: String,
    /// Paused by the parent or the app: audio is ignored until resumed.
    #[serde(default)]
    pub paused: bool,
    /// When it was opened.
    pub created_at: Timestamp,
    /// Refreshed on every transition and turn.
    pub last_activity_at: Timestamp,
    /// Voice sockets attached so far.
    #[serde(default)]
    pub connection_count: u32,
}

/// `conversation:{conversation_id}`: the whole conversation so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRecord {
    /// The conversation's id (a UUID).
    pub conversation_id: String,
    /// The parent who owns it; only they may read it.
    #[serde(rename = "_owner_user_id")]
    pub owner_user_id: String,
    /// The child it is with (empty in conversations stored before it was kept).
    #[serde(default)]
    pub child_id: String,
    /// The latest session that carried it.
    #[serde(default)]
    pub session_id: String,
    /// When its first session opened it.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// The latest exchange, or the latest session to take it up.
    #[serde(default)]
    pub last_activity_at: Option<Timestamp>,
    /// Oldest first.
    #[serde(default, deserialize_with = "list_or_empty_object")]
    pub turns: Vec<TurnRecord>,
    /// The child's recent pauses inside turns (milliseconds, oldest first), which the
    /// stt-service's end-of-turn detection adapts to.
    #[serde(
        default,
        deserialize_with = "list_or_empty_object",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub pauses_ms: Vec<u32>,
}

impl ConversationRecord {
    /// A conversation with nothing said yet.
    pub fn empty(conversation_id: &str, owner_user_id: &str) -> Self {
        Self {
            conversation_id: conversation_id.to_owned(),
            owner_user_id: owner_user_id.to_owned(),
            child_id: String::new(),
            session_id: String::new(),
            created_at: None,
            last_activity_at: None,
            turns: Vec::new(),
            pauses_ms: Vec::new(),
        }
    }
}

/// One exchange of a conversation: the child's words and Blob's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnRecord {
    /// The voice turn this exchange came from.
    #[serde(default)]
    pub request_id: String,
    /// What the child said.
    pub user_text: String,
    /// What Blob answered.
    pub assistant_text: String,
    /// When the exchange was made.
    pub timestamp: Timestamp,
    /// Blob was cut off; `assistant_text` is what was said or heard before that.
    #[serde(default)]
    pub interrupted: bool,
}

/// Lua's JSON encoder writes an empty list as `{}`, so both are read as a list.
fn list_or_empty_object<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List<T> {
        List(Vec<T>),
        Empty(serde_json::Map<String, serde_json::Value>),
    }
    match List::deserialize(deserializer)? {
        List::List(items) => Ok(items),
        List::Empty(map) if map.is_empty() => Ok(Vec::new()),
        List::Empty(_) => Err(serde::de::Error::custom("expected a list")),
    }
}

impl SessionRecord {
    /// The gRPC message, with the expiry derived from the state's time to live.
    pub fn to_proto(&self, ttl: &Ttls) -> pb::Session {
        let (state, live_for) = match self.state.as_str() {
            "suspended" => (pb::SessionState::Suspended, ttl.reconnect_window),
            "ended" => (pb::SessionState::Ended, std::time::Duration::ZERO),
            _ => (pb::SessionState::Active, ttl.session),
        };
        let last_activity_at_ms = self.last_activity_at.unix_ms();
        pb::Session {
            session_id: self.session_id.clone(),
            user_id: self.user_id.clone(),
            child_id: self.child_id.clone(),
            state: state.into(),
            conversation_id: self.conversation_id.clone(),
            mode: self.mode.clone(),
            paused: self.paused,
            created_at_ms: self.created_at.unix_ms(),
            last_activity_at_ms,
            expires_at_ms: last_activity_at_ms + live_for.as_millis() as i64,
            ttl_seconds: ttl.session.as_secs() as u32,
            reconnect_window_seconds: ttl.reconnect_window.as_secs() as u32,
            connection_count: self.connection_count,
        }
    }
}

impl TurnRecord {
    /// From the gRPC message.
    pub fn from_proto(turn: &pb::ConversationTurn) -> Self {
        let timestamp = if turn.created_at_ms > 0 {
            Timestamp::from_unix_ms(turn.created_at_ms)
        } else {
            Timestamp::now()
        };
        Self {
            request_id: turn.request_id.clone(),
            user_text: turn.user_text.clone(),
            assistant_text: turn.assistant_text.clone(),
            timestamp,
            interrupted: turn.interrupted,
        }
    }

    /// The gRPC message.
    pub fn to_proto(&self) -> pb::ConversationTurn {
        pb::ConversationTurn {
            request_id: self.request_id.clone(),
            user_text: self.user_text.clone(),
            assistant_text: self.assistant_text.clone(),
            created_at_ms: self.timestamp.unix_ms(),
            interrupted: self.interrupted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_empty_turns_object_reads_as_empty_list() {
        let raw = r#"{"conversation_id":"c","_owner_user_id":"u","turns":{},"pauses_ms":{}}"#;
        let record: ConversationRecord = serde_json::from_str(raw).unwrap();
        assert!(record.turns.is_empty() && record.pauses_ms.is_empty());
        assert_eq!(record.owner_user_id, "u");
        let raw = r#"{"conversation_id":"c","_owner_user_id":"u","pauses_ms":[300,1200]}"#;
        let record: ConversationRecord = serde_json::from_str(raw).unwrap();
        assert_eq!(record.pauses_ms, vec![300, 1200]);
    }

    #[test]
    fn turns_round_trip_through_proto() {
        let turn = pb::ConversationTurn {
            request_id: "r1".into(),
            user_text: "Hi Blob".into(),
            assistant_text: "Hello!".into(),
            created_at_ms: 1_763_788_800_000,
            interrupted: true,
        };
        assert_eq!(TurnRecord::from_proto(&turn).to_proto(), turn);
    }
}
