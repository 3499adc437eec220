//! A structural JSON diff, path by path (`$.messages[2].content`), for miss messages
//! and `tapedeck diff`. Arrays are compared index by index: agents append to message
//! lists, so an appended message shows as one `added` path, not as a cascade.

use serde::Serialize;
use serde_json::Value;

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Change {
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<Value>,
}

/// A body as a value to diff: its JSON, else its text; `null` when empty.
pub fn body_value(data: &[u8]) -> Value {
    if data.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(data)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(data).into_owned()))
}

pub fn diff(a: &Value, b: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk("$", a, b, &mut out);
    out
}

fn child_key(path: &str, k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{path}.{k}")
    } else {
        format!("{path}[{}]", serde_json::to_string(k).unwrap_or_default())
    }
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<Change>) {
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            for (k, va) in ma {
                let p = child_key(path, k);
                match mb.get(k) {
                    Some(vb) => walk(&p, va, vb, out),
                    None => out.push(Change {
                        path: p,
                        op: "removed",
                        a: Some(va.clone()),
                        b: None,
                    }),
                }
            }
            for (k, vb) in mb {
                if !ma.contains_key(k) {
                    out.push(Change {
                        path: child_key(path, k),
                        op: "added",
                        a: None,
                        b: Some(vb.clone()),
                    });
                }
            }
        }
        (Value::Array(la), Value::Array(lb)) => {
            for i in 0..la.len().max(lb.len()) {
                let p = format!("{path}[{i}]");
                match (la.get(i), lb.get(i)) {
                    (Some(x), Some(y)) => walk(&p, x, y, out),
                    (Some(x), None) => out.push(Change {
                        path: p,
                        op: "removed",
                        a: Some(x.clone()),
                        b: None,
                    }),
                    (None, Some(y)) => out.push(Change {
                        path: p,
                        op: "added",
                        a: None,
                        b: Some(y.clone()),
                    }),
                    (None, None) => {}
                }
            }
        }
        _ if a != b => out.push(Change {
            path: path.to_string(),
            op: "changed",
            a: Some(a.clone()),
            b: Some(b.clone()),
        }),
        _ => {}
    }
}

/// A value shortened for one line.
pub fn short(v: &Value, max: usize) -> String {
    let s = v.to_string();
    if s.chars().count() <= max {
        s
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

impl Change {
    /// `$.a.b: 1 → 2`, `$.x: + "new"`, `$.y: - "old"`.
    pub fn line(&self, max: usize) -> String {
        match self.op {
            "added" => format!(
                "{}: + {}",
                self.path,
                short(self.b.as_ref().unwrap_or(&Value::Null), max)
            ),
            "removed" => format!(
                "{}: - {}",
                self.path,
                short(self.a.as_ref().unwrap_or(&Value::Null), max)
            ),
            _ => format!(
                "{}: {} → {}",
                self.path,
                short(self.a.as_ref().unwrap_or(&Value::Null), max),
                short(self.b.as_ref().unwrap_or(&Value::Null), max)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_each_path_that_differs() {
        let a = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "t": 1});
        let b = json!({"model": "m", "messages": [{"role": "user", "content": "ho"}, {"role": "tool", "content": "[]"}], "n": 2});
        let d = diff(&a, &b);
        let lines: Vec<String> = d.iter().map(|c| c.line(40)).collect();
        assert_eq!(
            lines,
            vec![
                "$.messages[0].content: \"hi\" → \"ho\"",
                "$.messages[1]: + {\"role\":\"tool\",\"content\":\"[]\"}",
                "$.t: - 1",
                "$.n: + 2",
            ]
        );
        assert!(diff(&a, &a).is_empty());
    }
}
