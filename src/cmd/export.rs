//! `tapedeck export SESSION -o FILE`: write a session as a tape (bodies above
//! `--inline-max` bytes go to files in `FILE`'s `.bodies` directory beside it).

use std::io::Write;
use std::path::Path;

use super::{msg, stderr_is_terminal, CmdError, CmdResult};
use crate::recording;
use tapedeck_model::secure_fs::PendingFile;
use tapedeck_store::tape_files::BodyFiles;

/// Writes the tape to `output` with permission bits `mode` (0600 unless `--mode`).
pub async fn run(
    session: &str,
    output: &Path,
    store: &Path,
    mode: u32,
    inline_max: u64,
    allow_damaged: bool,
) -> CmdResult {
    // The events stay in the store and are read back one at a time as they are written.
    let rec = recording::Loader::new(store)
        .leaving_events_in_store()
        .load(session)
        .await?;
    // A tape replays as whole: one with a hole would be served as a shorter run.
    super::refuse_damaged(
        &rec,
        allow_damaged,
        "its tape would have a hole in it, and replay would serve the tape as a shorter run, so none is written",
        "or pass --allow-damaged to export the rest",
    )?;
    let bar = progress_bar(rec.len() as u64, "exporting");
    write_tape(&rec, output, mode, inline_max, |n| {
        bar.set_position(n as u64)
    })?;
    bar.finish_and_clear();
    eprintln!(
        "exported {} events of {} to {}",
        rec.len(),
        rec.source,
        output.display()
    );
    Ok(0)
}

/// Writes `rec` as a tape at `output`: whole or not at all, never through a symlink.
/// Bodies longer than `inline_max` are written once each to `NAME.bodies/<blake3>`
/// beside it, before the tape that names them; when the tape is not written, the body
/// files this export added go too.
pub fn write_tape(
    rec: &recording::Recording,
    output: &Path,
    mode: u32,
    inline_max: u64,
    progress: impl FnMut(usize),
) -> Result<(), CmdError> {
    let mut file = PendingFile::create(output, mode).map_err(|e| msg(e.to_string()))?;
    let mut out = std::io::BufWriter::new(file.file());
    let mut files = BodyFiles::new(output, mode, inline_max);
    rec.write_tape(&mut out, Some(&mut files), progress)
        .map_err(|e| msg(format!("cannot export {}: {e}", rec.source)))?;
    out.flush()
        .map_err(|e| msg(format!("cannot write {}: {e}", output.display())))?;
    drop(out);
    file.commit().map_err(|e| msg(e.to_string()))?;
    files.keep();
    Ok(())
}

/// A progress bar on a terminal for long jobs; hidden otherwise.
pub fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    if !stderr_is_terminal() || len < 2000 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} events ({eta})")
    {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}
