//! The issues table: failure signatures seen across a store's sessions, with their
//! lifecycle. One small JSON document in a tree of its own (`issues`), so stores
//! written before it read as before (an empty table), and a store written with it is
//! still read by an older tapedeck (which ignores the tree).
//!
//! The store keeps the table; what a signature is and how a status moves is
//! `analyze::issues`'s business.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where an issue stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum IssueStatus {
    /// Seen in one session so far.
    New,
    /// Seen in more than one session, never resolved.
    Recurring,
    /// Its regression case passes.
    Resolved,
    /// Seen again (in a session recorded after it was resolved, or its case failed again).
    Regressed,
}

impl IssueStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueStatus::New => "new",
            IssueStatus::Recurring => "recurring",
            IssueStatus::Resolved => "resolved",
            IssueStatus::Regressed => "regressed",
        }
    }
}

/// One failure signature and its history.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IssueRecord {
    /// Short blake3 of the signature.
    pub id: String,
    pub detector: String,
    pub tool: String,
    /// The error the signature shows (status, transport error, soft-error field, ...).
    pub error: String,
    /// Wall clock (ns) of the first and last sessions that showed it.
    pub first_seen_unix_ns: u64,
    pub last_seen_unix_ns: u64,
    /// The sessions that showed it (its count), the first one first.
    pub sessions: Vec<String>,
    pub status: IssueStatus,
    /// When its regression case last passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_unix_ns: Option<u64>,
    /// The regression cases made from it (`gen-test` output directories).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cases: Vec<String>,
}

impl IssueRecord {
    /// The session to look at first: the first that showed it.
    pub fn representative(&self) -> &str {
        self.sessions.first().map(String::as_str).unwrap_or("")
    }
}

/// The whole table, and which sessions it has read (with their event count then, so a
/// session that grew is read again).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct IssueTable {
    pub issues: Vec<IssueRecord>,
    #[serde(default)]
    pub scanned: BTreeMap<String, u64>,
}
