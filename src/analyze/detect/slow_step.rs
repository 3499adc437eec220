//! `slow_step`: an exchange far slower than the others of its kind.

use std::collections::HashMap;

use super::View;
use crate::analyze::{Finding, Severity};
use crate::exchange::Kind;

pub fn detect(v: &View, out: &mut Vec<Finding>) {
    let parsed = v.parsed;
    let mut by_kind: HashMap<Kind, Vec<(u64, f64)>> = HashMap::new();
    for p in parsed {
        let d = p
            .event
            .timing
            .end_ns
            .saturating_sub(p.event.timing.start_ns) as f64
            / 1e6;
        by_kind
            .entry(p.event.kind)
            .or_default()
            .push((p.event.step, d));
    }
    for (kind, list) in by_kind {
        if list.len() < 4 {
            continue;
        }
        let mut ds: Vec<f64> = list.iter().map(|(_, d)| *d).collect();
        ds.sort_by(|a, b| a.total_cmp(b));
        let median = ds[ds.len() / 2];
        let p75 = ds[(ds.len() * 3) / 4];
        for (step, d) in &list {
            if *d > 5.0 * median.max(1.0) && *d > 3.0 * p75 && *d - median > 500.0 {
                out.push(Finding {
                    detector: "slow_step",
                    severity: Severity::Info,
                    steps: vec![*step],
                    summary: format!("step {step} took {:.0} ms, {:.0}× the session's median for {kind} calls ({median:.0} ms)", d, d / median.max(0.001)),
                    evidence: vec![format!("step {step}: {d:.0} ms; {kind} calls: median {median:.0} ms, p75 {p75:.0} ms over {} calls", list.len())],
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::detect;
    use crate::analyze::detect::testing::*;
    use crate::exchange::Event;
    use crate::trace::spans::Parsed;

    #[test]
    fn a_call_far_slower_than_its_kind_is_reported() {
        let mut evs: Vec<Event> = (1..=6)
            .map(|i| tool_event(i, None, "https://t.test/json", 200, i * 100, i * 100 + 20))
            .collect();
        evs.push(tool_event(7, None, "https://t.test/slow", 200, 800, 1_700));
        let p: Vec<Parsed> = evs.iter().map(|e| parsed(e, None, "", "{}")).collect();
        let out = run(&p, detect);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].steps, vec![7]);
        // Evenly paced calls are not slow.
        let even: Vec<Parsed> = evs[..6].iter().map(|e| parsed(e, None, "", "{}")).collect();
        assert!(run(&even, detect).is_empty());
    }
}
