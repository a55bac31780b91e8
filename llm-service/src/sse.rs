//! Server-sent events decoding that does not care where the network splits the bytes.

/// Accumulates bytes and yields the `data` of each complete event.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
}

/// Longest event we accept before treating the stream as broken.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// The stream sent something that is not server-sent events.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    /// One event grew past [`MAX_EVENT_BYTES`].
    #[error("server-sent event larger than {MAX_EVENT_BYTES} bytes")]
    TooLarge,
    /// An event's data was not UTF-8.
    #[error("server-sent event is not UTF-8")]
    NotUtf8,
}

impl SseDecoder {
    /// Adds bytes and returns the data of every event they complete (possibly none).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, SseError> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some((end, separator)) = find_event_end(&self.buffer) {
            let block: Vec<u8> = self.buffer.drain(..end + separator).take(end).collect();
            let block = String::from_utf8(block).map_err(|_| SseError::NotUtf8)?;
            if let Some(data) = event_data(&block) {
                events.push(data);
            }
        }
        if self.buffer.len() > MAX_EVENT_BYTES {
            return Err(SseError::TooLarge);
        }
        Ok(events)
    }

    /// The data of a last event that ended without a blank line, when the stream closes.
    pub fn finish(&mut self) -> Option<String> {
        let rest = String::from_utf8(std::mem::take(&mut self.buffer)).ok()?;
        event_data(&rest)
    }
}

/// Position and length of the first blank-line separator (`\n\n`, `\r\n\r\n` or `\r\r`).
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buffer.len() {
        for separator in [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"] {
            if buffer[i..].starts_with(separator) {
                return Some((i, separator.len()));
            }
        }
        i += 1;
    }
    None
}

/// Joins the `data:` lines of one event; `None` for an event without data (comments, ids).
fn event_data(block: &str) -> Option<String> {
    let mut data: Option<String> = None;
    for line in block.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match data.as_mut() {
                Some(existing) => {
                    existing.push('\n');
                    existing.push_str(value);
                }
                None => data = Some(value.to_owned()),
            }
        }
    }
    data
}

/// What a provider makes of one event's data.
pub(crate) enum Step {
    /// Send these pieces (possibly none) and read on.
    Continue(Vec<Result<String, crate::provider::ProviderError>>),
    /// Send these pieces, then stop: the reply is complete or failed.
    Stop(Vec<Result<String, crate::provider::ProviderError>>),
}

/// Streams a reply from a server-sent-events HTTP body: each event's data goes to `on_event`,
/// whose pieces go to `tx`. Waiting for the provider it also watches the caller: when the caller
/// has gone it returns, and dropping the body closes the provider's connection, which stops
/// generation there too.
pub(crate) async fn relay<S, F>(
    mut bytes: S,
    tx: tokio::sync::mpsc::Sender<Result<String, crate::provider::ProviderError>>,
    mut on_event: F,
) where
    S: futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    F: FnMut(&str) -> Step,
{
    use crate::provider::ProviderError;
    use futures::StreamExt as _;
    let mut decoder = SseDecoder::default();
    loop {
        let next = tokio::select! {
            next = bytes.next() => next,
            () = tx.closed() => return,
        };
        let (events, finished) = match next {
            Some(Ok(chunk)) => (decoder.push(&chunk), false),
            Some(Err(err)) => {
                let _ = tx.send(Err(err.into())).await;
                return;
            }
            None => (Ok(decoder.finish().into_iter().collect()), true),
        };
        let events = match events {
            Ok(events) => events,
            Err(err) => {
                let _ = tx.send(Err(ProviderError::Rejected(err.to_string()))).await;
                return;
            }
        };
        for data in events {
            let (pieces, stop) = match on_event(&data) {
                Step::Continue(pieces) => (pieces, false),
                Step::Stop(pieces) => (pieces, true),
            };
            for piece in pieces {
                if tx.send(piece).await.is_err() {
                    return;
                }
            }
            if stop {
                return;
            }
        }
        if finished {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_any_split() {
        let stream =
            b": comment\n\ndata: {\"a\":1}\r\n\r\ndata: line1\ndata: line2\n\ndata: {\"b\":2}\n\n";
        let expected = vec!["{\"a\":1}", "line1\nline2", "{\"b\":2}"];
        for split in 1..stream.len() {
            let mut decoder = SseDecoder::default();
            let mut events = decoder.push(&stream[..split]).unwrap();
            events.extend(decoder.push(&stream[split..]).unwrap());
            assert_eq!(events, expected, "split at {split}");
        }
        let mut byte_by_byte = SseDecoder::default();
        let events: Vec<String> =
            stream.iter().flat_map(|b| byte_by_byte.push(&[*b]).unwrap()).collect();
        assert_eq!(events, expected);
    }

    #[test]
    fn unterminated_last_event_is_kept() {
        let mut decoder = SseDecoder::default();
        assert!(decoder.push(b"data: tail").unwrap().is_empty());
        assert_eq!(decoder.finish().as_deref(), Some("tail"));
    }

    #[test]
    fn runaway_event_is_an_error() {
        let mut decoder = SseDecoder::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert!(matches!(decoder.push(&big), Err(SseError::TooLarge)));
    }
}
