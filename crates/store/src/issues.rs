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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SledStore, Store};

    #[test]
    fn a_store_without_the_table_reads_empty_and_keeps_one_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.issues().unwrap(), IssueTable::default());
        let mut table = IssueTable::default();
        table.issues.push(IssueRecord {
            id: "0123456789ab".into(),
            detector: "tool_error_ignored".into(),
            tool: "get_weather".into(),
            error: "HTTP 500".into(),
            first_seen_unix_ns: 1,
            last_seen_unix_ns: 2,
            sessions: vec!["a".into(), "b".into()],
            status: IssueStatus::Recurring,
            resolved_unix_ns: None,
            cases: vec![],
        });
        table.scanned.insert("a".into(), 3);
        store.put_issues(&table).unwrap();
        store.commit().unwrap();
        drop(store);
        let again = SledStore::open(dir.path()).unwrap();
        assert_eq!(again.issues().unwrap(), table);
        assert_eq!(again.issues().unwrap().issues[0].representative(), "a");
    }
}
