//! Fault injection: "what if the weather tool had answered 503 at step 2?"
//!
//! A rule is `MATCH=ACTION` (`--inject`, repeatable, or `[[inject]]` in `tapedeck.toml`).
//! MATCH picks exchanges by `step:N`, `tool:NAME`, `host:GLOB` or `kind:KIND`, optionally
//! only the K-th exchange it picks (`tool:get_weather#2`); ACTION says what happens to
//! it instead of (or on top of) the real or recorded answer: `status:CODE`, `body:FILE`,
//! `delay:DURATION`, `cut:BYTES` (the response stream cut after that many bytes), `reset`
//! (the connection dropped without an answer) or `timeout` (no answer at all). Actions
//! combine with commas (`status:500,body:err.json`, `delay:2s,cut:100`).
//!
//! The same rules work in record (chaos in staging) and in replay (a what-if run), and
//! the exchange they change is recorded with [`Injected`], so a trace never passes an
//! injected failure off as the upstream's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::Kind;

#[derive(Debug, Error)]
pub enum InjectError {
    #[error("bad --inject rule {rule:?}: {why} (a rule is MATCH=ACTION: MATCH is step:N, tool:NAME, host:GLOB or kind:llm|tool|other, optionally #K; ACTION is status:CODE, body:FILE, delay:DURATION, cut:BYTES, reset or timeout, several joined by commas)")]
    Syntax { rule: String, why: String },
    #[error("--inject {rule:?}: cannot read the body file {path}: {source}")]
    BodyFile {
        rule: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which exchanges a rule picks.
#[derive(Clone, Debug)]
pub enum Match {
    /// The exchange that gets this step in the run being recorded.
    Step(u64),
    /// A tool call by its tool name (as the trace names it: the function the LLM asked
    /// for, an MCP tool, a `[[tool_name]]` rule, else host and first path segment).
    Tool(String),
    /// A host (glob, lower-case).
    Host(wildmatch::WildMatch),
    Kind(Kind),
}

/// What happens to a picked exchange.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Answer with this status (and [`Action::Body`], or a JSON error body saying it was
    /// injected); the request never reaches the upstream or the recording.
    Status(u16),
    /// Answer with this file's bytes (status 200 unless [`Action::Status`] says otherwise).
    Body(PathBuf),
    /// Wait this long before answering (forward or serve as usual after it).
    Delay(Duration),
    /// Cut the response body after this many bytes (the client sees a reset stream).
    Cut(u64),
    /// Drop the connection without an answer.
    Reset,
    /// Never answer (until the client gives up or tapedeck stops).
    Timeout,
}

/// One `MATCH=ACTION` rule, parsed.
#[derive(Clone, Debug)]
pub struct InjectRule {
    /// The rule as written, which is what an injected event records.
    pub text: String,
    pub matches: Match,
    /// Only the K-th exchange the match picks (1-based), per session.
    pub nth: Option<u64>,
    pub actions: Vec<Action>,
}

/// The mark an injected exchange carries in its event.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Injected {
    /// The rule that changed it, as written (`tool:get_weather=status:503`).
    pub rule: String,
}

impl InjectRule {
    pub fn parse(text: &str) -> Result<InjectRule, InjectError> {
        let err = |why: String| InjectError::Syntax {
            rule: text.to_string(),
            why,
        };
        let (m, a) = text
            .split_once('=')
            .ok_or_else(|| err("no '=' between MATCH and ACTION".into()))?;
        let (m, nth) = match m.trim().rsplit_once('#') {
            Some((m, k)) => {
                let k: u64 = k
                    .trim()
                    .parse()
                    .ok()
                    .filter(|k| *k >= 1)
                    .ok_or_else(|| err(format!("#{k}: K must be a number from 1")))?;
                (m.trim(), Some(k))
            }
            None => (m.trim(), None),
        };
        let (what, value) = m
            .split_once(':')
            .ok_or_else(|| err(format!("MATCH {m:?} has no ':'")))?;
        let value = value.trim();
        if value.is_empty() {
            return Err(err(format!("MATCH {m:?} names nothing")));
        }
        let matches = match what.trim() {
            "step" => Match::Step(
                value
                    .parse()
                    .map_err(|_| err(format!("step:{value}: a step is a number")))?,
            ),
            "tool" => Match::Tool(value.to_string()),
            "host" => Match::Host(wildmatch::WildMatch::new(&value.to_ascii_lowercase())),
            "kind" => Match::Kind(match value.to_ascii_lowercase().as_str() {
                "llm" => Kind::Llm,
                "tool" => Kind::Tool,
                "other" => Kind::Other,
                _ => return Err(err(format!("kind:{value}: a kind is llm, tool or other"))),
            }),
            other => return Err(err(format!("unknown MATCH {other:?}"))),
        };
        let mut actions = Vec::new();
        for part in a.split(',').map(str::trim) {
            actions.push(parse_action(part).map_err(&err)?);
        }
        let answers = actions
            .iter()
            .any(|a| matches!(a, Action::Status(_) | Action::Body(_)));
        let drops = actions
            .iter()
            .filter(|a| matches!(a, Action::Reset | Action::Timeout))
            .count();
        let cuts = actions.iter().any(|a| matches!(a, Action::Cut(_)));
        if drops > 1 || (drops == 1 && (answers || cuts)) {
            return Err(err(
                "reset and timeout give no answer, so they combine only with delay".into(),
            ));
        }
        Ok(InjectRule {
            text: text.trim().to_string(),
            matches,
            nth,
            actions,
        })
    }

    fn picks(&self, q: &Query, tool: &mut impl FnMut() -> Option<String>) -> bool {
        match &self.matches {
            Match::Step(n) => q.step == *n,
            Match::Host(g) => g.matches(&q.host.to_ascii_lowercase()),
            Match::Kind(k) => q.kind == *k,
            Match::Tool(name) => q.kind != Kind::Llm && tool().as_deref() == Some(name.as_str()),
        }
    }
}

fn parse_action(part: &str) -> Result<Action, String> {
    let (what, value) = match part.split_once(':') {
        Some((w, v)) => (w.trim(), Some(v.trim())),
        None => (part, None),
    };
    let need = || {
        value
            .filter(|v| !v.is_empty())
            .ok_or(format!("{what} needs a value ({what}:...)"))
    };
    Ok(match what {
        "status" => {
            let v = need()?;
            Action::Status(
                v.parse()
                    .ok()
                    .filter(|c| (100..=999).contains(c) && !(100..200).contains(c))
                    .ok_or(format!("status:{v}: a status is a number from 200 to 999"))?,
            )
        }
        "body" => Action::Body(PathBuf::from(need()?)),
        "delay" => {
            let v = need()?;
            Action::Delay(
                humantime::parse_duration(v)
                    .map_err(|e| format!("delay:{v}: {e} (e.g. delay:500ms, delay:2s)"))?,
            )
        }
        "cut" => {
            let v = need()?;
            Action::Cut(
                v.parse()
                    .map_err(|_| format!("cut:{v}: BYTES is a number of body bytes"))?,
            )
        }
        "reset" if value.is_none() => Action::Reset,
        "timeout" if value.is_none() => Action::Timeout,
        "" => return Err("an empty ACTION".into()),
        other => return Err(format!("unknown ACTION {other:?}")),
    })
}

/// Names the tool a request calls from its session, method and URL, when something knows
/// (the tool calls the session's LLM answers asked for); `None` leaves it to the rules.
pub type ToolNamer = std::sync::Arc<dyn Fn(&str, &str, &str) -> Option<String> + Send + Sync>;

/// What a rule looks at to decide whether it picks an exchange.
pub struct Query<'a> {
    pub session: &'a str,
    pub step: u64,
    pub kind: Kind,
    pub host: &'a str,
}

/// A decision to change one exchange.
#[derive(Clone, Debug)]
pub struct Injection {
    pub rule: String,
    pub actions: Vec<Action>,
    /// The answer's body when the rule names a file (read when the rules were loaded).
    body: Option<bytes::Bytes>,
}

/// An injected answer: status, content type and body.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: bytes::Bytes,
}

impl Injection {
    pub fn mark(&self) -> Injected {
        Injected {
            rule: self.rule.clone(),
        }
    }

    pub fn delay(&self) -> Option<Duration> {
        self.actions.iter().find_map(|a| match a {
            Action::Delay(d) => Some(*d),
            _ => None,
        })
    }

    pub fn cut(&self) -> Option<u64> {
        self.actions.iter().find_map(|a| match a {
            Action::Cut(n) => Some(*n),
            _ => None,
        })
    }

    /// Whether the rule answers instead of the upstream (or the recording): a status,
    /// a body, a reset or a timeout. A delay or a cut alone changes the real answer.
    pub fn replaces_answer(&self) -> bool {
        self.actions.iter().any(|a| {
            matches!(
                a,
                Action::Status(_) | Action::Body(_) | Action::Reset | Action::Timeout
            )
        })
    }

    pub fn resets(&self) -> bool {
        self.actions.contains(&Action::Reset)
    }

    pub fn times_out(&self) -> bool {
        self.actions.contains(&Action::Timeout)
    }

    /// The answer that replaces the upstream's (or the recording's), if the rule gives one.
    pub fn answer(&self) -> Option<Answer> {
        let status = self.actions.iter().find_map(|a| match a {
            Action::Status(s) => Some(*s),
            _ => None,
        });
        match (&self.body, status) {
            (Some(body), status) => Some(Answer {
                status: status.unwrap_or(200),
                content_type: content_type_of(body),
                body: body.clone(),
            }),
            (None, Some(status)) => {
                let body = serde_json::json!({"error": {
                    "message": format!("tapedeck injected status {status} (--inject {})", self.rule),
                    "type": "tapedeck_injected",
                    "code": status,
                }});
                Some(Answer {
                    status,
                    content_type: "application/json",
                    body: serde_json::to_vec(&body).unwrap_or_default().into(),
                })
            }
            (None, None) => None,
        }
    }

    /// What the event records when the rule gives no answer at all.
    pub fn dropped(&self) -> Option<super::ExchangeError> {
        let kind = if self.resets() {
            super::ErrorKind::Reset
        } else if self.times_out() {
            super::ErrorKind::Timeout
        } else {
            return None;
        };
        let what = if self.resets() {
            "the connection was dropped without an answer"
        } else {
            "no answer was given"
        };
        Some(super::ExchangeError {
            kind,
            message: format!("injected: {what} (--inject {})", self.rule),
        })
    }
}

fn content_type_of(body: &[u8]) -> &'static str {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        "application/json"
    } else if std::str::from_utf8(body).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// The rules in force for a run, with how often each has picked an exchange so far.
#[derive(Debug)]
pub struct Injector {
    rules: Vec<InjectRule>,
    bodies: Vec<Option<bytes::Bytes>>,
    /// (rule, session) → exchanges picked so far, for `#K`.
    picked: Mutex<HashMap<(usize, String), u64>>,
}

impl Injector {
    /// Reads the body files the rules name (relative paths from `dir`); `None` without rules.
    pub fn new(rules: &[InjectRule], dir: &Path) -> Result<Option<Injector>, InjectError> {
        if rules.is_empty() {
            return Ok(None);
        }
        let mut bodies = Vec::with_capacity(rules.len());
        for r in rules {
            let file = r.actions.iter().find_map(|a| match a {
                Action::Body(p) => Some(p),
                _ => None,
            });
            bodies.push(match file {
                Some(p) => {
                    let path = dir.join(p);
                    Some(
                        std::fs::read(&path)
                            .map_err(|source| InjectError::BodyFile {
                                rule: r.text.clone(),
                                path,
                                source,
                            })?
                            .into(),
                    )
                }
                None => None,
            });
        }
        Ok(Some(Injector {
            rules: rules.to_vec(),
            bodies,
            picked: Mutex::new(HashMap::new()),
        }))
    }

    /// Whether any rule picks by tool name (naming a tool costs a lookup).
    pub fn names_tools(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.matches, Match::Tool(_)))
    }

    /// The rules, as written.
    pub fn texts(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.text.as_str()).collect()
    }

    /// Whether a rule changes this exchange; `tool` names the tool (asked only when a
    /// rule picks by tool). Every rule that picks the exchange counts it; the first whose
    /// count is its K (or that has no K) decides.
    pub fn decide(&self, q: &Query, mut tool: impl FnMut() -> Option<String>) -> Option<Injection> {
        let mut name: Option<Option<String>> = None;
        let mut named = || name.get_or_insert_with(&mut tool).clone();
        let mut picked = self.picked.lock().unwrap_or_else(|p| p.into_inner());
        let mut decided = None;
        for (i, r) in self.rules.iter().enumerate() {
            if !r.picks(q, &mut named) {
                continue;
            }
            let n = picked.entry((i, q.session.to_string())).or_insert(0);
            *n += 1;
            if decided.is_none() && r.nth.is_none_or(|k| k == *n) {
                decided = Some(Injection {
                    rule: r.text.clone(),
                    actions: r.actions.clone(),
                    body: self.bodies[i].clone(),
                });
            }
        }
        decided
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(step: u64, kind: Kind, host: &str) -> Query<'static> {
        Query {
            session: "s",
            step,
            kind,
            host: Box::leak(host.to_string().into_boxed_str()),
        }
    }

    #[test]
    fn rules_parse_every_match_and_action() {
        let r = InjectRule::parse("tool:get_weather#2=status:503").unwrap();
        assert!(matches!(r.matches, Match::Tool(ref n) if n == "get_weather"));
        assert_eq!(r.nth, Some(2));
        assert_eq!(r.actions, vec![Action::Status(503)]);
        let r = InjectRule::parse("host:*.weather.test=delay:1500ms,cut:100").unwrap();
        assert_eq!(
            r.actions,
            vec![Action::Delay(Duration::from_millis(1500)), Action::Cut(100)]
        );
        assert!(InjectRule::parse("step:3=reset").is_ok());
        assert!(InjectRule::parse("kind:llm=timeout").is_ok());
        assert!(InjectRule::parse("kind:tool=status:500,body:err.json").is_ok());
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        for (bad, says) in [
            ("tool:get_weather", "no '='"),
            ("step:two=reset", "a step is a number"),
            ("kind:db=reset", "llm, tool or other"),
            ("path:/x=reset", "unknown MATCH"),
            ("tool:x#0=reset", "K must be"),
            ("tool:x=status:abc", "status"),
            ("tool:x=status:101", "status"),
            ("tool:x=delay:soon", "delay:soon"),
            ("tool:x=explode", "unknown ACTION"),
            ("tool:x=reset,status:500", "combine only with delay"),
            ("tool:=reset", "names nothing"),
        ] {
            let e = InjectRule::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_rule_with_k_picks_only_the_kth_match_per_session() {
        let rules = [InjectRule::parse("tool:get_weather#2=status:503").unwrap()];
        let inj = Injector::new(&rules, Path::new(".")).unwrap().unwrap();
        let weather = || Some("get_weather".to_string());
        let d = |step| inj.decide(&q(step, Kind::Tool, "w.test"), weather);
        assert!(d(1).is_none());
        let second = d(2).expect("the second call is picked");
        assert_eq!(second.mark().rule, "tool:get_weather#2=status:503");
        assert!(d(3).is_none());
        // An LLM call is never a tool, whatever the namer says.
        assert!(inj.decide(&q(4, Kind::Llm, "w.test"), weather).is_none());
    }

    #[test]
    fn an_injected_status_answers_with_a_json_error_that_names_the_rule() {
        let rules = [InjectRule::parse("host:API.test=status:503").unwrap()];
        let inj = Injector::new(&rules, Path::new(".")).unwrap().unwrap();
        let i = inj.decide(&q(1, Kind::Other, "api.test"), || None).unwrap();
        let a = i.answer().unwrap();
        assert_eq!((a.status, a.content_type), (503, "application/json"));
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["error"]["type"], "tapedeck_injected");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("host:API.test=status:503"));
        assert!(i.dropped().is_none());
        let r = [InjectRule::parse("step:1=reset").unwrap()];
        let inj = Injector::new(&r, Path::new(".")).unwrap().unwrap();
        let i = inj.decide(&q(1, Kind::Tool, "x"), || None).unwrap();
        assert!(i.answer().is_none());
        assert_eq!(i.dropped().unwrap().kind, super::super::ErrorKind::Reset);
    }

    #[test]
    fn a_body_file_is_read_when_the_rules_load_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("err.json"), br#"{"error":"boom"}"#).unwrap();
        let rules = [InjectRule::parse("kind:tool=status:500,body:err.json").unwrap()];
        let inj = Injector::new(&rules, dir.path()).unwrap().unwrap();
        let a = inj
            .decide(&q(1, Kind::Tool, "x"), || None)
            .unwrap()
            .answer()
            .unwrap();
        assert_eq!(a.status, 500);
        assert_eq!(&a.body[..], br#"{"error":"boom"}"#);
        let rules = [InjectRule::parse("kind:tool=body:missing.json").unwrap()];
        let e = Injector::new(&rules, dir.path()).unwrap_err().to_string();
        assert!(e.contains("missing.json"), "{e}");
    }
}
