//! The voice WebSocket (`/ws/voice`): binary v4 audio frames in, JSON events out. The wire
//! protocol is typed in `blob-voice-protocol`; here:
//!
//! - [`socket`]: the upgrade and admission ([`admission`]);
//! - [`connection`]: the socket loop, generic over the socket and the services
//!   ([`downstream`]), handing each input to the part that owns its state:
//!   [`audio`] (frames → the speech stream), [`conversation`] (turns, replies, barge-in, pause),
//!   [`persist`] (the session-service writes, off the loop);
//! - [`outbox`]: the numbered, bounded, recorded outbound queue; [`turn`]: one reply task;
//!   [`limits`]: the rate limit and heartbeat; [`capacity`]: the socket caps; [`messages`]:
//!   stamping `meta`.

pub mod admission;
pub mod audio;
pub mod capacity;
pub mod connection;
pub mod conversation;
pub mod downstream;
pub mod limits;
pub mod messages;
pub mod outbox;
pub mod persist;
pub mod socket;
pub mod turn;
