//! The HTTP side of `analyze --judge URL`: one chat-completions call per LLM step, sent
//! through whatever proxy the environment names (`HTTPS_PROXY`), trusting the roots plus
//! any bundle `SSL_CERT_FILE` names, so a judge run under `tapedeck record -- ...` is
//! recorded and one under `tapedeck replay -- ...` is served from its tape.

use std::time::Duration;

use serde_json::Value;

use super::analyze::JudgeOptions;
use super::{msg, CmdError};
use crate::recording::Recording;
use tapedeck_trace::analyze::judge::{finding, instruction, questions, read_answer};
use tapedeck_trace::analyze::Finding;
use tapedeck_trace::spans::parse_events;

/// The judge's API key, when the endpoint wants one.
const KEY_VARS: &[&str] = &["TAPEDECK_JUDGE_API_KEY", "OPENAI_API_KEY"];

fn client() -> Result<reqwest::Client, CmdError> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("tapedeck-judge/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        let pem = std::fs::read(&path).map_err(|e| {
            msg(format!(
                "cannot read SSL_CERT_FILE {}: {e}",
                std::path::Path::new(&path).display()
            ))
        })?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| msg(format!("SSL_CERT_FILE holds no usable certificate: {e}")))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build()
        .map_err(|e| msg(format!("cannot build the judge's HTTP client: {e}")))
}

/// Asks the judge about every LLM step of `rec`; the `goal_drift` finding, if any.
pub async fn run(rec: &Recording, opts: &JudgeOptions) -> Result<Vec<Finding>, CmdError> {
    let parsed = parse_events(rec);
    let Some(instruction) = instruction(&parsed) else {
        eprintln!(
            "judge: {} has no user instruction in its LLM calls; nothing to judge against",
            rec.source
        );
        return Ok(Vec::new());
    };
    let url = format!("{}/chat/completions", opts.url.trim_end_matches('/'));
    let key = KEY_VARS.iter().find_map(|v| std::env::var(v).ok());
    let client = client()?;
    let mut judged = Vec::new();
    let asked = questions(&parsed, &instruction, &opts.model);
    let n = asked.len();
    for q in asked {
        let mut req = client.post(&url).json(&q.body);
        if let Some(k) = &key {
            req = req.bearer_auth(k);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| msg(format!("judge {url}: step {}: {e}", q.step)))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| {
            msg(format!(
                "judge {url}: step {}: the answer is not JSON: {e}",
                q.step
            ))
        })?;
        if !status.is_success() {
            return Err(msg(format!(
                "judge {url} answered {status} for step {}: {}",
                q.step,
                tapedeck_trace::analyze::read::short(&body.to_string(), 200)
            )));
        }
        match read_answer(&body) {
            Ok(v) => judged.push((q, v)),
            Err(e) => eprintln!("judge: step {}: skipped: {e}", q.step),
        }
    }
    if judged.is_empty() && n > 0 {
        return Err(msg(format!(
            "judge {url}: none of its {n} answers could be read as {{\"score\", \"reason\"}}"
        )));
    }
    let who = format!("the judge ({} at {})", opts.model, opts.url);
    Ok(finding(&instruction, &judged, &who).into_iter().collect())
}
