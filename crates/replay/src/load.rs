//! Reading a recording into what replay matches by, in one pass over its events (a
//! session of the store is read back event by event, never whole): each event's slot
//! (kind, key, route, stateful lane), the causal graph, the loopback ports the recording
//! called, and, for events recorded under other rules, what their redactions show.

use std::collections::BTreeSet;

use tapedeck_model::exchange::canonical::UrlParts;
use tapedeck_model::exchange::{Event, Kind};
use tapedeck_model::rules::{PathSecret, Rules};
use tapedeck_store::recording::Recording;
use tapedeck_store::StoreError;
use tapedeck_trace::causal::{self, Graph};

use crate::index::{self, Slot};
use crate::{is_loopback_host, miss, route, Order};

/// What the pass gives.
pub(crate) struct Loaded {
    pub slots: Vec<Slot>,
    pub graph: Graph,
    /// The ports of the loopback hosts the recording called.
    pub loopback_ports: Vec<u16>,
    /// Events were recorded under other matching or redaction rules than these.
    pub other_rules: bool,
    /// Then: the rules those events' redactions show (their redacted paths, 256 at most,
    /// and query names), so a miss masks the live URL it prints by them.
    pub miss_mask: Option<Rules>,
}

/// Reads every event of `rec` once. Keys are recomputed from the stored requests when
/// the rules in force differ from those the recording was made under, and always for a
/// tape (its requests may have been edited by hand).
pub(crate) fn load(rec: &Recording, rules: &Rules, order: Order) -> Result<Loaded, StoreError> {
    let trusted = rec.keys_trusted();
    let keyed = match trusted {
        true => None,
        false => rec.identify_all(rules).transpose()?,
    };
    let mut pass = Pass {
        rules,
        fp: rules.match_fingerprint(),
        trusted,
        keyed,
        slots: Vec::with_capacity(rec.len()),
        lanes: Vec::new(),
        loopback_ports: BTreeSet::new(),
        // Dependencies are read from the bodies once, here: causal order enforces them,
        // and a strict miss says whether they would have allowed the call.
        graph: matches!(order, Order::Causal | Order::Strict)
            .then(|| causal::load::GraphLoader::new(rec.len(), rec.has_llm_calls())),
        other_rules: false,
        redacted_query: BTreeSet::new(),
        redacted_paths: BTreeSet::new(),
    };
    rec.for_each_event(&mut |i, ev| pass.push(rec, i, ev))?;
    Ok(pass.finish())
}

struct Pass<'a> {
    rules: &'a Rules,
    /// The fingerprint of `rules`' matching and redaction.
    fp: String,
    /// The stored keys may be used when made under these rules (not a tape's).
    trusted: bool,
    /// The keys computed again, when the recording could give them all at once.
    keyed: Option<Vec<(Kind, String)>>,
    slots: Vec<Slot>,
    /// The stateful hosts met so far, in order: an event's lane is its host's place.
    lanes: Vec<String>,
    loopback_ports: BTreeSet<u16>,
    graph: Option<causal::load::GraphLoader>,
    other_rules: bool,
    redacted_query: BTreeSet<String>,
    redacted_paths: BTreeSet<String>,
}

impl Pass<'_> {
    fn push(&mut self, rec: &Recording, i: usize, ev: &Event) -> Result<(), StoreError> {
        if ev.rules.as_deref().is_some_and(|r| r != self.fp) {
            self.other_rules = true;
            self.redacted_query
                .extend(miss::redacted_query_names(&ev.request.url));
            if self.redacted_paths.len() < 256 {
                self.redacted_paths.extend(miss::path_rule(&ev.request.url));
            }
        }
        if let Some(g) = self.graph.as_mut() {
            g.push(rec, ev);
        }
        let (kind, key) = self.key(rec, i, ev)?;
        let url = UrlParts::parse(&ev.request.url);
        if is_loopback_host(&url.host) {
            self.loopback_ports.insert(url.port);
        }
        let lane = self.lane(url.host);
        self.slots.push(Slot {
            step: ev.step,
            kind,
            key,
            route: route(&ev.request.method, &ev.request.url),
            lane,
        });
        Ok(())
    }

    /// Event `i`'s kind and key: computed again up front, stored, or computed now.
    fn key(&self, rec: &Recording, i: usize, ev: &Event) -> Result<(Kind, u128), StoreError> {
        if let Some((kind, key)) = self.keyed.as_ref().and_then(|k| k.get(i)) {
            return Ok((*kind, index::key_id(key)));
        }
        if self.trusted && ev.rules.as_deref() == Some(self.fp.as_str()) {
            return Ok((ev.kind, index::key_id(&ev.key)));
        }
        let (kind, key) = rec.identify(ev, self.rules)?;
        Ok((kind, index::key_id(&key)))
    }

    /// The lane of a call to `host` when the rules declare it stateful.
    fn lane(&mut self, host: String) -> Option<u32> {
        if !self.rules.is_stateful_host(&host) {
            return None;
        }
        let at = match self.lanes.iter().position(|h| *h == host) {
            Some(at) => at,
            None => {
                self.lanes.push(host);
                self.lanes.len() - 1
            }
        };
        Some(at as u32)
    }

    fn finish(self) -> Loaded {
        let Pass {
            slots,
            graph,
            loopback_ports,
            other_rules,
            redacted_query,
            redacted_paths,
            ..
        } = self;
        Loaded {
            slots,
            graph: graph
                .map(causal::load::GraphLoader::finish)
                .unwrap_or_default(),
            loopback_ports: loopback_ports.into_iter().collect(),
            other_rules,
            miss_mask: other_rules.then(|| Rules {
                redact_query: redacted_query.into_iter().collect(),
                redact_paths: redacted_paths
                    .iter()
                    .filter_map(|p| PathSecret::parse(p).ok())
                    .collect(),
                ..Rules::default()
            }),
        }
    }
}
