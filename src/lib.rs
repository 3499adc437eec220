//! tapedeck: a record/replay HTTP(S) proxy for AI agents.
//!
//! This crate is the binary's library: the command line ([`cli`]), one command per file
//! ([`cmd`]), the daemon's control API ([`control`]), the web [`viewer`], the `-- CMD`
//! child ([`child`]) and opening a SESSION argument ([`recording`]). Everything else is a
//! layer of its own crate, and the data flows one way:
//!
//! - `tapedeck-model`: the event, canonical request and key, rules, redaction;
//! - `tapedeck-store`: the store, tapes, recordings read back;
//! - `tapedeck-proxy`: accept, CONNECT, TLS, HTTP, the CA;
//! - `tapedeck-record`: the upstream client and the recorder;
//! - `tapedeck-replay`: the replayer (no upstream client at all);
//! - `tapedeck-trace`: adapters, causal dependencies, spans, OTLP, analyze, diff, cases.

#![deny(unsafe_code)]

pub mod child;
pub mod cli;
pub mod cmd;
pub mod control;
pub mod memcpy;
pub mod paint;
pub mod recording;
pub mod viewer;
