//! The LLM-shaped upstream fixture as a stand-alone server, for the end-to-end examples.
//!
//! `cargo run --example upstream -- [--port N] [--tls] [--ca-out PATH] [--wrong-tool P --seed S]`
//!
//! `--wrong-tool P` makes the chat model nondeterministic: each answer that calls a tool
//! calls another offered tool (or `search_web`) with probability P, drawn from a
//! generator seeded with `--seed` (default 1).
//!
//! Prints one line to stdout when ready, `listening on URL_BASE` (for example
//! `https://localhost:8443`), writes the fixture CA's PEM to `--ca-out` if given, and
//! serves until SIGINT or SIGTERM.
#[path = "../tests/support/upstream.rs"]
mod upstream;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

fn usage() -> ! {
    eprintln!("usage: upstream [--port N] [--tls] [--ca-out PATH] [--wrong-tool P] [--seed S]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut port: u16 = 0;
    let mut tls = false;
    let mut ca_out: Option<PathBuf> = None;
    let mut wrong_tool: Option<f64> = None;
    let mut seed: u64 = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .unwrap_or_else(|| usage())
        };
        match flag.as_str() {
            "--port" => port = value().parse().unwrap_or_else(|_| usage()),
            "--tls" => tls = true,
            "--ca-out" => ca_out = Some(PathBuf::from(value())),
            "--wrong-tool" => wrong_tool = Some(value().parse().unwrap_or_else(|_| usage())),
            "--seed" => seed = value().parse().unwrap_or_else(|_| usage()),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }

    let up = upstream::Upstream::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), tls).await;
    if let Some(p) = wrong_tool {
        up.set_wrong_tool(p, seed);
    }
    if let Some(path) = &ca_out {
        if let Err(e) = std::fs::write(path, &up.ca_pem) {
            eprintln!("upstream: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", up.base_url());
        let _ = out.flush();
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!(
        "upstream: stopping after {} connections, {} requests",
        up.connections(),
        up.requests()
    );
    up.stop();
}
