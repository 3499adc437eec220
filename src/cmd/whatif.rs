//! The what-if side of `tapedeck replay` (`--live`, `--on-miss live`, `--inject`,
//! `--fork`): the fork a run records into, the recorder that is the replayer's only way
//! out (built only when something may go live, so a plain replay still has no upstream
//! client), and, once the run is over, where it left the recording's path.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{msg, CmdError};
use crate::cli::{OnMiss, ReplayArgs};
use tapedeck_model::exchange::inject::Injection;
use tapedeck_model::rules::Rules;
use tapedeck_model::session::{Lineage, SessionName};
use tapedeck_proxy::body::ProxyBody;
use tapedeck_proxy::{BoxFuture, ClientCtx};
use tapedeck_record::upstream::Upstream;
use tapedeck_record::{Given, Recorder};
use tapedeck_replay::hybrid::{Fork, ForkCounts, Forward, Hybrid, LiveSelect};
use tapedeck_store::recording::Recording;
use tapedeck_store::{RunInfo, SledStore, Store};

/// Whether the replay flags ask for a what-if run.
pub fn asked(a: &ReplayArgs, rules: &Rules) -> bool {
    !a.live.is_empty() || a.on_miss == OnMiss::Live || a.fork.is_some() || !rules.inject.is_empty()
}

/// A what-if run in progress: its fork and, when calls may go live, its recorder.
pub struct Run {
    pub fork: Arc<Fork>,
    store: Arc<SledStore>,
    recorder: Option<Arc<Recorder>>,
    /// What the banner says goes out.
    pub outbound: String,
}

/// The replayer's way out: a recorder writing into the fork, with the fork's steps.
struct Forwarder {
    recorder: Arc<Recorder>,
    fork: SessionName,
}

impl Forward for Forwarder {
    fn forward(
        &self,
        req: hyper::Request<ProxyBody>,
        mut ctx: ClientCtx,
        step: u64,
        injection: Option<Injection>,
    ) -> BoxFuture<hyper::Response<ProxyBody>> {
        ctx.session = self.fork.clone();
        self.recorder.forward(
            req,
            ctx,
            Given {
                step: Some(step),
                injection,
            },
        )
    }
}

/// `S.fork-1` (`via` is `fork`), or the first `S.VIA-N` the store does not have; a name
/// asked for must be new.
pub fn new_session_name(
    store: &dyn Store,
    parent: &str,
    via: &str,
    asked: Option<&str>,
) -> Result<SessionName, CmdError> {
    if let Some(name) = asked {
        let name = SessionName::new(name)?;
        if store.session(name.as_str())?.is_some() {
            return Err(msg(format!(
                "{name}: the store already has a session of that name; a {via} records a new one (choose another name)"
            )));
        }
        return Ok(name);
    }
    for n in 1.. {
        let name = SessionName::new(&format!("{parent}.{via}-{n}"))?;
        if store.session(name.as_str())?.is_none() {
            return Ok(name);
        }
    }
    Err(msg(format!("no free {via} name")))
}

/// Sets up a what-if run of `parent` writing into `store`: the fork, and what may go out.
pub fn start(
    a: &ReplayArgs,
    rules: &Arc<Rules>,
    parent: &str,
    store: Arc<SledStore>,
) -> Result<(Hybrid, Run), CmdError> {
    let live = LiveSelect::parse(&a.live).map_err(msg)?;
    let on_miss_live = a.on_miss == OnMiss::Live;
    let name = new_session_name(store.as_ref(), parent, "fork", a.fork.as_deref())?;
    let dyn_store: Arc<dyn Store> = store.clone();
    let injector = super::inject::injector(rules)?;
    let names_tools = injector.as_ref().is_some_and(|i| i.names_tools());
    let (sink, tools) = match names_tools {
        true => {
            let (sink, namer) = super::inject::tool_tracker(dyn_store.clone());
            (Some(sink), Some(namer))
        }
        false => (None, None),
    };
    let fork = Fork::new(dyn_store.clone(), name.clone(), parent, sink.clone());
    let recorder = if !live.is_empty() || on_miss_live {
        // The only upstream client a replay ever builds, and only when told to go live.
        let upstream = Upstream::new(&a.upstream_ca, Duration::from_secs(a.upstream_timeout))?;
        let r = Recorder::new(
            dyn_store,
            rules.clone(),
            upstream,
            &[],
            sink,
            a.max_body,
            None,
        )
        .map_err(|e| msg(e.to_string()))?;
        r.adopt(fork.clock());
        Some(r)
    } else {
        None
    };
    let forward = recorder.as_ref().map(|r| {
        Arc::new(Forwarder {
            recorder: r.clone(),
            fork: name.clone(),
        }) as Arc<dyn Forward>
    });
    let outbound = outbound(&live, on_miss_live, fork.name());
    let hybrid = Hybrid {
        fork: fork.clone(),
        live,
        forward,
        on_miss_live,
        injector,
        tools,
    };
    Ok((
        hybrid,
        Run {
            fork,
            store,
            recorder,
            outbound,
        },
    ))
}

/// What the banner says goes out.
fn outbound(live: &LiveSelect, on_miss_live: bool, fork: &str) -> String {
    let mut what: Vec<String> = live.texts().to_vec();
    if on_miss_live {
        what.push("whatever the recording lacks (--on-miss live)".into());
    }
    match what.is_empty() {
        true => format!("a what-if run recorded into fork {fork}; no outbound connections"),
        false => format!(
            "a what-if run recorded into fork {fork}; LIVE: {} go to the real upstream, everything else is served from the recording",
            what.join(", ")
        ),
    }
}

impl Run {
    /// Ends the run: waits for live exchanges to be written, notes the fork's parent and
    /// where it left the parent's path, and returns the summary line, and whether the fork
    /// is incomplete (an exchange the agent got that the store could not take whole).
    pub async fn finish(
        self,
        parent: &Recording,
        rules: &Rules,
        code: Option<i32>,
    ) -> Result<(String, bool), CmdError> {
        if let Some(r) = &self.recorder {
            let left = r.inflight.drain(Duration::from_secs(10)).await;
            if left > 0 {
                tracing::warn!("{left} live exchanges were still in flight; stopping anyway");
            }
        }
        let name = self.fork.name().to_string();
        let counts = self.fork.counts();
        let store: Arc<dyn Store> = self.store.clone();
        let unstored = self
            .recorder
            .as_ref()
            .map_or(0, |r| r.stats.unstored.load(Ordering::Relaxed));
        if store.session(&name)?.is_none() {
            // Nothing stored: either no call, or none the store could take.
            let lost = self.fork.lost().0;
            return Ok(match lost {
                0 => (
                    format!(
                        "what-if run of {}: the agent made no call, so no fork was recorded",
                        parent.session
                    ),
                    false,
                ),
                _ => (
                    format!(
                        "what-if run of {}: {} could not be stored, so no fork was recorded",
                        parent.session,
                        tapedeck_trace::live::counted(lost, "exchange"),
                    ),
                    true,
                ),
            });
        }
        if let Some(code) = code {
            store.put_run(&name, &RunInfo { exit_code: code })?;
        }
        // A fork with exchanges missing would be compared as a run that made fewer calls.
        if let (lost @ 1.., first, _) = self.fork.lost() {
            // Noted when the store takes it (a few bytes, past the floor's check only
            // when the floor left room): `sessions` then names the parent, uncompared.
            let noted = store.put_lineage(
                &name,
                &Lineage {
                    parent: parent.session.clone(),
                    via: "fork".into(),
                    diverged_at: None,
                    parent_step: None,
                    incomplete: true,
                },
            );
            if let Err(e) = noted {
                tracing::warn!("cannot note {name} as a fork of {}: {e}", parent.session);
            }
            store.commit()?;
            let line = format!(
                "what-if run of {} recorded as {name}: {}; {} could not be stored (the first: {}), so the fork is not compared with {}: `tapedeck fsck` names where it stopped being stored",
                parent.session,
                counts_line(&counts),
                tapedeck_trace::live::counted(lost, "exchange"),
                first.unwrap_or_default(),
                parent.session
            );
            return Ok((line, true));
        }
        let fork = Recording::from_store(store.clone(), &name)?;
        let report = tapedeck_trace::diff::diff(parent, &fork, rules);
        let d = report.first_divergence.as_ref();
        store.put_lineage(
            &name,
            &Lineage {
                parent: parent.session.clone(),
                via: "fork".into(),
                diverged_at: d.and_then(|d| d.step_b.or(d.step_a)),
                parent_step: d.and_then(|d| d.step_a),
                incomplete: false,
            },
        )?;
        store.commit()?;
        let path = match d {
            None => format!("it never left {}'s path", parent.session),
            Some(d) => format!(
                "it left {}'s path at step {}{}: {}",
                parent.session,
                d.step_b.or(d.step_a).unwrap_or(0),
                match d.step_a {
                    Some(a) => format!(" ({}'s step {a})", parent.session),
                    None => String::new(),
                },
                d.reason
            ),
        };
        let mut line = format!(
            "what-if run of {} recorded as {name}: {}; {path}",
            parent.session,
            counts_line(&counts)
        );
        if unstored > 0 {
            line.push_str(&format!(
                "; {} went through to the agent but could not be stored whole (`tapedeck fsck` names them)",
                tapedeck_trace::live::counted(unstored, "live exchange")
            ));
        }
        Ok((line, unstored > 0))
    }
}

fn counts_line(c: &ForkCounts) -> String {
    let mut served = format!("{} served from the recording", c.served);
    if c.by_meaning > 0 {
        served.push_str(&format!(
            " ({} by meaning, at another place in the run)",
            c.by_meaning
        ));
    }
    format!(
        "{served}, {} went live, {} injected, {} missed",
        c.live, c.injected, c.missed
    )
}
