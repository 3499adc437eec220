//! The `tapedeck` binary: parse the command line, set up logging on stderr, run the
//! command (everything lives in the library), and exit with its status.

#![forbid(unsafe_code)]

use clap::Parser;

// A proxy allocates and frees small buffers across threads all day; mimalloc does that
// with far less contention than glibc's malloc (see the benchmark in the README).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // First, while this is the only thread: may run tapedeck again (src/memcpy.rs).
    tapedeck::memcpy::tune();
    let cli = tapedeck::cli::Cli::parse();
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TAPEDECK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,tapedeck={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(tapedeck::paint::Paint::stderr().is_on())
        .init();
    let code = match tapedeck::cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tapedeck: error: {e:#}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
