//! `tapedeck otlp SESSION (-o FILE | --endpoint URL)`: export a session's spans.

use std::path::Path;

use super::{msg, CmdResult};
use crate::recording;
use std::io::Write;
use tapedeck_model::rules::Rules;

use tapedeck_model::secure_fs::{PendingFile, PRIVATE_FILE};
use tapedeck_trace::otlp::{resolve_endpoint, trace_request, write_json, Pusher};
use tapedeck_trace::spans::{build, Trace, TraceOptions};

pub async fn run(
    session: &str,
    store: &Path,
    output: Option<&Path>,
    endpoint: Option<&str>,
    include_content: bool,
) -> CmdResult {
    let rec = recording::load(session, store).await?;
    let rules = Rules::from_working_dir()?;
    let bar = super::export::progress_bar(rec.events.len() as u64, "building spans");
    let trace = build(&rec, &rules, &TraceOptions { include_content });
    bar.finish_and_clear();
    if let Some(path) = output {
        write_file(&trace, path).map_err(msg)?;
        eprintln!(
            "wrote {} spans of {} to {} (OTLP/JSON)",
            trace.spans.len(),
            rec.source,
            path.display()
        );
        return Ok(0);
    }
    let (url, headers) = resolve_endpoint(endpoint).map_err(|e| msg(e.to_string()))?;
    let pusher = Pusher::new(url, headers).map_err(|e| msg(e.to_string()))?;
    // Large sessions go in batches so no single request is huge.
    // Each batch is the request with its spans taken out (cloned empty, not whole).
    let mut req = trace_request(&trace);
    let spans = std::mem::take(&mut req.resource_spans[0].scope_spans[0].spans);
    let bar = super::export::progress_bar(spans.len() as u64, "pushing spans");
    let mut sent = 0;
    for batch in spans.chunks(512) {
        let mut r = req.clone();
        r.resource_spans[0].scope_spans[0].spans = batch.to_vec();
        if let Err(e) = pusher.push(&r).await {
            bar.finish_and_clear();
            // Span ids are derived from session and step: pushing again later sends the
            // same spans, not new ones.
            return Err(msg(match sent {
                0 => e.to_string(),
                n => format!("{e} ({n} of {} spans were sent before it)", spans.len()),
            }));
        }
        sent += batch.len();
        bar.set_position(sent as u64);
    }
    bar.finish_and_clear();
    eprintln!("pushed {sent} spans of {} to {}", rec.source, pusher.url());
    Ok(0)
}

/// The trace as OTLP/JSON into `path`, streamed, whole or not at all; private (0600),
/// as tapes are by default: the spans name URLs, and with `--include-content` hold
/// prompts and answers.
fn write_file(trace: &Trace, path: &Path) -> Result<(), String> {
    let mut file = PendingFile::create(path, PRIVATE_FILE).map_err(|e| e.to_string())?;
    let cannot = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
    let mut out = std::io::BufWriter::new(file.file());
    write_json(trace, &mut out).map_err(|e| cannot(&e))?;
    out.write_all(b"\n").map_err(|e| cannot(&e))?;
    out.flush().map_err(|e| cannot(&e))?;
    drop(out);
    file.commit().map_err(|e| e.to_string())
}
