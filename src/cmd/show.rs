//! `tapedeck show SESSION`: the span tree in the terminal (or `--timeline`, `--json`).

use std::path::Path;

use super::CmdResult;
use crate::paint;
use crate::recording;
use tapedeck_model::rules::Rules;
use tapedeck_trace::spans::{build, Role, Span, Trace, TraceOptions};

struct Paint(crate::paint::Paint);

impl Paint {
    fn red(&self, s: &str) -> String {
        self.0.paint(paint::RED, s)
    }
    fn yellow(&self, s: &str) -> String {
        self.0.paint(paint::YELLOW, s)
    }
    fn dim(&self, s: &str) -> String {
        self.0.paint(paint::DIM, s)
    }
    fn bold(&self, s: &str) -> String {
        self.0.paint(paint::BOLD, s)
    }
}

/// The span tree as plain text (no colours), as `show` prints it to a pipe.
pub fn plain(trace: &Trace) -> String {
    render(trace, false, &Paint(paint::Paint::PLAIN))
}

pub async fn run(session: &str, store: &Path, timeline: bool, json: bool) -> CmdResult {
    let rec = recording::load(session, store).await?;
    let rules = Rules::from_working_dir()?;
    let trace = build(&rec, &rules, &TraceOptions::default());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&trace.to_json()).unwrap_or_default()
        );
        return Ok(0);
    }
    let paint = Paint(paint::Paint::stdout());
    print!("{}", render(&trace, timeline, &paint));
    Ok(0)
}

fn status_text(sp: &Span, p: &Paint) -> String {
    if let Some(e) = &sp.error {
        let t = match sp.attr("error.type") {
            Some(tapedeck_trace::spans::AttrValue::Str(s)) => s.clone(),
            _ => "error".into(),
        };
        let short: String = e.chars().take(60).collect();
        return p.red(&format!("ERROR {t}: {short}"));
    }
    let mut parts = Vec::new();
    if sp.flag == Some("empty") {
        parts.push(p.yellow("EMPTY answer"));
    }
    if let Some(tapedeck_trace::spans::AttrValue::StrArray(f)) =
        sp.attr("gen_ai.response.finish_reasons")
    {
        parts.push(f.join(","));
    }
    if let Some(code) = sp.int("http.response.status_code") {
        parts.push(code.to_string());
    }
    parts.join(" ")
}

fn tokens_text(sp: &Span) -> String {
    match (
        sp.int("gen_ai.usage.input_tokens"),
        sp.int("gen_ai.usage.output_tokens"),
    ) {
        (Some(i), Some(o)) => format!("in {i} out {o}"),
        (Some(i), None) => format!("in {i}"),
        _ => String::new(),
    }
}

/// The tree, one span a line; with `timeline`, a waterfall bar instead of the status.
fn render(trace: &Trace, timeline: bool, p: &Paint) -> String {
    let mut out = String::new();
    let root = match trace.spans.first() {
        Some(r) => r,
        None => return format!("session {} has no events\n", trace.session),
    };
    let mut lines: Vec<(String, &Span)> = Vec::new();
    fn walk<'a>(
        t: &'a Trace,
        i: usize,
        prefix: &str,
        last: bool,
        top: bool,
        lines: &mut Vec<(String, &'a Span)>,
    ) {
        let sp = &t.spans[i];
        let branch = if top {
            String::new()
        } else if last {
            format!("{prefix}└─ ")
        } else {
            format!("{prefix}├─ ")
        };
        lines.push((format!("{branch}{}", sp.name), sp));
        let child_prefix = if top {
            String::new()
        } else if last {
            format!("{prefix}   ")
        } else {
            format!("{prefix}│  ")
        };
        let n = sp.children.len();
        for (k, &c) in sp.children.iter().enumerate() {
            walk(t, c, &child_prefix, k + 1 == n, false, lines);
        }
    }
    walk(trace, 0, "", true, true, &mut lines);
    let name_w = lines
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(10)
        .clamp(20, 64);
    out.push_str(&p.bold(&format!(
        "{:<6} {:<5} {:<name_w$} {:>10}  {:<16} {}\n",
        "STEP",
        "KIND",
        "SPAN",
        "DURATION",
        "TOKENS",
        if timeline { "TIMELINE" } else { "STATUS" }
    )));
    let t0 = root.start_ns;
    let total = root.end_ns.saturating_sub(t0).max(1) as f64;
    const BAR: usize = 50;
    for (name, sp) in &lines {
        // A tool call is not an exchange of its own: its step is the deciding LLM call's.
        let decided = matches!(sp.attr("gen_ai.tool.type"), Some(tapedeck_trace::spans::AttrValue::Str(t)) if t == "function");
        let step = match sp.step {
            Some(_) if decided => String::new(),
            Some(s) => format!("#{s}"),
            None => String::new(),
        };
        let kind = match sp.role {
            Role::Llm => "llm",
            Role::Tool => "tool",
            Role::Http => "http",
            Role::Mcp => "mcp",
            Role::Agent => "agent",
            Role::Workflow => "flow",
        };
        let name: String = if name.chars().count() > name_w {
            name.chars().take(name_w - 1).collect::<String>() + "…"
        } else {
            name.clone()
        };
        let last = if timeline {
            let a = ((sp.start_ns.saturating_sub(t0)) as f64 / total * BAR as f64).floor() as usize;
            let b = ((sp.end_ns.saturating_sub(t0)) as f64 / total * BAR as f64).ceil() as usize;
            let a = a.min(BAR - 1);
            let b = b.clamp(a + 1, BAR);
            let bar = format!(
                "{}{}{}",
                " ".repeat(a),
                "█".repeat(b - a),
                " ".repeat(BAR - b)
            );
            let bar = if sp.error.is_some() { p.red(&bar) } else { bar };
            format!("|{bar}|")
        } else {
            status_text(sp, p)
        };
        let dur = format!("{:.1} ms", sp.duration_ms());
        let line = format!(
            "{:<6} {:<5} {:<name_w$} {:>10}  {:<16} {}",
            step,
            kind,
            name,
            dur,
            tokens_text(sp),
            last
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let t = trace.totals();
    let errors = if t.errors > 0 {
        p.red(&format!("{} errors", t.errors))
    } else {
        "0 errors".into()
    };
    out.push_str(&p.dim(&"─".repeat(40)));
    out.push('\n');
    out.push_str(&format!(
        "total: {} LLM call{}, {} tool call{}, {} HTTP exchange{}, {} tokens in / {} out, {:.2} s, {}\n",
        t.llm_calls,
        if t.llm_calls == 1 { "" } else { "s" },
        t.tool_calls,
        if t.tool_calls == 1 { "" } else { "s" },
        t.http_exchanges,
        if t.http_exchanges == 1 { "" } else { "s" },
        t.input_tokens,
        t.output_tokens,
        t.duration_ms / 1000.0,
        errors
    ));
    out
}
