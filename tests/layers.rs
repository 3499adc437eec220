//! The layering rules of README "How it works", checked on `cargo metadata`: a crate
//! that gains a forbidden dependency (directly or through another workspace crate)
//! fails here, before anyone builds on the wrong shape.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Each workspace crate and the names of the crates it depends on (any kind).
fn workspace() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"].as_array().unwrap().iter();
            let names = deps.map(|d| d["name"].as_str().unwrap().to_string());
            (p["name"].as_str().unwrap().to_string(), names.collect())
        })
        .collect()
}

/// What `name` depends on, directly or through other workspace crates.
fn reaches(ws: &BTreeMap<String, BTreeSet<String>>, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_string()];
    while let Some(n) = todo.pop() {
        for d in ws.get(&n).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn the_crates_depend_only_downward() {
    let ws = workspace();
    let forbidden: &[(&str, &[&str])] = &[
        (
            "tapedeck-trace",
            &["tapedeck-proxy", "tapedeck-record", "tapedeck-replay"],
        ),
        ("tapedeck-replay", &["tapedeck-record"]),
        (
            "tapedeck-store",
            &[
                "tapedeck-proxy",
                "tapedeck-record",
                "tapedeck-replay",
                "tapedeck-trace",
            ],
        ),
        (
            "tapedeck-model",
            &["tapedeck-store", "tapedeck-proxy", "tapedeck-trace"],
        ),
    ];
    for (krate, never) in forbidden {
        assert!(
            ws.contains_key(*krate),
            "no crate {krate} in {:?}",
            ws.keys()
        );
        let deps = reaches(&ws, krate);
        for n in *never {
            assert!(!deps.contains(*n), "{krate} depends on {n}: {deps:?}");
        }
    }
}

#[test]
fn only_the_binary_uses_clap() {
    let ws = workspace();
    assert!(
        ws["tapedeck"].contains("clap"),
        "the binary parses with clap"
    );
    for krate in ws.keys().filter(|k| *k != "tapedeck") {
        let deps = reaches(&ws, krate);
        assert!(!deps.contains("clap"), "{krate} depends on clap");
    }
}
