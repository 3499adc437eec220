//! The CA settings in pip's, git's and cargo's own config files, which `PIP_CERT`,
//! `GIT_SSL_CAINFO` and `CARGO_HTTP_CAINFO` override: their certificates go into the
//! bundle too, so a corporate index, git host or registry keeps working.

use std::path::{Path, PathBuf};

use super::sources::{var, Env, Source, SourceCerts};

/// pip's `cert` in every config file pip reads.
pub fn pip(env: &Env) -> Vec<Source> {
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(f) = var(env, "PIP_CONFIG_FILE") {
        files.push(PathBuf::from(f));
    }
    let xdg_dirs = var(env, "XDG_CONFIG_DIRS").unwrap_or("/etc/xdg");
    files.extend(std::env::split_paths(xdg_dirs).map(|d| d.join("pip").join("pip.conf")));
    files.push(PathBuf::from("/etc/pip.conf"));
    if let Some(home) = var(env, "HOME") {
        files.push(Path::new(home).join(".pip").join("pip.conf"));
    }
    let config_home = var(env, "XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| var(env, "HOME").map(|h| Path::new(h).join(".config")));
    if let Some(d) = config_home {
        files.push(d.join("pip").join("pip.conf"));
    }
    if let Some(venv) = var(env, "VIRTUAL_ENV") {
        files.push(Path::new(venv).join("pip.conf"));
    }
    let mut out = Vec::new();
    for f in files {
        if let Ok(text) = std::fs::read_to_string(&f) {
            out.extend(pip_conf_sources(&text, &f));
        }
    }
    out
}

/// `cert = PATH` in any section of a pip.conf (configparser: `=` or `:`).
pub fn pip_conf_sources(text: &str, file: &Path) -> Vec<Source> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('['))
        .filter_map(|l| {
            let at = l.find(['=', ':'])?;
            let (key, value) = (l[..at].trim(), l[at + 1..].trim());
            (key == "cert" && !value.is_empty()).then(|| Source {
                origin: format!("cert in {}", file.display()),
                certs: SourceCerts::File(PathBuf::from(value)),
            })
        })
        .collect()
}

/// git's `http.sslCAInfo` (and `http.<url>.sslCAInfo`), as git itself resolves them in
/// `cwd` (includes, `~`), when git is on the command's PATH.
pub fn git(env: &Env, cwd: &Path) -> Vec<Source> {
    let Some(path) = var(env, "PATH") else {
        return Vec::new();
    };
    let Some(git) = std::env::split_paths(path)
        .map(|d| d.join("git"))
        .find(|p| p.is_file())
    else {
        return Vec::new();
    };
    let out = std::process::Command::new(git)
        .args([
            "config",
            "--type=path",
            "--get-regexp",
            r"^http\..*sslcainfo$",
        ])
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(out) = out else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once(' ')?;
            Some(Source {
                origin: format!("git config {key}"),
                certs: SourceCerts::File(PathBuf::from(value.trim())),
            })
        })
        .collect()
}

/// cargo's `[http] cainfo` in `$CARGO_HOME/config.toml` and every `.cargo/config.toml`
/// from `cwd` up (a relative path is relative to the directory holding `.cargo`).
pub fn cargo(env: &Env, cwd: &Path) -> Vec<Source> {
    let mut files: Vec<PathBuf> = cwd
        .ancestors()
        .flat_map(|d| {
            let dot = d.join(".cargo");
            [dot.join("config.toml"), dot.join("config")]
        })
        .collect();
    let home = var(env, "CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| var(env, "HOME").map(|h| Path::new(h).join(".cargo")));
    if let Some(h) = home {
        files.push(h.join("config.toml"));
        files.push(h.join("config"));
    }
    files.dedup();
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let Ok(doc) = text.parse::<toml::Table>() else {
            continue;
        };
        let Some(cainfo) = doc
            .get("http")
            .and_then(|h| h.get("cainfo"))
            .and_then(|c| c.as_str())
        else {
            continue;
        };
        let base = f.parent().and_then(Path::parent).unwrap_or(Path::new("."));
        out.push(Source {
            origin: format!("http.cainfo in {}", f.display()),
            certs: SourceCerts::File(base.join(cainfo)),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_conf_cert_is_found_in_any_section_with_either_separator() {
        let found = pip_conf_sources(
            "[global]\nindex-url = https://pypi.corp/simple\ncert = /etc/corp.pem\n[install]\ncert: /x.pem\n# cert = /no.pem\n",
            Path::new("/etc/pip.conf"),
        );
        let paths: Vec<_> = found.iter().map(|s| s.certs.clone()).collect();
        assert_eq!(
            paths,
            [
                SourceCerts::File("/etc/corp.pem".into()),
                SourceCerts::File("/x.pem".into())
            ]
        );
    }

    #[test]
    fn cargo_cainfo_is_relative_to_the_project_that_holds_dot_cargo() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".cargo")).unwrap();
        std::fs::write(
            dir.path().join(".cargo/config.toml"),
            "[http]\ncainfo = \"certs/corp.pem\"\n",
        )
        .unwrap();
        let sub = dir.path().join("crates/a");
        std::fs::create_dir_all(&sub).unwrap();
        let found = cargo(&[], &sub);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].certs,
            SourceCerts::File(dir.path().join("certs/corp.pem"))
        );
    }

    #[test]
    fn git_config_sslcainfo_is_read_through_git() {
        let Ok(path) = std::env::var("PATH") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(
            home.join(".gitconfig"),
            "[http]\n\tsslCAInfo = ~/corp.pem\n[http \"https://git.corp/\"]\n\tsslCAInfo = /etc/git-corp.pem\n",
        )
        .unwrap();
        let env = vec![
            ("PATH".to_string(), path),
            ("HOME".to_string(), home.display().to_string()),
            ("GIT_CONFIG_NOSYSTEM".to_string(), "1".to_string()),
        ];
        let found = git(&env, dir.path());
        if found.is_empty()
            && std::process::Command::new("git")
                .arg("--version")
                .output()
                .is_err()
        {
            return; // no git here
        }
        let paths: Vec<_> = found.iter().map(|s| s.certs.clone()).collect();
        assert_eq!(
            paths,
            [
                SourceCerts::File(home.join("corp.pem")),
                SourceCerts::File("/etc/git-corp.pem".into())
            ]
        );
    }
}
