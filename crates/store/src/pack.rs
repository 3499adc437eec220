//! Large blobs in append-only pack files (store format 5).
//!
//! A body above [`crate::FILE_BLOB_MIN`] used to be one file per segment under
//! `blobs/xx/<hash>`: a 5 MB body made 20 files, a 900 MB wheel 3,600, each a new inode,
//! a directory entry and an fsync of its own at the next flush. On this project's CI
//! machine creating a file costs 22 µs on a quiet disk and up to 0.6 ms shortly after
//! many were deleted (ext4 looks past recently freed inodes), which made file creation a
//! quarter to a half of the writer's time for large bodies. Now each such blob is
//! appended to the current pack, `blobs/pack/NNNNNNNN` (a new one past [`PACK_MAX`]),
//! and the sled value under its hash says where it is ([`Loc`]). One flush syncs the
//! packs written since the last one, whatever the number of blobs.
//!
//! Appends take a lock, read the pack's length and write at its end (`O_APPEND`): one
//! process writes a store (sled's lock), so a blob's offset is the length before its
//! write. A write that fails part way leaves bytes no value points at: wasted, never
//! read. A blob read back is checked against its hash by the caller, as a blob file was,
//! so a damaged or cut pack shows as a damaged body, never as wrong bytes served.
//!
//! The pack is opened for every append and read, as the blob files were: a file that
//! replaced the directory, or a pack gone, is found on the next use, not hidden behind a
//! handle opened before it.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A pack is not appended to past this size; the next blob starts a new one.
pub const PACK_MAX: u64 = 1 << 30;

/// The first byte of a sled value that says where a blob is in a pack.
pub const TAG_PACKED: u8 = 3;

/// Where a blob is: pack number, offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub pack: u32,
    pub offset: u64,
    pub len: u32,
}

impl Loc {
    /// [`TAG_PACKED`], the pack (u32), offset (u64) and length (u32), big-endian.
    pub fn encode(&self) -> [u8; 17] {
        let mut v = [0u8; 17];
        v[0] = TAG_PACKED;
        v[1..5].copy_from_slice(&self.pack.to_be_bytes());
        v[5..13].copy_from_slice(&self.offset.to_be_bytes());
        v[13..17].copy_from_slice(&self.len.to_be_bytes());
        v
    }

    /// A value [`Loc::encode`] made; `None` for any other.
    pub fn decode(v: &[u8]) -> Option<Loc> {
        if v.len() != 17 || v[0] != TAG_PACKED {
            return None;
        }
        Some(Loc {
            pack: u32::from_be_bytes(v[1..5].try_into().ok()?),
            offset: u64::from_be_bytes(v[5..13].try_into().ok()?),
            len: u32::from_be_bytes(v[13..17].try_into().ok()?),
        })
    }

    fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.len))
    }
}

/// Why a pack could not be written or synced: the file and the error.
#[derive(Debug)]
pub struct PackError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The packs of one store (`blobs/pack/`).
pub struct Packs {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The pack appended to, once known (the highest-numbered one in the directory).
    current: Option<u32>,
    /// Packs appended to since the last sync.
    dirty: BTreeSet<u32>,
    /// A pack (or the directory) was created since the last sync: its entry is synced
    /// too.
    created: bool,
}

impl Packs {
    /// The packs under `blobs` (the directory need not exist yet).
    pub fn new(blobs: &Path) -> Packs {
        Packs {
            dir: blobs.join("pack"),
            state: Mutex::new(State::default()),
        }
    }

    pub fn path(&self, pack: u32) -> PathBuf {
        self.dir.join(format!("{pack:08}"))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The highest-numbered pack in the directory, or 0.
    fn last_pack(&self) -> u32 {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                (name.len() == 8 && name.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| name.parse::<u32>().ok())
                    .flatten()
            })
            .max()
            .unwrap_or(0)
    }

    /// Opens pack `pack` to append, making the directory when it is missing; whether the
    /// file is new.
    fn open_append(&self, pack: u32) -> Result<(File, bool), PackError> {
        let path = self.path(pack);
        let open = || {
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(tapedeck_model::secure_fs::PRIVATE_FILE)
                .open(&path)
        };
        let err = |source| PackError {
            path: path.clone(),
            source,
        };
        match open() {
            Ok(f) => Ok((f, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(tapedeck_model::secure_fs::PRIVATE_DIR)
                    .create(&self.dir)
                    .map_err(|source| PackError {
                        path: self.dir.clone(),
                        source,
                    })?;
                open().map(|f| (f, true)).map_err(err)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Appends `data` to the current pack (a new one when it would pass [`PACK_MAX`]);
    /// where it went.
    pub fn append(&self, data: &[u8]) -> Result<Loc, PackError> {
        let len = u32::try_from(data.len()).map_err(|_| PackError {
            path: self.dir.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "blob over 4 GiB"),
        })?;
        let mut st = self.state();
        let mut pack = match st.current {
            Some(p) => p,
            None => self.last_pack(),
        };
        let (mut file, mut created) = self.open_append(pack)?;
        let stat = |f: &File, pack: u32| {
            f.metadata().map(|m| m.len()).map_err(|source| PackError {
                path: self.path(pack),
                source,
            })
        };
        let mut offset = stat(&file, pack)?;
        if offset > 0 && offset + u64::from(len) > PACK_MAX {
            pack += 1;
            (file, created) = self.open_append(pack)?;
            offset = stat(&file, pack)?;
        }
        st.current = Some(pack);
        st.created |= created;
        // Marked before the write: bytes a failed write left are synced with the rest.
        st.dirty.insert(pack);
        file.write_all(data).map_err(|source| PackError {
            path: self.path(pack),
            source,
        })?;
        Ok(Loc { pack, offset, len })
    }

    /// The bytes at `loc`, unchecked: `None` when the pack is gone; fewer bytes than
    /// `loc` says when the pack is cut short (the caller's check then fails).
    pub fn read(&self, loc: Loc) -> Result<Option<Vec<u8>>, PackError> {
        let path = self.path(loc.pack);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(PackError { path, source }),
        };
        // Read into spare capacity, not a zeroed buffer: zeroing was 3 % of replay's
        // samples serving 5 MB bodies.
        let mut buf = Vec::with_capacity(loc.len as usize);
        let mut at = &file;
        at.seek(std::io::SeekFrom::Start(loc.offset))
            .and_then(|_| at.take(u64::from(loc.len)).read_to_end(&mut buf))
            .map_err(|source| PackError { path, source })?;
        Ok(Some(buf))
    }

    /// Whether the pack of `loc` exists and reaches its end.
    pub fn holds(&self, loc: Loc) -> bool {
        std::fs::metadata(self.path(loc.pack)).is_ok_and(|m| m.len() >= loc.end())
    }

    /// fsyncs the packs appended to since the last sync, and the directory when a pack
    /// was created; a synced pack's pages leave the page cache ([`crate::page_cache`]).
    /// A pack that fails is not tried again: as a blob file's failed fsync before, the
    /// flush says so once, and a pack gone (or its directory replaced) does not hold back
    /// every flush after it.
    pub fn sync(&self) -> Result<(), PackError> {
        let (dirty, created) = {
            let mut st = self.state();
            (
                std::mem::take(&mut st.dirty),
                std::mem::take(&mut st.created),
            )
        };
        let mut failed = None;
        for &pack in &dirty {
            let path = self.path(pack);
            match File::open(&path).and_then(|f| f.sync_data().map(|()| f)) {
                Ok(f) => crate::page_cache::drop_synced(&f),
                Err(source) => {
                    failed.get_or_insert(PackError { path, source });
                }
            }
        }
        if created {
            for d in [Some(self.dir.as_path()), self.dir.parent()]
                .into_iter()
                .flatten()
            {
                if let Err(source) = File::open(d).and_then(|f| f.sync_all()) {
                    failed.get_or_insert(PackError {
                        path: d.to_path_buf(),
                        source,
                    });
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_appended_read_back_where_they_went_and_a_cut_pack_reads_short() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::new(dir.path());
        let a = packs.append(b"first blob").unwrap();
        let b = packs.append(&[7u8; 1000]).unwrap();
        assert_eq!(
            a,
            Loc {
                pack: 0,
                offset: 0,
                len: 10
            }
        );
        assert_eq!(b.offset, 10);
        assert_eq!(Loc::decode(&b.encode()), Some(b));
        assert_eq!(Loc::decode(&b.encode()[..16]), None);
        assert_eq!(packs.read(a).unwrap().unwrap(), b"first blob");
        assert_eq!(packs.read(b).unwrap().unwrap(), vec![7u8; 1000]);
        assert!(packs.holds(b));
        packs.sync().unwrap();

        // Another handle on the same directory (a store opened again) appends after them.
        let again = Packs::new(dir.path());
        let c = again.append(b"third").unwrap();
        assert_eq!((c.pack, c.offset), (0, 1010));

        let f = OpenOptions::new().write(true).open(packs.path(0)).unwrap();
        f.set_len(1005).unwrap();
        assert!(!packs.holds(b));
        assert_eq!(packs.read(b).unwrap().unwrap().len(), 995, "cut short");
        std::fs::remove_file(packs.path(0)).unwrap();
        assert_eq!(packs.read(a).unwrap(), None, "a pack gone is nothing");
    }

    /// A crash part way through an append leaves bytes at the pack's end that no value
    /// points at: the next process appends after them, and what was there still reads.
    #[test]
    fn an_append_cut_by_a_crash_leaves_bytes_no_blob_uses_and_the_next_goes_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::new(dir.path());
        let a = packs.append(&[1u8; 5000]).unwrap();
        drop(packs);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("pack").join("00000000"))
            .unwrap();
        f.write_all(&[0xee; 1234]).unwrap();
        let again = Packs::new(dir.path());
        let b = again.append(&[2u8; 300]).unwrap();
        assert_eq!(b.offset, 5000 + 1234);
        assert_eq!(again.read(a).unwrap().unwrap(), vec![1u8; 5000]);
        assert_eq!(again.read(b).unwrap().unwrap(), vec![2u8; 300]);
    }

    /// Appends from several threads (import and the recorder's writer share a store)
    /// each land whole where their location says.
    #[test]
    fn appends_from_many_threads_each_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let packs = std::sync::Arc::new(Packs::new(dir.path()));
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                let packs = packs.clone();
                std::thread::spawn(move || {
                    (0..50usize)
                        .map(|i| {
                            let data =
                                vec![t.wrapping_mul(50).wrapping_add(i as u8); 1000 + i * 37];
                            (packs.append(&data).unwrap(), data)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(Loc, Vec<u8>)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        packs.sync().unwrap();
        all.sort_by_key(|(loc, _)| loc.offset);
        let mut end = 0;
        for (loc, data) in &all {
            assert_eq!(loc.offset, end, "no gap, no overlap");
            end = loc.end();
            assert_eq!(&packs.read(*loc).unwrap().unwrap(), data);
        }
        assert_eq!(std::fs::metadata(packs.path(0)).unwrap().len(), end);
    }

    #[test]
    fn a_blob_that_would_pass_the_packs_limit_starts_the_next_pack() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::new(dir.path());
        packs.append(b"x").unwrap();
        // A pack at its limit, as one grown over a long recording.
        let f = OpenOptions::new().write(true).open(packs.path(0)).unwrap();
        f.set_len(PACK_MAX).unwrap();
        let next = packs.append(b"yz").unwrap();
        assert_eq!((next.pack, next.offset), (1, 0));
        assert_eq!(packs.read(next).unwrap().unwrap(), b"yz");
        packs.sync().unwrap();
        assert_eq!(Packs::new(dir.path()).append(b"w").unwrap().pack, 1);
    }
}
