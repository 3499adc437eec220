//! `-- CMD`: run the agent with the proxy and trust variables set, forward signals to
//! it, and report its exit status.

use std::path::Path;

use thiserror::Error;

use tapedeck_proxy::ca::Ca;
use tapedeck_proxy::trust::{TrustBundle, TrustError};

#[derive(Debug, Error)]
pub enum ChildError {
    #[error("cannot start {cmd:?}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("waiting for {cmd:?} failed: {source}")]
    Wait { cmd: String, source: std::io::Error },
}

const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// The proxy and trust variables a client of the proxy at `proxy_url` needs, in the
/// order they are printed by `tapedeck env`.
pub fn exports(proxy_url: &str, trust: &TrustBundle) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = PROXY_VARS
        .iter()
        .map(|v| (v.to_string(), proxy_url.to_string()))
        .collect();
    // Node's built-in fetch ignores the proxy variables without it.
    env.push(("NODE_USE_ENV_PROXY".into(), "1".into()));
    env.extend(trust.vars.iter().cloned());
    env
}

/// The environment CMD runs with: (name, Some(value)) sets, (name, None) removes.
pub fn environment(proxy_url: &str, trust: &TrustBundle) -> Vec<(String, Option<String>)> {
    let mut env: Vec<(String, Option<String>)> = exports(proxy_url, trust)
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect();
    let no_proxy: Vec<String> = ["NO_PROXY", "no_proxy"]
        .iter()
        .filter_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .collect();
    if !no_proxy.is_empty() {
        tracing::warn!(
            "cleared NO_PROXY={:?} for the command so that none of its traffic bypasses tapedeck",
            no_proxy.join(",")
        );
    }
    env.push(("NO_PROXY".into(), None));
    env.push(("no_proxy".into(), None));
    env
}

/// The trust bundle for a command that inherits this process's environment and runs in
/// `cwd`, with the one info line saying what it overrode (and a warning for what of the
/// user's own could not be read).
pub fn trust_for_command(ca: &Ca, cwd: &Path) -> Result<TrustBundle, TrustError> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let trust = TrustBundle::for_env(ca, &env, cwd)?;
    if let Some(line) = trust.summary() {
        tracing::info!("{line}");
    }
    for (origin, why) in &trust.unreadable {
        tracing::warn!(
            "{origin} names certificates tapedeck cannot read ({why}); the command gets the system roots and tapedeck's CA without them"
        );
    }
    Ok(trust)
}

/// Runs CMD to completion, forwarding SIGINT and SIGTERM. Returns its exit code
/// (128 + signal when a signal ended it).
pub async fn run(cmd: &[String], env: &[(String, Option<String>)]) -> Result<i32, ChildError> {
    run_with(cmd, env, None, false)
        .await
        .map(|(code, _, _)| code)
}

/// Like [`run`], in `cwd` when given; with `capture`, CMD's stdout and stderr are
/// collected and returned instead of passed through.
pub async fn run_with(
    cmd: &[String],
    env: &[(String, Option<String>)],
    cwd: Option<&Path>,
    capture: bool,
) -> Result<(i32, Vec<u8>, Vec<u8>), ChildError> {
    use tokio::io::AsyncReadExt;
    use tokio::signal::unix::{signal, SignalKind};
    let shown = cmd.join(" ");
    let mut c = tokio::process::Command::new(&cmd[0]);
    c.args(&cmd[1..]);
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    if capture {
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
    }
    crate::memcpy::restore(c.as_std_mut());
    for (k, v) in env {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    // Processes CMD starts and leaves behind (`agent &` under a shell) become ours when
    // their parent exits, so they are found, signalled and ended with it.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let mut child = c.spawn().map_err(|source| ChildError::Spawn {
        cmd: shown.clone(),
        source,
    })?;
    let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf).await;
        }
        buf
    });
    let err_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf).await;
        }
        buf
    });
    let mut sigint = signal(SignalKind::interrupt()).ok();
    let mut sigterm = signal(SignalKind::terminate()).ok();
    let status = loop {
        tokio::select! {
            s = child.wait() => break s.map_err(|source| ChildError::Wait { cmd: shown.clone(), source })?,
            Some(_) = async { match sigint.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                signal_all(pid, nix::sys::signal::Signal::SIGINT);
            }
            Some(_) = async { match sigterm.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                signal_all(pid, nix::sys::signal::Signal::SIGTERM);
            }
        }
    };
    end_left_behind(&shown).await;
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    let out = out_task.await.unwrap_or_default();
    let err = err_task.await.unwrap_or_default();
    Ok((code, out, err))
}

/// Sends `sig` to CMD and to every process below tapedeck (what CMD started, and what
/// it left behind): a shell that runs the agent in the background does not pass a
/// signal on.
fn signal_all(child: Option<nix::unistd::Pid>, sig: nix::sys::signal::Signal) {
    let mut pids = descendants();
    pids.extend(child.filter(|c| !pids.contains(c)));
    for p in pids {
        let _ = nix::sys::signal::kill(p, sig);
    }
}

/// What CMD left running when it exited: told on stderr, sent SIGTERM, and SIGKILL 3 s
/// later; a request one of them started after the proxy stopped would find nothing.
async fn end_left_behind(shown: &str) {
    use nix::sys::signal::{kill, Signal};
    let left = descendants();
    if left.is_empty() {
        return;
    }
    let list: Vec<String> = left.iter().map(|p| p.to_string()).collect();
    eprintln!(
        "tapedeck: `{shown}` exited and left {} process{} running (pid {}); sending SIGTERM: the run is over",
        left.len(),
        if left.len() == 1 { "" } else { "es" },
        list.join(", ")
    );
    for p in &left {
        let _ = kill(*p, Signal::SIGTERM);
    }
    for _ in 0..60 {
        reap(&left);
        if descendants().is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for p in descendants() {
        let _ = kill(p, Signal::SIGKILL);
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    reap(&left);
}

/// Collects the exit status of adopted processes that have ended (each one of these
/// pids only: tokio waits for CMD itself).
fn reap(pids: &[nix::unistd::Pid]) {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    for p in pids {
        let _ = waitpid(*p, Some(WaitPidFlag::WNOHANG));
    }
}

/// Every live process below this one, from `/proc` (zombies left out).
fn descendants() -> Vec<nix::unistd::Pid> {
    let me = std::process::id() as i32;
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (Some(state), Some(ppid)) = (f.next(), f.next().and_then(|p| p.parse().ok())) else {
            continue;
        };
        if state != "Z" {
            parent_of.push((pid, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![me];
    while let Some(p) = frontier.pop() {
        for &(child, _) in parent_of.iter().filter(|(_, pp)| *pp == p) {
            out.push(nix::unistd::Pid::from_raw(child));
            frontier.push(child);
        }
    }
    out
}
