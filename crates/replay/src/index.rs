//! The TraceIndex: which recorded event an incoming request may take.
//!
//! Under `--order causal` (the default) a request takes the first unserved event with its
//! key, so identical requests (retries, polling) get their answers in recorded order, and
//! only when that event may be served now: every event it depends on (the causal
//! [`Graph`]) has been served, and on a host declared stateful every earlier call to that
//! host has been too. `--order strict` is one cursor over all events; `--order any` takes
//! the first unserved event with the key, whatever came before.
//!
//! A lookup is a hash of the key and a few array reads (plus the event's handful of
//! dependencies): it costs the same in a session of a hundred events or a million.

use std::collections::HashMap;

use super::twins::Renames;
use super::Order;
use tapedeck_model::exchange::Kind;
use tapedeck_trace::causal::{Dep, Graph, Link};

/// A key as the index holds it: the first 128 bits of its blake3.
pub fn key_id(key: &str) -> u128 {
    let h = blake3::hash(key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    u128::from_le_bytes(b)
}

/// Where a request goes, hashed: its method, host and path; its method, host and number
/// of path segments; and its first path segments one by one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Route {
    pub path: u64,
    pub shape: u64,
    /// The first [`ROUTE_SEGMENTS`] path segments, hashed (0: none there).
    pub segs: [u32; ROUTE_SEGMENTS],
}

/// How many path segments a [`Route`] keeps apart.
pub const ROUTE_SEGMENTS: usize = 4;

impl Route {
    /// How many of the first path segments the two routes share.
    fn shared(&self, other: &Route) -> usize {
        self.segs
            .iter()
            .zip(&other.segs)
            .filter(|(a, b)| **a != 0 && a == b)
            .count()
    }
}

/// What the index needs of an event.
#[derive(Clone, Debug)]
pub struct Slot {
    pub step: u64,
    pub kind: Kind,
    /// The key, hashed ([`key_id`]): 16 bytes in place of a string per event.
    pub key: u128,
    /// Method, host and path, hashed: which unserved event a missed request resembles.
    pub route: Route,
    /// The stateful-host lane the event belongs to, if its host was declared stateful.
    pub lane: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissKind {
    /// No event anywhere has this key.
    Unrecorded,
    /// An event has this key but may not be served yet.
    OutOfOrder,
    /// Every event with this key was already served.
    Exhausted,
}

impl MissKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MissKind::Unrecorded => "unrecorded",
            MissKind::OutOfOrder => "out-of-order",
            MissKind::Exhausted => "exhausted",
        }
    }
}

/// Why the event a request matched may not be served yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// It depends on an event not served yet.
    Dep(Dep),
    /// Its host is stateful and an earlier call to it (this event) was not served yet.
    Stateful { first: usize },
    /// `--order strict`: another event is next in sequence.
    Sequence,
}

#[derive(Debug, Clone)]
pub struct Miss {
    pub kind: MissKind,
    /// The event the request should have been, or the one that must come first.
    pub expected: Option<usize>,
    /// For out-of-order: the unserved event that has this key.
    pub later: Option<usize>,
    pub blocked: Option<Blocked>,
}

/// Events served while an earlier one was still waiting: allowed, and worth a line.
#[derive(Debug, Clone, Default)]
pub struct Reorders {
    pub count: usize,
    /// The first few, as (served step, earlier unserved step).
    pub first: Vec<(u64, u64)>,
}

const REORDERS_KEPT: usize = 10;
/// How far a miss looks for an unserved event that resembles the request.
const SIMILAR_SCAN: usize = 4096;

/// No event (the end of a key's events).
const NONE: u32 = u32::MAX;

/// The events of one stateful host, in step order, and the first that may be unserved.
struct KeyList {
    events: Vec<u32>,
    next: usize,
}

pub struct TraceIndex {
    order: Order,
    slots: Vec<Slot>,
    consumed: Vec<bool>,
    graph: Graph,
    key_ids: HashMap<u128, u32>,
    /// Per key: the first of its events that may be unserved (or [`NONE`]).
    key_first: Vec<u32>,
    /// Per key: its first event.
    key_head: Vec<u32>,
    /// Per event: whether another event was recorded under its key (a twin).
    has_twins: Vec<bool>,
    /// How the values of twins' answers were swapped in this run (see [`super::twins`]).
    renames: Renames,
    /// Per event: the next event with its key (or [`NONE`]). Two arrays instead of a list
    /// per key: a long session has about as many keys as events.
    same_key_next: Vec<u32>,
    lanes: Vec<KeyList>,
    first_unserved: usize,
    served: usize,
    reorders: Reorders,
}

impl TraceIndex {
    /// `graph` holds the events' dependencies (empty unless the order is causal).
    pub fn new(slots: Vec<Slot>, order: Order, graph: Graph) -> TraceIndex {
        let mut key_ids: HashMap<u128, u32> = HashMap::with_capacity(slots.len());
        let mut key_first: Vec<u32> = Vec::new();
        let mut key_last: Vec<u32> = Vec::new();
        let mut same_key_next = vec![NONE; slots.len()];
        let mut lanes: Vec<KeyList> = Vec::new();
        for (i, s) in slots.iter().enumerate() {
            let at = i as u32;
            match key_ids.get(&s.key) {
                Some(&id) => {
                    same_key_next[key_last[id as usize] as usize] = at;
                    key_last[id as usize] = at;
                }
                None => {
                    key_ids.insert(s.key, key_first.len() as u32);
                    key_first.push(at);
                    key_last.push(at);
                }
            }
            if let Some(l) = s.lane {
                let l = l as usize;
                if lanes.len() <= l {
                    lanes.resize_with(l + 1, || KeyList {
                        events: Vec::new(),
                        next: 0,
                    });
                }
                lanes[l].events.push(i as u32);
            }
        }
        let mut per_key = vec![0u32; key_first.len()];
        for s in &slots {
            per_key[key_ids[&s.key] as usize] += 1;
        }
        let has_twins = slots
            .iter()
            .map(|s| per_key[key_ids[&s.key] as usize] > 1)
            .collect();
        TraceIndex {
            order,
            consumed: vec![false; slots.len()],
            slots,
            graph,
            key_ids,
            key_head: key_first.clone(),
            has_twins,
            renames: Renames::default(),
            key_first,
            same_key_next,
            lanes,
            first_unserved: 0,
            served: 0,
            reorders: Reorders::default(),
        }
    }

    pub fn slot(&self, i: usize) -> &Slot {
        &self.slots[i]
    }

    pub fn order(&self) -> Order {
        self.order
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn served(&self) -> usize {
        self.served
    }

    pub fn reorders(&self) -> &Reorders {
        &self.reorders
    }

    /// Whether event `i` has been served.
    pub fn is_served(&self, i: usize) -> bool {
        self.consumed[i]
    }

    /// Marks event `i` served by other means than its key (a what-if run's match by
    /// meaning); nothing when it already was.
    pub fn serve(&mut self, i: usize) {
        if !self.consumed[i] {
            self.consume(i);
        }
    }

    /// Events never served, in step order.
    pub fn unused(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| !self.consumed[i])
            .collect()
    }

    /// Takes the event a request with `key` may have, or says why none; `kind` and
    /// `route` only help a miss name the event the request resembles (`route` is
    /// computed only then).
    pub fn take(
        &mut self,
        kind: Kind,
        route: impl FnOnce() -> Route,
        key: &str,
    ) -> Result<usize, Miss> {
        let Some(&id) = self.key_ids.get(&key_id(key)) else {
            return Err(Miss {
                kind: MissKind::Unrecorded,
                expected: self.similar(kind, route()),
                later: None,
                blocked: None,
            });
        };
        let Some(i) = self.first_of_key(id) else {
            return Err(Miss {
                kind: MissKind::Exhausted,
                expected: self.similar(kind, route()),
                later: None,
                blocked: None,
            });
        };
        if let Some(blocked) = self.blocked(i) {
            let expected = match blocked {
                Blocked::Dep(d) => Some(d.on as usize),
                Blocked::Stateful { first } => Some(first),
                Blocked::Sequence => self.next_unserved(),
            };
            return Err(Miss {
                kind: MissKind::OutOfOrder,
                expected,
                later: Some(i),
                blocked: Some(blocked),
            });
        }
        // Not taken when this run swapped one of its twin values for another: it is not
        // the request's then, and a value swapped before may make another event its.
        if !self.take_as_recorded(i) {
            return Err(Miss {
                kind: MissKind::Unrecorded,
                expected: Some(i),
                later: None,
                blocked: None,
            });
        }
        Ok(i)
    }

    /// Takes event `i` for a request that carries its twin values as recorded (see
    /// [`super::twins`]), binding each to itself; false when this run swapped one of
    /// them for another value.
    fn take_as_recorded(&mut self, i: usize) -> bool {
        let same: Vec<(u64, u64)> = self.twin_deps(i).map(|d| (d.value, d.value)).collect();
        if !self.renames.fits(&same) {
            return false;
        }
        self.renames.bind(&same);
        self.consume(i);
        true
    }

    /// The dependencies of event `i` by a distinctive value first seen in the answer of
    /// an event that has twins (identical requests, recorded under one key): which twin's
    /// answer a caller gets depends on the order the requests arrive in.
    pub fn twin_deps(&self, i: usize) -> impl Iterator<Item = &Dep> + '_ {
        self.graph
            .deps(i)
            .iter()
            .filter(|d| d.link == Link::Value && self.has_twins[d.on as usize])
    }

    /// The served events recorded under event `d`'s key (`d` among them when served).
    pub fn served_twins(&self, d: usize) -> Vec<usize> {
        let Some(&id) = self.key_ids.get(&self.slots[d].key) else {
            return Vec::new();
        };
        let mut at = self.key_head[id as usize];
        let mut out = Vec::new();
        while at != NONE {
            if self.consumed[at as usize] {
                out.push(at as usize);
            }
            at = self.same_key_next[at as usize];
        }
        out
    }

    /// Takes an event recorded like `e` (as [`TraceIndex::take_like`]) for a request that
    /// is `e`'s with the twin values `pairs` (recorded, live) swapped, when that swap
    /// agrees with the ones this run made before; binds it.
    pub fn take_renamed(&mut self, e: usize, pairs: &[(u64, u64)]) -> Option<usize> {
        if !self.renames.fits(pairs) {
            return None;
        }
        let i = self.first_unserved_like(e)?;
        // A swapped value came from the served twin whose answer holds it: the event
        // whose answer held it when recorded need not have been served (the caller that
        // got that answer this time may not have asked yet).
        let swapped: Vec<u64> = pairs
            .iter()
            .filter(|(rec, live)| rec != live)
            .map(|(rec, _)| *rec)
            .collect();
        let waits = match self.order {
            Order::Causal => self.waits_for_except(i, &swapped).is_some(),
            _ => self.blocked(i).is_some(),
        };
        if waits {
            return None;
        }
        self.renames.bind(pairs);
        self.consume(i);
        Some(i)
    }

    /// The first unserved event with event `i`'s key.
    fn first_unserved_like(&mut self, i: usize) -> Option<usize> {
        let id = *self.key_ids.get(&self.slots.get(i)?.key)?;
        self.first_of_key(id)
    }

    /// Up to `max` unserved events with `route`'s method, host and path, in step order,
    /// within the window a miss looks in.
    pub fn same_path(&self, route: Route, max: usize) -> Vec<usize> {
        self.open()
            .filter(|&i| self.slots[i].route.path == route.path)
            .take(max)
            .collect()
    }

    /// The unserved events within the window a miss looks in, in step order.
    fn open(&self) -> impl Iterator<Item = usize> + '_ {
        let from = self.first_unserved;
        let to = (from + SIMILAR_SCAN).min(self.slots.len());
        (from..to).filter(|&i| !self.consumed[i])
    }

    /// Whether events `a` and `b` were recorded under one key.
    pub fn same_key(&self, a: usize, b: usize) -> bool {
        match (self.slots.get(a), self.slots.get(b)) {
            (Some(a), Some(b)) => a.key == b.key,
            _ => false,
        }
    }

    /// Takes the first unserved event with event `i`'s key, as [`TraceIndex::take`] takes
    /// one for a request keyed as it is (a request that matched it by its redacted
    /// parts, see [`crate::loose`]); `None` when none is unserved or the order holds it.
    pub fn take_like(&mut self, i: usize) -> Option<usize> {
        let first = self.first_unserved_like(i)?;
        if self.blocked(first).is_some() {
            return None;
        }
        // As a request keyed like it would be: not when this run swapped its twin values.
        self.take_as_recorded(first).then_some(first)
    }

    /// The dependency `i` waits for under `--order causal`, if any (whatever the order in
    /// force: a strict miss says whether causal order would have accepted it).
    pub fn waits_for(&self, i: usize) -> Option<Blocked> {
        self.waits_for_except(i, &[])
    }

    /// [`TraceIndex::waits_for`], the dependencies by a value in `swapped` left out.
    fn waits_for_except(&self, i: usize, swapped: &[u64]) -> Option<Blocked> {
        if let Some(lane) = self.slots[i].lane {
            let first = self.lane_first(lane as usize);
            if first.is_some_and(|f| f != i) {
                return first.map(|first| Blocked::Stateful { first });
            }
        }
        self.graph
            .deps(i)
            .iter()
            .find(|d| !self.consumed[d.on as usize] && !swapped.contains(&d.value))
            .map(|d| Blocked::Dep(*d))
    }

    fn blocked(&self, i: usize) -> Option<Blocked> {
        match self.order {
            Order::Any => None,
            Order::Strict => (self.next_unserved() != Some(i)).then_some(Blocked::Sequence),
            Order::Causal => self.waits_for(i),
        }
    }

    fn first_of_key(&mut self, id: u32) -> Option<usize> {
        let first = self.key_first.get_mut(id as usize)?;
        let mut at = *first;
        while at != NONE && self.consumed[at as usize] {
            at = self.same_key_next[at as usize];
        }
        *first = at;
        (at != NONE).then_some(at as usize)
    }

    fn lane_first(&self, lane: usize) -> Option<usize> {
        let list = self.lanes.get(lane)?;
        list.events[list.next..]
            .iter()
            .map(|&i| i as usize)
            .find(|&i| !self.consumed[i])
    }

    fn next_unserved(&self) -> Option<usize> {
        (self.first_unserved < self.slots.len()).then_some(self.first_unserved)
    }

    fn consume(&mut self, i: usize) {
        self.consumed[i] = true;
        self.served += 1;
        if i > self.first_unserved {
            self.reorders.count += 1;
            if self.reorders.first.len() < REORDERS_KEPT {
                self.reorders
                    .first
                    .push((self.slots[i].step, self.slots[self.first_unserved].step));
            }
        }
        while self.first_unserved < self.slots.len() && self.consumed[self.first_unserved] {
            self.first_unserved += 1;
        }
        if let Some(lane) = self.slots[i].lane {
            let consumed = &self.consumed;
            if let Some(list) = self.lanes.get_mut(lane as usize) {
                while list
                    .events
                    .get(list.next)
                    .is_some_and(|&e| consumed[e as usize])
                {
                    list.next += 1;
                }
            }
        }
    }

    /// The unserved event a missed request most resembles: the first with its method,
    /// host and path, else the one with its method, host and number of path segments
    /// that shares the most of its segments (a path whose recorded value was redacted),
    /// else the first of its kind, else the first unserved. Looks at a bounded stretch
    /// from the first unserved event, so a miss costs the same late in a long session.
    fn similar(&self, kind: Kind, route: Route) -> Option<usize> {
        let open = || self.open();
        open()
            .find(|&i| self.slots[i].route.path == route.path)
            .or_else(|| {
                open()
                    .filter(|&i| self.slots[i].route.shape == route.shape)
                    .min_by_key(|&i| (std::cmp::Reverse(self.slots[i].route.shared(&route)), i))
            })
            .or_else(|| open().find(|&i| self.slots[i].kind == kind))
            .or_else(|| self.next_unserved())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapedeck_trace::causal::{Builder, Exchange};

    fn slot(step: u64, key: &str) -> Slot {
        Slot {
            step,
            kind: Kind::Tool,
            key: key_id(key),
            route: Route::default(),
            lane: None,
        }
    }

    /// A graph where each event's response holds `id-{step}` and each request the ids
    /// listed for it.
    fn graph(carries: &[&[u64]]) -> Graph {
        let mut b = Builder::new(carries.len(), false);
        for (i, c) in carries.iter().enumerate() {
            let step = i as u64 + 1;
            let url = format!(
                "https://t.test/{step}?{}",
                c.iter()
                    .map(|d| format!("ref=id-{d:08}"))
                    .collect::<Vec<_>>()
                    .join("&")
            );
            let x = Exchange {
                agent: None,
                start_ns: step * 100,
                end_ns: step * 100 + 50,
                url: &url,
                location: None,
                llm: None,
            };
            let req = b.scan_request(b"");
            let res = b.scan_response(format!("{{\"id\":\"id-{step:08}\"}}").as_bytes());
            b.push(&x, req, res);
        }
        b.build()
    }

    #[test]
    fn causal_order_lets_independent_events_come_in_any_order() {
        let slots = (1..=4).map(|s| slot(s, &format!("k{s}"))).collect();
        let mut ix = TraceIndex::new(slots, Order::Causal, graph(&[&[], &[], &[], &[]]));
        for k in ["k4", "k2", "k1", "k3"] {
            ix.take(Kind::Tool, Route::default, k).unwrap();
        }
        assert_eq!(ix.reorders().count, 2);
        assert_eq!(ix.reorders().first, vec![(4, 1), (2, 1)]);
    }

    #[test]
    fn a_dependent_event_waits_for_what_it_carries() {
        // Step 3 carries step 2's id; step 2 carries step 1's.
        let slots = (1..=3).map(|s| slot(s, &format!("k{s}"))).collect();
        let mut ix = TraceIndex::new(slots, Order::Causal, graph(&[&[], &[1], &[2]]));
        let m = ix.take(Kind::Tool, Route::default, "k3").unwrap_err();
        assert_eq!(m.kind, MissKind::OutOfOrder);
        assert_eq!(m.later, Some(2));
        assert_eq!(m.expected, Some(1));
        assert!(matches!(m.blocked, Some(Blocked::Dep(d)) if d.on == 1));
        assert_eq!(ix.take(Kind::Tool, Route::default, "k1").unwrap(), 0);
        assert!(ix.take(Kind::Tool, Route::default, "k3").is_err());
        assert_eq!(ix.take(Kind::Tool, Route::default, "k2").unwrap(), 1);
        assert_eq!(ix.take(Kind::Tool, Route::default, "k3").unwrap(), 2);
        assert_eq!(ix.reorders().count, 0);
    }

    #[test]
    fn identical_requests_are_served_in_recorded_order() {
        let slots = vec![slot(1, "poll"), slot(2, "poll"), slot(3, "poll")];
        for order in [Order::Causal, Order::Strict, Order::Any] {
            let mut ix = TraceIndex::new(slots.clone(), order, Graph::default());
            assert_eq!(ix.take(Kind::Tool, Route::default, "poll").unwrap(), 0);
            assert_eq!(ix.take(Kind::Tool, Route::default, "poll").unwrap(), 1);
            assert_eq!(ix.take(Kind::Tool, Route::default, "poll").unwrap(), 2);
            let m = ix.take(Kind::Tool, Route::default, "poll").unwrap_err();
            assert_eq!(m.kind, MissKind::Exhausted);
            assert_eq!(
                ix.take(Kind::Tool, Route::default, "zzz").unwrap_err().kind,
                MissKind::Unrecorded
            );
        }
    }

    #[test]
    fn a_stateful_host_keeps_its_recorded_order() {
        let mut slots: Vec<Slot> = (1..=3).map(|s| slot(s, &format!("k{s}"))).collect();
        slots[0].lane = Some(0);
        slots[2].lane = Some(0);
        let mut ix = TraceIndex::new(slots, Order::Causal, Graph::default());
        let m = ix.take(Kind::Tool, Route::default, "k3").unwrap_err();
        assert_eq!(m.blocked, Some(Blocked::Stateful { first: 0 }));
        assert_eq!(ix.take(Kind::Tool, Route::default, "k2").unwrap(), 1);
        assert_eq!(ix.take(Kind::Tool, Route::default, "k1").unwrap(), 0);
        assert_eq!(ix.take(Kind::Tool, Route::default, "k3").unwrap(), 2);
    }

    #[test]
    fn strict_is_one_cursor_and_any_is_the_key_alone() {
        let slots: Vec<Slot> = (1..=2).map(|s| slot(s, &format!("k{s}"))).collect();
        let mut strict = TraceIndex::new(slots.clone(), Order::Strict, Graph::default());
        let m = strict.take(Kind::Tool, Route::default, "k2").unwrap_err();
        assert_eq!(
            (m.kind, m.blocked),
            (MissKind::OutOfOrder, Some(Blocked::Sequence))
        );
        assert_eq!(m.expected, Some(0));
        let mut any = TraceIndex::new(slots, Order::Any, graph(&[&[], &[1]]));
        assert_eq!(any.take(Kind::Tool, Route::default, "k2").unwrap(), 1);
    }

    #[test]
    fn a_miss_names_the_unserved_event_the_request_resembles() {
        let mut slots: Vec<Slot> = (1..=3).map(|s| slot(s, &format!("k{s}"))).collect();
        slots[2].route = Route {
            path: 7,
            shape: 70,
            segs: [1, 2, 0, 0],
        };
        slots[1].route = Route {
            path: 8,
            shape: 80,
            segs: [5, 6, 7, 0],
        };
        slots[0].route = Route {
            path: 10,
            shape: 80,
            segs: [5, 9, 9, 0],
        };
        let ix = TraceIndex::new(slots, Order::Causal, Graph::default());
        let mut ix = ix;
        assert_eq!(
            ix.take(
                Kind::Tool,
                || Route {
                    path: 7,
                    shape: 70,
                    segs: [1, 2, 0, 0],
                },
                "other"
            )
            .unwrap_err()
            .expected,
            Some(2)
        );
        // Another path of the same shape (a segment redacted when it was recorded): the
        // one sharing most segments, though a step of that shape comes first.
        let redacted = Route {
            path: 11,
            shape: 80,
            segs: [5, 3, 7, 0],
        };
        assert_eq!(
            ix.take(Kind::Tool, || redacted, "other")
                .unwrap_err()
                .expected,
            Some(1)
        );
        let elsewhere = Route {
            path: 9,
            shape: 90,
            segs: [4, 0, 0, 0],
        };
        assert_eq!(
            ix.take(Kind::Llm, || elsewhere, "other")
                .unwrap_err()
                .expected,
            Some(0)
        );
    }

    #[test]
    fn lookup_cost_does_not_grow_with_the_session() {
        // 100k events, each carrying the previous one's id: every take checks one
        // dependency and moves one cursor.
        let carries: Vec<Vec<u64>> = (0..100_000u64)
            .map(|i| if i == 0 { vec![] } else { vec![i] })
            .collect();
        let refs: Vec<&[u64]> = carries.iter().map(|v| v.as_slice()).collect();
        let slots: Vec<Slot> = (0..100_000u64)
            .map(|i| slot(i + 1, &format!("k{i}")))
            .collect();
        let mut ix = TraceIndex::new(slots, Order::Causal, graph(&refs));
        for i in 0..100_000u64 {
            assert_eq!(
                ix.take(Kind::Tool, Route::default, &format!("k{i}"))
                    .unwrap(),
                i as usize
            );
        }
        assert_eq!(ix.served(), 100_000);
    }
}
