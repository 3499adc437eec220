//! Large bodies of a tape, as files beside it: `NAME.jsonl` and `NAME.bodies/<blake3>`.
//!
//! A body above the tape's inline limit is written once per tape, named by its blake3,
//! and referenced from the event line as `{"file": "NAME.bodies/<blake3>"}`: the tape
//! stays a small text file that reads and diffs in git, a body seen twice is stored
//! once, and binary bodies are copied byte for byte instead of being escaped. Files are
//! written and read a segment at a time, never whole.
//!
//! Tapes are untrusted input: a reference must be exactly `DIR.bodies/<its blake3>`
//! (no other directory, no `..`), must name a regular file, and the file must hash to
//! the blake3 it is named by. Each [`crate::SEGMENT`] of it is hashed too, so a part
//! read again at replay time is checked on its own.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use thiserror::Error;

use crate::SEGMENT;
use tapedeck_model::exchange::BodyRef;
use tapedeck_model::secure_fs::{PendingFile, WriteError};

/// What is wrong with a body file of a tape, or with writing one.
#[derive(Debug, Error)]
pub enum BodyFileError {
    #[error("body file reference {0:?} is not DIR.bodies/<the body's blake3> (refused: a tape names only files in its body directory)")]
    Reference(String),
    #[error("body file {0} is missing")]
    Missing(PathBuf),
    #[error("body file {0} is not a regular file (refused)")]
    NotAFile(PathBuf),
    #[error("cannot read body file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("body file {path} holds {found} bytes, the tape says {expected} (edited or damaged)")]
    Length {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("body file {path} does not match its blake3 (it hashes to {actual}; the tape's bodies were edited or damaged)")]
    Mismatch { path: PathBuf, actual: String },
    #[error("body file {path} changed after the tape was opened (part {part} no longer matches)")]
    Changed { path: PathBuf, part: usize },
    #[error("{0} is in the way of the tape's body directory (not a directory)")]
    InTheWay(PathBuf),
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("body {b3} read back as {len} bytes that do not hash to its blake3 (the store is damaged; run `tapedeck fsck`)")]
    Source { b3: String, len: u64 },
}

/// Bodies longer than this go to files beside the tape unless `export --inline-max`
/// says otherwise.
pub const DEFAULT_INLINE_MAX: u64 = 64 << 10;

const DIR_SUFFIX: &str = ".bodies";

/// The name of the body directory of the tape at `tape` (`a.jsonl` → `a.bodies`).
pub fn dir_name(tape: &Path) -> String {
    let stem = tape
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tape".into());
    format!("{stem}{DIR_SUFFIX}")
}

/// Writes the body files of one tape, each body once.
///
/// A tape is written whole or not at all, and so are its bodies: unless [`BodyFiles::keep`]
/// is called once the tape is in place, dropping this removes the files it added (not
/// those an earlier export left, which it only checked) and the body directory when it
/// made it and nothing else is in it. A failed export (a damaged body, a full disk)
/// left them behind, named by no tape.
pub struct BodyFiles {
    /// The directory the tape is in.
    base: PathBuf,
    dir_name: String,
    mode: u32,
    inline_max: u64,
    written: HashSet<String>,
    /// Files this writer added, to remove unless the tape is kept.
    added: Vec<PathBuf>,
    /// The body directory, when this writer made it.
    made_dir: Option<PathBuf>,
    kept: bool,
}

impl Drop for BodyFiles {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for f in &self.added {
            let _ = std::fs::remove_file(f);
        }
        if let Some(dir) = &self.made_dir {
            // Fails, as it should, when anything else is in it.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl BodyFiles {
    /// Body files for the tape being written at `tape`, with permission bits `mode` (the
    /// tape's); bodies longer than `inline_max` go to files.
    pub fn new(tape: &Path, mode: u32, inline_max: u64) -> BodyFiles {
        let base = match tape.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        BodyFiles {
            base,
            dir_name: dir_name(tape),
            mode,
            inline_max,
            written: HashSet::new(),
            added: Vec::new(),
            made_dir: None,
            kept: false,
        }
    }

    /// The tape that names these files is in place: they stay.
    pub fn keep(&mut self) {
        self.kept = true;
    }

    /// Whether a body of `len` bytes goes to a file.
    pub fn wants(&self, len: u64) -> bool {
        len > self.inline_max
    }

    /// Writes body `r` (its bytes pushed by `fill`) unless this tape has it already, and
    /// returns the reference to put in the tape. A file left by an earlier export of the
    /// same tape is kept when it still hashes to its name.
    pub fn write<E: From<BodyFileError>>(
        &mut self,
        r: &BodyRef,
        fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<(), E>) -> Result<(), E>,
    ) -> Result<String, E> {
        let reference = format!("{}/{}", self.dir_name, r.b3);
        if self.written.contains(&r.b3) {
            return Ok(reference);
        }
        let dir = self.base.join(&self.dir_name);
        let dest = dir.join(&r.b3);
        if check_file(&dest, r).is_ok() {
            self.written.insert(r.b3.clone());
            return Ok(reference);
        }
        if create_dir(&dir, self.mode)? {
            self.made_dir = Some(dir.clone());
        }
        let existed = std::fs::symlink_metadata(&dest).is_ok();
        let mut file = PendingFile::create(&dest, self.mode).map_err(BodyFileError::from)?;
        let mut hasher = blake3::Hasher::new();
        let mut len = 0u64;
        {
            let mut out = std::io::BufWriter::with_capacity(SEGMENT, file.file());
            let failed = |source| {
                BodyFileError::Write(WriteError {
                    path: dest.clone(),
                    source,
                })
            };
            fill(&mut |data: &[u8]| {
                hasher.update(data);
                len += data.len() as u64;
                out.write_all(data).map_err(|e| failed(e).into())
            })?;
            out.flush().map_err(failed)?;
        }
        if hasher.finalize().to_hex().as_str() != r.b3 || len != r.len {
            return Err(BodyFileError::Source {
                b3: r.b3.clone(),
                len,
            }
            .into());
        }
        file.commit().map_err(BodyFileError::from)?;
        if !existed {
            self.added.push(dest);
        }
        self.written.insert(r.b3.clone());
        Ok(reference)
    }
}

/// Creates the body directory with the tape's read bits plus the matching search bits;
/// true when it made it.
fn create_dir(dir: &Path, file_mode: u32) -> Result<bool, BodyFileError> {
    use std::os::unix::fs::DirBuilderExt;
    let mode = file_mode | ((file_mode & 0o444) >> 2);
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(false),
        Ok(_) => Err(BodyFileError::InTheWay(dir.to_path_buf())),
        Err(_) => std::fs::DirBuilder::new()
            .mode(mode)
            .create(dir)
            .map(|()| true)
            .map_err(|source| BodyFileError::CreateDir {
                path: dir.to_path_buf(),
                source,
            }),
    }
}

/// A body kept in a file beside a tape, checked: its path, length, and what each
/// [`SEGMENT`] of it hashed to when it was opened: its chaining value at its place in the
/// body's blake3 tree ([`crate::tree`]), or for a body of one segment, its blake3.
#[derive(Debug, Clone)]
pub struct FileBody {
    pub path: PathBuf,
    pub len: u64,
    segments: Vec<[u8; 32]>,
}

impl FileBody {
    /// How many parts [`FileBody::part`] reads it in.
    pub fn parts(&self) -> usize {
        self.segments.len()
    }

    /// Part `i` ([`SEGMENT`] bytes, the last maybe fewer), checked against the hash taken
    /// when the tape was opened.
    pub fn part(&self, i: usize) -> Result<Bytes, BodyFileError> {
        let changed = || BodyFileError::Changed {
            path: self.path.clone(),
            part: i,
        };
        let want = self.segments.get(i).ok_or_else(changed)?;
        let off = i as u64 * SEGMENT as u64;
        let n = (self.len - off).min(SEGMENT as u64) as usize;
        let io = |source| BodyFileError::Read {
            path: self.path.clone(),
            source,
        };
        let mut f = std::fs::File::open(&self.path).map_err(io)?;
        f.seek(SeekFrom::Start(off)).map_err(io)?;
        let mut buf = vec![0u8; n];
        f.read_exact(&mut buf).map_err(io)?;
        if crate::tree::part_hash(self.len, i, &buf) != *want {
            return Err(changed());
        }
        Ok(Bytes::from(buf))
    }

    /// The whole body (for the small uses that need it whole; replay reads parts).
    pub fn read_all(&self) -> Result<Bytes, BodyFileError> {
        let mut out = Vec::with_capacity(self.len as usize);
        for i in 0..self.parts() {
            out.extend_from_slice(&self.part(i)?);
        }
        Ok(Bytes::from(out))
    }
}

/// Resolves `reference` (from the tape at `tape`) for body `r` and checks the file.
pub fn open(tape: &Path, reference: &str, r: &BodyRef) -> Result<FileBody, BodyFileError> {
    let rel = Path::new(reference);
    let parts: Vec<Component> = rel.components().collect();
    let well_formed = matches!(
        parts.as_slice(),
        [Component::Normal(d), Component::Normal(f)]
            if d.to_string_lossy().ends_with(DIR_SUFFIX) && f.to_str() == Some(r.b3.as_str())
    ) && !reference.contains('\\');
    if !well_formed || blake3::Hash::from_hex(&r.b3).is_err() {
        return Err(BodyFileError::Reference(reference.to_string()));
    }
    let base = match tape.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    check_file(&base.join(rel), r)
}

/// Hashes the file at `path` segment by segment and checks it is body `r`: each byte
/// once, the segments' chaining values giving the body's blake3.
fn check_file(path: &Path, r: &BodyRef) -> Result<FileBody, BodyFileError> {
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            BodyFileError::Missing(path.to_path_buf())
        } else {
            BodyFileError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(BodyFileError::NotAFile(path.to_path_buf()));
    }
    if meta.len() != r.len {
        return Err(BodyFileError::Length {
            path: path.to_path_buf(),
            found: meta.len(),
            expected: r.len,
        });
    }
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut segments = Vec::with_capacity(r.len.div_ceil(SEGMENT as u64) as usize);
    let mut buf = vec![0u8; SEGMENT];
    let mut left = r.len;
    while left > 0 {
        let n = left.min(SEGMENT as u64) as usize;
        f.read_exact(&mut buf[..n]).map_err(io)?;
        segments.push(crate::tree::part_hash(r.len, segments.len(), &buf[..n]));
        left -= n as u64;
    }
    // A tree's parts merge to the body's blake3; a body of one part is its own hash.
    let actual = crate::tree::tree_hash(&segments).unwrap_or_else(|| match segments.first() {
        Some(h) => blake3::Hash::from_bytes(*h),
        None => blake3::hash(b""),
    });
    if actual.to_hex().as_str() != r.b3 {
        return Err(BodyFileError::Mismatch {
            path: path.to_path_buf(),
            actual: actual.to_hex().to_string(),
        });
    }
    Ok(FileBody {
        path: path.to_path_buf(),
        len: r.len,
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_ref(data: &[u8]) -> BodyRef {
        BodyRef {
            b3: blake3::hash(data).to_hex().to_string(),
            len: data.len() as u64,
            encoding: None,
            at: None,
        }
    }

    /// Writes `data`'s file and keeps it, as an export whose tape was written does.
    fn write(files: &mut BodyFiles, data: &[u8]) -> String {
        let reference = files
            .write::<BodyFileError>(&body_ref(data), |sink| data.chunks(1000).try_for_each(sink))
            .unwrap();
        files.keep();
        reference
    }

    #[test]
    fn files_of_a_tape_never_kept_are_removed_and_earlier_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let tape = dir.path().join("run.jsonl");
        let (a, b) = (b"first body".repeat(10), b"second body".repeat(10));
        let put = |files: &mut BodyFiles, data: &[u8]| {
            files
                .write::<BodyFileError>(&body_ref(data), |sink| sink(data))
                .unwrap()
        };
        let mut files = BodyFiles::new(&tape, 0o600, 10);
        put(&mut files, &a);
        drop(files);
        assert!(!dir.path().join("run.bodies").exists(), "made here, gone");

        let kept = write(&mut BodyFiles::new(&tape, 0o600, 10), &a);
        let mut files = BodyFiles::new(&tape, 0o600, 10);
        assert_eq!(put(&mut files, &a), kept);
        let added = put(&mut files, &b);
        drop(files);
        assert!(
            dir.path().join(&kept).is_file(),
            "an earlier tape's file stays"
        );
        assert!(!dir.path().join(added).exists(), "this one's goes");
    }

    #[test]
    fn a_body_is_written_once_and_reads_back_part_by_part() {
        let dir = tempfile::tempdir().unwrap();
        let tape = dir.path().join("run.jsonl");
        let data: Vec<u8> = (0..(SEGMENT * 2 + 17)).map(|i| (i % 253) as u8).collect();
        let mut files = BodyFiles::new(&tape, 0o600, 10);
        let reference = write(&mut files, &data);
        assert_eq!(reference, format!("run.bodies/{}", body_ref(&data).b3));
        // Seen again: not written again (a read-only directory would fail a second write).
        assert_eq!(
            files
                .write(&body_ref(&data), |_| Err(BodyFileError::InTheWay(
                    "x".into()
                )))
                .unwrap(),
            reference
        );
        let fb = open(&tape, &reference, &body_ref(&data)).unwrap();
        assert_eq!(fb.parts(), 3);
        assert_eq!(fb.read_all().unwrap(), data);
        assert_eq!(fb.part(2).unwrap().len(), 17);
    }

    #[test]
    fn hostile_references_and_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tape = dir.path().join("run.jsonl");
        let data = b"some body bytes".repeat(100);
        let r = body_ref(&data);
        let reference = write(&mut BodyFiles::new(&tape, 0o600, 10), &data);
        for bad in [
            format!("../run.bodies/{}", r.b3),
            format!("/tmp/run.bodies/{}", r.b3),
            format!("run.bodies/../run.bodies/{}", r.b3),
            format!("other/{}", r.b3),
            "run.bodies/x".to_string(),
        ] {
            let err = open(&tape, &bad, &r).unwrap_err().to_string();
            assert!(err.contains("not DIR.bodies"), "{bad}: {err}");
        }
        let path = dir.path().join(&reference);
        let mut edited = data.clone();
        edited[5] ^= 1;
        std::fs::write(&path, &edited).unwrap();
        let err = open(&tape, &reference, &r).unwrap_err().to_string();
        assert!(err.contains("does not match its blake3"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = open(&tape, &reference, &r).unwrap_err().to_string();
        assert!(err.contains("is missing"), "{err}");
        std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
        let err = open(&tape, &reference, &r).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn a_file_changed_after_opening_fails_its_part_check() {
        let dir = tempfile::tempdir().unwrap();
        let tape = dir.path().join("t.jsonl");
        let data = vec![7u8; 5000];
        let reference = write(&mut BodyFiles::new(&tape, 0o600, 10), &data);
        let fb = open(&tape, &reference, &body_ref(&data)).unwrap();
        std::fs::write(dir.path().join(&reference), vec![8u8; 5000]).unwrap();
        assert!(matches!(
            fb.part(0),
            Err(BodyFileError::Changed { part: 0, .. })
        ));
    }

    /// A body of several segments is checked in one pass when opened, and each part read
    /// later against what its segment hashed to at its place: two segments swapped, or
    /// one byte changed, are found; the file as written reads back whole.
    #[test]
    fn parts_of_a_body_of_several_segments_are_checked_at_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let tape = dir.path().join("t.jsonl");
        let data: Vec<u8> = (0..SEGMENT * 3 + 5).map(|i| (i * 31 % 251) as u8).collect();
        let reference = write(&mut BodyFiles::new(&tape, 0o600, 10), &data);
        let r = body_ref(&data);
        let fb = open(&tape, &reference, &r).unwrap();
        assert_eq!(fb.parts(), 4);
        assert_eq!(fb.read_all().unwrap(), data);
        let path = dir.path().join(&reference);
        let mut swapped = data.clone();
        swapped[..SEGMENT].copy_from_slice(&data[SEGMENT..SEGMENT * 2]);
        swapped[SEGMENT..SEGMENT * 2].copy_from_slice(&data[..SEGMENT]);
        std::fs::write(&path, &swapped).unwrap();
        assert!(matches!(
            fb.part(0),
            Err(BodyFileError::Changed { part: 0, .. })
        ));
        assert!(matches!(
            open(&tape, &reference, &r),
            Err(BodyFileError::Mismatch { .. })
        ));
        let mut edited = data.clone();
        edited[SEGMENT * 3 + 4] ^= 1;
        std::fs::write(&path, &edited).unwrap();
        assert_eq!(fb.part(2).unwrap(), data[SEGMENT * 2..SEGMENT * 3]);
        assert!(matches!(
            fb.part(3),
            Err(BodyFileError::Changed { part: 3, .. })
        ));
    }
}
