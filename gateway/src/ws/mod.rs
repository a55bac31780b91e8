//! The voice WebSocket (`/ws/voice`): binary v4 audio frames in, JSON events out.

pub mod frame;
pub mod messages;
pub mod voice;
