//! Where the viewer's sessions come from, and what it keeps of them between requests.
//!
//! A session is read once into a [`Loaded`]: its events, the span tree, the findings,
//! the walk-back links and the run page's JSON, built together from one parse of the
//! bodies. It is rebuilt when the session grows (a daemon recording into it). Bodies stay
//! where they are (store or tape) and are read one step at a time when a page asks.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::Serialize;

use super::{api, blocking, links, ViewerError};
use crate::recording::Recording;
use tapedeck_model::exchange::SessionInfo;
use tapedeck_model::rules::Rules;
use tapedeck_store::Store;
use tapedeck_trace::analyze::cluster::{signature, Signature};
use tapedeck_trace::analyze::{examine_parsed, Finding, Severity};
use tapedeck_trace::causal::Graph;
use tapedeck_trace::diff::{align, Pair};
use tapedeck_trace::spans::{build_from, parse_events, tool_graph, Trace, TraceOptions};

/// Built sessions are kept, least recently used first out, while their events add up to
/// at most this many (the one built last is always kept); summaries are kept for all.
const LOADED_EVENTS: usize = 100_000;
/// Diff alignments kept at once.
const DIFFS: usize = 4;

pub enum Source {
    /// A store this process holds.
    Store(Arc<dyn Store>),
    /// One session of a store this process holds: a replay daemon shows only its own.
    Session(Arc<dyn Store>, String),
    /// Tape files, read into memory.
    Tapes(Vec<Arc<Recording>>),
}

/// What makes a built session stale: it gained events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    events: u64,
    last_unix_ns: u64,
}

impl Version {
    fn of(info: &SessionInfo) -> Version {
        Version {
            events: info.events,
            last_unix_ns: info.last_unix_ns,
        }
    }
}

/// One line of the Sessions page.
#[derive(Serialize, Clone, Debug)]
pub struct Summary {
    pub name: String,
    pub agents: Vec<String>,
    pub events: usize,
    pub started_unix_ns: u64,
    pub duration_ms: f64,
    pub llm_calls: usize,
    pub tool_calls: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub errors: usize,
    pub findings: usize,
    /// The most severe finding's severity.
    pub severity: Option<Severity>,
    pub signature: Option<Signature>,
    /// The session this one was forked from (a what-if replay or a rerun); the page
    /// shows the column once any session has one.
    pub parent: Option<String>,
}

/// A session read and built for the pages.
pub struct Loaded {
    version: Version,
    pub rec: Arc<Recording>,
    pub trace: Trace,
    pub findings: Vec<Finding>,
    /// The session's dependencies, as replay reads them.
    pub graph: Graph,
    /// For each step, the earlier steps whose output flowed into it.
    pub inputs: BTreeMap<u64, Vec<u64>>,
    pub summary: Summary,
    /// The run page's JSON, serialised once.
    pub run_json: Bytes,
}

impl Loaded {
    /// The first wall-clock time of the run; page times are milliseconds from it.
    pub fn t0(&self) -> u64 {
        self.trace.spans.first().map_or(0, |s| s.start_ns)
    }
}

/// Two sessions aligned step by step.
pub struct Aligned {
    pub a: Arc<Loaded>,
    pub b: Arc<Loaded>,
    pub pairs: Vec<Pair>,
}

pub struct Sessions {
    source: Source,
    rules: Arc<Rules>,
    loaded: Mutex<lru::LruCache<String, Arc<Loaded>>>,
    summaries: Mutex<HashMap<String, (Version, Summary)>>,
    /// One build at a time per session, so two pages asking do not build it twice.
    building: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    diffs: Mutex<lru::LruCache<(String, String), Arc<Aligned>>>,
    summarising: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

impl Sessions {
    pub fn new(source: Source, rules: Arc<Rules>) -> Sessions {
        Sessions {
            source,
            rules,
            loaded: Mutex::new(lru::LruCache::unbounded()),
            summaries: Mutex::new(HashMap::new()),
            building: Mutex::new(HashMap::new()),
            diffs: Mutex::new(lru::LruCache::new(cap(DIFFS))),
            summarising: AtomicBool::new(false),
        }
    }

    /// Every session, oldest first.
    pub async fn list(&self) -> Result<Vec<SessionInfo>, ViewerError> {
        let mut list = match &self.source {
            Source::Store(store) => {
                let store = store.clone();
                blocking("the session list", move || store.sessions()).await??
            }
            Source::Session(store, name) => {
                let (store, name) = (store.clone(), name.clone());
                blocking("the session list", move || store.session(&name))
                    .await??
                    .into_iter()
                    .collect()
            }
            Source::Tapes(tapes) => tapes.iter().map(|t| tape_info(t)).collect(),
        };
        list.sort_by(|a, b| {
            a.first_unix_ns
                .cmp(&b.first_unix_ns)
                .then(a.name.cmp(&b.name))
        });
        Ok(list)
    }

    /// Refuses a session outside the one a [`Source::Session`] shows.
    fn shows(&self, name: &str) -> Result<(), ViewerError> {
        match &self.source {
            Source::Session(_, only) if only != name => {
                Err(ViewerError::OtherSession(only.clone()))
            }
            _ => Ok(()),
        }
    }

    async fn info(&self, name: &str) -> Result<SessionInfo, ViewerError> {
        self.shows(name)?;
        let found = match &self.source {
            Source::Store(store) | Source::Session(store, _) => store.session(name)?,
            _ => self.list().await?.into_iter().find(|s| s.name == name),
        };
        found.ok_or_else(|| ViewerError::NoSession(name.to_string()))
    }

    /// The summary built for this version of a session, if there is one.
    pub fn summary(&self, info: &SessionInfo) -> Option<Summary> {
        lock(&self.summaries)
            .get(&info.name)
            .filter(|(v, _)| *v == Version::of(info))
            .map(|(_, s)| s.clone())
    }

    /// The session, built (from the cache when it has not changed).
    pub async fn get(&self, name: &str) -> Result<Arc<Loaded>, ViewerError> {
        let info = self.info(name).await?;
        let version = Version::of(&info);
        if let Some(l) = self.cached(name, version) {
            return Ok(l);
        }
        let gate = lock(&self.building)
            .entry(name.to_string())
            .or_default()
            .clone();
        let _one = gate.lock().await;
        if let Some(l) = self.cached(name, version) {
            return Ok(l);
        }
        let started = std::time::Instant::now();
        let rec = self.read(name).await?;
        let rules = self.rules.clone();
        let session = name.to_string();
        let parent = info.lineage.as_ref().map(|l| l.parent.clone());
        let loaded = blocking(session, move || build(rec, version, &rules, parent)).await?;
        tracing::debug!(
            "viewer: read session {name} ({} events) in {} ms",
            info.events,
            started.elapsed().as_millis()
        );
        let loaded = Arc::new(loaded);
        lock(&self.summaries).insert(name.to_string(), (version, loaded.summary.clone()));
        let mut kept = lock(&self.loaded);
        kept.put(name.to_string(), loaded.clone());
        while kept.len() > 1
            && kept.iter().map(|(_, l)| l.rec.events.len()).sum::<usize>() > LOADED_EVENTS
        {
            kept.pop_lru();
        }
        drop(kept);
        Ok(loaded)
    }

    fn cached(&self, name: &str, version: Version) -> Option<Arc<Loaded>> {
        lock(&self.loaded)
            .get(name)
            .filter(|l| l.version == version)
            .cloned()
    }

    async fn read(&self, name: &str) -> Result<Arc<Recording>, ViewerError> {
        self.shows(name)?;
        match &self.source {
            Source::Store(store) | Source::Session(store, _) => {
                let store = store.clone();
                let session = name.to_string();
                let rec = blocking(name, move || Recording::from_store(store, &session)).await??;
                Ok(Arc::new(rec))
            }
            Source::Tapes(tapes) => {
                let t = tapes
                    .iter()
                    .find(|t| t.session == name)
                    .ok_or_else(|| ViewerError::NoSession(name.to_string()))?;
                Ok(t.clone())
            }
        }
    }

    /// Builds, one after another in the background, every session whose summary the
    /// Sessions page lacks (at most one such task at a time).
    pub fn summarise_missing(self: &Arc<Self>, missing: Vec<String>) {
        if missing.is_empty() || self.summarising.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            for name in missing {
                if let Err(e) = this.get(&name).await {
                    tracing::warn!("viewer: cannot summarise session {name}: {e}");
                }
            }
            this.summarising.store(false, Ordering::Release);
        });
    }

    /// Summarises every session, so the first page load finds them ready.
    pub async fn warm_up(self: &Arc<Self>) {
        match self.list().await {
            Ok(list) => {
                let missing = list
                    .iter()
                    .filter(|i| self.summary(i).is_none())
                    .map(|i| i.name.clone())
                    .collect();
                self.summarise_missing(missing);
            }
            Err(e) => tracing::warn!("viewer: cannot list sessions: {e}"),
        }
    }

    /// Sessions A and B aligned as `tapedeck diff` aligns them.
    pub async fn aligned(&self, a: &str, b: &str) -> Result<Arc<Aligned>, ViewerError> {
        let la = self.get(a).await?;
        let lb = self.get(b).await?;
        let key = (a.to_string(), b.to_string());
        if let Some(d) = lock(&self.diffs).get(&key) {
            if Arc::ptr_eq(&d.a, &la) && Arc::ptr_eq(&d.b, &lb) {
                return Ok(d.clone());
            }
        }
        let rules = self.rules.clone();
        let (ra, rb) = (la.rec.clone(), lb.rec.clone());
        let pairs = blocking(format!("{a} vs {b}"), move || align(&ra, &rb, &rules)).await?;
        let d = Arc::new(Aligned {
            a: la,
            b: lb,
            pairs,
        });
        lock(&self.diffs).put(key, d.clone());
        Ok(d)
    }
}

fn tape_info(rec: &Recording) -> SessionInfo {
    SessionInfo {
        name: rec.session.clone(),
        events: rec.events.len() as u64,
        first_unix_ns: rec
            .events
            .iter()
            .map(|e| e.timing.start_unix_ns)
            .min()
            .unwrap_or(0),
        last_unix_ns: rec
            .events
            .iter()
            .map(|e| e.timing.end_unix_ns)
            .max()
            .unwrap_or(0),
        bytes: rec
            .events
            .iter()
            .map(|e| e.request.body.len + e.response.as_ref().map_or(0, |r| r.body.len))
            .sum(),
        lineage: None,
    }
}

/// Parses the bodies once and builds everything the pages show of a session.
fn build(rec: Arc<Recording>, version: Version, rules: &Rules, parent: Option<String>) -> Loaded {
    let parsed = parse_events(&rec);
    // The tree, the findings and the dependencies read the same parse and nothing else:
    // build them at once.
    let (trace, examined, graph) = std::thread::scope(|s| {
        let findings = s.spawn(|| examine_parsed(&parsed, rules));
        let graph = s.spawn(|| tool_graph(&parsed));
        let trace = build_from(&rec.session, &parsed, rules, &TraceOptions::default());
        match (findings.join(), graph.join()) {
            (Ok(f), Ok(g)) => (trace, f, g),
            (Err(panic), _) | (_, Err(panic)) => std::panic::resume_unwind(panic),
        }
    });
    drop(parsed);
    let findings = &examined.findings;
    let inputs = links::inputs(&rec.events, &graph);
    let totals = trace.totals();
    let mut agents: Vec<String> = rec.events.iter().filter_map(|e| e.agent.clone()).collect();
    agents.sort();
    agents.dedup();
    let summary = Summary {
        name: rec.session.clone(),
        agents,
        events: rec.events.len(),
        started_unix_ns: trace.spans.first().map_or(0, |s| s.start_ns),
        duration_ms: totals.duration_ms,
        llm_calls: totals.llm_calls,
        tool_calls: totals.tool_calls,
        input_tokens: totals.input_tokens,
        output_tokens: totals.output_tokens,
        errors: totals.errors,
        findings: findings.len(),
        severity: findings.iter().map(|f| f.severity).max(),
        signature: signature(&rec.events, &examined),
        parent,
    };
    let run_json = api::run_json(&rec, &trace, findings, &inputs);
    Loaded {
        version,
        rec,
        trace,
        findings: examined.findings,
        graph,
        inputs,
        summary,
        run_json,
    }
}
