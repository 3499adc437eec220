//! Replay (see replay/index.rs).
