//! Every integration test of the `tapedeck` binary, in one test binary.
//!
//! Each file beside this one is a module of it (`tests/record.rs` is `record`, its tests
//! `record::...`), and `support` is compiled once for all of them. Seventeen test
//! binaries each compiled `support` again and linked the whole workspace again: about
//! 100 s of CPU of a debug build, on a 2-core machine where CI builds from scratch. Run
//! one file's tests with `cargo test --test integration record::` (or `cargo nextest run
//! -E 'test(/^record::/)'`).

mod support;

mod analyze;
mod cases;
mod fixture_selftest;
mod hostile;
mod layers;
mod limits;
mod mcp;
mod record;
mod replay;
mod secrets;
mod security;
mod store;
mod trace;
mod trust;
mod ui;
mod websocket;
mod whatif;

/// A file added to tests/ and not named above would compile into nothing and run no test.
#[test]
fn every_file_of_tests_is_a_module_of_this_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(module) = name.strip_suffix(".rs") {
            if module != "main" && !main.lines().any(|l| l == format!("mod {module};")) {
                missing.push(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "tests/main.rs does not name {missing:?}: add `mod NAME;` for each"
    );
}
