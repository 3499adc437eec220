//! `--inject` for record and replay: the rules of `tapedeck.toml` and the command line,
//! their body files read at start, and the tool names the rules pick by.

use std::sync::Arc;

use super::CmdError;
use tapedeck_model::exchange::inject::Injector;
use tapedeck_model::rules::Rules;
use tapedeck_record::Faults;

/// The injector of the rules in force, if any rule injects; body files are read from the
/// working directory now, so a missing one stops the start rather than a run.
pub fn injector(rules: &Rules) -> Result<Option<Arc<Injector>>, CmdError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let injector = Injector::new(&rules.inject, &cwd)?.map(Arc::new);
    if let Some(i) = &injector {
        tracing::info!("injecting faults: {}", i.texts().join("; "));
    }
    Ok(injector)
}

/// What a recorder injects: the rules, with tools named by the rules and hosts.
pub fn faults(rules: &Rules) -> Result<Option<Faults>, CmdError> {
    Ok(injector(rules)?.map(|injector| Faults {
        injector,
        tools: None,
    }))
}
