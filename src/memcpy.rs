//! How glibc copies memory on AMD Zen 3 and later: off `rep movsb`, by running tapedeck
//! again with glibc's tunable set, once, as it starts.
//!
//! glibc before 2.39 copies 2 KiB and more with `rep movsb` on a CPU that reports fast
//! short `rep movsb` (FSRM). AMD's Zen 3 and Zen 4 report it, but there the instruction
//! runs several times slower when the destination is not aligned as the source is
//! (glibc bug 30994; glibc 2.39 stopped using it on AMD). rustls copies every TLS
//! record's plaintext to 5 bytes past the start of a fresh buffer, so a proxy that
//! encrypts large bodies copies all of them the slow way: 27 % of replay's samples while
//! it served 5 MB bodies on an AMD EPYC under Debian 12 (glibc 2.36). glibc's tunable
//! `glibc.cpu.x86_rep_movsb_threshold` sends those copies to its vector loops, but glibc
//! reads tunables only when a process starts: so tapedeck, started on such a CPU without
//! it, executes itself again with it (the same process id, arguments and environment,
//! plus the tunable). The programs tapedeck starts (the agent, a browser) get the
//! environment tapedeck was started with ([`restore`]).
//!
//! `TAPEDECK_GLIBC_DEFAULTS=1` leaves glibc as it is, and a `GLIBC_TUNABLES` that already
//! sets the threshold is the user's to keep.

use std::ffi::OsString;

/// The tunable, and the threshold that keeps glibc's `memcpy` off `rep movsb`: no copy
/// reaches it (past its non-temporal threshold glibc streams a copy either way).
const TUNABLE: &str = "glibc.cpu.x86_rep_movsb_threshold";
const THRESHOLD: u64 = 1 << 40;

/// What `GLIBC_TUNABLES` was when tapedeck was started: `-` when it was not set, `=`
/// and its value when it was. The run that carries the tunable has it, and a tapedeck
/// that has it does not run itself again.
pub const STARTED_WITH: &str = "TAPEDECK_GLIBC_TUNABLES_WAS";

/// Leaves glibc's defaults alone when set to anything but `0` or empty.
pub const OPT_OUT: &str = "TAPEDECK_GLIBC_DEFAULTS";

/// Runs this process again, with the tunable, when glibc here would copy with `rep movsb`
/// on an AMD CPU. Returns (doing nothing) when it need not, or when the new run could
/// not start: tapedeck then works as before, only slower to copy. Call it first in
/// `main`, before any thread starts.
pub fn tune() {
    if !wanted() {
        return;
    }
    let was = std::env::var_os("GLIBC_TUNABLES");
    let mut tunables = was.clone().unwrap_or_default();
    if !tunables.is_empty() {
        tunables.push(":");
    }
    tunables.push(format!("{TUNABLE}={THRESHOLD}"));
    let mut marker = OsString::new();
    match &was {
        Some(v) => {
            marker.push("=");
            marker.push(v);
        }
        None => marker.push("-"),
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "tapedeck".into());
    use std::os::unix::process::CommandExt;
    // `/proc/self/exe` is this binary even when its file was replaced or moved since.
    let _not_started = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(STARTED_WITH, marker)
        .exec();
}

/// Whether this process runs with the tunable [`tune`] set (here, or in the process
/// that started it).
pub fn tuned() -> bool {
    std::env::var_os(STARTED_WITH).is_some()
}

/// Whether [`tune`] should run tapedeck again.
fn wanted() -> bool {
    if !cfg!(all(
        target_os = "linux",
        target_arch = "x86_64",
        target_env = "gnu"
    )) {
        return false;
    }
    if std::env::var_os(STARTED_WITH).is_some()
        || std::env::var_os(OPT_OUT).is_some_and(|v| !v.is_empty() && v != "0")
    {
        return false;
    }
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains(TUNABLE)) {
        return false;
    }
    // Started through the dynamic loader (`ld-linux-x86-64.so.2 tapedeck ...`), this
    // process's executable is the loader, which would take the first argument for the
    // program to run.
    if std::fs::read_link("/proc/self/exe").map_or(true, |exe| is_loader(&exe)) {
        return false;
    }
    std::fs::File::open("/proc/cpuinfo").is_ok_and(|f| slow_rep_movsb(std::io::BufReader::new(f)))
}

/// Whether `exe` is glibc's dynamic loader (`ld-linux-x86-64.so.2`, `ld.so`), not a
/// program of its own.
fn is_loader(exe: &std::path::Path) -> bool {
    exe.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("ld-") || n.starts_with("ld.so"))
}

/// Whether the CPU `cpuinfo` describes (the first one in it) is AMD's and reports fast
/// short `rep movsb`: where glibc before 2.39 uses it for every copy of 2 KiB and more.
pub fn slow_rep_movsb(cpuinfo: impl std::io::BufRead) -> bool {
    let mut amd = false;
    for line in cpuinfo.lines() {
        let Ok(line) = line else { return false };
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "vendor_id" => amd = value.trim() == "AuthenticAMD",
            "flags" => return amd && value.split_whitespace().any(|f| f == "fsrm"),
            _ => {}
        }
    }
    false
}

/// Gives a program tapedeck starts the environment tapedeck was started with:
/// `GLIBC_TUNABLES` as it was, and no word of the tuning. Nothing when tapedeck did not
/// tune.
pub fn restore(command: &mut std::process::Command) {
    use std::os::unix::ffi::OsStrExt;
    let Some(was) = std::env::var_os(STARTED_WITH) else {
        return;
    };
    match was.as_bytes().strip_prefix(b"=") {
        Some(value) => command.env("GLIBC_TUNABLES", std::ffi::OsStr::from_bytes(value)),
        None => command.env_remove("GLIBC_TUNABLES"),
    };
    command.env_remove(STARTED_WITH);
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMD: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n\
                       flags\t\t: fpu vme erms fsrm avx512f\n\nprocessor\t: 1\n";

    #[test]
    fn an_amd_cpu_with_fast_short_rep_movsb_is_tuned_and_no_other() {
        assert!(slow_rep_movsb(AMD.as_bytes()));
        let older = AMD.replace(" fsrm", "");
        assert!(!slow_rep_movsb(older.as_bytes()));
        let intel = AMD.replace("AuthenticAMD", "GenuineIntel");
        assert!(!slow_rep_movsb(intel.as_bytes()));
        // A flag that only begins with the name is not the flag.
        let lookalike = AMD.replace(" fsrm", " fsrmx");
        assert!(!slow_rep_movsb(lookalike.as_bytes()));
        assert!(!slow_rep_movsb(&b""[..]));
    }

    #[test]
    fn a_process_started_through_the_loader_is_not_run_again() {
        use std::path::Path;
        assert!(is_loader(Path::new("/lib64/ld-linux-x86-64.so.2")));
        assert!(is_loader(Path::new(
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        )));
        assert!(is_loader(Path::new("/lib/ld.so")));
        assert!(!is_loader(Path::new("/usr/local/bin/tapedeck")));
        assert!(!is_loader(Path::new(
            "/work/target/release/deps/proxy-e89563e24bab161b"
        )));
    }
}
