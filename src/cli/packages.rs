//! `imgstore packages load|list|get`: the bootstrap file formats (a JSON
//! array of packages, or TOML with `[[packages]]` tables) and the three
//! verbs, over the CLI's socket client ([`super::client`]) and its table
//! layout ([`super::output::aligned`]).
//!
//! The output options are the ones these verbs were first released with,
//! and stay so that scripts keep working: `-j`/`--json`, `-o`/`--columns`
//! (any package field) and `-H`/`--no-header`, which leaves out the header
//! line of the aligned table (unlike the other verbs' `-H`, which also
//! switches to TABs). A cell shows arrays and objects as the daemon's
//! compact JSON.

use super::client::{seg, with_query, Body, Client};
use super::output::{self, emit};
use super::CliError;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::{Path, PathBuf};

type Result<T, E = CliError> = std::result::Result<T, E>;

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
/// A bad argument or file (exit 1, the message names it), an unreachable
/// daemon, or the daemon's error (its code, message and field problems).
pub fn run(args: PackagesArgs, client: &Client) -> Result<()> {
    let text = match args.cmd {
        PackagesCmd::Load { file, out } => {
            let s = load(client, &file)?;
            if out.json {
                output::pretty(&s)
            } else {
                let listed = |k: &str, id: &Value| {
                    s.get(k)
                        .and_then(Value::as_array)
                        .is_some_and(|ids| ids.contains(id))
                };
                let rows: Vec<Value> = packages_of(&s)?
                    .iter()
                    .map(|p| {
                        let mut v = p.clone();
                        let action = if listed("created", &p["id"]) {
                            "created"
                        } else if listed("updated", &p["id"]) {
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
                    Some((k, v)) if !k.is_empty() => Ok((k, v)),
                    _ => Err(CliError::local(format!("filter {f:?} is not FIELD=VALUE"))),
                })
                .collect::<Result<Vec<_>>>()?;
            let rows = list(client, &filters)?;
            if out.json {
                output::pretty(&Value::Array(rows))
            } else {
                render(&rows, &out, DEFAULT_COLUMNS, &[])?
            }
        }
        PackagesCmd::Get { id_or_name, out } => {
            let p = get(client, &id_or_name)?;
            if out.json {
                output::pretty(&p)
            } else {
                render(&[p], &out, DEFAULT_COLUMNS, &[])?
            }
        }
    };
    emit(&text);
    Ok(())
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
/// `/packages?action=load`, which applies all of them or none. Returns the
/// daemon's summary: the ids `created`, `updated` and `unchanged`, and the
/// `packages` as stored.
///
/// # Errors
/// As [`read_file`], or the daemon's answer (`ValidationFailed` lists every
/// problem of every entry, fields prefixed with the entry's index).
pub fn load(client: &Client, file: &Path) -> Result<Value> {
    let body = read_file(file).map_err(CliError::local)?;
    let (_, summary) = client.call("POST", "/packages?action=load", Body::Json(&body))?;
    packages_of(&summary)?;
    Ok(summary)
}

/// The `packages` of a load summary.
fn packages_of(summary: &Value) -> Result<&Vec<Value>> {
    summary
        .get("packages")
        .and_then(Value::as_array)
        .ok_or_else(|| CliError::local(format!("unexpected answer to the load: {summary}")))
}

/// `imgstore packages list FIELD=VALUE...`.
///
/// # Errors
/// The daemon's answer, e.g. `InvalidParameter` naming a bad filter.
pub fn list(client: &Client, filters: &[(&str, &str)]) -> Result<Vec<Value>> {
    match client.get(&with_query("/packages", filters))? {
        Value::Array(items) => Ok(items),
        other => Err(CliError::local(format!(
            "unexpected answer to the list: {other}"
        ))),
    }
}

/// `imgstore packages get ID-OR-NAME`.
///
/// # Errors
/// The daemon's answer, e.g. `ResourceNotFound`.
pub fn get(client: &Client, id_or_name: &str) -> Result<Value> {
    Ok(client.get(&format!("/packages/{}", seg(id_or_name)))?)
}

/// The table of the chosen columns (`-o`, else `default`); `extra` are
/// columns allowed besides the package fields.
fn render(rows: &[Value], out: &Output, default: &[&str], extra: &[&str]) -> Result<String> {
    let cols: Vec<String> = if out.columns.is_empty() {
        default.iter().map(|c| c.to_string()).collect()
    } else {
        for c in &out.columns {
            if !FIELDS.contains(&c.as_str()) && !extra.contains(&c.as_str()) {
                return Err(CliError::local(format!(
                    "unknown column {c:?}: columns are {}",
                    extra
                        .iter()
                        .chain(FIELDS)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        out.columns.clone()
    };
    Ok(table(rows, &cols, !out.no_header))
}

/// A package value as a cell: `-` when missing, strings as they are,
/// anything else (numbers, booleans, `disks`) as compact JSON.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The aligned table of `columns`, with the upper-case header line unless
/// `header` is false.
fn table(rows: &[Value], columns: &[String], header: bool) -> String {
    let head = header.then(|| columns.iter().map(|c| c.to_uppercase()).collect());
    let body = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(r.get(c))).collect());
    output::aligned(&head.into_iter().chain(body).collect::<Vec<_>>())
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
