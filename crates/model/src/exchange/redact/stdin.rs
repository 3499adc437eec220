//! Passwords a command line gives before what names them, or with no name at all:
//! `echo 'PW' | docker login -u bob --password-stdin`, `echo 'PW' | sudo -S apt-get
//! install …`, `echo 'root:PW' | chpasswd`, `echo -e "PW\nPW" | passwd`, and
//! `htpasswd -b FILE USER PW`. A coding agent writes such lines in its tool calls and
//! reads them back in its tools' output. The streaming scan has written the value on by
//! the time the command that reads it comes, so these are read in the last pass over a
//! body kept whole ([`super::finish_whole`]), as record stores a body and as replay keys
//! a request.
//!
//! The line is read as written in the body: as text, or inside a JSON string (its
//! quotes escaped once, `\"`, or more deeply, `\\\"`, and its breaks written `\n`).

use std::ops::Range;

use memchr::memmem;

use crate::rules::REDACTED;

/// The most bytes read back from what reads the password to its line's start.
const LINE_MAX: usize = 512;

/// The longest password read.
const VALUE_MAX: usize = 256;

/// Where in `data` the passwords such lines give are, in order, none overlapping.
#[cfg(test)]
fn passwords(data: &[u8]) -> Vec<Range<usize>> {
    passwords_at(data, &super::assw(data))
}

/// [`passwords`], given where `assw` stands in `data` ([`super::assw`]).
pub(super) fn passwords_at(data: &[u8], assw: &[usize]) -> Vec<Range<usize>> {
    // Two searches: `assw` (made once for this and the tables' reading) finds
    // `--password-stdin` and `passwd` both. (The last pass over a 4 MiB text body, which
    // only hunts known values, cost 1.3 times what it did before with a search for
    // `passw` and one for `sudo `, 1.5 times with a `memmem` search per name, and 2.9
    // times with one Aho-Corasick search for the three.)
    static SUDO: std::sync::LazyLock<memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memmem::Finder::new(b"sudo "));
    let mut found: Vec<Range<usize>> = Vec::new();
    for at in assw.iter().filter_map(|&k| k.checked_sub(1)) {
        if data[at] != b'p' {
            continue;
        }
        let rest = &data[at..];
        let range = if rest.starts_with(b"password-stdin") && data[..at].ends_with(b"--") {
            piped_to(data, at - 2)
        } else if rest.starts_with(b"passwd") {
            passwd(data, at)
        } else {
            None
        };
        found.extend(range);
    }
    found.extend(SUDO.find_iter(data).filter_map(|at| sudo(data, at)));
    found.sort_by_key(|r| r.start);
    found.dedup_by(|later, earlier| later.start < earlier.end);
    found
}

/// Where the line that holds `at` starts: after a raw break, or [`LINE_MAX`] bytes
/// back. (A JSON string's escaped break, `\n`, is not a line's start here: `echo -e
/// "PW\nPW"` writes one in text. A word does not read across one: see [`token`].)
fn line_start(data: &[u8], at: usize) -> usize {
    let from = at.saturating_sub(LINE_MAX);
    from + memchr::memrchr2(b'\n', b'\r', &data[from..at]).map_or(0, |k| k + 1)
}

/// The pipe whose command ends at `at` (nothing between but blanks and what `between`
/// allows), within the line from `start`.
fn pipe_before(
    data: &[u8],
    start: usize,
    at: usize,
    between: impl Fn(&[u8]) -> bool,
) -> Option<usize> {
    let pipe = start + memchr::memrchr(b'|', &data[start..at])?;
    let single = (pipe == 0 || data[pipe - 1] != b'|') && data.get(pipe + 1) != Some(&b'|');
    let rest = &data[pipe + 1..at];
    (single && !rest.iter().any(|b| matches!(b, b';' | b'&')) && between(rest)).then_some(pipe)
}

/// `echo … | CMD … --password-stdin`: the `--` at `at`.
fn piped_to(data: &[u8], at: usize) -> Option<Range<usize>> {
    let start = line_start(data, at);
    // The command and its words, quoted ones among them (`-u "bob"`), but not what
    // ends one JSON string and opens the next (`cat", "b": "docker …`, a body's
    // strings on one line): a quote before a `,` or a `:`, or a brace.
    let pipe = pipe_before(data, start, at, |rest| {
        !rest.iter().any(|b| matches!(b, b'(' | b')' | b'{' | b'}'))
            && !memchr::memchr_iter(b'"', rest).any(|k| {
                let after = rest[k + 1..].trim_ascii_start();
                matches!(after.first(), Some(b',' | b':'))
            })
    });
    match pipe {
        Some(pipe) => echoed(data, start, pipe),
        None => here(data, at + b"--password-stdin".len()),
    }
}

/// `echo … | sudo -S …`: `sudo ` at `at`, its flags read for `-S` or `--stdin`.
fn sudo(data: &[u8], at: usize) -> Option<Range<usize>> {
    if at > 0 && word_byte(data[at - 1]) && !escaped_blank(data, at - 1) {
        return None;
    }
    let mut p = at + 5;
    let mut stdin = false;
    loop {
        p += blanks(data, p);
        let end = word_end(data, p);
        match &data[p..end] {
            b"--stdin" => stdin = true,
            // Flags that take a value (`-u bob`, `-p PROMPT`).
            [b'-', f] if b"ugpCDrtUTh".contains(f) => {
                let value = end + blanks(data, end);
                p = word_end(data, value);
                continue;
            }
            [b'-', b'-', _, ..] => {}
            [b'-', flags @ ..] if !flags.is_empty() => stdin |= flags.contains(&b'S'),
            _ => break,
        }
        p = end;
    }
    if !stdin {
        return None;
    }
    let start = line_start(data, at);
    match pipe_before(data, start, at, |rest| rest.iter().all(|&b| b == b' ')) {
        Some(pipe) => echoed(data, start, pipe),
        None => here(data, p),
    }
}

/// `echo … | passwd`, `echo 'user:…' | chpasswd` (each perhaps after `sudo`), and
/// `htpasswd -b[…] FILE USER …`, `htpasswd -bn USER …`: `passwd` at `at`, inside the
/// command's name.
fn passwd(data: &[u8], at: usize) -> Option<Range<usize>> {
    let mut begin = data[..at]
        .iter()
        .rposition(|&b| !word_byte(b) && b != b'/')
        .map_or(0, |k| k + 1);
    // (A command at a line's start in a JSON string: `\nchpasswd`.)
    if begin < at && escaped_blank(data, begin) {
        begin += 1;
    }
    let end = at + 6;
    if data.get(end).is_some_and(|&b| word_byte(b)) {
        return None;
    }
    let path = &data[begin..at];
    let prefix = &path[path.iter().rposition(|&b| b == b'/').map_or(0, |k| k + 1)..];
    match prefix {
        b"ht" => htpasswd(data, end),
        b"" | b"ch" => {
            let start = line_start(data, begin);
            let pipe = pipe_before(data, start, begin, |rest| {
                let rest = rest.trim_ascii();
                rest.is_empty()
                    || rest.starts_with(b"sudo")
                        && !rest.iter().any(|b| matches!(b, b'"' | b'\'' | b'\\'))
            });
            let value = match pipe {
                Some(pipe) => echoed(data, start, pipe)?,
                None => here(data, end)?,
            };
            match prefix {
                // `user:PW`: the user stays.
                b"ch" => {
                    let colon = memchr::memchr(b':', &data[value.clone()])?;
                    let from = value.start + colon + 1;
                    (from < value.end).then_some(from..value.end)
                }
                _ => Some(value),
            }
        }
        _ => None,
    }
}

/// What a here-string or a here-document gives the command whose words go on from
/// `from` (`… --password-stdin <<< 'PW'`, `sudo -S … <<< PW`, `chpasswd <<EOF⏎root:PW⏎EOF`):
/// the string's word, or the document's first line when its delimiter closes it on a
/// later line. The command ends at its line's end, a `;`, `&` or `|`, or a quote that
/// ends a JSON string (one before a `,`, `:` or `}`).
fn here(data: &[u8], from: usize) -> Option<Range<usize>> {
    let limit = data.len().min(from + LINE_MAX);
    let mut p = from;
    while p < limit {
        match data[p] {
            b'\n' | b'\r' | b';' | b'&' | b'|' => return None,
            b'"' if matches!(
                data[p + 1..limit].trim_ascii_start().first(),
                Some(b',' | b':' | b'}')
            ) =>
            {
                return None
            }
            b'\\' => {
                let n = data[p..limit].iter().take_while(|&&b| b == b'\\').count();
                if matches!(data.get(p + n), Some(b'n' | b'r')) {
                    return None;
                }
                p += n;
            }
            b'<' if data[p..limit].starts_with(b"<<<") => {
                let word = p + 3 + blanks(data, p + 3);
                let (value, next) = token(data, word, limit)?;
                // (A word the read's end cuts is not taken: it may go on.)
                let whole = next < limit || limit == data.len();
                return (whole && plausible(&data[value.clone()])).then_some(value);
            }
            b'<' if data[p..limit].starts_with(b"<<") => return document(data, p + 2, limit),
            _ => p += 1,
        }
    }
    None
}

/// A here-document whose `<<` ends before `p`: its first line, when a later line is its
/// delimiter (`<<EOF`, `<<-EOF`, `<<'EOF'`). Its lines are broken as the command's
/// line is: raw, or escaped in a JSON string (`\n`, `\\n`).
fn document(data: &[u8], p: usize, limit: usize) -> Option<Range<usize>> {
    let mut p = p;
    if data.get(p) == Some(&b'-') {
        p += 1;
    }
    p += blanks(data, p);
    if p >= limit {
        return None;
    }
    let (delimiter, after) = match data.get(p) {
        Some(b'\'' | b'"' | b'\\') => token(data, p, limit)?,
        _ => {
            let end = p + data[p..limit].iter().take_while(|&&b| word_byte(b)).count();
            (p..end, end)
        }
    };
    let delimiter = &data[delimiter];
    if delimiter.is_empty() || !delimiter.iter().all(|&b| word_byte(b)) {
        return None;
    }
    // The break that ends the command's line, and how it is written.
    let mut q = after;
    let brk: &[u8] = loop {
        if q >= limit {
            return None;
        }
        match data[q] {
            b'\n' => break b"\n",
            b'\\' => {
                let n = data[q..limit].iter().take_while(|&&b| b == b'\\').count();
                if q + n < limit && data[q + n] == b'n' {
                    break &data[q..=q + n];
                }
                q += n;
            }
            _ => q += 1,
        }
    };
    let first = q + brk.len();
    let end = first + memmem::find(&data[first..limit], brk)?;
    let next = end + brk.len();
    // (`<<-` lets the delimiter's line be indented with tabs, `\t` in a JSON string.)
    let mut line = &data[next..limit];
    loop {
        let n = line.iter().take_while(|&&b| b == b'\\').count();
        if line.first().is_some_and(u8::is_ascii_whitespace) {
            line = &line[1..];
        } else if n > 0 && line.get(n) == Some(&b't') {
            line = &line[n + 1..];
        } else {
            break;
        }
    }
    let closes = line
        .strip_prefix(delimiter)
        .is_some_and(|rest| rest.first().is_none_or(|&b| !word_byte(b)));
    let value = first..end;
    (closes && plausible(&data[value.clone()])).then_some(value)
}

/// `htpasswd -b FILE USER PW` (`-n`: no file): the password's word after `end`.
fn htpasswd(data: &[u8], end: usize) -> Option<Range<usize>> {
    let limit = data.len().min(end + LINE_MAX);
    let mut p = end;
    let mut flags = Vec::new();
    let mut words = Vec::new();
    while words.len() < 3 {
        let blanks = data[p..limit].iter().take_while(|&&b| b == b' ').count();
        if blanks == 0 {
            return None;
        }
        p += blanks;
        match data.get(p) {
            Some(b'-') if words.is_empty() => {
                let to = p + data[p..limit]
                    .iter()
                    .position(|&b| !word_byte(b) && b != b'-')
                    .unwrap_or(limit - p);
                flags.extend_from_slice(&data[p + 1..to]);
                p = to;
            }
            Some(_) => {
                let (content, next) = token(data, p, limit)?;
                words.push(content);
                p = next;
            }
            None => return None,
        }
        let wanted = if flags.contains(&b'n') { 2 } else { 3 };
        if words.len() == wanted {
            break;
        }
    }
    if !flags.contains(&b'b') {
        return None;
    }
    let value = words.pop()?;
    // The password must end its word (not `htpasswd -b f u pw` in a longer sentence
    // cut mid-way: a word is what a blank, a quote's end or the line's end closes).
    plausible(&data[value.clone()]).then_some(value)
}

/// The one argument of the `echo` or `printf` that the pipe at `pipe` reads from, in the
/// line from `start`.
fn echoed(data: &[u8], start: usize, pipe: usize) -> Option<Range<usize>> {
    let before = &data[start..pipe];
    let end = start + before.trim_ascii_end().len();
    let command = |name: &[u8]| {
        memmem::rfind(&data[start..end], name)
            .map(|k| start + k)
            .filter(|&k| {
                k == 0
                    || !word_byte(data[k - 1]) && data[k - 1] != b'-'
                    || escaped_blank(data, k - 1)
            })
    };
    let (at, printf) = match (command(b"echo "), command(b"printf ")) {
        (Some(e), Some(f)) if f > e => (f, true),
        (Some(e), _) => (e, false),
        (None, Some(f)) => (f, true),
        (None, None) => return None,
    };
    let mut p = at + if printf { 7 } else { 5 };
    let mut words = Vec::new();
    while p < end {
        while p < end && data[p] == b' ' {
            p += 1;
        }
        if p >= end {
            break;
        }
        let (content, next) = token(data, p, end)?;
        let word = &data[content.clone()];
        let flag = !printf
            && words.is_empty()
            && data[p] == b'-'
            && word.len() > 1
            && word[1..].iter().all(|b| b"neE".contains(b));
        if !flag {
            words.push(content);
        }
        p = next;
    }
    // `printf '%s' PW`, `printf '%s\n' PW`: the format, then the password.
    if printf && words.len() == 2 && memchr::memchr(b'%', &data[words[0].clone()]).is_some() {
        words.remove(0);
    }
    match &words[..] {
        [value] if plausible(&data[value.clone()]) => Some(value.clone()),
        _ => None,
    }
}

/// A shell word at `p` (before `limit`): its content's range and where the word ends.
/// Quoted in `'…'`, or in `"…"` whose quote may be escaped as JSON writes it inside a
/// string (`\"…\"`, `\\\"…\\\"` two strings down); else bare, to a blank, a quote, a
/// backslash or the pipe.
fn token(data: &[u8], p: usize, limit: usize) -> Option<(Range<usize>, usize)> {
    if p >= limit {
        return None;
    }
    match data[p] {
        b'\'' => {
            let close = p + 1 + memchr::memchr(b'\'', &data[p + 1..limit])?;
            Some((p + 1..close, close + 1))
        }
        b'"' | b'\\' => {
            let n = data[p..limit].iter().take_while(|&&b| b == b'\\').count();
            if data.get(p + n) != Some(&b'"') || p + n >= limit {
                return None;
            }
            let marker = &data[p..=p + n];
            let from = p + n + 1;
            let mut at = from;
            loop {
                let k = at + memmem::find(&data[at..limit], marker)?;
                if k == from || data[k - 1] != b'\\' {
                    return Some((from..k, k + marker.len()));
                }
                at = k + 1;
            }
        }
        _ => {
            let end = p + data[p..limit]
                .iter()
                .position(|&b| matches!(b, b' ' | b'\t' | b'"' | b'\'' | b'\\' | b'|' | b';'))
                .unwrap_or(limit - p);
            (end > p).then_some((p..end, end))
        }
    }
}

/// Whether an echoed word may be a password: not empty, not too long, not a variable,
/// a command's output or a marker already written.
fn plausible(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= VALUE_MAX
        && value[0] != b'$'
        && memmem::find(value, b"$(").is_none()
        && memmem::find(value, b"${").is_none()
        && memchr::memchr(b'`', value).is_none()
        && memmem::find(value, REDACTED.as_bytes()).is_none()
        && !value.iter().any(|&b| b == b'\n' || b == b'\r')
}

/// How many spaces stand at `p`.
fn blanks(data: &[u8], p: usize) -> usize {
    data[p.min(data.len())..]
        .iter()
        .take_while(|&&b| b == b' ')
        .count()
}

/// Where the word of a command's name or flag at `p` ends.
fn word_end(data: &[u8], p: usize) -> usize {
    let p = p.min(data.len());
    p + data[p..]
        .iter()
        .position(|&b| !word_byte(b) && b != b'-')
        .unwrap_or(data.len() - p)
}

/// Whether the byte at `k` ends a JSON string's escaped break or tab (`\n`, `\t`),
/// which starts a command as a blank does.
fn escaped_blank(data: &[u8], k: usize) -> bool {
    k > 0 && matches!(data[k], b'n' | b'r' | b't') && data[k - 1] == b'\\'
}

fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(text: &str) -> String {
        super::super::found_replaced(text, passwords(text.as_bytes()))
    }

    fn each(cases: &[(&str, &str)]) {
        super::super::in_three_placements(cases, "command", redacted);
    }

    /// Lines longer than what is read back, and cut where a word was to come: nothing
    /// found, nothing out of bounds.
    #[test]
    fn a_line_past_what_is_read_is_let_be() {
        let long = "a".repeat(2 * LINE_MAX);
        for text in [
            format!("{long}passwd"),
            format!("echo x | /{long}/chpasswd"),
            format!("htpasswd -b f u{}", " ".repeat(LINE_MAX)),
            // (The quote right where the read stops: `htpasswd` ends at 8.)
            format!("htpasswd -b f u {}'pw'", " ".repeat(LINE_MAX - 8)),
            "htpasswd -b f u '".to_string(),
            "echo \\\\\\\" | sudo -S x".to_string(),
            "echo 'a | sudo -S".to_string(),
            "sudo -u".to_string(),
            "sudo -S".to_string(),
            // A here-string or a here-document cut where its word or line was to come.
            format!("sudo -S x{}<<< pw", " ".repeat(LINE_MAX - 6)),
            "sudo -S x <<<".to_string(),
            "sudo -S x <<".to_string(),
            "sudo -S x <<EOF".to_string(),
            "sudo -S x <<EOF\\".to_string(),
            "sudo -S x <<EOF\npw\nEO".to_string(),
            // (The escaped break right where the read stops.)
            format!("sudo -S x <<EOF{}\\n", " ".repeat(LINE_MAX - 8)),
        ] {
            assert_eq!(redacted(&text), text);
        }
    }

    /// Bodies made of the pieces the reading looks at, in any order: what is found lies
    /// in the body, in order, none overlapping, and the body redacted reads the same
    /// again. `TAPEDECK_SCAN_SEED` and `TAPEDECK_SCAN_BODIES` (3,000) as for the line
    /// scanner's generated bodies.
    #[test]
    fn bodies_of_the_pieces_read_within_bounds_and_the_same_again() {
        const PIECES: &[&str] = &[
            "echo ",
            "printf ",
            "'%s' ",
            "'",
            "\"",
            "\\",
            "\\\"",
            "\\\\\\\"",
            " | ",
            "|",
            "||",
            "sudo ",
            "-S ",
            "-kS ",
            "-u ",
            "--stdin ",
            "passwd",
            "ch",
            "ht",
            "/usr/sbin/",
            " -b",
            "c ",
            "n ",
            "--password-stdin",
            "pw1Zq",
            " ",
            "\n",
            "\\n",
            "$",
            "${X}",
            "root:",
            ";",
            "&&",
            "-e ",
            "docker login ",
            "<<< ",
            "<<",
            "<<-",
            "EOF",
            "'EOF'",
            "\\t",
            "[REDACTED]",
            "\u{e9}",
        ];
        let mut found = 0;
        for body in super::super::generated_bodies(PIECES, 2 * LINE_MAX) {
            let ranges = passwords(body.as_bytes());
            for pair in ranges.windows(2) {
                assert!(pair[0].end <= pair[1].start, "{body:?}");
            }
            found += super::super::within_bounds_and_the_same_again(&body, &ranges, redacted);
        }
        assert!(found > 0, "the pieces never made a line with a password");
    }

    /// A password piped to what reads it from standard input, or given to `htpasswd -b`:
    /// each was stored in clear before the forty-ninth session (its value comes before
    /// what names it, or under no name).
    #[test]
    fn a_password_a_command_reads_from_its_input_or_by_place_is_found() {
        each(&[
            (
                "echo 'hunter2Zq' | docker login -u bob --password-stdin registry.example.com",
                "echo '[REDACTED]' | docker login -u bob --password-stdin registry.example.com",
            ),
            (
                "echo \"$CR_PAT\" | docker login ghcr.io -u bob --password-stdin && echo \"p4ss w0rd\" | helm registry login r.test --password-stdin",
                "echo \"$CR_PAT\" | docker login ghcr.io -u bob --password-stdin && echo \"[REDACTED]\" | helm registry login r.test --password-stdin",
            ),
            (
                "printf '%s' s3cretPW | podman login quay.io --username bob --password-stdin",
                "printf '%s' [REDACTED] | podman login quay.io --username bob --password-stdin",
            ),
            (
                "echo 'hunter2Zq' | docker login -u \"bob\" --password-stdin r.test",
                "echo '[REDACTED]' | docker login -u \"bob\" --password-stdin r.test",
            ),
            (
                "echo hunter2Zq | sudo -S apt-get install -y nginx",
                "echo [REDACTED] | sudo -S apt-get install -y nginx",
            ),
            (
                "echo -n 'hunter2Zq' | sudo -u root -kS systemctl restart app",
                "echo -n '[REDACTED]' | sudo -u root -kS systemctl restart app",
            ),
            (
                "echo 'root:hunter2Zq' | sudo chpasswd",
                "echo 'root:[REDACTED]' | sudo chpasswd",
            ),
            (
                "echo -e \"hunter2Zq\\nhunter2Zq\" | passwd bob",
                "echo -e \"[REDACTED]\" | passwd bob",
            ),
            (
                "htpasswd -bc /etc/nginx/.htpasswd admin hunter2Zq",
                "htpasswd -bc /etc/nginx/.htpasswd admin [REDACTED]",
            ),
            (
                "htpasswd -nbB admin 'hunter2Zq' > auth/htpasswd",
                "htpasswd -nbB admin '[REDACTED]' > auth/htpasswd",
            ),
            // From a here-string or a here-document.
            (
                "docker login -u bob --password-stdin registry.test <<< 'hunter2Zq'",
                "docker login -u bob --password-stdin registry.test <<< '[REDACTED]'",
            ),
            (
                "sudo -S apt-get install -y nginx <<< hunter2Zq && echo done",
                "sudo -S apt-get install -y nginx <<< [REDACTED] && echo done",
            ),
            (
                "docker login --password-stdin r.test <<EOF\nhunter2Zq\nEOF\necho ok",
                "docker login --password-stdin r.test <<EOF\n[REDACTED]\nEOF\necho ok",
            ),
            (
                "sudo chpasswd <<-'EOF'\n\troot:hunter2Zq\n\tEOF",
                "sudo chpasswd <<-'EOF'\n\troot:[REDACTED]\n\tEOF",
            ),
            // A command at a line's start, after another's line.
            (
                "cd /srv\nsudo -kS reboot <<< 'hunter2Zq'\nchpasswd <<EOF\nbob:hunter3Zq\nEOF",
                "cd /srv\nsudo -kS reboot <<< '[REDACTED]'\nchpasswd <<EOF\nbob:[REDACTED]\nEOF",
            ),
            (
                "cd /srv\necho 'hunter2Zq' | sudo -S ls\necho 'root:hunter3Zq' | chpasswd",
                "cd /srv\necho '[REDACTED]' | sudo -S ls\necho 'root:[REDACTED]' | chpasswd",
            ),
        ]);
        // No password there: a variable, a command's output, a file, a prompt, words,
        // a pipe to something else, sudo without `-S`, htpasswd without `-b`.
        for text in [
            "echo \"$GITHUB_TOKEN\" | docker login ghcr.io -u bob --password-stdin",
            "echo $(cat pw.txt) | sudo -S true; cat ~/pw | docker login --password-stdin",
            "aws ecr get-login-password | docker login --username AWS --password-stdin r.test",
            "echo 'hello world' | grep hello && sudo apt-get install nginx",
            "echo hunter2Zq | tee out.txt",
            "echo 'Run docker login with --password-stdin' | less",
            "{\"a\": \"echo hunter2Zq | cat\", \"b\": \"docker login --password-stdin\"}",
            "{\"a\":\"echo hunter2Zq | cat\",\"b\":\"docker login --password-stdin\"}",
            "htpasswd -c /etc/nginx/.htpasswd admin",
            "see man passwd; the passwd file; echo ok | passwd_check",
            "docker login --password-stdin <<< \"$PW\"; docker login --password-stdin < ~/pw.txt",
            "sudo -S true <<EOF\nhunter2Zq",
            "sudo -S true; cat <<< hunter2Zq",
            "{\"a\": \"docker login --password-stdin\", \"b\": \"<<< hunter2Zq\"}",
        ] {
            each(&[(text, text)]);
        }
    }
}
