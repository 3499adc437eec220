//! The TraceIndex: which recorded event an incoming request may take.
//!
//! One cursor per kind, over that kind's events in step order. A request may take an
//! unconsumed event E of its kind when the keys are equal and every earlier unconsumed
//! event of that kind was still in flight when E started (they overlapped in the
//! recording, so their order was never fixed). Among several, the lowest step wins.
//! Starts rise with steps, so the scan from the cursor stops at the first event that
//! started after an earlier one ended: a lookup costs the width of the concurrency
//! window, never the length of the session.

use std::collections::HashMap;

use crate::cli::Order;
use crate::exchange::Kind;

/// What the index needs of an event.
#[derive(Clone, Debug)]
pub struct Slot {
    pub step: u64,
    pub kind: Kind,
    pub key: String,
    pub start_ns: u64,
    pub end_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissKind {
    /// No event anywhere has this key.
    Unrecorded,
    /// An event has this key but may not be taken yet (an earlier call must come first).
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

#[derive(Debug, Clone)]
pub struct Miss {
    pub kind: MissKind,
    /// The event the cursor expected next for this request's lane, if any is left.
    pub expected: Option<usize>,
    /// For out-of-order: the unconsumed event that has this key.
    pub later: Option<usize>,
}

#[derive(Default)]
struct Lane {
    slots: Vec<usize>,
    /// Position in `slots` of the first unconsumed event.
    cursor: usize,
}

pub struct TraceIndex {
    order: Order,
    slots: Vec<Slot>,
    consumed: Vec<bool>,
    lanes: HashMap<Option<Kind>, Lane>,
    by_key: HashMap<String, Vec<usize>>,
    /// For `--order any`: how many of `by_key[k]` are used (they are used in order).
    used_of_key: HashMap<String, usize>,
    served: usize,
}

impl TraceIndex {
    pub fn new(slots: Vec<Slot>, order: Order) -> TraceIndex {
        let mut lanes: HashMap<Option<Kind>, Lane> = HashMap::new();
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in slots.iter().enumerate() {
            lanes
                .entry(lane_of(order, s.kind))
                .or_default()
                .slots
                .push(i);
            by_key.entry(s.key.clone()).or_default().push(i);
        }
        TraceIndex {
            order,
            consumed: vec![false; slots.len()],
            slots,
            lanes,
            by_key,
            used_of_key: HashMap::new(),
            served: 0,
        }
    }

    pub fn slot(&self, i: usize) -> &Slot {
        &self.slots[i]
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

    /// Events never served, in step order.
    pub fn unused(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| !self.consumed[i])
            .collect()
    }

    /// Takes the event a request of `kind` with `key` may have, or says why none.
    pub fn take(&mut self, kind: Kind, key: &str) -> Result<usize, Miss> {
        let found = match self.order {
            Order::Any => self.take_any(key),
            Order::Strict | Order::Kind => self.take_in_lane(lane_of(self.order, kind), key),
        };
        match found {
            Some(i) => {
                self.consumed[i] = true;
                self.served += 1;
                if let Some(lane) = self.lanes.get_mut(&lane_of(self.order, self.slots[i].kind)) {
                    while lane.cursor < lane.slots.len() && self.consumed[lane.slots[lane.cursor]] {
                        lane.cursor += 1;
                    }
                }
                Ok(i)
            }
            None => Err(self.miss(kind, key)),
        }
    }

    fn take_any(&mut self, key: &str) -> Option<usize> {
        let list = self.by_key.get(key)?;
        let used = self.used_of_key.entry(key.to_string()).or_insert(0);
        while *used < list.len() && self.consumed[list[*used]] {
            *used += 1;
        }
        let i = *list.get(*used)?;
        *used += 1;
        Some(i)
    }

    fn take_in_lane(&self, lane: Option<Kind>, key: &str) -> Option<usize> {
        let lane = self.lanes.get(&lane)?;
        let mut min_end = u64::MAX;
        let mut first = true;
        for &i in &lane.slots[lane.cursor..] {
            if self.consumed[i] {
                continue;
            }
            let s = &self.slots[i];
            if !first && s.start_ns >= min_end {
                break;
            }
            if s.key == key {
                return Some(i);
            }
            if self.order == Order::Strict {
                return None;
            }
            first = false;
            min_end = min_end.min(s.end_ns);
        }
        None
    }

    fn next_in_lane(&self, lane: Option<Kind>) -> Option<usize> {
        let lane = self.lanes.get(&lane)?;
        lane.slots[lane.cursor..]
            .iter()
            .copied()
            .find(|&i| !self.consumed[i])
    }

    fn miss(&self, kind: Kind, key: &str) -> Miss {
        let expected = self.next_in_lane(lane_of(self.order, kind));
        let Some(list) = self.by_key.get(key) else {
            return Miss {
                kind: MissKind::Unrecorded,
                expected,
                later: None,
            };
        };
        match list.iter().copied().find(|&i| !self.consumed[i]) {
            Some(later) => Miss {
                kind: MissKind::OutOfOrder,
                expected,
                later: Some(later),
            },
            None => Miss {
                kind: MissKind::Exhausted,
                expected,
                later: None,
            },
        }
    }
}

fn lane_of(order: Order, kind: Kind) -> Option<Kind> {
    match order {
        Order::Kind => Some(kind),
        Order::Strict | Order::Any => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(step: u64, kind: Kind, key: &str, start: u64, end: u64) -> Slot {
        Slot {
            step,
            kind,
            key: key.into(),
            start_ns: start,
            end_ns: end,
        }
    }

    #[test]
    fn sequential_calls_must_come_in_recorded_order() {
        let mut ix = TraceIndex::new(
            vec![
                slot(1, Kind::Llm, "a", 0, 10),
                slot(2, Kind::Llm, "b", 20, 30),
            ],
            Order::Kind,
        );
        let m = ix.take(Kind::Llm, "b").unwrap_err();
        assert_eq!(m.kind, MissKind::OutOfOrder);
        assert_eq!(m.expected, Some(0));
        assert_eq!(m.later, Some(1));
        assert_eq!(ix.take(Kind::Llm, "a").unwrap(), 0);
        assert_eq!(ix.take(Kind::Llm, "b").unwrap(), 1);
        assert_eq!(
            ix.take(Kind::Llm, "b").unwrap_err().kind,
            MissKind::Exhausted
        );
        assert_eq!(
            ix.take(Kind::Llm, "zzz").unwrap_err().kind,
            MissKind::Unrecorded
        );
    }

    #[test]
    fn overlapping_calls_may_come_in_any_order_but_not_past_a_later_one() {
        // 1,2,3 overlapped; 4 started after they all ended.
        let slots = vec![
            slot(1, Kind::Tool, "x", 0, 100),
            slot(2, Kind::Tool, "y", 5, 90),
            slot(3, Kind::Tool, "z", 6, 95),
            slot(4, Kind::Tool, "w", 200, 210),
        ];
        let mut ix = TraceIndex::new(slots, Order::Kind);
        assert_eq!(
            ix.take(Kind::Tool, "w").unwrap_err().kind,
            MissKind::OutOfOrder
        );
        assert_eq!(ix.take(Kind::Tool, "z").unwrap(), 2);
        assert_eq!(ix.take(Kind::Tool, "x").unwrap(), 0);
        assert_eq!(
            ix.take(Kind::Tool, "w").unwrap_err().kind,
            MissKind::OutOfOrder
        );
        assert_eq!(ix.take(Kind::Tool, "y").unwrap(), 1);
        assert_eq!(ix.take(Kind::Tool, "w").unwrap(), 3);
        assert!(ix.unused().is_empty());
    }

    #[test]
    fn kinds_have_their_own_cursors() {
        let slots = vec![
            slot(1, Kind::Llm, "l1", 0, 10),
            slot(2, Kind::Tool, "t1", 11, 12),
            slot(3, Kind::Llm, "l2", 13, 20),
        ];
        let mut ix = TraceIndex::new(slots.clone(), Order::Kind);
        // The tool call may come before the first LLM call: different cursor.
        assert_eq!(ix.take(Kind::Tool, "t1").unwrap(), 1);
        assert_eq!(ix.take(Kind::Llm, "l1").unwrap(), 0);
        let mut strict = TraceIndex::new(slots, Order::Strict);
        assert_eq!(
            strict.take(Kind::Tool, "t1").unwrap_err().kind,
            MissKind::OutOfOrder
        );
    }

    #[test]
    fn identical_requests_are_served_in_recorded_order() {
        let slots = vec![
            slot(1, Kind::Tool, "poll", 0, 10),
            slot(2, Kind::Tool, "poll", 20, 30),
            slot(3, Kind::Tool, "poll", 40, 50),
        ];
        for order in [Order::Kind, Order::Strict, Order::Any] {
            let mut ix = TraceIndex::new(slots.clone(), order);
            assert_eq!(ix.take(Kind::Tool, "poll").unwrap(), 0);
            assert_eq!(ix.take(Kind::Tool, "poll").unwrap(), 1);
            assert_eq!(ix.take(Kind::Tool, "poll").unwrap(), 2);
            assert_eq!(
                ix.take(Kind::Tool, "poll").unwrap_err().kind,
                MissKind::Exhausted
            );
        }
    }

    #[test]
    fn order_any_matches_by_key_alone() {
        let slots = vec![
            slot(1, Kind::Llm, "a", 0, 10),
            slot(2, Kind::Llm, "b", 20, 30),
        ];
        let mut ix = TraceIndex::new(slots, Order::Any);
        assert_eq!(ix.take(Kind::Llm, "b").unwrap(), 1);
        assert_eq!(ix.take(Kind::Llm, "a").unwrap(), 0);
    }

    #[test]
    fn lookup_cost_does_not_grow_with_the_session() {
        // 100k sequential events: taking each in order scans one slot each time.
        let slots: Vec<Slot> = (0..100_000u64)
            .map(|i| slot(i + 1, Kind::Llm, &format!("k{i}"), i * 10, i * 10 + 5))
            .collect();
        let mut ix = TraceIndex::new(slots, Order::Kind);
        for i in 0..100_000u64 {
            assert_eq!(ix.take(Kind::Llm, &format!("k{i}")).unwrap(), i as usize);
        }
        assert_eq!(ix.served(), 100_000);
    }
}
