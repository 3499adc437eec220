//! The event model every other part of tapedeck shares: an [`exchange`] (one recorded
//! request/response, its canonical form and key, its kind, its redaction), the matching
//! and redaction [`rules`], the [`credential`] names read by what they say, [`session`] names, and [`secure_fs`] for the private files
//! recordings live in. It knows no sockets, no store and no traces.

#![forbid(unsafe_code)]

pub mod credential;
pub mod exchange;
pub mod rules;
pub mod secure_fs;
pub mod session;
