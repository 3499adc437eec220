//! `tapedeck export SESSION -o FILE`: write a session as a tape.

use std::io::Write;
use std::path::Path;

use super::{msg, stderr_is_terminal, CmdResult};
use crate::recording;

pub async fn run(session: &str, output: &Path, store: &Path) -> CmdResult {
    let rec = recording::load(session, store).await?;
    let tmp = output.with_extension("tmp-export");
    let file = std::fs::File::create(&tmp)
        .map_err(|e| msg(format!("cannot write {}: {e}", tmp.display())))?;
    let mut out = std::io::BufWriter::new(file);
    let bar = progress_bar(rec.events.len() as u64, "exporting");
    rec.write_tape(&mut out, |n| bar.set_position(n as u64))
        .map_err(|e| msg(format!("cannot export {}: {e}", rec.source)))?;
    out.flush()
        .map_err(|e| msg(format!("cannot write {}: {e}", tmp.display())))?;
    drop(out);
    std::fs::rename(&tmp, output)
        .map_err(|e| msg(format!("cannot write {}: {e}", output.display())))?;
    bar.finish_and_clear();
    eprintln!(
        "exported {} events of {} to {}",
        rec.events.len(),
        rec.source,
        output.display()
    );
    Ok(0)
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
