//! What the store has synced is dropped from the page cache.
//!
//! Once the committer's flush has synced a pack or sled's file, the kernel keeps the
//! written pages cached, clean, and the next writes take new pages from free memory.
//! In a VM that hands its free memory back to the host (virtio free page reporting, as
//! on this project's machines, Firecracker guests), a page taken fresh from free memory
//! faults to the host the first time it is written: writing 2 GB of new data ran at
//! 156-240 MB/s there, and at 1.1 GB/s with each megabyte synced and dropped as it was
//! written (`dd oflag=nocache,dsync`), because the pages just dropped are the next ones
//! written. Recording paid it in the writer's copy into a pack (a 5 MB body cost
//! 27.5-34 ms of the recorder's CPU, 12.5-15.5 with the drop) and in sled's I/O threads
//! (13-20 µs per small exchange, 4-6 with it).
//!
//! The packs, sled's file and the journal are dropped this way. A read of a dropped page
//! goes to the disk: sled reads its file on a miss of its own cache, replay reads events
//! and bodies. Replay right after record in the same VM served small exchanges as fast
//! and 5 MB bodies 11-17 % slower for it. Set `TAPEDECK_DROP_SYNCED=0` to keep synced
//! pages cached.

use std::fs::File;

/// Whether synced pages are dropped (`TAPEDECK_DROP_SYNCED=0` says no).
fn wanted() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| std::env::var("TAPEDECK_DROP_SYNCED").map_or(true, |v| v != "0"))
}

/// Drops `f`'s clean cached pages up to its last page, which stays: the next append
/// writes into it, and a dropped part-filled page would be read back from the disk first,
/// on the writing thread. Pages not yet written back stay too. Advice only: an error
/// changes nothing the store relies on, so it is not reported.
pub(crate) fn drop_synced(f: &File) {
    const PAGE: u64 = 4096;
    if !wanted() {
        return;
    }
    let whole = f.metadata().map_or(0, |m| m.len() / PAGE * PAGE);
    if let Some(len) = std::num::NonZeroU64::new(whole) {
        let _ = rustix::fs::fadvise(f, 0, Some(len), rustix::fs::Advice::DontNeed);
    }
}
