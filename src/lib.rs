//! tapedeck: a record/replay HTTP(S) proxy for AI agents.
//!
//! The data flows one way: [`proxy`] (accept, CONNECT, TLS, HTTP) hands each exchange
//! to [`record`] or [`replay`]; an [`exchange`] is one request/response with its kind
//! and key; record writes events to the [`store`]; [`tape`] is the portable form of a
//! session. [`viewer`] shows sessions as web pages. Commands live in [`cmd`], one per
//! file; `main.rs` only parses arguments.

pub mod analyze;
pub mod ca;
pub mod case;
pub mod child;
pub mod cli;
pub mod cmd;
pub mod control;
pub mod diff;
pub mod exchange;
pub mod proxy;
pub mod record;
pub mod recording;
pub mod replay;
pub mod rules;
pub mod secure_fs;
pub mod session;
pub mod shutdown;
pub mod store;
pub mod tape;
pub mod trace;
pub mod trust;
pub mod viewer;
