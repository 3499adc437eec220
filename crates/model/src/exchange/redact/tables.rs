//! Passwords in a table's column: the header names the column once (`password`,
//! `Password`, `temp_password`) and each row below holds one, under no name of its own.
//! An agent reads such tables from its tools (`psql -c 'select * from users'`, `cat
//! users.csv`, a page's `<table>`) and writes them in its answers (a Markdown table of
//! test accounts). The streaming scan reads a line at a time and has written the rows on
//! by the time their column is known to be a password's, so tables are read in the last
//! pass over a body kept whole ([`super::finish_whole`]), as record stores a body and as
//! replay keys a request.
//!
//! What is read:
//! - delimited lines, CSV (`,` or `;`, quoted cells too) and TSV, whose header is the
//!   first line of its block (the line before it, if any, splits otherwise);
//! - `|` tables whose header a rule line follows: Markdown's `|---|---|`, psql's
//!   `----+----`, MySQL's `+----+`;
//! - columns aligned with blanks (`sqlite3`'s column mode, a CLI's listing): the header's
//!   names two blanks apart or more, a row's cell where its column's name starts;
//! - an HTML `<table>`: the `<th>` that names the column, the `<td>` at its place in each
//!   later `<tr>`.
//!
//! A cell is one word. An empty one, a mask (`********`), a placeholder (`${PW}`,
//! `<password>`), `NULL`, `true` and the like stay. A line is read as written in the
//! body: as text, or inside a JSON string (its breaks written `\n`, its quotes `\"`, or
//! more deeply, `\\n` and `\\\"`).

use std::ops::Range;

use memchr::memmem;

use super::FieldNames;
use crate::rules::{Rules, REDACTED};

/// The most bytes read back from a column's name to its header's start, or on to its end.
const LINE_MAX: usize = 2048;

/// The most bytes of rows read under one header.
const TABLE_MAX: usize = 1 << 20;

/// The most bytes read back from a column's name to the `<th` before it, and from
/// there to the `<tr` of its row.
const TAG_MAX: usize = 512;

/// The longest cell taken for a password.
const VALUE_MAX: usize = 256;

/// Where in `data` the cells of password columns are ([`super::replace_found`] orders
/// them).
#[cfg(test)]
fn passwords(data: &[u8], rules: &Rules) -> Vec<Range<usize>> {
    passwords_at(data, &super::assw(data), rules)
}

/// [`passwords`], given where `assw` stands in `data` ([`super::assw`]): in every
/// spelling of the names read (`password`, `Password`, `passwd`). `ASSW`, a database's
/// upper-case name, is searched here.
pub(super) fn passwords_at(data: &[u8], assw: &[usize], rules: &Rules) -> Vec<Range<usize>> {
    static UPPER: std::sync::LazyLock<memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memmem::Finder::new(b"ASSW"));
    let mut hits: Vec<usize> = assw.to_vec();
    hits.extend(UPPER.find_iter(data));
    if hits.is_empty() {
        return Vec::new();
    }
    hits.sort_unstable();
    let names = &FieldNames::of(rules);
    let mut found = Vec::new();
    // Past a table's rows: a name there is a cell's, not a header's.
    let mut read_to = 0;
    // Past a line read for a header: the names on it were read with it.
    let mut lines_to = 0;
    // The first break at or after the last name read, found once for the names before
    // it (a body of many names on long lines is searched once, not once per name).
    let mut brk: Option<(usize, Escapes, usize)> = None;
    let mut breaks_left = true;
    for at in hits {
        if at < read_to {
            continue;
        }
        if let Some((cells, end)) = html(data, at, names).or_else(|| rows(data, at, names)) {
            found.extend(cells);
            read_to = end;
            continue;
        }
        if at < lines_to {
            continue;
        }
        if breaks_left && brk.as_ref().is_none_or(|b| b.0 < at) {
            brk = Escapes::next_break(data, at);
            breaks_left = brk.is_some();
        }
        let Some((line_end, esc, next)) = brk.as_ref().filter(|b| b.0 >= at) else {
            // No line after this name: no row under it.
            continue;
        };
        if line_end - at > LINE_MAX {
            // The names up to `LINE_MAX` before the break are no closer to it.
            lines_to = line_end - LINE_MAX;
            continue;
        }
        // (Where a table ends must not hang on what its cells hold: read again, a
        // cell already `[REDACTED]` ends the same table in the same place.)
        match lines(data, at, esc, *line_end, *next, names) {
            Ok((cells, end)) => {
                found.extend(cells);
                read_to = end;
            }
            Err(end) => lines_to = end,
        }
    }
    found
}

/// The cells of the password columns of the table whose header holds the name at
/// `at`, read as lines, and where the table ends; or, when the line is no table's
/// header, where the reading ended (the line's end).
fn lines(
    data: &[u8],
    at: usize,
    esc: &Escapes,
    line_end: usize,
    next: usize,
    names: &FieldNames,
) -> Result<(Vec<Range<usize>>, usize), usize> {
    let Some(start) = esc.line_start(data, at) else {
        return Err(at + 1);
    };
    // Most lines that name a password are no header: a header has a delimiter, two
    // blanks between names, or a rule line under it.
    if !maybe_header(&data[start..line_end], data.get(next..).unwrap_or_default()) {
        return Err(line_end);
    }
    let mut reader = Lines {
        data,
        esc,
        p: start,
        limit: data.len().min(at + TABLE_MAX),
        ended: false,
    };
    let Some(header) = reader.next() else {
        return Err(line_end);
    };
    let header_end = reader.p;
    let lines = std::iter::from_fn(|| reader.next().map(|l| (l, reader.p))).peekable();
    table(data, esc, start, &header, header_end, lines, names).ok_or(header_end)
}

/// Whether a line (as written, escapes and all) may be a table's header: it holds a
/// delimiter (`,`, `;`, `|`, a tab) or two blanks in a row, or the line after it
/// (`after`) opens with a rule's dash.
fn maybe_header(line: &[u8], after: &[u8]) -> bool {
    memchr::memchr3(b',', b';', b'|', line).is_some()
        || memchr::memchr(b'\t', line).is_some()
        || memmem::find(line, b"\\t").is_some()
        || memmem::find(line, b"  ").is_some()
        || matches!(after.trim_ascii_start().first(), Some(b'-' | b'+' | b'='))
}

/// [`lines`] once the header is read: the cells, and where the table ends.
fn table(
    data: &[u8],
    esc: &Escapes,
    start: usize,
    header: &Line,
    header_end: usize,
    mut lines: std::iter::Peekable<impl Iterator<Item = (Line, usize)>>,
    names: &FieldNames,
) -> Option<(Vec<Range<usize>>, usize)> {
    let text = &header.text;
    let rule = lines
        .peek()
        .filter(|(l, _)| is_rule(&l.text))
        .map(|(l, _)| l.text.clone());
    let (format, cells, columns) = match Format::of(text, names) {
        Some((format, columns)) => (format, format.cells(text), columns),
        None => {
            // Aligned: the columns a rule's dashes mark below (PowerShell's `UserName
            // Password` over `-------- --------`), else names two blanks apart or more.
            let cells = match rule.as_deref().map(dashes) {
                Some(cells) if cells.len() >= 2 => cells,
                _ => aligned_cells(text),
            };
            if cells.len() < 2 || !cells.iter().all(|c| name_like(clip(text, c))) {
                return None;
            }
            let columns = password_columns(cells.iter().map(|c| clip(text, c)), names);
            (Format::Aligned, cells, columns)
        }
    };
    if columns.is_empty() {
        return None;
    }
    // The line before the header, within the same text: a row of the same shape says
    // the header is not the table's first line (the name is a cell's: `password,The
    // user's password` under `field,description`).
    if format != Format::Piped {
        if let Some(before) = esc.line_before(data, start) {
            if format.cells(&before).len() == cells.len() {
                return None;
            }
        }
    }
    // A rule line under the header: Markdown's and psql's always have one. Columns
    // aligned with blanks without one must be named as code names them (`id  username
    // password`), not as a sentence does.
    let ruled = lines.next_if(|(l, _)| is_rule(&l.text));
    if ruled.is_none()
        && (format == Format::Piped
            || format == Format::Aligned && !cells.iter().all(|c| identifier(clip(text, c))))
    {
        return None;
    }
    let mut end = ruled.map_or(header_end, |(_, p)| p);
    let mut found = Vec::new();
    for (line, p) in lines {
        let row = &line.text;
        if row.trim_ascii().is_empty() {
            break;
        }
        if is_rule(row) {
            end = p;
            continue;
        }
        let Some(row_cells) = format.row(row, &cells) else {
            break;
        };
        end = p;
        for &column in &columns {
            if let Some(value) = password_cell(row, row_cells[column].clone()) {
                found.push(line.raw(value));
            }
        }
    }
    Some((found, end))
}

/// The part of `text` in `range` (a rule's dashes may reach past the header's end).
fn clip<'a>(text: &'a [u8], range: &Range<usize>) -> &'a [u8] {
    &text[range.start.min(text.len())..range.end.min(text.len())]
}

/// Which of a header's names name a password.
fn password_columns<'a>(
    names_in: impl Iterator<Item = &'a [u8]>,
    names: &FieldNames,
) -> Vec<usize> {
    names_in
        .enumerate()
        .filter(|(_, n)| names_password(n, names))
        .map(|(k, _)| k)
        .collect()
}

/// The runs of dashes of a rule line, as the columns they mark (a line's ranges).
fn dashes(rule: &[u8]) -> Vec<Range<usize>> {
    let mut cells = Vec::new();
    let mut p = 0;
    while let Some(k) = rule[p..].iter().position(|&b| b == b'-') {
        let from = p + k;
        let to = from + rule[from..].iter().take_while(|&&b| b == b'-').count();
        cells.push(from..to);
        p = to;
    }
    cells
}

/// Whether a header's name is written as code writes one: a letter, then letters,
/// digits and `_`.
fn identifier(name: &[u8]) -> bool {
    name.first().is_some_and(u8::is_ascii_alphabetic)
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// How a table's lines split into cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// By this byte (`,`, `;`, a tab), a cell perhaps in double quotes.
    Delimited(u8),
    /// By `|`, a rule line under the header.
    Piped,
    /// Aligned with blanks: a column starts where its name does.
    Aligned,
}

impl Format {
    /// The format of a header line split by a delimiter into names, and the columns
    /// among them that name a password.
    fn of(header: &[u8], names: &FieldNames) -> Option<(Format, Vec<usize>)> {
        let candidates = [
            Format::Delimited(b'\t'),
            Format::Piped,
            Format::Delimited(b','),
            Format::Delimited(b';'),
        ];
        for format in candidates {
            let cells = format.cells(header);
            let real = cells
                .iter()
                .filter(|c| !header[(*c).clone()].trim_ascii().is_empty())
                .count();
            // Every cell a name (not `fields = ["username"`), and a CSV's written as
            // CSV writes them, with no blank after the comma (not a sentence's `your
            // username, password, and email`).
            let spaced = matches!(format, Format::Delimited(b',' | b';'))
                && cells
                    .iter()
                    .skip(1)
                    .any(|c| header.get(c.start) == Some(&b' '));
            if real < 2 || spaced || !cells.iter().all(|c| name_like(&header[c.clone()])) {
                continue;
            }
            return Some((
                format,
                password_columns(cells.iter().map(|c| &header[c.clone()]), names),
            ));
        }
        None
    }

    /// A line's cells, as ranges of it.
    fn cells(self, line: &[u8]) -> Vec<Range<usize>> {
        match self {
            Format::Delimited(d) => split_quoted(line, d),
            Format::Piped => split(line, b'|'),
            Format::Aligned => aligned_cells(line),
        }
    }

    /// A row's cells, read with the header's shape (`header`: the header's cells);
    /// `None` when the line is not such a row.
    fn row(self, row: &[u8], header: &[Range<usize>]) -> Option<Vec<Range<usize>>> {
        let Format::Aligned = self else {
            let cells = self.cells(row);
            return (cells.len() == header.len()).then_some(cells);
        };
        // Each of the header's names starts a word of the row, or a blank: no word
        // runs across where a column starts, and the first column is not blank.
        let at = |s: usize| row.get(s).is_some_and(|&b| b != b' ');
        // (A cell replaced by the marker may run across: read again, the row is the same.)
        let marks: Vec<usize> = memmem::find_iter(row, REDACTED.as_bytes()).collect();
        let marked = |s: usize| marks.iter().any(|&m| m < s && s <= m + REDACTED.len());
        let crossed = |s: usize| s > 0 && at(s) && row[s - 1] != b' ' && !marked(s);
        let lead = header.first()?.start;
        if !at(lead)
            || row[..lead].iter().any(|&b| b != b' ')
            || header.iter().any(|c| crossed(c.start))
        {
            return None;
        }
        let word = |s: usize| {
            // (Where the marker runs across the column, the cell is the marker's.)
            let end = if at(s) && !marked(s) {
                s + row[s..]
                    .iter()
                    .position(|&b| b == b' ')
                    .unwrap_or(row.len() - s)
            } else {
                s
            };
            s.min(row.len())..end.min(row.len())
        };
        Some(header.iter().map(|c| word(c.start)).collect())
    }
}

/// The cells of a line split by `d`.
fn split(line: &[u8], d: u8) -> Vec<Range<usize>> {
    let mut cells = Vec::new();
    let mut from = 0;
    for k in memchr::memchr_iter(d, line) {
        cells.push(from..k);
        from = k + 1;
    }
    cells.push(from..line.len());
    cells
}

/// The cells of a line split by `d` outside double quotes (a CSV's `"a, b"`).
fn split_quoted(line: &[u8], d: u8) -> Vec<Range<usize>> {
    if memchr::memchr(b'"', line).is_none() {
        return split(line, d);
    }
    let mut cells = Vec::new();
    let mut from = 0;
    let mut quoted = false;
    for (k, &b) in line.iter().enumerate() {
        if b == b'"' {
            quoted = !quoted;
        } else if b == d && !quoted {
            cells.push(from..k);
            from = k + 1;
        }
    }
    cells.push(from..line.len());
    cells
}

/// A line's words or phrases two blanks apart or more (single blanks inside a name:
/// `Temporary Password`).
fn aligned_cells(line: &[u8]) -> Vec<Range<usize>> {
    let mut cells = Vec::new();
    let mut p = 0;
    while p < line.len() {
        if line[p] == b' ' {
            p += 1;
            continue;
        }
        let from = p;
        while p < line.len() && !(line[p] == b' ' && line.get(p + 1).is_none_or(|&b| b == b' ')) {
            p += 1;
        }
        cells.push(from..p);
    }
    cells
}

/// Whether a header's cell names a password: its words joined by `_` are a name whose
/// value tool-call arguments redact (`password`, `Temporary Password`, `user_password`;
/// not `password_last_set`, `Password policy`).
fn names_password(cell: &[u8], names: &FieldNames) -> bool {
    let name = trim_marks(cell.trim_ascii());
    if name.is_empty() || !name_like(name) {
        return false;
    }
    let joined: Vec<u8> = name
        .iter()
        .map(|&b| if b == b' ' { b'_' } else { b })
        .collect();
    names.contains_in_arguments(&joined)
}

/// Whether a header's cell reads as a column's name (or is empty, as the edges of a
/// Markdown row are): letters, digits, blanks, `_`, `-`, `.`, `#`, `/`, within the
/// quotes, backticks or emphasis around it.
fn name_like(cell: &[u8]) -> bool {
    let name = trim_marks(cell.trim_ascii());
    name.len() <= 64
        && name.iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b' ' | b'_' | b'-' | b'.' | b'#' | b'/')
        })
}

/// A cell without the quotes, backticks or emphasis around it (`"password"`,
/// `` `password` ``, `**Password**`).
fn trim_marks(cell: &[u8]) -> &[u8] {
    let mut cell = cell;
    for mark in [&b"\""[..], b"'", b"`", b"**", b"__"] {
        if cell.len() >= 2 * mark.len() && cell.starts_with(mark) && cell.ends_with(mark) {
            cell = &cell[mark.len()..cell.len() - mark.len()];
        }
    }
    cell.trim_ascii()
}

/// Whether a line is a table's rule: dashes, with `+`, `|`, `:`, `=` and blanks.
fn is_rule(line: &[u8]) -> bool {
    let line = line.trim_ascii();
    line.iter().filter(|&&b| b == b'-' || b == b'=').count() >= 3
        && line
            .iter()
            .all(|b| matches!(b, b'-' | b'+' | b'|' | b':' | b'=' | b' ' | b'\t'))
}

/// The part of a row's cell that is a password, if it is one: the cell's word without
/// blanks and the quotes or backticks around it.
fn password_cell(row: &[u8], cell: Range<usize>) -> Option<Range<usize>> {
    let mut r = cell;
    while r.start < r.end && row[r.start].is_ascii_whitespace() {
        r.start += 1;
    }
    while r.end > r.start && row[r.end - 1].is_ascii_whitespace() {
        r.end -= 1;
    }
    for mark in [b'"', b'`', b'\''] {
        if r.len() >= 2 && row[r.start] == mark && row[r.end - 1] == mark {
            r = r.start + 1..r.end - 1;
        }
    }
    password_like(&row[r.clone()]).then_some(r)
}

/// Whether a cell under a password's name is one: a word, not empty, a mask, a
/// placeholder or a word that says there is none.
fn password_like(value: &[u8]) -> bool {
    const NOT: &[&str] = &[
        "null",
        "none",
        "nil",
        "n/a",
        "na",
        "true",
        "false",
        "yes",
        "no",
        "unknown",
        "hidden",
        "redacted",
        "empty",
        "unset",
        "default",
        "(null)",
        "<null>",
        "(none)",
        "[null]",
        "(hidden)",
        "[hidden]",
        "<hidden>",
        "(redacted)",
        "<redacted>",
        "(empty)",
        "<empty>",
        "password",
        "secret",
    ];
    let bracketed =
        |open: u8, close: u8| value.first() == Some(&open) && value.last() == Some(&close);
    value.len() >= 2
        && value.len() <= VALUE_MAX
        && !value.iter().any(u8::is_ascii_whitespace)
        // A mask: `********`, `••••••`.
        && !value.iter().all(|&b| b == value[0])
        && !value.chunks(3).all(|c| c == "•".as_bytes())
        && value[0] != b'$'
        && !value.starts_with(b"{{")
        && !bracketed(b'<', b'>')
        && !bracketed(b'[', b']')
        && !bracketed(b'(', b')')
        && memmem::find(value, REDACTED.as_bytes()).is_none()
        && !NOT.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(value))
}

/// The cells of the password columns of an array of rows whose first row names the
/// columns, the name at `at` in one of its strings (Google Sheets' `{"values":
/// [["Username", "Password"], ["alice", "…"]]}`, Python's `list(csv.reader(f))`
/// printed with its single quotes), and where the array ends. Its strings are read as
/// written in the body: as JSON, or inside a JSON string (its quotes escaped).
fn rows(data: &[u8], at: usize, names: &FieldNames) -> Option<(Vec<Range<usize>>, usize)> {
    // The string the name is in: its quote, and how deep it is escaped.
    let from = at.saturating_sub(64);
    let k = from + memchr::memrchr2(b'"', b'\'', &data[from..at])?;
    let quote = Quote {
        byte: data[k],
        escapes: if data[k] == b'"' {
            backslashes_before(data, k)
        } else {
            0
        },
    };
    if quote.byte == b'"' && !(quote.escapes + 1).is_power_of_two() {
        return None;
    }
    // The header row: from the `[` before it, strings that name columns; and a `[`
    // before that one, so it is the array's first row.
    let row_from = at.saturating_sub(LINE_MAX);
    let open = row_from + memchr::memrchr(b'[', &data[row_from..at])?;
    let outer = open - skip_back(data, open);
    if outer == 0 || data[outer - 1] != b'[' {
        return None;
    }
    let limit = data.len().min(at + TABLE_MAX);
    let (header, mut p) = quote.row(data, open + 1, limit)?;
    if !header.iter().flatten().any(|c| c.contains(&at)) {
        return None;
    }
    let cells: Vec<&[u8]> = header
        .iter()
        .map(|c| c.as_ref().map(|c| &data[c.clone()]))
        .collect::<Option<_>>()?;
    if cells.len() < 2 || !cells.iter().all(|c| name_like(c)) {
        return None;
    }
    let columns = password_columns(cells.into_iter(), names);
    if columns.is_empty() {
        return None;
    }
    let mut found = Vec::new();
    loop {
        p += skip(data, p, limit);
        if data.get(p) != Some(&b',') || p >= limit {
            break;
        }
        p += 1;
        p += skip(data, p, limit);
        if data.get(p) != Some(&b'[') || p >= limit {
            break;
        }
        let Some((row, next)) = quote.row(data, p + 1, limit) else {
            break;
        };
        p = next;
        for &column in &columns {
            if let Some(Some(cell)) = row.get(column) {
                if password_like(&data[cell.clone()]) {
                    found.push(cell.clone());
                }
            }
        }
    }
    Some((found, p))
}

/// How the strings of an array of rows are quoted: `"` or `'`, and how many backslashes
/// escape a `"` that opens or closes one (none in JSON, one inside a JSON string).
#[derive(Clone, Copy)]
struct Quote {
    byte: u8,
    escapes: usize,
}

impl Quote {
    /// A row's elements from `p` (after its `[`) to its `]`: each string's content, or
    /// `None` for a number, `null` and the like; and where the row ends.
    fn row(
        self,
        data: &[u8],
        mut p: usize,
        limit: usize,
    ) -> Option<(Vec<Option<Range<usize>>>, usize)> {
        let mut cells = Vec::new();
        loop {
            p += skip(data, p, limit);
            if p >= limit {
                return None;
            }
            if data[p] == b']' && cells.is_empty() {
                return Some((cells, p + 1));
            }
            let n = data[p..limit].iter().take_while(|&&b| b == b'\\').count();
            if n == self.escapes && data.get(p + n) == Some(&self.byte) {
                let from = p + n + 1;
                let close = self.close(data, from, limit)?;
                cells.push(Some(from..close));
                p = close + self.escapes + 1;
            } else {
                let len = data[p..limit]
                    .iter()
                    .take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
                    .count();
                if len == 0 {
                    return None;
                }
                cells.push(None);
                p += len;
            }
            p += skip(data, p, limit);
            match data.get(p) {
                Some(b',') if p < limit => p += 1,
                Some(b']') if p < limit => return Some((cells, p + 1)),
                _ => return None,
            }
        }
    }

    /// Where the string whose content starts at `from` closes: its quote with exactly
    /// this quote's backslashes before it (more escape a quote inside it).
    fn close(self, data: &[u8], from: usize, limit: usize) -> Option<usize> {
        let mut p = from;
        while let Some(k) = memchr::memchr(self.byte, &data[p..limit]) {
            let q = p + k;
            let n = backslashes_before(data, q).min(q - from);
            if n == self.escapes {
                return Some(q - n);
            }
            if n < self.escapes {
                return None;
            }
            p = q + 1;
        }
        None
    }
}

/// How many bytes of blanks stand at `p` (before `limit`): white space, and JSON's
/// escaped breaks and tabs.
fn skip(data: &[u8], p: usize, limit: usize) -> usize {
    if p >= limit {
        return 0;
    }
    blank_len(&data[p..limit])
}

/// How many bytes of blanks stand right before `p`, as [`skip`] reads them.
fn skip_back(data: &[u8], p: usize) -> usize {
    trailing_blank_len(&data[p.saturating_sub(LINE_MAX)..p])
}

/// The cells of an HTML table's column whose `<th>` holds the name at `at`, and where
/// the table ends.
fn html(data: &[u8], at: usize, names: &FieldNames) -> Option<(Vec<Range<usize>>, usize)> {
    let from = at.saturating_sub(TAG_MAX);
    let before = &data[from..at];
    // The `<th` (or `<td`) that opens the cell the name is in, and nothing closing it
    // since.
    let th = from
        + [b"<th" as &[u8], b"<td"]
            .iter()
            .filter_map(|tag| rfind_tag(before, tag))
            .max()?;
    let header_cell = starts_with_tag(&data[th..], b"<th");
    let close_tag: &[u8] = if header_cell { b"</th" } else { b"</td" };
    let open_end = th + memchr::memchr(b'>', &data[th..at])? + 1;
    if memchr::memchr(b'<', &data[open_end..at]).is_some_and(|k| {
        let rest = &data[open_end + k..at];
        starts_with_tag(rest, close_tag)
            || starts_with_tag(rest, b"<td")
            || starts_with_tag(rest, b"<tr")
    }) {
        return None;
    }
    let limit = data.len().min(at + TABLE_MAX);
    let close = open_end + find_tag(&data[open_end..limit.min(open_end + LINE_MAX)], close_tag)?;
    if !names_password(&strip_tags(&data[open_end..close]), names) {
        return None;
    }
    // The header row: the `<tr` before, the cells from there to this one.
    let row_from = th.saturating_sub(LINE_MAX);
    let tr = row_from + rfind_tag(&data[row_from..th], b"<tr")?;
    let column = cells_in(&data[tr..th]).len();
    let row_end = close + find_tag(&data[close..limit], b"</tr")?;
    // A header of `<td>` cells (as Google Docs writes a table) must be its table's first
    // row, and every cell in it a name: else the name is a row's (`<td>password</td>
    // <td>The user's password</td>`).
    if !header_cell {
        let table = row_from + rfind_tag(&data[row_from..tr], b"<table")?;
        let cells = cells_in(&data[tr..row_end]);
        if find_tag(&data[table..tr], b"<tr").is_some()
            || cells.len() < 2
            || !cells
                .iter()
                .all(|c| name_like(&strip_tags(&data[tr + c.start..tr + c.end])))
        {
            return None;
        }
    }
    // The table ends at its `</table>`, or where another begins (a page cut short, or
    // the next table in another string of the body).
    let table_end = [b"</table" as &[u8], b"<table"]
        .iter()
        .filter_map(|tag| find_tag(&data[row_end..limit], tag))
        .min()
        .map_or(limit, |k| row_end + k);
    let mut found = Vec::new();
    let mut p = row_end;
    while let Some(k) = find_tag(&data[p..table_end], b"<tr") {
        let start = p + k;
        let end = find_tag(&data[start..table_end], b"</tr").map_or(table_end, |k| start + k);
        if let Some(cell) = cells_in(&data[start..end]).get(column) {
            let content = start + cell.start..start + cell.end;
            if let Some(r) = html_text(data, content) {
                found.push(r);
            }
        }
        p = end;
    }
    // (Read on from its last row: what follows a table cut short is not its.)
    Some((found, p))
}

/// The contents of the `<td>` and `<th>` cells in a row's bytes, in order.
fn cells_in(row: &[u8]) -> Vec<Range<usize>> {
    let mut cells = Vec::new();
    let mut p = 0;
    while let Some(k) = memchr::memchr(b'<', &row[p..]) {
        let tag = p + k;
        p = tag + 1;
        let close: &[u8] = if starts_with_tag(&row[tag..], b"<td") {
            b"</td"
        } else if starts_with_tag(&row[tag..], b"<th") {
            b"</th"
        } else {
            continue;
        };
        let Some(gt) = memchr::memchr(b'>', &row[tag..]) else {
            break;
        };
        let content = tag + gt + 1;
        let end = find_tag(&row[content..], close).map_or(row.len(), |k| content + k);
        cells.push(content..end);
        p = end;
    }
    cells
}

/// The text of an HTML cell's content, if it is a password: the tags around it and
/// blanks (JSON's escaped ones too) taken off.
fn html_text(data: &[u8], mut r: Range<usize>) -> Option<Range<usize>> {
    loop {
        let s = &data[r.clone()];
        let lead = blank_len(s);
        if lead > 0 {
            r.start += lead;
            continue;
        }
        let trail = trailing_blank_len(s);
        if trail > 0 {
            r.end -= trail;
            continue;
        }
        if s.first() == Some(&b'<') {
            r.start += memchr::memchr(b'>', s)? + 1;
            continue;
        }
        if s.last() == Some(&b'>') {
            r.end = r.start + memchr::memrchr(b'<', s)?;
            continue;
        }
        break;
    }
    let s = &data[r.clone()];
    (memchr::memchr2(b'<', b'>', s).is_none() && password_like(s)).then_some(r)
}

/// How many bytes of blanks open `s`: white space, and JSON's escaped breaks and tabs
/// (`\n`, `\\n`).
fn blank_len(s: &[u8]) -> usize {
    let mut p = 0;
    loop {
        if s.get(p).is_some_and(u8::is_ascii_whitespace) {
            p += 1;
            continue;
        }
        let n = s[p..].iter().take_while(|&&b| b == b'\\').count();
        if n > 0 && matches!(s.get(p + n), Some(b'n' | b't' | b'r')) {
            p += n + 1;
            continue;
        }
        return p;
    }
}

/// How many bytes of blanks end `s`, as [`blank_len`] reads them.
fn trailing_blank_len(s: &[u8]) -> usize {
    let mut e = s.len();
    loop {
        if e > 0 && s[e - 1].is_ascii_whitespace() {
            e -= 1;
            continue;
        }
        if e >= 2 && matches!(s[e - 1], b'n' | b't' | b'r') && s[e - 2] == b'\\' {
            let n = s[..e - 1].iter().rev().take_while(|&&b| b == b'\\').count();
            e -= n + 1;
            continue;
        }
        return s.len() - e;
    }
}

/// `cell` without its tags (`<b>Password</b>` reads `Password`).
fn strip_tags(cell: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cell.len());
    let mut inside = false;
    for &b in cell {
        match b {
            b'<' => inside = true,
            b'>' => inside = false,
            _ if !inside => out.push(b),
            _ => {}
        }
    }
    let lead = blank_len(&out);
    let trail = trailing_blank_len(&out[lead..]);
    out[lead..out.len() - trail].to_vec()
}

/// Whether `s` opens with the tag `tag` (`<td`, `</th`), in either case, whole.
fn starts_with_tag(s: &[u8], tag: &[u8]) -> bool {
    s.len() > tag.len()
        && s[..tag.len()].eq_ignore_ascii_case(tag)
        && matches!(
            s[tag.len()],
            b'>' | b' ' | b'\t' | b'\n' | b'\r' | b'/' | b'\\'
        )
}

/// Where the first tag `tag` in `s` is.
fn find_tag(s: &[u8], tag: &[u8]) -> Option<usize> {
    let mut p = 0;
    while let Some(k) = memchr::memchr(b'<', &s[p..]) {
        if starts_with_tag(&s[p + k..], tag) {
            return Some(p + k);
        }
        p += k + 1;
    }
    None
}

/// Where the last tag `tag` in `s` is.
fn rfind_tag(s: &[u8], tag: &[u8]) -> Option<usize> {
    let mut e = s.len();
    while let Some(k) = memchr::memrchr(b'<', &s[..e]) {
        if starts_with_tag(&s[k..], tag) {
            return Some(k);
        }
        e = k;
    }
    None
}

/// How a line's breaks, tabs and quotes are written where the table is: as they are
/// (`depth` 0), or escaped inside a JSON string, `depth` strings down.
#[derive(Debug)]
struct Escapes {
    depth: u32,
}

impl Escapes {
    /// The first break from `at` on, a raw one or an escaped one: where it is, how it is
    /// written, and where the next line starts.
    fn next_break(data: &[u8], at: usize) -> Option<(usize, Escapes, usize)> {
        let mut p = at;
        while let Some(k) = memchr::memchr3(b'\n', b'\r', b'\\', &data[p..]) {
            let q = p + k;
            if data[q] != b'\\' {
                let next = if data[q] == b'\r' && data.get(q + 1) == Some(&b'\n') {
                    q + 2
                } else {
                    q + 1
                };
                return Some((q, Escapes { depth: 0 }, next));
            }
            let n = data[q..].iter().take_while(|&&b| b == b'\\').count();
            if matches!(data.get(q + n), Some(b'n' | b'r')) && n.is_power_of_two() {
                return Some((
                    q,
                    Escapes {
                        depth: n.trailing_zeros() + 1,
                    },
                    q + n + 1,
                ));
            }
            p = q + n;
        }
        None
    }

    /// How many backslashes a break or a tab takes here.
    fn breaks(&self) -> usize {
        1 << self.depth.saturating_sub(1)
    }

    /// How many backslashes a double quote takes here.
    fn quotes(&self) -> usize {
        (1 << self.depth) - 1
    }

    /// Where the line that holds `at` starts: after a break, or at the start of the
    /// string or body it is in; `None` past [`LINE_MAX`] bytes.
    fn line_start(&self, data: &[u8], at: usize) -> Option<usize> {
        let from = at.saturating_sub(LINE_MAX);
        let mut k = at;
        while k > from {
            k -= 1;
            let starts = match data[k] {
                b'\n' | b'\r' => true,
                b'n' | b'r' => self.depth > 0 && backslashes_before(data, k) == self.breaks(),
                // A quote no backslash escapes as deep as this text: the string's start.
                b'"' => self.depth > 0 && backslashes_before(data, k) < self.quotes(),
                _ => false,
            };
            if starts {
                return Some(k + 1);
            }
        }
        (from == 0).then_some(0)
    }

    /// The line that ends at the break just before `start`, read, if it is in the same
    /// text.
    fn line_before(&self, data: &[u8], start: usize) -> Option<Vec<u8>> {
        if start == 0 {
            return None;
        }
        let brk = match data[start - 1] {
            b'\n' | b'\r' => start - 1,
            b'n' | b'r' if self.depth > 0 => start - 1 - self.breaks(),
            _ => return None,
        };
        let begin = self.line_start(data, brk)?;
        let mut reader = Lines {
            data,
            esc: self,
            p: begin,
            limit: brk + 1,
            ended: false,
        };
        reader.next().map(|l| l.text)
    }
}

/// How many backslashes stand right before `k`.
fn backslashes_before(data: &[u8], k: usize) -> usize {
    data[..k].iter().rev().take_while(|&&b| b == b'\\').count()
}

/// A line read: its text, and where in the body each of its bytes came from.
struct Line {
    text: Vec<u8>,
    /// The body's offset of each byte of `text`, and the end of the last.
    from: Vec<usize>,
}

impl Line {
    /// The body's range a range of the text was read from.
    fn raw(&self, r: Range<usize>) -> Range<usize> {
        self.from[r.start]..self.from[r.end]
    }
}

/// The lines of a text written as [`Escapes`] says, from `p`; the text ends at a raw
/// quote shallower than its own (the JSON string's end) or at `limit`.
struct Lines<'a> {
    data: &'a [u8],
    esc: &'a Escapes,
    p: usize,
    limit: usize,
    /// Whether the text has ended (at `p`).
    ended: bool,
}

impl Lines<'_> {
    fn next(&mut self) -> Option<Line> {
        let data = self.data;
        if self.ended || self.p >= self.limit {
            return None;
        }
        let (breaks, quotes) = (self.esc.breaks(), self.esc.quotes());
        let mut text = Vec::new();
        let mut from = Vec::new();
        let mut p = self.p;
        while p < self.limit {
            let b = data[p];
            if self.esc.depth == 0 {
                if b == b'\n' || b == b'\r' {
                    let end = p;
                    p += 1;
                    if b == b'\r' && data.get(p) == Some(&b'\n') {
                        p += 1;
                    }
                    self.p = p;
                    from.push(end);
                    return Some(Line { text, from });
                }
                text.push(b);
                from.push(p);
                p += 1;
                continue;
            }
            if b == b'"' {
                // A quote no backslash escapes as deep as this text: the string ends
                // (and the table with it: what follows is another string's).
                return Some(self.last(text, from, p));
            }
            if b != b'\\' {
                text.push(b);
                from.push(p);
                p += 1;
                continue;
            }
            let n = data[p..self.limit]
                .iter()
                .take_while(|&&b| b == b'\\')
                .count();
            let next = (p + n < self.limit).then(|| data[p + n]);
            match next {
                Some(b'n' | b'r') if n == breaks => {
                    let end = p;
                    p += n + 1;
                    if next == Some(b'r')
                        && data[p.min(self.limit)..self.limit].starts_with(&self.break_bytes())
                    {
                        p += breaks + 1;
                    }
                    self.p = p;
                    from.push(end);
                    return Some(Line { text, from });
                }
                Some(b't') if n == breaks => {
                    text.push(b'\t');
                    from.push(p);
                    p += n + 1;
                }
                Some(b'"') if n == quotes => {
                    text.push(b'"');
                    from.push(p);
                    p += n + 1;
                }
                Some(b'"') if n < quotes => return Some(self.last(text, from, p)),
                _ => {
                    // Another escape: its bytes as they are.
                    for k in p..(p + n).min(self.limit) {
                        text.push(b'\\');
                        from.push(k);
                    }
                    p += n;
                }
            }
        }
        Some(self.last(text, from, p.min(self.limit)))
    }

    /// The text's last line, which ends at `end`.
    fn last(&mut self, text: Vec<u8>, mut from: Vec<usize>, end: usize) -> Line {
        self.p = end;
        self.ended = true;
        from.push(end);
        Line { text, from }
    }

    /// A break as written here (`\n`, `\\n`).
    fn break_bytes(&self) -> Vec<u8> {
        let mut b = vec![b'\\'; self.esc.breaks()];
        b.push(b'n');
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(text: &str) -> String {
        super::super::found_replaced(text, passwords(text.as_bytes(), &Rules::default()))
    }

    fn each(cases: &[(&str, &str)]) {
        super::super::in_three_placements(cases, "text", redacted);
    }

    #[test]
    fn a_password_in_a_tables_column_is_found() {
        each(&[
            (
                "username,password,role\nalice,Tr0ub4dor&3,admin\nbob,hunter2,user\n",
                "username,password,role\nalice,[REDACTED],admin\nbob,[REDACTED],user\n",
            ),
            (
                "Accounts:\n\"username\",\"password\"\r\n\"alice\",\"Tr0ub4dor&3\"\r\n",
                "Accounts:\n\"username\",\"password\"\r\n\"alice\",\"[REDACTED]\"\r\n",
            ),
            (
                "login;password;new_password\nalice;Tr0ub4dor&3;c0rrect-h0rse\n",
                "login;password;new_password\nalice;[REDACTED];[REDACTED]\n",
            ),
            (
                "email\tpassword\nalice@example.com\tTr0ub4dor&3",
                "email\tpassword\nalice@example.com\t[REDACTED]",
            ),
            (
                "Here are the test accounts:\n\n| Username | **Temporary Password** | Role |\n\
                 |---|:---:|---|\n| alice | `Tr0ub4dor&3` | admin |\n| bob | ******** | user |\n\n\
                 Log in with alice.",
                "Here are the test accounts:\n\n| Username | **Temporary Password** | Role |\n\
                 |---|:---:|---|\n| alice | `[REDACTED]` | admin |\n| bob | ******** | user |\n\n\
                 Log in with alice.",
            ),
            (
                " id | username |  password\n----+----------+-------------\n  1 | alice    | \
                 Tr0ub4dor&3\n  2 | bob      | \n(2 rows)\n",
                " id | username |  password\n----+----------+-------------\n  1 | alice    | \
                 [REDACTED]\n  2 | bob      | \n(2 rows)\n",
            ),
            (
                "+----+----------+-------------+\n| id | username | PASSWORD    |\n\
                 +----+----------+-------------+\n|  1 | alice    | Tr0ub4dor&3 |\n\
                 +----+----------+-------------+\n1 row in set (0.00 sec)",
                "+----+----------+-------------+\n| id | username | PASSWORD    |\n\
                 +----+----------+-------------+\n|  1 | alice    | [REDACTED] |\n\
                 +----+----------+-------------+\n1 row in set (0.00 sec)",
            ),
            (
                "id  username  password     role\n1   alice     Tr0ub4dor&3  admin\n2   bob       NULL         user",
                "id  username  password     role\n1   alice     [REDACTED]  admin\n2   bob       NULL         user",
            ),
            (
                "UserName Password    Enabled\n-------- --------    -------\nalice    Tr0ub4dor&3 True",
                "UserName Password    Enabled\n-------- --------    -------\nalice    [REDACTED] True",
            ),
            (
                "name       password\n---------  -----------\nalice      Tr0ub4dor&3",
                "name       password\n---------  -----------\nalice      [REDACTED]",
            ),
            (
                "<table>\n  <TR><TH scope=\"col\">User</TH><TH><b>Password</b></TH></TR>\n  \
                 <tr><td>alice</td><td><code>Tr0ub4dor&amp;3</code></td></tr>\n  \
                 <tr><td>bob</td><td>\n    hunter22\n  </td></tr>\n</table>",
                "<table>\n  <TR><TH scope=\"col\">User</TH><TH><b>Password</b></TH></TR>\n  \
                 <tr><td>alice</td><td><code>[REDACTED]</code></td></tr>\n  \
                 <tr><td>bob</td><td>\n    [REDACTED]\n  </td></tr>\n</table>",
            ),
            (
                "{\"range\": \"Sheet1!A1:C3\", \"values\": [[\"Username\", \"Password\", \"Role\"], \
                 [\"alice\", \"Tr0ub4dor&3\", \"admin\"], [\"bob\", \"\", \"user\"], [\"carol\", null, 3]]}",
                "{\"range\": \"Sheet1!A1:C3\", \"values\": [[\"Username\", \"Password\", \"Role\"], \
                 [\"alice\", \"[REDACTED]\", \"admin\"], [\"bob\", \"\", \"user\"], [\"carol\", null, 3]]}",
            ),
            (
                "[\n  [\n    \"user\",\n    \"new_password\"\n  ],\n  [\n    \"alice\",\n    \"Tr0ub4dor&3\"\n  ]\n]",
                "[\n  [\n    \"user\",\n    \"new_password\"\n  ],\n  [\n    \"alice\",\n    \"[REDACTED]\"\n  ]\n]",
            ),
            (
                ">>> print(list(csv.reader(f)))\n[['username', 'password'], ['alice', 'Tr0ub4dor&3'], ['bob', 'hunter22']]",
                ">>> print(list(csv.reader(f)))\n[['username', 'password'], ['alice', '[REDACTED]'], ['bob', '[REDACTED]']]",
            ),
        ]);
    }

    #[test]
    fn tables_that_name_no_password_column_are_let_be() {
        for text in [
            // The name is a row's cell, not the header's.
            "field,description\npassword,The user's password\nemail,The user's email",
            "| Parameter | Description |\n|---|---|\n| password | The user's password |\n| email | The email |",
            "| Name | Type | Required |\n|---|---|---|\n| password | string | yes |\n| email | string | no |",
            "  Column  |  Type   | Nullable\n----------+---------+----------\n id       | integer | not null\n password | text    |",
            // What is under the name is no password.
            "| Setting | Password |\n|---|---|\n| Minimum length | 12 characters |",
            "| User | Password |\n|---|---|\n| alice | ******** |\n| bob | NULL |\n| carol |  |\n\
             | dave | `${DB_PASSWORD}` |\n| erin | <hidden> |\n| frank | [REDACTED] |\n| gil | •••••• |",
            "<table><tr><th>User</th><th>Password</th></tr><tr><td>alice</td><td><input type=\"password\"></td></tr></table>",
            // Names that are not a password's.
            "username,password_hash\nalice,$2b$12$abcdefghijklmnopqrstuv",
            "Name   PasswordLastSet\nalice  2024-01-15",
            "| Model | Input tokens |\n|---|---|\n| gpt-4o | 1200 |",
            // Not a table: a sentence, code, a log.
            "Change your password  now\nThen log in again.",
            "Enter your username, password, and email.\nThen click submit, wait, and log in.",
            "required = [\"username\", \"password\", \"email\"]\noptional = [\"phone\", \"address\", \"company\"]",
            "fields = [\"username\",\"password\",\"email\"]\nvalues = [\"phone\",\"address\",\"company\"]",
            "CREATE TABLE users (\n  id INTEGER,\n  password TEXT NOT NULL,\n  email TEXT\n);",
            "def login(username, password):\n    return post(url, username, password)",
            "2024-01-15 10:00:00,123 INFO password reset for alice\n2024-01-15 10:00:01,456 INFO ok for bob",
            // A Markdown header without its rule line.
            "| User | Password |\n| alice | Tr0ub4dor&3 |",
            // Arrays whose first row names no password column, or that are no rows.
            "{\"required\": [\"username\", \"password\"], \"x\": [\"alice\", \"bob\"]}",
            "[[\"field\", \"description\"], [\"password\", \"The user's password\"], [\"email\", \"x\"]]",
            "[[\"Name\", \"PasswordLastSet\"], [\"alice\", \"2024-01-15\"]]",
            "[[\"user\", \"password\"], [\"alice\", \"********\"], [\"bob\", \"${PW}\"]]",
        ] {
            let once = serde_json::to_string(text).unwrap();
            for body in [text.to_string(), once] {
                assert_eq!(redacted(&body), body);
            }
        }
    }

    /// A table that ends with its JSON string (no break after its last row) ends there:
    /// the tables in the strings after it are read too (found by hand: the first one's
    /// reading ran on to the end of what it may read, past the others).
    #[test]
    fn a_table_that_ends_with_its_string_leaves_the_next_strings_to_be_read() {
        let chat = serde_json::json!({"messages": [
            {"role": "user", "content": "| Account | Password |\n|---|---|\n| carol | MdPw#87r |"},
            {"role": "tool", "content": "username,password\nbob,CsvPw#86e"},
            {"role": "tool", "content": "[[\"Username\", \"Password\"], [\"dave\", \"SheetPw#82y\"]]"},
        ]})
        .to_string();
        let stored = redacted(&chat);
        for pw in ["MdPw#87r", "CsvPw#86e", "SheetPw#82y"] {
            assert!(!stored.contains(pw), "{pw} in {stored}");
        }
    }

    /// An HTML table cut short (no `</table>`) ends with its last row: a table after it
    /// is read by its own header, not as more rows of the first.
    #[test]
    fn an_html_table_cut_short_ends_with_its_last_row() {
        let page = "<table><tr><th>User</th><th>Password</th></tr>\
                    <tr><td>alice</td><td>pw1Zq!x</td></tr>\n\
                    <p>Roles:</p><table><tr><th>Role</th><th>Scope</th></tr>\
                    <tr><td>admin</td><td>global</td></tr></table>";
        assert_eq!(
            redacted(page),
            page.replace("pw1Zq!x", "[REDACTED]"),
            "the roles' table keeps its scope"
        );
    }

    /// A header row of `<td>` cells, as Google Docs writes a table's first row: read when
    /// it is the table's first row and every cell in it a name.
    #[test]
    fn an_html_header_of_td_cells_names_its_columns_in_the_first_row_only() {
        each(&[(
            "<table><tbody><tr><td><p><b>User</b></p></td><td><p><b>Password</b></p></td></tr>\n\
             <tr><td><p>alice</p></td><td><p>Tr0ub4dor&amp;3</p></td></tr></tbody></table>",
            "<table><tbody><tr><td><p><b>User</b></p></td><td><p><b>Password</b></p></td></tr>\n\
             <tr><td><p>alice</p></td><td><p>[REDACTED]</p></td></tr></tbody></table>",
        )]);
        for page in [
            // The name in a later row, and a first row that is no header.
            "<table><tr><td>Field</td><td>Notes</td></tr><tr><td>password</td><td>required</td></tr>\
             <tr><td>email</td><td>optional</td></tr></table>",
            "<table><tr><td>password</td><td>The user's password, 8 characters or more</td></tr>\
             <tr><td>email</td><td>optional</td></tr></table>",
        ] {
            assert_eq!(redacted(page), page);
        }
    }

    /// Two bodies the generated ones found read otherwise the second time, once a cell
    /// was replaced: lines and an array of rows between them (a table's end had hung
    /// on whether a cell was taken), and a marker that ran across an aligned column.
    #[test]
    fn a_table_reads_the_same_again_once_its_cells_are_the_marker() {
        for body in [
            r#"user\tpassword\n[["user", "password"], ["a", "pw1Zq!"]]a\tpw1Zq!\n"#,
            r#"user  password
[REDACTED]a\tpw1Zq!\nuser;|null, ['a', 'pw1Zq!'] | \t**\n"[["user", "password"], ["a", "pw1Zq!"]\"#,
        ] {
            let once = redacted(body);
            assert_eq!(redacted(&once), once, "{body}");
        }
        // (The array's raw quote ends the escaped lines' text: the array is the table.)
        assert_eq!(
            redacted(r#"user\tpassword\n[["user", "password"], ["a", "pw1Zq!"]]a\tpw1Zq!\n"#),
            r#"user\tpassword\n[["user", "password"], ["a", "[REDACTED]"]]a\tpw1Zq!\n"#
        );
    }

    /// Bodies made of the pieces the reading looks at, in any order: what is found lies
    /// in the body, in order, none overlapping, and the body redacted reads the same
    /// again. `TAPEDECK_SCAN_SEED` and `TAPEDECK_SCAN_BODIES` (3,000) as for the line
    /// scanner's generated bodies.
    #[test]
    fn bodies_of_the_pieces_read_within_bounds_and_the_same_again() {
        const PIECES: &[&str] = &[
            "password",
            "PASSWORD",
            "user",
            ",",
            ";",
            "\t",
            "|",
            " | ",
            "---",
            "|---|",
            "+--+",
            "-- --",
            "\n",
            "\r\n",
            "\\n",
            "\\\\n",
            "\\\"",
            "\\\\\\\"",
            "\"",
            "\\",
            "\\t",
            " ",
            "pw1Zq!",
            "NULL",
            "`",
            "**",
            "<table>",
            "<tr>",
            "</tr>",
            "<th>",
            "</th>",
            "<td>",
            "</td>",
            "<TD class=x>",
            "[REDACTED]",
            "\u{e9}",
            "${X}",
            "id",
            // Whole lines, so that tables come of them often.
            "user,password\n",
            "a,pw1Zq!\n",
            "| user | password |\n",
            "|---|---|\n",
            "| a | pw1Zq! |\n",
            "user  password\n",
            "a     pw1Zq!\n",
            "<tr><th>password</th>",
            "<tr><td>a</td><td>pw1Zq!</td></tr>",
            "user\\tpassword\\n",
            "a\\tpw1Zq!\\n",
            "[[\"user\", \"password\"]",
            ", [\"a\", \"pw1Zq!\"]",
            "]",
            "[['user', 'password']",
            ", ['a', 'pw1Zq!']",
            "[[\\\"user\\\",\\\"password\\\"]",
            ",[\\\"a\\\",\\\"pw1Zq!\\\"]",
            "null",
        ];
        let mut found = 0;
        for body in super::super::generated_bodies(PIECES, 6) {
            let ranges = passwords(body.as_bytes(), &Rules::default());
            let mut sorted = ranges.clone();
            sorted.sort_by_key(|r| r.start);
            sorted.dedup_by(|later, earlier| later.start < earlier.end);
            found += super::super::within_bounds_and_the_same_again(&body, &sorted, redacted);
        }
        assert!(found > 0, "the pieces never made a table with a password");
    }
}
