//! The free space a store keeps on its disk.
//!
//! A disk that fills while sled writes its log leaves sled in a state it does not come back
//! from: its flush waits for a write that never completes (a recorder then hangs at its
//! end, deaf to Ctrl-C), or its store needs `fsck --salvage` to open again. So the store
//! refuses a write that would take its disk under a floor ([`DEFAULT_MIN_FREE`] by
//! default), before sled or a body file sees it. The recorder then passes the traffic on
//! unstored and marks its session incomplete in the room the floor kept.
//!
//! The disk's free space is read (`statvfs`) at most every [`RECHECK`], and sooner once
//! the store has written half of what was left above the floor since it last looked: a
//! write costs a clock read, not a system call, and the store's own writes cannot run
//! through the floor between two looks. Another process that fills the disk is seen
//! within [`RECHECK`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::StoreError;

/// The free space a store keeps on its disk unless told otherwise (`record --min-free`).
pub const DEFAULT_MIN_FREE: u64 = 64 << 20;

/// How long a reading of the disk's free space is trusted.
pub const RECHECK: Duration = Duration::from_millis(100);

/// The floor, and the last reading of the disk's free space.
pub(crate) struct Space {
    dir: PathBuf,
    floor: AtomicU64,
    seen: Mutex<Seen>,
}

struct Seen {
    /// When `free` was read; `None` before the first reading.
    at: Option<Instant>,
    free: u64,
    /// Bytes the store has written since.
    written: u64,
}

impl Space {
    /// The floor is [`DEFAULT_MIN_FREE`], or `TAPEDECK_MIN_FREE` when that is set (and
    /// reads as a size), for every command that writes into a store.
    pub(crate) fn new(dir: &Path) -> Space {
        let floor = match std::env::var("TAPEDECK_MIN_FREE") {
            Ok(v) => parse_min_free(&v).unwrap_or_else(|e| {
                tracing::warn!("TAPEDECK_MIN_FREE={v:?} is not a size ({e}); keeping the default");
                DEFAULT_MIN_FREE
            }),
            Err(_) => DEFAULT_MIN_FREE,
        };
        Space {
            dir: dir.to_path_buf(),
            floor: AtomicU64::new(floor),
            seen: Mutex::new(Seen {
                at: None,
                free: 0,
                written: 0,
            }),
        }
    }

    pub(crate) fn set_floor(&self, bytes: u64) {
        self.floor.store(bytes, Ordering::Relaxed);
        // Read the disk again at the next write.
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).at = None;
    }

    /// Whether `bytes` more can be written and leave the floor free; counts them when so.
    pub(crate) fn room(&self, bytes: u64) -> Result<(), StoreError> {
        let floor = self.floor.load(Ordering::Relaxed);
        if floor == 0 {
            return Ok(());
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let stale = match seen.at {
            None => true,
            Some(at) => {
                now.duration_since(at) >= RECHECK
                    || seen.written + bytes > seen.free.saturating_sub(floor) / 2
            }
        };
        if stale {
            match free_bytes(&self.dir) {
                Ok(free) => {
                    seen.free = free;
                    seen.written = 0;
                    seen.at = Some(now);
                }
                // A file system that cannot say (none known here): no floor, as before.
                Err(e) => {
                    tracing::debug!("cannot read the free space of {}: {e}", self.dir.display());
                    return Ok(());
                }
            }
        }
        let left = seen.free.saturating_sub(seen.written);
        if left < floor.saturating_add(bytes) {
            return Err(StoreError::DiskLow {
                path: self.dir.clone(),
                free: left,
                bytes,
                floor,
            });
        }
        seen.written += bytes;
        Ok(())
    }
}

/// A floor as `--min-free` and `TAPEDECK_MIN_FREE` say it: a size as `--max-body` reads
/// one (`64MiB`, `1GiB`, plain bytes), or 0 for none.
pub fn parse_min_free(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    s.parse::<tapedeck_model::exchange::limit::MaxBody>()
        .map(|m| m.0)
        .map_err(|e| e.to_string())
}

/// Bytes an unprivileged process may still write on the file system holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// `bytes` for a person: `63.2 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_disk_refuses_and_a_floor_of_zero_never_does() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::new(dir.path());
        let free = free_bytes(dir.path()).unwrap();
        space.set_floor(free.saturating_add(1 << 30));
        let err = space.room(1).unwrap_err().to_string();
        assert!(err.contains("keeps free"), "{err}");
        space.set_floor(0);
        space.room(u64::MAX / 2).unwrap();
    }

    #[test]
    fn a_write_that_would_take_the_disk_under_the_floor_is_refused_and_a_smaller_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::new(dir.path());
        let free = free_bytes(dir.path()).unwrap();
        // 1 GiB above the floor (other processes write meanwhile: a wide margin).
        space.set_floor(free.saturating_sub(1 << 30));
        assert!(space.room(2 << 30).is_err());
        space.room(100 << 20).unwrap();
    }

    #[test]
    fn sizes_read_as_a_person_writes_them() {
        assert_eq!(human(512), "512 bytes");
        assert_eq!(human(64 << 20), "64.0 MiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }
}
