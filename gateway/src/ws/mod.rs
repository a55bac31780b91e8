//! The voice WebSocket (`/ws/voice`): binary v4 audio frames in, JSON events out.

pub mod admission;
pub mod frame;
pub mod limits;
pub mod messages;
pub mod outbox;
pub mod turn;
pub mod voice;
