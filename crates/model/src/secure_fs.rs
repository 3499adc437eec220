//! Files that hold recordings, keys and tokens: private by default, never written
//! through a symlink.
//!
//! A recording holds what an agent sent and received, so the store directory is 0700
//! and what tapedeck writes there is 0600. Every write goes to a fresh temporary file
//! in the destination's directory (created with `O_EXCL`, which never follows a link)
//! and is renamed over the destination: a symlink planted at the destination is
//! replaced, its target is never touched, and a reader never sees half a file.

use std::fs::Permissions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Mode of the store directory and of directories tapedeck creates inside it.
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of store files, tapes (unless `export --mode` says otherwise), keys and tokens.
pub const PRIVATE_FILE: u32 = 0o600;

#[derive(Debug, Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// A file being written next to its destination; [`PendingFile::commit`] renames it into
/// place, dropping it removes it.
pub struct PendingFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl PendingFile {
    /// Starts writing `dest` with permission bits `mode`.
    pub fn create(dest: &Path, mode: u32) -> Result<PendingFile, WriteError> {
        let err = |source| WriteError {
            path: dest.to_path_buf(),
            source,
        };
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // Said plainly, before the temporary file's own name can turn up in an error.
        if dest.is_dir() || dest.as_os_str().as_encoded_bytes().ends_with(b"/") {
            return Err(err(std::io::Error::other(
                "it is a directory: name the file to write",
            )));
        }
        if !dir.is_dir() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("its directory {} does not exist", dir.display()),
            )));
        }
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Created 0600 by tempfile; the mode asked for is set exactly (no umask).
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(err)?;
        tmp.as_file()
            .set_permissions(Permissions::from_mode(mode))
            .map_err(err)?;
        Ok(PendingFile {
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    pub fn file(&mut self) -> &mut std::fs::File {
        self.tmp.as_file_mut()
    }

    /// Renames the file over the destination (replacing a symlink there, not following
    /// it). Durability is the caller's: the store's committer fsyncs what it wrote.
    pub fn commit(self) -> Result<(), WriteError> {
        let dest = self.dest.clone();
        self.tmp.persist(&dest).map_err(|e| WriteError {
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(())
    }
}

/// Writes `data` to `dest` with mode `mode`, atomically and without following a link.
pub fn write(dest: &Path, data: &[u8], mode: u32) -> Result<(), WriteError> {
    let mut f = PendingFile::create(dest, mode)?;
    f.file().write_all(data).map_err(|source| WriteError {
        path: dest.to_path_buf(),
        source,
    })?;
    f.commit()
}

/// Creates `dir` if needed and makes it 0700. A directory tapedeck cannot change (owned
/// by someone else) is left as it is, with a warning.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o777 != PRIVATE_DIR {
        if let Err(e) = std::fs::set_permissions(dir, Permissions::from_mode(PRIVATE_DIR)) {
            tracing::warn!(
                "{} is mode {:o} and cannot be made 0700 ({e}): others on this machine may read the recordings in it",
                dir.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    Ok(())
}

/// Makes every directory under `root` 0700 and every file 0600. Files that a library
/// created with the process umask (sled's database and snapshots) are tightened when
/// the store is opened and again when it is closed; the 0700 directory guards them in
/// between. Symlinks are neither followed nor changed.
pub fn tighten_tree(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            let want = if meta.is_dir() {
                stack.push(entry.path());
                PRIVATE_DIR
            } else if meta.is_file() {
                PRIVATE_FILE
            } else {
                continue;
            };
            if meta.permissions().mode() & 0o777 != want {
                let _ = std::fs::set_permissions(entry.path(), Permissions::from_mode(want));
            }
        }
    }
}

/// The permission bits of `path` (without following a symlink), if it exists.
pub fn mode(path: &Path) -> Option<u32> {
    path.symlink_metadata()
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

/// A `--mode` that is not octal permission bits.
#[derive(Debug, PartialEq, Eq, Error)]
#[error("{0:?} is not a file mode; give octal permission bits such as 600 or 644")]
pub struct ModeError(String);

/// Parses an octal mode such as `600`, `0644` or `0o640`.
pub fn parse_mode(text: &str) -> Result<u32, ModeError> {
    let digits = text.trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(ModeError(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_directory_or_a_missing_one_is_named_not_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = write(dir.path(), b"x", PRIVATE_FILE)
            .unwrap_err()
            .to_string();
        assert!(e.contains("it is a directory"), "{e}");
        let slash = format!("{}/", dir.path().join("new").display());
        let e = write(Path::new(&slash), b"x", PRIVATE_FILE)
            .unwrap_err()
            .to_string();
        assert!(e.contains("it is a directory"), "{e}");
        let e = write(&dir.path().join("no/such/dir/a.jsonl"), b"x", PRIVATE_FILE)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not exist") && !e.contains(".a.jsonl."),
            "{e}"
        );
        write(&dir.path().join("a.jsonl"), b"x", PRIVATE_FILE).unwrap();
    }

    use super::*;

    #[test]
    fn a_write_replaces_a_symlink_and_leaves_its_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let dest = dir.path().join("bundle.pem");
        std::os::unix::fs::symlink(&victim, &dest).unwrap();
        write(&dest, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!dest.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new");
        assert_eq!(mode(&dest), Some(0o644));
        // Nothing left behind but the two files.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn files_are_private_unless_asked_and_the_mode_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tape.jsonl");
        write(&p, b"x", PRIVATE_FILE).unwrap();
        assert_eq!(mode(&p), Some(0o600));
        write(&p, b"x", 0o664).unwrap();
        assert_eq!(
            mode(&p),
            Some(0o664),
            "umask does not narrow an explicit mode"
        );
        let abandoned = PendingFile::create(&dir.path().join("never"), 0o600).unwrap();
        drop(abandoned);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_store_tree_is_tightened_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        private_dir(&root.join("db")).unwrap();
        std::fs::set_permissions(&root, Permissions::from_mode(0o755)).unwrap();
        std::fs::write(root.join("db/conf"), "x").unwrap();
        std::fs::set_permissions(root.join("db/conf"), Permissions::from_mode(0o644)).unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "x").unwrap();
        std::fs::set_permissions(&outside, Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        private_dir(&root).unwrap();
        tighten_tree(&root);
        assert_eq!(mode(&root), Some(0o700));
        assert_eq!(mode(&root.join("db")), Some(0o700));
        assert_eq!(mode(&root.join("db/conf")), Some(0o600));
        assert_eq!(mode(&outside), Some(0o644));
    }

    #[test]
    fn modes_parse_as_octal() {
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("0o640"), Ok(0o640));
        assert!(parse_mode("999").is_err());
        assert!(parse_mode("7777").is_err());
        assert!(parse_mode("rw").is_err());
    }
}
