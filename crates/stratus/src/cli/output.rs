//! `--format table|json` rendering. Data goes to stdout; narration (`Deleted queue [...]`) goes
//! to stderr so JSON output stays machine-readable.

use std::io::Write;

use serde_json::Value;

use super::Format;

/// A table column: its header and how to read the cell from one resource.
pub struct Column {
    /// Upper-case header, e.g. `MAX_RATE`.
    pub header: &'static str,
    /// Extracts the cell text.
    pub cell: fn(&Value) -> String,
}

impl Column {
    /// A column named `header` whose cells `cell` reads.
    pub const fn new(header: &'static str, cell: fn(&Value) -> String) -> Self {
        Column { header, cell }
    }
}

/// Prints one resource: pretty JSON, or `key: value` lines with nested keys dotted.
pub fn resource(format: Format, value: &Value) {
    match format {
        Format::Json => json(value),
        Format::Table => {
            let mut lines = Vec::new();
            flatten("", value, &mut lines);
            let text: String = lines.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
            out(&text);
        }
    }
}

/// Prints a list: one pretty JSON array, or a table (`Listed 0 items.` on stderr when empty).
pub fn list(format: Format, items: &[Value], columns: &[Column]) {
    match format {
        Format::Json => json(&Value::Array(items.to_vec())),
        Format::Table if items.is_empty() => narrate("Listed 0 items."),
        Format::Table => {
            let header: Vec<String> = columns.iter().map(|c| c.header.to_string()).collect();
            let mut rows = vec![header];
            rows.extend(
                items
                    .iter()
                    .map(|v| columns.iter().map(|c| (c.cell)(v)).collect()),
            );
            out(&table(&rows));
        }
    }
}

/// Prints `key: value` lines in the order given (a summary whose order matters).
pub fn pairs(pairs: &[(&str, String)]) {
    let text: String = pairs.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    out(&text);
}

/// Prints a status line to stderr, e.g. `Created queue [projects/…/queues/q].`
pub fn narrate(line: &str) {
    eprintln!("{line}");
}

/// Pretty JSON on stdout.
pub fn json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    out(&format!("{text}\n"));
}

/// Writes to stdout, ignoring a closed pipe (`stratus … | head`).
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Left-aligned columns separated by two spaces, without trailing blanks.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < cols {
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Flattens `value` into `(dotted.key, text)` pairs; arrays use `key[i]`.
fn flatten(prefix: &str, value: &Value, lines: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, lines);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, lines);
            }
        }
        _ if prefix.is_empty() => {} // an empty top-level object (e.g. Empty) prints nothing
        other => lines.push((prefix.to_string(), scalar(other))),
    }
}

/// A JSON scalar as plain text (strings unquoted, empty containers as `{}` / `[]`).
pub fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The text at a dotted `path` in `value`, or `default` when absent (proto3 JSON omits zeros).
pub fn field(value: &Value, path: &str, default: &str) -> String {
    path.split('.')
        .try_fold(value, |v, k| v.get(k))
        .map_or_else(|| default.to_string(), scalar)
}

/// The last segment of a resource name, e.g. the queue ID.
pub fn short_name(value: &Value) -> String {
    last_segment(value, "name")
}

/// The last segment of the resource name in `value`'s field `path`.
pub fn last_segment(value: &Value, path: &str) -> String {
    let name = field(value, path, "");
    name.rsplit('/').next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattens_nested_json() {
        let v = json!({"name":"n","rateLimits":{"maxBurstSize":100},"h":[{"k":"v"}],"e":{}});
        let mut lines = Vec::new();
        flatten("", &v, &mut lines);
        let mut keys: Vec<String> = lines.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        keys.sort(); // serde_json may be built with `preserve_order`
        assert_eq!(
            keys,
            [
                "e: {}",
                "h[0].k: v",
                "name: n",
                "rateLimits.maxBurstSize: 100"
            ]
        );
    }

    #[test]
    fn aligns_table_columns() {
        let rows = vec![
            vec!["ID".to_string(), "STATE".to_string()],
            vec!["long-queue".to_string(), "RUNNING".to_string()],
        ];
        assert_eq!(table(&rows), "ID          STATE\nlong-queue  RUNNING\n");
    }

    #[test]
    fn reads_fields() {
        let v = json!({"name":"a/b/c","retryConfig":{"maxAttempts":-1}});
        assert_eq!(short_name(&v), "c");
        assert_eq!(field(&v, "retryConfig.maxAttempts", ""), "-1");
        assert_eq!(field(&v, "dispatchCount", "0"), "0");
    }
}
