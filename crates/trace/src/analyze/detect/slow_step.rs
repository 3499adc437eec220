//! `slow_step`: an exchange that holds the run up.
//!
//! A step is judged two ways. Against its kind: far slower than the other calls of its
//! kind (with at least four of them to compare). Against the whole run: most of the
//! run's wall time, far above the run's median exchange, in a run of any length. Either
//! way a step is measured by what it adds to the critical path, its time with nothing
//! else in flight: two calls made in parallel cost the run the longer one, and the
//! shorter one costs it nothing.

use std::collections::{BTreeSet, HashMap};

use super::View;
use crate::analyze::read::{status_of, what};
use crate::analyze::{Finding, Severity};
use crate::spans::Parsed;
use tapedeck_model::exchange::Kind;

/// A step at least this far above the median is never noise, whatever the ratios say.
const KIND_FLOOR_MS: f64 = 500.0;
/// Against the whole run the floor is higher: a run of three fast calls may have one
/// that took 60% of it by the luck of a TLS handshake.
const RUN_FLOOR_MS: f64 = 1000.0;
/// The share of the run's wall time a dominant step takes.
const RUN_SHARE: f64 = 0.5;
/// How many times the run's median a dominant step takes.
const RUN_MULTIPLE: f64 = 10.0;

/// One exchange's time: its duration and its own share of the critical path.
struct Timed<'a> {
    p: &'a Parsed<'a>,
    duration_ms: f64,
    critical_ms: f64,
}

pub fn detect(v: &View, out: &mut Vec<Finding>) {
    let timed = timings(v.parsed);
    if timed.is_empty() {
        return;
    }
    let start = v.parsed.iter().map(|p| p.event.timing.start_ns).min();
    let end = v.parsed.iter().map(|p| p.event.timing.end_ns).max();
    let wall_ms = end.unwrap_or(0).saturating_sub(start.unwrap_or(0)) as f64 / 1e6;
    let run_median = median(timed.iter().map(|t| t.duration_ms).collect());
    let by_kind = kind_evidence(&timed);
    for t in &timed {
        let step = t.p.event.step;
        let run = against_run(t, wall_ms, run_median, timed.len());
        let kind = by_kind.get(&step);
        if run.is_none() && kind.is_none() {
            continue;
        }
        let summary = match (&run, kind) {
            (Some((summary, _)), _) => summary.clone(),
            (None, Some((summary, _))) => summary.clone(),
            (None, None) => continue,
        };
        let mut evidence = vec![format!(
            "step {step}: {} → {} in {:.0} ms",
            what(t.p.event),
            status_of(t.p.event),
            t.duration_ms
        )];
        if t.critical_ms + 1.0 < t.duration_ms {
            evidence.push(format!(
                "step {step}: other exchanges ran alongside it; {:.0} ms of it had nothing else in flight",
                t.critical_ms
            ));
        }
        evidence.extend(run.map(|(_, e)| e));
        evidence.extend(kind.map(|(_, e)| e.clone()));
        out.push(Finding {
            detector: "slow_step",
            severity: Severity::Info,
            steps: vec![step],
            summary,
            evidence,
        });
    }
}

/// Each exchange's duration and critical-path share, in step order.
/// An open channel (a WebSocket, an MCP session's streams) lasts as long as it is
/// wanted: its length is no step's slowness, and it holds no other step up.
fn is_channel(p: &Parsed) -> bool {
    p.event.ws.is_some() || p.mcp.as_ref().is_some_and(|m| m.method.is_none())
}

fn timings<'a>(parsed: &'a [Parsed<'a>]) -> Vec<Timed<'a>> {
    let critical = alone_ns(parsed);
    parsed
        .iter()
        .zip(critical)
        .filter(|(p, _)| !is_channel(p))
        .map(|(p, alone)| Timed {
            p,
            duration_ms: p
                .event
                .timing
                .end_ns
                .saturating_sub(p.event.timing.start_ns) as f64
                / 1e6,
            critical_ms: alone as f64 / 1e6,
        })
        .collect()
}

/// For each exchange, the time during which it was the only one in flight (a sweep over
/// start and end instants).
fn alone_ns(parsed: &[Parsed]) -> Vec<u64> {
    let mut edges: Vec<(u64, bool, usize)> = Vec::with_capacity(parsed.len() * 2);
    for (i, p) in parsed.iter().enumerate() {
        let t = &p.event.timing;
        edges.push((t.start_ns, true, i));
        edges.push((t.end_ns.max(t.start_ns), false, i));
    }
    // Ends before starts at the same instant: back-to-back calls do not overlap.
    edges.sort_by_key(|&(at, is_start, i)| (at, is_start, i));
    let mut alone = vec![0u64; parsed.len()];
    let mut active: BTreeSet<usize> = BTreeSet::new();
    let mut last = 0u64;
    for (at, is_start, i) in edges {
        if active.len() == 1 {
            if let Some(&only) = active.first() {
                alone[only] += at.saturating_sub(last);
            }
        }
        last = at;
        if is_start {
            active.insert(i);
        } else {
            active.remove(&i);
        }
    }
    alone
}

fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Summary and evidence when the step dominates the whole run.
fn against_run(t: &Timed, wall_ms: f64, median_ms: f64, n: usize) -> Option<(String, String)> {
    let c = t.critical_ms;
    if wall_ms <= 0.0 || n < 2 {
        return None;
    }
    let share = c / wall_ms;
    let multiple = c / median_ms.max(1.0);
    if share < RUN_SHARE || multiple < RUN_MULTIPLE || c - median_ms < RUN_FLOOR_MS {
        return None;
    }
    let step = t.p.event.step;
    Some((
        format!(
            "step {step} took {:.0} ms, {:.0}% of the run's wall time ({wall_ms:.0} ms) and {multiple:.0}× its median exchange ({median_ms:.0} ms)",
            t.duration_ms,
            share * 100.0
        ),
        format!(
            "the run: {n} exchanges over {wall_ms:.0} ms; step {step} holds it up for {c:.0} ms ({:.0}%), {multiple:.0}× the median exchange of {median_ms:.0} ms",
            share * 100.0
        ),
    ))
}

/// Summary and evidence, by step, of the steps far slower than their kind.
fn kind_evidence(timed: &[Timed]) -> HashMap<u64, (String, String)> {
    let mut by_kind: HashMap<Kind, Vec<&Timed>> = HashMap::new();
    for t in timed {
        by_kind.entry(t.p.event.kind).or_default().push(t);
    }
    let mut out = HashMap::new();
    for (kind, list) in by_kind {
        if list.len() < 4 {
            continue;
        }
        let mut ds: Vec<f64> = list.iter().map(|t| t.duration_ms).collect();
        ds.sort_by(|a, b| a.total_cmp(b));
        let median = ds[ds.len() / 2];
        let p75 = ds[(ds.len() * 3) / 4];
        for t in list {
            let (d, c) = (t.duration_ms, t.critical_ms);
            if c > 5.0 * median.max(1.0) && c > 3.0 * p75 && c - median > KIND_FLOOR_MS {
                let step = t.p.event.step;
                out.insert(step, (
                    format!("step {step} took {d:.0} ms, {:.0}× the session's median for {kind} calls ({median:.0} ms)", d / median.max(0.001)),
                    format!("{kind} calls: median {median:.0} ms, p75 {p75:.0} ms over {} calls", ds.len()),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::detect;
    use crate::analyze::detect::testing::*;
    use crate::spans::Parsed;
    use tapedeck_model::exchange::Event;

    fn all(evs: &[Event]) -> Vec<Parsed<'_>> {
        evs.iter().map(|e| parsed(e, None, "", "{}")).collect()
    }

    #[test]
    fn a_call_far_slower_than_its_kind_is_reported() {
        let mut evs: Vec<Event> = (1..=6)
            .map(|i| tool_event(i, None, "https://t.test/json", 200, i * 100, i * 100 + 20))
            .collect();
        evs.push(tool_event(7, None, "https://t.test/slow", 200, 800, 1_700));
        let out = run(&all(&evs), detect);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].steps, vec![7]);
        // Evenly paced calls are not slow.
        assert!(run(&all(&evs[..6]), detect).is_empty());
    }

    #[test]
    fn a_step_that_dominates_a_short_run_is_reported_with_its_share_and_multiple() {
        // 5 exchanges, ~20 ms each but step 3 at 1,500 ms: 91% of the wall time.
        let evs = vec![
            llm_event(1, None, 0, 20),
            tool_event(2, None, "https://t.test/weather", 200, 25, 45),
            tool_event(3, None, "https://t.test/forecast", 200, 50, 1_550),
            tool_event(4, None, "https://t.test/station", 200, 1_555, 1_575),
            llm_event(5, None, 1_580, 1_650),
        ];
        let out = run(&all(&evs), detect);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].steps, vec![3]);
        assert!(
            out[0].summary.contains("91% of the run's wall time"),
            "{}",
            out[0].summary
        );
        assert!(
            out[0].summary.contains("75× its median"),
            "{}",
            out[0].summary
        );
        // A run of evenly slow steps has no dominant one.
        let even: Vec<Event> = (1..=5)
            .map(|i| tool_event(i, None, "https://t.test/x", 200, i * 1_000, i * 1_000 + 900))
            .collect();
        assert!(run(&all(&even), detect).is_empty());
        // Nor does a short run whose longest step is a few hundred ms.
        let quick = vec![
            llm_event(1, None, 0, 300),
            tool_event(2, None, "https://t.test/weather", 200, 305, 310),
            llm_event(3, None, 312, 320),
        ];
        assert!(run(&all(&quick), detect).is_empty());
    }

    #[test]
    fn concurrent_steps_are_judged_by_their_share_of_the_critical_path() {
        // Steps 2 and 3 ran side by side: 3 (1,400 ms) is hidden behind 2 (1,500 ms), and
        // 2 holds the run up only for the 100 ms nothing else ran.
        let evs = vec![
            llm_event(1, None, 0, 20),
            tool_event(2, None, "https://t.test/a", 200, 25, 1_525),
            tool_event(3, None, "https://t.test/b", 200, 25, 1_425),
            llm_event(4, None, 1_530, 1_550),
        ];
        assert!(run(&all(&evs), detect).is_empty());
        // Alone, the same step is the finding.
        let alone = vec![
            llm_event(1, None, 0, 20),
            tool_event(2, None, "https://t.test/a", 200, 25, 1_525),
            tool_event(3, None, "https://t.test/b", 200, 1_530, 1_550),
            llm_event(4, None, 1_555, 1_575),
        ];
        let out = run(&all(&alone), detect);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].steps, vec![2]);
    }
}
