//! Where a user may already have pointed a client at CA certificates of their own (a
//! corporate CA): the trust variables in the environment, npm's config files, and
//! (in [`super::configs`]) pip's, git's and cargo's.
//!
//! The variables tapedeck hands a command override all of these (npm reads
//! `NPM_CONFIG_CAFILE` from the environment before any `.npmrc`, and its `cafile`
//! replaces the whole CA list), so their certificates must go into the bundle or a
//! corporate CA stops working under tapedeck.

use std::path::{Path, PathBuf};

/// Certificates the user configured somewhere, not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Where the user set it, for messages: `SSL_CERT_FILE`, `cafile in /home/u/.npmrc`.
    pub origin: String,
    pub certs: SourceCerts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceCerts {
    /// A PEM file (a bundle, or a single CA).
    File(PathBuf),
    /// PEM text given inline (npm's `ca=`).
    Inline(String),
}

/// The environment a command would inherit, as (name, value) pairs.
pub type Env = [(String, String)];

pub fn var<'a>(env: &'a Env, name: &str) -> Option<&'a str> {
    env.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty())
}

/// npm reads `npm_config_*` case-insensitively, and when two spellings are set the later
/// one in the environment wins: every spelling present must be overridden.
pub fn npm_spellings<'a>(env: &'a Env, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    env.iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(k, _)| k.as_str())
}

/// Every place the user pointed a client at certificates: the given variables (each
/// naming a file), npm's `ca`/`cafile` in the environment and in its config files.
pub fn find(env: &Env, ca_vars: &[&str], cwd: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    for name in ca_vars {
        for spelling in npm_or_exact(env, name) {
            if let Some(v) = var(env, spelling) {
                out.push(Source {
                    origin: spelling.to_string(),
                    certs: SourceCerts::File(PathBuf::from(v)),
                });
            }
        }
    }
    for spelling in npm_spellings(env, "npm_config_ca") {
        if let Some(v) = var(env, spelling) {
            out.push(Source {
                origin: spelling.to_string(),
                certs: SourceCerts::Inline(v.to_string()),
            });
        }
    }
    for rc in npmrc_files(env, cwd) {
        if let Ok(text) = std::fs::read_to_string(&rc) {
            out.extend(npmrc_sources(&text, &rc, env));
        }
    }
    out.extend(super::configs::pip(env));
    out.extend(super::configs::git(env, cwd));
    out.extend(super::configs::cargo(env, cwd));
    out
}

fn npm_or_exact<'a>(env: &'a Env, name: &'a str) -> Vec<&'a str> {
    if name.to_ascii_lowercase().starts_with("npm_config_") {
        npm_spellings(env, name).collect()
    } else {
        vec![name]
    }
}

/// npm's project, user and global config files, as npm finds them.
fn npmrc_files(env: &Env, cwd: &Path) -> Vec<PathBuf> {
    let npm_var = |name: &str| {
        npm_spellings(env, name)
            .filter_map(|k| var(env, k))
            .last()
            .map(PathBuf::from)
    };
    let mut files = Vec::new();
    // The project is the nearest directory with a package.json or node_modules.
    let project = cwd
        .ancestors()
        .find(|d| d.join("package.json").exists() || d.join("node_modules").exists())
        .unwrap_or(cwd);
    files.push(project.join(".npmrc"));
    match npm_var("npm_config_userconfig") {
        Some(p) => files.push(p),
        None => {
            if let Some(home) = var(env, "HOME") {
                files.push(Path::new(home).join(".npmrc"));
            }
        }
    }
    let prefix = npm_var("npm_config_prefix")
        .or_else(|| var(env, "PREFIX").map(PathBuf::from))
        .or_else(|| node_prefix(env));
    match npm_var("npm_config_globalconfig") {
        Some(p) => files.push(p),
        None => {
            if let Some(prefix) = prefix {
                files.push(prefix.join("etc").join("npmrc"));
            }
        }
    }
    files.sort();
    files.dedup();
    files
}

/// npm's global prefix: the directory above the `bin/` that holds `node`.
fn node_prefix(env: &Env) -> Option<PathBuf> {
    let path = var(env, "PATH")?;
    let node = std::env::split_paths(path)
        .map(|d| d.join("node"))
        .find(|p| p.is_file())?;
    let real = std::fs::canonicalize(&node).unwrap_or(node);
    Some(real.parent()?.parent()?.to_path_buf())
}

/// `cafile=` and `ca=` / `ca[]=` entries of one npmrc (ini: `key=value`, `;`/`#`
/// comments, `${VAR}` expanded, quoted values JSON-unescaped).
pub fn npmrc_sources(text: &str, file: &Path, env: &Env) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let value = expand_env(&unquote(value.trim()), env);
        if value.is_empty() || value == "null" {
            continue;
        }
        if key == "cafile" {
            let home = var(env, "HOME").map(Path::new);
            let path = match (value.strip_prefix("~/"), home) {
                (Some(rest), Some(h)) => h.join(rest),
                _ => PathBuf::from(&value),
            };
            let path = if path.is_relative() {
                file.parent().unwrap_or(Path::new(".")).join(path)
            } else {
                path
            };
            out.push(Source {
                origin: format!("cafile in {}", file.display()),
                certs: SourceCerts::File(path),
            });
        } else if key == "ca" || key == "ca[]" {
            out.push(Source {
                origin: format!("ca in {}", file.display()),
                certs: SourceCerts::Inline(value.replace("\\n", "\n")),
            });
        }
    }
    out
}

fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(v) {
            return s;
        }
    }
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].to_string();
    }
    v.to_string()
}

/// npm's `${NAME}` substitution (an unset name is left as written).
fn expand_env(v: &str, env: &Env) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + 2 + len];
        out.push_str(&rest[..start]);
        match env.iter().find(|(k, _)| k == name) {
            Some((_, value)) => out.push_str(value),
            None => out.push_str(&rest[start..start + 3 + len]),
        }
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn npmrc_cafile_and_inline_ca_are_found_with_env_expansion_and_relative_paths() {
        let e = env(&[("HOME", "/home/u"), ("CORP", "/etc/corp")]);
        let text = "; comment\nregistry=https://r.test/\ncafile = \"${CORP}/ca.pem\"\n\
                    ca[]=\"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\"\n\
                    //r.test/:_authToken=secret\n";
        let found = npmrc_sources(text, Path::new("/proj/.npmrc"), &e);
        assert_eq!(
            found[0].certs,
            SourceCerts::File(PathBuf::from("/etc/corp/ca.pem"))
        );
        assert_eq!(found[0].origin, "cafile in /proj/.npmrc");
        assert_eq!(
            found[1].certs,
            SourceCerts::Inline(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----".into()
            )
        );
        assert_eq!(found.len(), 2);
        let rel = npmrc_sources("cafile=certs/corp.pem", Path::new("/proj/.npmrc"), &e);
        assert_eq!(
            rel[0].certs,
            SourceCerts::File(PathBuf::from("/proj/certs/corp.pem"))
        );
        let tilde = npmrc_sources("cafile=~/corp.pem", Path::new("/x/.npmrc"), &e);
        assert_eq!(
            tilde[0].certs,
            SourceCerts::File(PathBuf::from("/home/u/corp.pem"))
        );
    }

    #[test]
    fn every_spelling_of_an_npm_variable_is_a_source_and_empty_values_are_not() {
        let e = env(&[
            ("NPM_CONFIG_CAFILE", "/a.pem"),
            ("npm_config_cafile", "/b.pem"),
            ("SSL_CERT_FILE", ""),
            ("CURL_CA_BUNDLE", "/c.pem"),
            ("HOME", "/nonexistent-home"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let found = find(
            &e,
            &["SSL_CERT_FILE", "CURL_CA_BUNDLE", "NPM_CONFIG_CAFILE"],
            dir.path(),
        );
        // The machine's own pip.conf or git config may name a bundle too.
        let origins: Vec<&str> = found
            .iter()
            .map(|s| s.origin.as_str())
            .filter(|o| !o.contains(' '))
            .collect();
        assert_eq!(
            origins,
            ["CURL_CA_BUNDLE", "NPM_CONFIG_CAFILE", "npm_config_cafile"]
        );
    }

    #[test]
    fn the_project_npmrc_is_found_from_a_subdirectory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("package.json"), "{}").unwrap();
        std::fs::write(dir.path().join(".npmrc"), "cafile=/corp.pem\n").unwrap();
        let sub = dir.path().join("src/deep");
        std::fs::create_dir_all(&sub).unwrap();
        let found: Vec<Source> = find(&env(&[]), &[], &sub)
            .into_iter()
            .filter(|s| s.origin.starts_with("cafile in"))
            .collect();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].certs,
            SourceCerts::File(PathBuf::from("/corp.pem"))
        );
    }
}
