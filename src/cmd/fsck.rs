//! `tapedeck fsck`: check a store for damage and name the damaged sessions and steps.
//!
//! sled 0.34 recovers its log only up to the first damaged record, and when a snapshot
//! (written at every clean stop) points past that record it refuses to open the store at
//! all. fsck then says so, and checks a salvage copy that leaves the snapshot out: sled
//! rebuilds it from the log before the damage, so what was written before is readable
//! and the report names what is lost. `--salvage DIR` keeps that copy as a new store.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{msg, CmdError, CmdResult};
use tapedeck_store::check::{check, Report};
use tapedeck_store::journal::Journal;
use tapedeck_store::{SledStore, StoreError};

/// Exit status when damage was found.
pub const EXIT_DAMAGED: i32 = 1;

pub fn run(dir: &Path, as_json: bool, salvage: Option<&Path>) -> CmdResult {
    if !dir.join("db").exists() {
        return Err(msg(format!("{} holds no tapedeck store", dir.display())));
    }
    let journal = Journal::read(dir).map_err(|e| {
        msg(format!(
            "cannot read the event journal of {}: {e}",
            dir.display()
        ))
    })?;
    let (report, salvaged) = match SledStore::open(dir) {
        Ok(store) => {
            if salvage.is_some() {
                eprintln!("tapedeck: sled opens the store; nothing to salvage");
            }
            (check(&store, &journal)?, None)
        }
        Err(StoreError::Damaged { source, .. }) => {
            eprintln!(
                "tapedeck: sled cannot open the store at {}: {source}",
                dir.display()
            );
            let (copy, keep) = match salvage {
                Some(p) => (p.to_path_buf(), true),
                None => (
                    std::env::temp_dir().join(format!("tapedeck-salvage-{}", std::process::id())),
                    false,
                ),
            };
            let report = salvage_copy(dir, &copy).and_then(|()| {
                let store = SledStore::open(&copy)?;
                Ok(check(&store, &journal)?)
            });
            if !keep {
                let _ = std::fs::remove_dir_all(&copy);
            }
            let report = report.map_err(|e| {
                msg(format!(
                    "the store at {} is damaged and cannot be salvaged either: {e}",
                    dir.display()
                ))
            })?;
            (report, Some(keep.then_some(copy)))
        }
        Err(e) => return Err(e.into()),
    };
    if as_json {
        print_json(dir, &report, salvaged.as_ref());
    } else {
        print_text(dir, &report, salvaged.as_ref());
    }
    let damaged = salvaged.is_some() || !report.is_sound();
    Ok(if damaged { EXIT_DAMAGED } else { 0 })
}

fn print_json(dir: &Path, report: &Report, salvaged: Option<&Option<PathBuf>>) {
    let out = json!({
        "store": dir.display().to_string(),
        "sound": salvaged.is_none() && report.is_sound(),
        "opened": salvaged.is_none(),
        "salvaged_to": salvaged.and_then(|p| p.as_ref()).map(|p| p.display().to_string()),
        "bodies_checked": report.bodies_checked,
        "sessions": report.sessions,
    });
    println!("{out}");
}

fn print_text(dir: &Path, report: &Report, salvaged: Option<&Option<PathBuf>>) {
    let events: u64 = report.sessions.iter().map(|s| s.expected).sum();
    let what = if salvaged.is_some() {
        "salvage copy of the store (sled's snapshot left out; what was written after the damaged record is lost)"
    } else {
        "store"
    };
    let n = |count: u64, one: &str, many: &str| {
        format!("{count} {}", if count == 1 { one } else { many })
    };
    println!(
        "{what} {}: {}, {}, {} checked",
        dir.display(),
        n(report.sessions.len() as u64, "session", "sessions"),
        n(events, "event", "events"),
        n(report.bodies_checked as u64, "body", "bodies")
    );
    for s in &report.sessions {
        let unsummed = if s.without_checksum > 0 {
            format!(
                " ({} with no checksum: written before events carried one)",
                s.without_checksum
            )
        } else {
            String::new()
        };
        if s.damaged.is_empty() {
            println!(
                "  {}: {}, sound{unsummed}",
                s.session,
                n(s.sound, "event", "events")
            );
            continue;
        }
        println!(
            "  {}: DAMAGED: {} of {} events sound{unsummed}",
            s.session, s.sound, s.expected
        );
        for d in &s.damaged {
            println!("    {d}");
        }
    }
    let damaged: Vec<String> = report
        .damaged_sessions()
        .map(|s| {
            let steps: Vec<String> = s
                .damaged
                .iter()
                .filter_map(|d| d.step.map(|n| n.to_string()))
                .collect();
            if steps.is_empty() {
                s.session.clone()
            } else {
                format!("{} (step {})", s.session, steps.join(", "))
            }
        })
        .collect();
    if damaged.is_empty() && salvaged.is_none() {
        println!("no damage found");
    } else if damaged.is_empty() {
        println!(
            "sled could not open the store; every session above reads back from the salvage copy"
        );
    } else {
        println!(
            "damage found in {} session{}: {}",
            damaged.len(),
            if damaged.len() == 1 { "" } else { "s" },
            damaged.join("; ")
        );
    }
    if let Some(Some(p)) = salvaged {
        println!(
            "the salvaged store is at {} (read it with --store {})",
            p.display(),
            p.display()
        );
    }
}

/// A copy of the store without sled's snapshot files: bodies hard-linked (copied across
/// file systems), the sled directory copied, the original left untouched.
fn salvage_copy(from: &Path, to: &Path) -> Result<(), CmdError> {
    let io = |action: &'static str, p: &Path, source: std::io::Error| StoreError::File {
        action,
        path: p.to_path_buf(),
        source,
    };
    if to.exists()
        && std::fs::read_dir(to)
            .map_err(|e| io("read", to, e))?
            .next()
            .is_some()
    {
        return Err(msg(format!(
            "{} exists and is not empty; name a new directory",
            to.display()
        )));
    }
    copy_tree(&from.join("db"), &to.join("db"), false).map_err(|e| io("copy", from, e))?;
    if from.join("blobs").is_dir() {
        copy_tree(&from.join("blobs"), &to.join("blobs"), true).map_err(|e| io("copy", from, e))?;
    }
    Ok(())
}

/// Copies a directory tree, leaving out sled's snapshot files (`snap.*`); with `link`,
/// files are hard-linked where the file system allows. sled's own files are always
/// copied: opening the copy writes to them.
fn copy_tree(from: &Path, to: &Path, link: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("snap.") {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst, link)?;
        } else if !link || std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}
