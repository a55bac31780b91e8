//! Session signals across instances: one Redis pattern subscription (`session_signals:*`) per
//! session-service process, fanned out to every `WatchSession` stream of that session.
//!
//! A signal published while the subscription is reconnecting is missed; the sockets that care
//! (pause state, takeover) also find the truth in the session record on their next call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blob_proto::session::v1 as pb;
use futures::StreamExt as _;
use tokio::sync::broadcast;

/// Signals buffered per watcher before a slow one starts missing them.
const PER_WATCHER: usize = 16;
const CHANNEL_PREFIX: &str = "session_signals:";

/// The fan-out registry. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Signals {
    watchers: Mutex<HashMap<String, broadcast::Sender<pb::SessionSignal>>>,
}

impl Signals {
    /// Subscribes to Redis, waits until the subscription is in place, and keeps it alive
    /// (reconnecting with backoff) for the life of the process.
    pub async fn start(client: redis::Client) -> anyhow::Result<Arc<Self>> {
        let signals = Arc::new(Self::default());
        let first = subscribe(&client).await?;
        let registry = Arc::clone(&signals);
        tokio::spawn(async move {
            let mut pubsub = first;
            loop {
                {
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        registry.dispatch(&message);
                    }
                }
                tracing::warn!("session signal subscription lost; reconnecting");
                let mut delay = Duration::from_millis(100);
                pubsub = loop {
                    tokio::time::sleep(delay).await;
                    match subscribe(&client).await {
                        Ok(pubsub) => break pubsub,
                        Err(err) => {
                            tracing::warn!(error = %err, "session signal subscription failed");
                            delay = (delay * 2).min(Duration::from_secs(5));
                        }
                    }
                };
                tracing::info!("session signal subscription restored");
            }
        });
        Ok(signals)
    }

    /// A receiver of the signals of one session.
    pub fn watch(&self, session_id: &str) -> broadcast::Receiver<pb::SessionSignal> {
        let mut watchers = self.watchers.lock().expect("signal registry poisoned");
        watchers.retain(|_, sender| sender.receiver_count() > 0);
        watchers
            .entry(session_id.to_owned())
            .or_insert_with(|| broadcast::channel(PER_WATCHER).0)
            .subscribe()
    }

    fn dispatch(&self, message: &redis::Msg) {
        let Some(session_id) = message.get_channel_name().strip_prefix(CHANNEL_PREFIX) else {
            return;
        };
        let Ok(payload) = message.get_payload::<String>() else {
            return;
        };
        let Some(signal) = parse(&payload) else {
            tracing::warn!(%payload, "unreadable session signal");
            return;
        };
        let watchers = self.watchers.lock().expect("signal registry poisoned");
        if let Some(sender) = watchers.get(session_id) {
            let _ = sender.send(signal);
        }
    }
}

async fn subscribe(client: &redis::Client) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe(format!("{CHANNEL_PREFIX}*")).await?;
    Ok(pubsub)
}

/// Reads `{"kind": "paused"|"resumed"|"attached"|"ended", "epoch": n}`.
fn parse(payload: &str) -> Option<pb::SessionSignal> {
    #[derive(serde::Deserialize)]
    struct Raw {
        kind: String,
        #[serde(default)]
        epoch: u32,
    }
    let raw: Raw = serde_json::from_str(payload).ok()?;
    let kind = match raw.kind.as_str() {
        "paused" => pb::SignalKind::Paused,
        "resumed" => pb::SignalKind::Resumed,
        "attached" => pb::SignalKind::Attached,
        "ended" => pb::SignalKind::Ended,
        _ => return None,
    };
    Some(pb::SessionSignal { kind: kind.into(), epoch: raw.epoch })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse() {
        let signal = parse(r#"{"kind":"attached","epoch":3}"#).unwrap();
        assert_eq!((signal.kind, signal.epoch), (pb::SignalKind::Attached as i32, 3));
        assert!(parse(r#"{"kind":"exploded"}"#).is_none());
        assert!(parse("nope").is_none());
    }
}
