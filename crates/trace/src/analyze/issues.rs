//! Issues that stay found: each finding reduced to a signature that repeats across runs
//! of the same bug, and the lifecycle of that signature in the store's issues table.
//!
//! A signature is the detector, the tool (by the one naming rule; `llm` for an LLM
//! call) and the error the finding's first step shows (an HTTP status, a transport
//! error, a soft error's field path, a provider error, else the model), with the step
//! numbers, hosts, ports, bodies and the LLM's free text left out, since those differ
//! between runs of one bug. Statuses move as Sentry's issues do:
//!
//! - `new`: seen in one session; `recurring`: seen in another since;
//! - `resolved`: its regression case passed (`tapedeck test`);
//! - `regressed`: seen again after that, in a session recorded later or in a failing run
//!   of its case; a passing case resolves it again.

use serde::Serialize;

use super::read::tool_error;
use super::Finding;
use crate::spans::Parsed;
use crate::tool_names::ToolNames;
use tapedeck_model::exchange::Kind;
use tapedeck_store::{IssueRecord, IssueStatus, IssueTable};

/// What one finding has in common with the same bug in other runs.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signature {
    pub detector: String,
    pub tool: String,
    pub error: String,
}

impl Signature {
    /// Twelve hex digits of the signature's blake3.
    pub fn id(&self) -> String {
        let h =
            blake3::hash(format!("{}\0{}\0{}", self.detector, self.tool, self.error).as_bytes());
        h.to_hex()[..12].to_string()
    }

    /// `tool_error_ignored · get_weather · HTTP 500`.
    pub fn line(&self) -> String {
        format!("{} · {} · {}", self.detector, self.tool, self.error)
    }
}

/// The signature of a finding, read at its first step (`first`, the exchange there).
pub fn signature(first: Option<&Parsed>, tools: &ToolNames, f: &Finding) -> Signature {
    let (tool, error) = match first {
        None => ("-".to_string(), "-".to_string()),
        Some(p) if p.event.kind == Kind::Llm => ("llm".to_string(), llm_error(p)),
        Some(p) => (
            tools.get(p.event.step).unwrap_or("-").to_string(),
            tool_error_kind(p),
        ),
    };
    Signature {
        detector: f.detector.to_string(),
        tool,
        error,
    }
}

fn tool_error_kind(p: &Parsed) -> String {
    match tool_error(p) {
        Some(e) => match e.field {
            Some(field) if e.warning => format!("warning at {field}"),
            Some(field) => format!("soft error at {field}"),
            None => e.why,
        },
        None if p.is_empty_answer() => "empty answer".into(),
        None => "-".into(),
    }
}

fn llm_error(p: &Parsed) -> String {
    let call = p.llm.as_ref();
    if let Some(t) = call.and_then(|c| c.error_type.clone()) {
        return t;
    }
    match p.event.status() {
        Some(s) if s >= 400 => format!("HTTP {s}"),
        None => p
            .event
            .error
            .as_ref()
            .map_or("no response".into(), |e| e.kind.as_str().to_string()),
        _ => call
            .and_then(|c| c.request_model.clone().or(c.response_model.clone()))
            .unwrap_or_else(|| "-".into()),
    }
}

/// Notes that `session` (recorded at `seen_unix_ns`) shows `signatures`; returns the ids
/// of the issues it touched. A session already noted is not counted twice.
pub fn observe(
    table: &mut IssueTable,
    session: &str,
    seen_unix_ns: u64,
    signatures: &[Signature],
) -> Vec<String> {
    let mut touched = Vec::new();
    for sig in signatures {
        let id = sig.id();
        if touched.contains(&id) {
            continue;
        }
        touched.push(id.clone());
        let Some(rec) = table.issues.iter_mut().find(|r| r.id == id) else {
            table.issues.push(IssueRecord {
                id,
                detector: sig.detector.clone(),
                tool: sig.tool.clone(),
                error: sig.error.clone(),
                first_seen_unix_ns: seen_unix_ns,
                last_seen_unix_ns: seen_unix_ns,
                sessions: vec![session.to_string()],
                status: IssueStatus::New,
                resolved_unix_ns: None,
                cases: Vec::new(),
            });
            continue;
        };
        if rec.sessions.iter().any(|s| s == session) {
            continue;
        }
        rec.sessions.push(session.to_string());
        rec.first_seen_unix_ns = rec.first_seen_unix_ns.min(seen_unix_ns);
        rec.last_seen_unix_ns = rec.last_seen_unix_ns.max(seen_unix_ns);
        rec.status = match (rec.status, rec.resolved_unix_ns) {
            (IssueStatus::New, _) => IssueStatus::Recurring,
            (IssueStatus::Resolved, Some(at)) if seen_unix_ns > at => IssueStatus::Regressed,
            (s, _) => s,
        };
    }
    touched
}

/// The regression case `case` was made from these issues.
pub fn link_case(table: &mut IssueTable, ids: &[String], case: &str) {
    for rec in table.issues.iter_mut().filter(|r| ids.contains(&r.id)) {
        if !rec.cases.iter().any(|c| c == case) {
            rec.cases.push(case.to_string());
        }
    }
}

/// A regression case for these issues ran at `now_unix_ns`: passing resolves them;
/// failing because they showed again regresses those that were resolved.
pub fn case_ran(table: &mut IssueTable, ids: &[String], passed: bool, now_unix_ns: u64) {
    for rec in table.issues.iter_mut().filter(|r| ids.contains(&r.id)) {
        if passed {
            rec.status = IssueStatus::Resolved;
            rec.resolved_unix_ns = Some(now_unix_ns);
        } else if rec.status == IssueStatus::Resolved {
            rec.status = IssueStatus::Regressed;
            rec.last_seen_unix_ns = rec.last_seen_unix_ns.max(now_unix_ns);
        }
    }
}

/// The table's issues, the ones to look at first first: regressed, new, recurring,
/// resolved; then the most sessions, then the most recent.
pub fn ranked(table: &IssueTable) -> Vec<&IssueRecord> {
    let rank = |s: IssueStatus| match s {
        IssueStatus::Regressed => 0,
        IssueStatus::New => 1,
        IssueStatus::Recurring => 2,
        IssueStatus::Resolved => 3,
    };
    let mut list: Vec<&IssueRecord> = table.issues.iter().collect();
    list.sort_by(|a, b| {
        rank(a.status)
            .cmp(&rank(b.status))
            .then(b.sessions.len().cmp(&a.sessions.len()))
            .then(b.last_seen_unix_ns.cmp(&a.last_seen_unix_ns))
            .then(a.id.cmp(&b.id))
    });
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(detector: &str, error: &str) -> Signature {
        Signature {
            detector: detector.into(),
            tool: "get_weather".into(),
            error: error.into(),
        }
    }

    fn status(t: &IssueTable, s: &Signature) -> IssueStatus {
        t.issues.iter().find(|r| r.id == s.id()).unwrap().status
    }

    #[test]
    fn an_issue_goes_new_recurring_resolved_regressed_and_resolved_again() {
        let ignored = sig("tool_error_ignored", "HTTP 500");
        let mut t = IssueTable::default();
        observe(&mut t, "run-1", 100, std::slice::from_ref(&ignored));
        assert_eq!(status(&t, &ignored), IssueStatus::New);
        // The same session again counts once.
        observe(&mut t, "run-1", 100, std::slice::from_ref(&ignored));
        assert_eq!(t.issues[0].sessions, vec!["run-1"]);
        observe(&mut t, "run-2", 200, std::slice::from_ref(&ignored));
        assert_eq!(status(&t, &ignored), IssueStatus::Recurring);
        assert_eq!(
            (
                t.issues[0].first_seen_unix_ns,
                t.issues[0].last_seen_unix_ns
            ),
            (100, 200)
        );
        link_case(&mut t, &[ignored.id()], "regressions/weather-500");
        case_ran(&mut t, &[ignored.id()], true, 300);
        assert_eq!(status(&t, &ignored), IssueStatus::Resolved);
        // A session recorded before the fix does not reopen it; one after does.
        observe(&mut t, "run-0", 50, std::slice::from_ref(&ignored));
        assert_eq!(status(&t, &ignored), IssueStatus::Resolved);
        assert_eq!(t.issues[0].sessions.len(), 3);
        observe(&mut t, "run-3", 400, std::slice::from_ref(&ignored));
        assert_eq!(status(&t, &ignored), IssueStatus::Regressed);
        case_ran(&mut t, &[ignored.id()], true, 500);
        assert_eq!(status(&t, &ignored), IssueStatus::Resolved);
        case_ran(&mut t, &[ignored.id()], false, 600);
        assert_eq!(status(&t, &ignored), IssueStatus::Regressed);
        assert_eq!(t.issues[0].cases, vec!["regressions/weather-500"]);
    }

    #[test]
    fn signatures_that_differ_are_separate_issues_and_rank_regressed_first() {
        let a = sig("tool_error_ignored", "HTTP 500");
        let b = sig("tool_error_ignored", "soft error at $.parse_error");
        assert_ne!(a.id(), b.id());
        let mut t = IssueTable::default();
        observe(&mut t, "s1", 1, &[a.clone(), b.clone()]);
        observe(&mut t, "s2", 2, std::slice::from_ref(&b));
        case_ran(&mut t, &[a.id()], true, 3);
        observe(&mut t, "s3", 4, std::slice::from_ref(&a));
        let order: Vec<IssueStatus> = ranked(&t).iter().map(|r| r.status).collect();
        assert_eq!(order, vec![IssueStatus::Regressed, IssueStatus::Recurring]);
    }
}
