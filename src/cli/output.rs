//! Output conventions shared by every listing verb, after imgadm and zfs:
//!
//! - an aligned table with an upper-case header by default;
//! - `-H`: no header and one TAB between columns, no padding (zfs's
//!   scripting mode), so values with spaces (image names may have them)
//!   still split cleanly with `cut -f` or `IFS=$'\t' read`;
//! - `-o a,b,c`: the columns; `-s a,-b`: sort keys, `-` for descending;
//! - `-j`: the full objects as a JSON array (after filtering and sorting),
//!   ignoring `-o`.
//!
//! [`aligned`] is the column layout alone, for verbs that make their own
//! cells (`packages`).
//!
//! Filters are imgadm's: `field=value` (equal) and `field=~substr`
//! (contains), ANDed. Field names are dotted paths into the objects
//! (`tags.role`, `files.0.size`); for installed images (`{manifest, zpool,
//! clones}`) a name not found at the top level is looked up in `manifest`,
//! so `name`, `version`, ... work as in `imgadm list`.

use serde_json::Value;
use std::cmp::Ordering;

/// An imgadm-style filter argument.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub field: String,
    pub substring: bool,
    pub value: String,
}

impl Filter {
    /// Parses `field=value` or `field=~substr`.
    ///
    /// # Errors
    /// The argument has no `=` or an empty field name (a usage error).
    pub fn parse(arg: &str) -> Result<Filter, String> {
        let (field, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("filter {arg:?} is not FIELD=VALUE or FIELD=~SUBSTRING"))?;
        if field.is_empty() {
            return Err(format!("filter {arg:?} has no field name"));
        }
        let (substring, value) = match value.strip_prefix('~') {
            Some(v) => (true, v),
            None => (false, value),
        };
        Ok(Filter {
            field: field.to_string(),
            substring,
            value: value.to_string(),
        })
    }

    pub fn matches(&self, item: &Value) -> bool {
        let test = |v: &Value| {
            let s = scalar_text(v);
            if self.substring {
                s.contains(&self.value)
            } else {
                s == self.value
            }
        };
        match lookup(item, &self.field) {
            None | Some(Value::Null) => false,
            Some(Value::Array(a)) => a.iter().any(test),
            Some(v) => test(&v),
        }
    }
}

/// Parses every filter argument.
///
/// # Errors
/// The first malformed one.
pub fn parse_filters(args: &[String]) -> Result<Vec<Filter>, String> {
    args.iter().map(|a| Filter::parse(a)).collect()
}

fn path_lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// The value of a column or filter field in `item`.
///
/// Computed fields, as in imgadm: `pub` (the date of `published_at`),
/// `size` (`files.0.size`), `clones` (a count when the item lists clones),
/// `progress` (a task's progress as a percentage or a byte count).
pub fn lookup(item: &Value, field: &str) -> Option<Value> {
    let get = |path: &str| {
        path_lookup(item, path)
            .or_else(|| item.get("manifest").and_then(|m| path_lookup(m, path)))
            .cloned()
    };
    match field {
        "pub" => get("published_at").map(|v| match v {
            Value::String(s) => Value::String(s.chars().take(10).collect()),
            other => other,
        }),
        "size" => get("size").or_else(|| get("files.0.size")),
        "clones" => get("clones").map(|v| match v {
            Value::Array(a) => Value::from(a.len()),
            other => other,
        }),
        "progress" => get("progress").map(|p| Value::String(progress_text(&p))),
        _ => get(field),
    }
}

fn progress_text(p: &Value) -> String {
    let done = p.get("bytes_done").and_then(Value::as_u64);
    let total = p.get("bytes_total").and_then(Value::as_u64);
    match (done, total) {
        (Some(d), Some(t)) if t > 0 => format!("{}%", (d.min(t) * 100) / t),
        (Some(d), _) => indicatif::HumanBytes(d).to_string(),
        _ => "-".to_string(),
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A value as a table cell: `-` for nothing, lists comma-joined, objects as
/// compact JSON; tabs and newlines become spaces so a row stays one line.
pub fn cell(v: Option<&Value>) -> String {
    let s = match v {
        None | Some(Value::Null) => return "-".to_string(),
        Some(Value::Array(a)) if a.is_empty() => return "-".to_string(),
        Some(Value::Array(a)) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            a.iter().map(scalar_text).collect::<Vec<_>>().join(",")
        }
        Some(Value::String(s)) if s.is_empty() => return "-".to_string(),
        Some(v) => scalar_text(v),
    };
    s.replace(['\t', '\n', '\r'], " ")
}

/// Parses `-o`/`-s` lists: comma-separated, no empty names.
///
/// # Errors
/// An empty name (`a,,b`), as a usage error.
pub fn field_list(arg: &str, what: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = arg.split(',').map(|s| s.trim().to_string()).collect();
    if list.iter().any(|s| s.is_empty() || s == "-") {
        return Err(format!("{what} {arg:?} has an empty field name"));
    }
    Ok(list)
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None | Some(Value::Null), None | Some(Value::Null)) => Ordering::Equal,
        (None | Some(Value::Null), _) => Ordering::Less,
        (_, None | Some(Value::Null)) => Ordering::Greater,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(x), Some(y)) => cell(Some(x)).cmp(&cell(Some(y))),
    }
}

/// Sorts by `keys` (`field` ascending, `-field` descending), stably.
pub fn sort(items: &mut [Value], keys: &[String]) {
    items.sort_by(|a, b| {
        for k in keys {
            let (field, desc) = match k.strip_prefix('-') {
                Some(f) => (f, true),
                None => (k.as_str(), false),
            };
            let o = compare(lookup(a, field).as_ref(), lookup(b, field).as_ref());
            let o = if desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
}

/// Renders rows: aligned with a header, or `-H` style (TAB-separated, no
/// header). Every line ends with a newline.
pub fn table(items: &[Value], cols: &[String], header: bool) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|it| cols.iter().map(|c| cell(lookup(it, c).as_ref())).collect())
        .collect();
    let mut out = String::new();
    if !header {
        for r in rows {
            out.push_str(&r.join("\t"));
            out.push('\n');
        }
        return out;
    }
    let head: Vec<String> = cols.iter().map(|c| c.to_uppercase()).collect();
    aligned(&std::iter::once(head).chain(rows).collect::<Vec<_>>())
}

/// Lays out lines of cells in columns two spaces apart, each as wide as its
/// widest cell, without trailing blanks; every line ends with a newline.
/// The caller decides whether the first line is a header.
pub fn aligned(lines: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for l in lines {
        for (i, c) in l.iter().enumerate() {
            let n = c.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(n),
                None => widths.push(n),
            }
        }
    }
    let mut out = String::new();
    for l in lines {
        let mut line = String::new();
        for (i, c) in l.iter().enumerate() {
            line.push_str(c);
            if i + 1 < l.len() {
                let pad = widths[i] - c.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Pretty JSON with a final newline.
pub fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("a Value always serialises");
    s.push('\n');
    s
}

/// Writes to stdout. A closed pipe (`imgstore list | head -1`) is not an
/// error worth a message: the reader has what it wanted.
pub fn emit(s: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn installed() -> Vec<Value> {
        vec![
            json!({"manifest": {"uuid": "b", "name": "base 64", "version": "2.0", "published_at": "2024-02-01T00:00:00Z", "files": [{"size": 30}], "tags": {"role": ["db", "web"]}}, "zpool": "zones", "clones": ["x", "y"]}),
            json!({"manifest": {"uuid": "a", "name": "minimal", "version": "10.0", "published_at": "2023-05-06T07:08:09.123Z", "files": [{"size": 4}]}, "zpool": "zones", "clones": []}),
        ]
    }

    #[test]
    fn filters_are_imgadm_style() {
        let items = installed();
        let f = |a: &str| {
            let f = Filter::parse(a).unwrap();
            items
                .iter()
                .filter(|i| f.matches(i))
                .map(|i| lookup(i, "uuid").unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(f("name=minimal"), vec![json!("a")]);
        assert_eq!(f("name=~64"), vec![json!("b")]);
        assert_eq!(f("name=~"), vec![json!("b"), json!("a")]);
        assert_eq!(f("zpool=zones").len(), 2);
        assert_eq!(f("tags.role=web"), vec![json!("b")]);
        assert_eq!(f("files.0.size=4"), vec![json!("a")]);
        assert!(f("nope=1").is_empty());
        assert!(Filter::parse("name").is_err());
        assert!(Filter::parse("=x").is_err());
    }

    #[test]
    fn computed_fields() {
        let items = installed();
        assert_eq!(lookup(&items[1], "pub"), Some(json!("2023-05-06")));
        assert_eq!(lookup(&items[0], "size"), Some(json!(30)));
        assert_eq!(lookup(&items[0], "clones"), Some(json!(2)));
        let task = json!({"progress": {"bytes_done": 25, "bytes_total": 100}});
        assert_eq!(lookup(&task, "progress"), Some(json!("25%")));
    }

    #[test]
    fn sorting_is_numeric_for_numbers_and_can_be_reversed() {
        let mut items = installed();
        sort(&mut items, &["size".into()]);
        assert_eq!(lookup(&items[0], "uuid"), Some(json!("a")));
        sort(&mut items, &["-size".into()]);
        assert_eq!(lookup(&items[0], "uuid"), Some(json!("b")));
        sort(&mut items, &["version".into()]);
        assert_eq!(
            lookup(&items[0], "uuid"),
            Some(json!("a")),
            "string sort: 10.0 < 2.0"
        );
    }

    #[test]
    fn aligned_and_scripting_tables() {
        let items = installed();
        let cols: Vec<String> = ["uuid", "name", "clones", "tags.role"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            table(&items, &cols, true),
            "UUID  NAME     CLONES  TAGS.ROLE\n\
             b     base 64  2       db,web\n\
             a     minimal  0       -\n"
        );
        assert_eq!(
            table(&items, &cols, false),
            "b\tbase 64\t2\tdb,web\na\tminimal\t0\t-\n"
        );
    }

    #[test]
    fn cells_stay_on_one_line() {
        assert_eq!(cell(Some(&json!("a\tb\nc"))), "a b c");
        assert_eq!(cell(Some(&json!({"k": 1}))), "{\"k\":1}");
        assert_eq!(cell(Some(&json!(true))), "true");
        assert_eq!(cell(None), "-");
        assert!(field_list("a,,b", "-o").is_err());
        assert_eq!(field_list("a, b", "-o").unwrap(), vec!["a", "b"]);
    }
}
