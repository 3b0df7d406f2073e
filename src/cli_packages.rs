//! The client side of `imgstore packages load|list|get`: argument parsing,
//! the bootstrap file formats, and output (an aligned table by default, `-j`
//! JSON, `-H` no header, `-o` columns).
//!
//! TO BE MERGED: the CLI framework (`src/cli/`, with its own socket client)
//! is being written on another branch. Until it lands, this module carries a
//! tiny blocking HTTP/1.1 client over a `UnixStream` ([`call`]) and its own
//! table printer; both are meant to be replaced by the CLI's, and the
//! `packages` verbs moved under `src/cli/`. The public functions [`load`],
//! [`list`] and [`get`] are the seam: they return data, never print.

use crate::service::packages::LoadSummary;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `load` reports: the ids created, updated and unchanged, and the
/// packages as stored.
pub type Summary = LoadSummary;

/// Every package field, in output order: the valid `-o` columns.
const FIELDS: &[&str] = &[
    "id",
    "name",
    "version",
    "memory",
    "disk",
    "swap",
    "lwps",
    "vcpus",
    "group",
    "description",
    "brand",
    "flexible_disk",
    "disks",
    "default",
];
const DEFAULT_COLUMNS: &[&str] = &["id", "name", "version", "memory", "disk", "swap", "vcpus"];

#[derive(Args, Debug)]
pub struct PackagesArgs {
    #[command(subcommand)]
    pub cmd: PackagesCmd,
}

#[derive(Subcommand, Debug)]
pub enum PackagesCmd {
    /// Create or update every package of FILE (a JSON array, or TOML with
    /// [[packages]] tables) in one step: all of them or none. Running it
    /// again with the same file changes nothing.
    Load {
        /// The file: .json (an array of packages) or .toml ([[packages]] tables).
        file: PathBuf,
        #[command(flatten)]
        out: Output,
    },
    /// List packages. Filters are FIELD=VALUE, all must match; strings take
    /// * wildcards (name=g4-*), numbers and booleans match exactly.
    List {
        /// Filters, all of which must match (name=g4-*, memory=1024, default=true).
        #[arg(value_name = "FIELD=VALUE")]
        filters: Vec<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Show one package, by id or by name (the highest version).
    Get {
        /// A package uuid, or a name (its highest version is shown).
        id_or_name: String,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Args, Debug, Clone, Default)]
pub struct Output {
    /// Print JSON instead of a table.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Leave out the table's header line.
    #[arg(short = 'H', long = "no-header")]
    pub no_header: bool,
    /// Table columns, comma-separated (any package field).
    #[arg(short = 'o', long, value_delimiter = ',', value_name = "COLUMNS")]
    pub columns: Vec<String>,
}

/// Runs a `packages` verb and prints its output.
///
/// # Errors
/// The message to print: a bad argument or file, an unreachable daemon, or
/// the daemon's error (code, message and each field problem).
pub fn run(args: PackagesArgs, socket: &Path) -> Result<(), String> {
    let text = match args.cmd {
        PackagesCmd::Load { file, out } => {
            let s = load(socket, &file)?;
            if out.json {
                to_json(&s)?
            } else {
                let rows: Vec<Value> = s
                    .packages
                    .iter()
                    .map(|p| {
                        let mut v = serde_json::to_value(p).unwrap_or_default();
                        let action = if s.created.contains(&p.id) {
                            "created"
                        } else if s.updated.contains(&p.id) {
                            "updated"
                        } else {
                            "unchanged"
                        };
                        v["action"] = Value::from(action);
                        v
                    })
                    .collect();
                let mut cols = vec!["action"];
                cols.extend(DEFAULT_COLUMNS);
                render(&rows, &out, &cols, &["action"])?
            }
        }
        PackagesCmd::List { filters, out } => {
            let filters = filters
                .iter()
                .map(|f| match f.split_once('=') {
                    Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                    _ => Err(format!("filter {f:?} is not FIELD=VALUE")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let rows = list(socket, &filters)?;
            if out.json {
                to_json(&rows)?
            } else {
                render(&rows, &out, DEFAULT_COLUMNS, &[])?
            }
        }
        PackagesCmd::Get { id_or_name, out } => {
            let p = get(socket, &id_or_name)?;
            if out.json {
                to_json(&p)?
            } else {
                render(&[p], &out, DEFAULT_COLUMNS, &[])?
            }
        }
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("stdout: {e}")),
        _ => Ok(()),
    }
}

fn to_json(v: &impl serde::Serialize) -> Result<String, String> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| e.to_string())
}

/// Reads a bootstrap file into the JSON array the daemon loads: a JSON
/// array of packages, or TOML with one `[[packages]]` table per package.
/// The extension decides (`.json`, `.toml`); a file with neither is read as
/// JSON if it parses as JSON, else as TOML.
///
/// # Errors
/// The file cannot be read or parsed, or has the wrong shape; the message
/// names the file.
pub fn read_file(file: &Path) -> Result<Value, String> {
    let name = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: {e}"))?;
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let v = match ext {
        "json" => from_json(&text),
        "toml" => from_toml(&text),
        _ => from_json(&text).or_else(|json_err| {
            from_toml(&text)
                .map_err(|toml_err| format!("neither JSON ({json_err}) nor TOML ({toml_err})"))
        }),
    }
    .map_err(|e| format!("{name}: {e}"))?;
    if !v.is_array() {
        return Err(format!(
            "{name}: must be a JSON array of packages or TOML [[packages]] tables"
        ));
    }
    Ok(v)
}

fn from_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
}

fn from_toml(text: &str) -> Result<Value, String> {
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| format!("not valid TOML: {}", e.to_string().trim()))?;
    let packages = table
        .remove("packages")
        .unwrap_or(toml::Value::Array(vec![]));
    if let Some(k) = table.keys().next() {
        return Err(format!(
            "unknown top-level key {k:?}: a TOML package file holds only [[packages]] tables"
        ));
    }
    serde_json::to_value(packages).map_err(|e| e.to_string())
}

/// `imgstore packages load FILE`: POST the file's packages to
/// `/packages?action=load`, which applies all of them or none.
///
/// # Errors
/// As [`read_file`], or the daemon's answer (`ValidationFailed` lists every
/// problem of every entry, fields prefixed with the entry's index).
pub fn load(socket: &Path, file: &Path) -> Result<Summary, String> {
    let body = read_file(file)?;
    let v = call(socket, "POST", "/packages?action=load", Some(&body))?;
    serde_json::from_value(v).map_err(|e| format!("unexpected answer to the load: {e}"))
}

/// `imgstore packages list FIELD=VALUE...`.
///
/// # Errors
/// The daemon's answer, e.g. `InvalidParameter` naming a bad filter.
pub fn list(socket: &Path, filters: &[(String, String)]) -> Result<Vec<Value>, String> {
    let mut path = "/packages".to_string();
    if !filters.is_empty() {
        let q = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(filters)
            .finish();
        path = format!("{path}?{q}");
    }
    match call(socket, "GET", &path, None)? {
        Value::Array(items) => Ok(items),
        other => Err(format!("unexpected answer to the list: {other}")),
    }
}

/// `imgstore packages get ID-OR-NAME`.
///
/// # Errors
/// The daemon's answer, e.g. `ResourceNotFound`.
pub fn get(socket: &Path, id_or_name: &str) -> Result<Value, String> {
    let seg = percent_encoding::utf8_percent_encode(id_or_name, percent_encoding::NON_ALPHANUMERIC);
    call(socket, "GET", &format!("/packages/{seg}"), None)
}

/// One HTTP/1.1 request over the daemon's socket (`Connection: close`);
/// returns the JSON body of a 2xx answer.
///
/// # Errors
/// The socket cannot be reached, the answer is not HTTP/JSON, or it is an
/// error: then the message is the daemon's code and message, and one line
/// per field problem.
pub fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let io = |e: std::io::Error| format!("{method} {path} on {}: {e}", socket.display());
    let mut s = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot connect to {}: {e} (is the daemon running? --socket or IMGSTORE_SOCKET selects another socket)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(io)?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: imgstore\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io)?;
    let (status, payload) = parse_response(&raw).map_err(|e| format!("{method} {path}: {e}"))?;
    let v: Value = if payload.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&payload)
            .map_err(|e| format!("{method} {path}: answer {status} is not JSON: {e}"))?
    };
    if (200..300).contains(&status) {
        return Ok(v);
    }
    let mut msg = format!(
        "{}: {}",
        v["code"].as_str().unwrap_or("error"),
        v["message"]
            .as_str()
            .map_or_else(|| format!("HTTP status {status}"), str::to_string)
    );
    for e in v["errors"].as_array().into_iter().flatten() {
        msg.push_str(&format!(
            "\n  {}: {}",
            e["field"].as_str().unwrap_or_default(),
            e["message"].as_str().unwrap_or_default()
        ));
    }
    Err(msg)
}

/// Splits a whole response into status and body, undoing chunked encoding.
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer has no complete header")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("the answer has no status line")?;
    let mut chunked = false;
    let mut len = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k.eq_ignore_ascii_case("content-length") {
                len = v.parse::<usize>().ok();
            }
        }
    }
    let mut body = &raw[end + 4..];
    if !chunked {
        if let Some(n) = len {
            body = body
                .get(..n)
                .ok_or("the answer is shorter than its Content-Length")?;
        }
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("broken chunked body")?;
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "broken chunk size")?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        out.extend_from_slice(body.get(..size).ok_or("truncated chunk")?);
        body = body.get(size + 2..).ok_or("truncated chunk")?;
    }
}

/// Prints `rows` as JSON or a table of the chosen columns.
fn render(
    rows: &[Value],
    out: &Output,
    default: &[&str],
    extra: &[&str],
) -> Result<String, String> {
    let cols: Vec<String> = if out.columns.is_empty() {
        default.iter().map(|c| c.to_string()).collect()
    } else {
        for c in &out.columns {
            if !FIELDS.contains(&c.as_str()) && !extra.contains(&c.as_str()) {
                return Err(format!(
                    "unknown column {c:?}: columns are {}",
                    extra
                        .iter()
                        .chain(FIELDS)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        out.columns.clone()
    };
    Ok(table(rows, &cols, !out.no_header))
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// An aligned table: columns two spaces apart, no trailing blanks, the
/// header in upper case; a missing value is `-`.
pub fn table(rows: &[Value], columns: &[String], header: bool) -> String {
    let mut lines: Vec<Vec<String>> = Vec::new();
    if header {
        lines.push(columns.iter().map(|c| c.to_uppercase()).collect());
    }
    for r in rows {
        lines.push(columns.iter().map(|c| cell(r.get(c))).collect());
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in lines {
        let mut line = String::new();
        for (i, c) in l.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            if i + 1 < l.len() {
                line.push_str(&" ".repeat(widths[i] - c.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_without_trailing_blanks() {
        let rows = [
            json!({"name": "a", "memory": 1024, "group": null}),
            json!({"name": "longer", "memory": 64}),
        ];
        let cols: Vec<String> = ["name", "memory", "group"].map(String::from).to_vec();
        assert_eq!(
            table(&rows, &cols, true),
            "NAME    MEMORY  GROUP\na       1024    -\nlonger  64      -\n"
        );
        assert_eq!(table(&rows[..1], &cols[..1], false), "a\n");
    }

    #[test]
    fn responses_are_split_and_dechunked() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]";
        assert_eq!(parse_response(raw).unwrap(), (200, b"[]".to_vec()));
        let raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap(), (404, b"{\"a\":1}".to_vec()));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn files_are_json_arrays_or_toml_package_tables() {
        let dir = tempfile::tempdir().unwrap();
        let toml_file = dir.path().join("p.toml");
        std::fs::write(
            &toml_file,
            "[[packages]]\nname = \"a\"\nmemory = 1024\n\n[[packages]]\nname = \"b\"\nflexible_disk = true\ndisks = [{size = \"remaining\"}]\n",
        )
        .unwrap();
        assert_eq!(
            read_file(&toml_file).unwrap(),
            json!([{"name": "a", "memory": 1024},
                {"name": "b", "flexible_disk": true, "disks": [{"size": "remaining"}]}])
        );
        std::fs::write(&toml_file, "[[pakages]]\nname = \"a\"\n").unwrap();
        assert!(read_file(&toml_file).unwrap_err().contains("pakages"));
        let json_file = dir.path().join("p.json");
        std::fs::write(&json_file, "{\"name\": \"a\"}").unwrap();
        let e = read_file(&json_file).unwrap_err();
        assert!(e.contains("p.json") && e.contains("array"), "{e}");
        std::fs::write(&json_file, " [ {\"name\": \"a\"} ]").unwrap();
        assert_eq!(read_file(&json_file).unwrap(), json!([{"name": "a"}]));
        // Without an extension: JSON if it parses, else TOML.
        let plain = dir.path().join("packages");
        std::fs::write(&plain, "\n[[packages]]\nname = \"a\"\n").unwrap();
        assert_eq!(read_file(&plain).unwrap(), json!([{"name": "a"}]));
        std::fs::write(&plain, "[{\"name\": \"a\"}]").unwrap();
        assert_eq!(read_file(&plain).unwrap(), json!([{"name": "a"}]));
        let e = read_file(&plain.with_file_name("missing")).unwrap_err();
        assert!(e.contains("missing"), "{e}");
    }
}
