//! One function per client verb: build the request, call the daemon, print.
//!
//! Results go to stdout (tables, JSON, one-line confirmations); progress,
//! questions and errors go to stderr, so `-j` output can be piped as is.

use super::client::{seg, with_query, ApiError, Body, Client, Error as ClientError};
use super::output::{self, emit, Filter};
use super::progress::{Mode, Progress};
use super::task::{self, End, Interrupt};
use super::{
    AddArgs, AncestryArgs, AvailArgs, CliError, Cmd, Conn, CreateArgs, ExportArgs, FollowArgs,
    ImageCmd, ImagesArgs, ImportArgs, InstallArgs, ListArgs, PingArgs, PoolImageArgs, TableArgs,
    TaskCmd, TasksArgs, VacuumArgs, EXIT_NOT_INSTALLED,
};
use crate::manifest::{self, UncheckedFile};
use serde_json::{json, Map, Value};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Result<T, E = CliError> = std::result::Result<T, E>;

const IMAGE_COLUMNS: &[&str] = &["uuid", "name", "version", "os", "type", "pub"];
const STORE_COLUMNS: &[&str] = &["uuid", "name", "version", "state", "type", "pub"];
const ANCESTRY_COLUMNS: &[&str] = &["uuid", "name", "version", "pub"];
const TASK_COLUMNS: &[&str] = &["id", "type", "status", "progress", "created_at"];

pub fn dispatch(cmd: Cmd, conn: &Conn) -> Result<()> {
    match cmd {
        Cmd::Serve(_) | Cmd::Fsck(_) => Err(CliError::usage("not a client verb")),
        Cmd::Ping(a) => ping(conn, a),
        Cmd::List(a) => list(conn, a),
        Cmd::Get(a) => get(conn, a),
        Cmd::Avail(a) => avail(conn, a),
        Cmd::Import(a) => import(conn, a),
        Cmd::Add(a) => add(conn, a),
        Cmd::Install(a) => install(conn, a),
        Cmd::Delete(a) => delete(conn, a),
        Cmd::Create(a) => create(conn, a),
        Cmd::Export(a) => export(conn, a),
        Cmd::Ancestry(a) => ancestry(conn, a),
        Cmd::Vacuum(a) => vacuum(conn, a),
        Cmd::Images(a) => images(conn, a),
        Cmd::Image(c) => image(conn, c),
        Cmd::Tasks(a) => tasks(conn, a),
        Cmd::Task(c) => task_cmd(conn, c),
        Cmd::Packages(a) => super::packages::run(a, &conn.client()?),
    }
}

// ---- helpers

/// For a verb given an image uuid: "no such image" (not "no such route")
/// exits 3, as imgadm's ImageNotInstalled does.
fn image_missing_is_3(e: ClientError) -> CliError {
    let three = matches!(&e, ClientError::Api(a) if is_missing_image(a));
    let mut e = CliError::from(e);
    if three {
        e.exit = EXIT_NOT_INSTALLED;
    }
    e
}

fn is_missing_image(a: &ApiError) -> bool {
    a.code == "ImageNotInstalled" || (a.code == "ResourceNotFound" && !a.is_unknown_route())
}

fn short(uuid: &str) -> &str {
    uuid.get(..8).unwrap_or(uuid)
}

fn str_field<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// A manifest's `uuid` (the key is [`manifest`]'s), when `v` is an
/// object with a string `uuid`.
fn uuid_of(v: &Value) -> Option<&str> {
    v.as_object().and_then(manifest::uuid_of)
}

/// "UUID (name version)" when name and version are known.
fn describe(uuid: &str, manifest: Option<&Value>) -> String {
    match manifest
        .and_then(Value::as_object)
        .map(|m| (manifest::name_of(m), manifest::version_of(m)))
    {
        Some((Some(n), Some(v))) => format!("{uuid} ({n} {v})"),
        Some((Some(n), None)) => format!("{uuid} ({n})"),
        _ => uuid.to_string(),
    }
}

fn array(v: Value, what: &str) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(CliError::local(format!(
            "the daemon answered {what} with something that is not a list: {}",
            clip(&other.to_string())
        ))),
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 200 {
        format!("{}...", s.chars().take(200).collect::<String>())
    } else {
        s.to_string()
    }
}

/// A listing's options, checked before any request is made, so a bad
/// filter or field list is a usage error even when the daemon is down.
struct Listing {
    filters: Vec<Filter>,
    sort: Vec<String>,
    cols: Vec<String>,
    json: bool,
    header: bool,
}

impl Listing {
    fn new(
        filters: &[String],
        t: &TableArgs,
        default_cols: &[&str],
        default_sort: &[&str],
    ) -> Result<Listing> {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Ok(Listing {
            filters: output::parse_filters(filters).map_err(CliError::usage)?,
            sort: match &t.sort {
                Some(s) => output::field_list(s, "-s").map_err(CliError::usage)?,
                None => owned(default_sort),
            },
            cols: match &t.columns {
                Some(c) => output::field_list(c, "-o").map_err(CliError::usage)?,
                None => owned(default_cols),
            },
            json: t.json,
            header: !t.no_header,
        })
    }

    /// Filters, sorts and prints.
    fn print(&self, mut items: Vec<Value>) {
        items.retain(|i| self.filters.iter().all(|f| f.matches(i)));
        output::sort(&mut items, &self.sort);
        if self.json {
            emit(&output::pretty(&Value::Array(items)));
        } else {
            emit(&output::table(&items, &self.cols, self.header));
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd =
        std::env::current_dir().map_err(|e| CliError::local(format!("current directory: {e}")))?;
    Ok(cwd.join(p))
}

fn read_manifest(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::local(format!("manifest {}: {e}", path.display())))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(CliError::local(format!(
            "manifest {}: not a JSON object",
            path.display()
        ))),
        Err(e) => Err(CliError::local(format!(
            "manifest {}: not valid JSON: {e}",
            path.display()
        ))),
    }
}

/// Compression from a file name, as imgadm names image files (the codec's
/// extensions), plus the spellings `.tgz` and `.zstd`.
fn compression_from_name(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()) {
        Some("tgz") => "gzip",
        Some("zstd") => "zstd",
        Some(ext) => crate::codec::from_extension(ext).unwrap_or("none"),
        None => "none",
    }
}

/// Starts a task with `method path body`, then follows it (or not, with
/// --detach). Returns the finished task; prints nothing on success except
/// what `-j` asks for, leaving the confirmation to the caller.
fn start_and_follow(
    client: &Client,
    method: &str,
    path: &str,
    body: Body<'_>,
    label: &str,
    f: &FollowArgs,
    missing_image_is_3: bool,
) -> Result<Option<Value>> {
    // Install the Ctrl-C handler before the task exists, so no Ctrl-C can
    // kill the CLI between starting the task and following it.
    let intr = if f.detach {
        None
    } else {
        Some(Interrupt::install()?)
    };
    let started = client.call(method, path, body).map_err(|e| {
        if missing_image_is_3 {
            image_missing_is_3(e)
        } else {
            CliError::from(e)
        }
    })?;
    let task = started.1;
    let id = task::task_id(&task)?;
    let Some(intr) = intr else {
        if f.json {
            emit(&output::pretty(&task));
        } else {
            emit(&format!("{id}\n"));
        }
        return Ok(None);
    };
    follow_to_end(client, task, label, f.quiet, f.json, &intr, None)
}

/// Follows a task and turns its end into the command's result: the
/// finished task, `None` when the user detached, or the task's error.
fn follow_to_end(
    client: &Client,
    task: Value,
    label: &str,
    quiet: bool,
    json: bool,
    intr: &Interrupt,
    timeout: Option<Duration>,
) -> Result<Option<Value>> {
    let id = task::task_id(&task)?;
    let end = task::follow(client, task, label, Mode::detect(quiet), intr, timeout)?;
    match end {
        End::Finished {
            task,
            cancelled_here,
        } => {
            if json {
                emit(&output::pretty(&task));
            }
            match task::task_error(&task, cancelled_here) {
                Some(e) => Err(e),
                None => Ok(Some(task)),
            }
        }
        End::Detached { task } => {
            if json {
                emit(&output::pretty(&task));
            }
            eprintln!(
                "imgstore: detached; task {id} goes on. Follow it with: imgstore task wait {id}"
            );
            Ok(None)
        }
        End::TimedOut { task } => {
            if json {
                emit(&output::pretty(&task));
            }
            Err(CliError::local(format!(
                "task {id} is still {} after the timeout; it goes on",
                task::status(&task)
            )))
        }
    }
}

fn result_of(task: &Value) -> &Value {
    task.get("result").unwrap_or(&Value::Null)
}

// ---- verbs

fn ping(conn: &Conn, a: PingArgs) -> Result<()> {
    let client = conn.client()?;
    let wait = match a.wait {
        Some(w) if !(w.is_finite() && w >= 0.0) => {
            return Err(CliError::usage(format!(
                "--wait {w}: expected a number of seconds"
            )))
        }
        w => w.map(Duration::from_secs_f64),
    };
    let start = Instant::now();
    let v = loop {
        match client.get("/ping") {
            Ok(v) => break v,
            // Not up yet (no socket, or bound but not yet answering), or
            // still starting: worth another try while the wait lasts.
            Err(e @ (ClientError::Connect(..) | ClientError::Io(..)))
            | Err(e @ ClientError::Api(ApiError { status: 503, .. })) => match wait {
                Some(w) if start.elapsed() < w => std::thread::sleep(Duration::from_millis(100)),
                Some(w) => {
                    return Err(CliError::local(format!(
                        "no answer from the imgstore daemon at {} within {} s",
                        client.socket().display(),
                        w.as_secs_f64()
                    ))
                    .with_detail(format!("last error: {e}")))
                }
                None => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        }
    };
    if a.json {
        emit(&output::pretty(&v));
    } else {
        emit(&format!(
            "pong: imgstore {} (pid {}) at {}\n",
            str_field(&v, "version").unwrap_or("?"),
            v.get("pid").map(|p| p.to_string()).unwrap_or("?".into()),
            client.socket().display()
        ));
    }
    Ok(())
}

fn list(conn: &Conn, a: ListArgs) -> Result<()> {
    let listing = Listing::new(&a.filters, &a.table, IMAGE_COLUMNS, &["published_at"])?;
    let pool = conn.pool(&a.pool)?;
    let client = conn.client()?;
    let items = array(
        client.get(&format!("/pools/{}/images", seg(&pool)))?,
        "the list of installed images",
    )?;
    listing.print(items);
    Ok(())
}

fn get(conn: &Conn, a: PoolImageArgs) -> Result<()> {
    let pool = conn.pool(&a.pool)?;
    let v = conn
        .client()?
        .get(&format!("/pools/{}/images/{}", seg(&pool), seg(&a.uuid)))
        .map_err(image_missing_is_3)?;
    emit(&output::pretty(&v));
    Ok(())
}

fn avail(conn: &Conn, a: AvailArgs) -> Result<()> {
    let listing = Listing::new(&a.filters, &a.table, IMAGE_COLUMNS, &["published_at"])?;
    // {"images": [{manifest, source}], "errors": [{url, code, message}]}:
    // a source that did not answer is reported, not fatal (as imgadm does).
    let v = conn.client()?.get("/sources/images")?;
    for e in v
        .get("errors")
        .and_then(|e| e.as_array())
        .into_iter()
        .flatten()
    {
        eprintln!(
            "imgstore: warning: source {} did not answer ({}): {}",
            e.get("url").and_then(|x| x.as_str()).unwrap_or("?"),
            e.get("code").and_then(|x| x.as_str()).unwrap_or("?"),
            e.get("message").and_then(|x| x.as_str()).unwrap_or("")
        );
    }
    let entries = array(
        v.get("images").cloned().unwrap_or(serde_json::Value::Null),
        "the list of available images",
    )?;
    let items = entries
        .into_iter()
        .map(|e| {
            let mut m = e.get("manifest").cloned().unwrap_or_default();
            if let (Some(obj), Some(src)) = (m.as_object_mut(), e.get("source")) {
                obj.insert("source".into(), src.clone());
            }
            m
        })
        .collect();
    listing.print(items);
    Ok(())
}

fn import(conn: &Conn, a: ImportArgs) -> Result<()> {
    let client = conn.client()?;
    // imgadm import installs: into -P, else the configured default pool.
    let pool = conn.pool(&a.pool)?;
    let q = vec![("action", "import-remote"), ("install", pool.as_str())];
    let path = with_query(&format!("/images/{}", seg(&a.uuid)), &q);
    let label = format!("import {}", short(&a.uuid));
    let Some(task) = start_and_follow(
        &client,
        "POST",
        &path,
        Body::Empty,
        &label,
        &a.follow,
        false,
    )?
    else {
        return Ok(());
    };
    if !a.follow.json {
        let r = result_of(&task);
        let uuid = str_field(r, "image_uuid").unwrap_or(&a.uuid);
        let pool = str_field(r, "pool").or(Some(pool.as_str()));
        emit(&format!(
            "Imported image {}{}\n",
            describe(uuid, r.get("manifest")),
            pool.map(|p| format!(" into pool {p}")).unwrap_or_default()
        ));
    }
    Ok(())
}

fn add(conn: &Conn, a: AddArgs) -> Result<()> {
    let client = conn.client()?;
    let mut manifest = read_manifest(&a.manifest)?;
    let mut file = std::fs::File::open(&a.file)
        .map_err(|e| CliError::local(format!("image file {}: {e}", a.file.display())))?;
    let len = file
        .metadata()
        .map_err(|e| CliError::local(format!("image file {}: {e}", a.file.display())))?
        .len();
    let f0 = UncheckedFile::of(&manifest);
    if let Some(size) = f0.and_then(|f| f.size()) {
        if size != len {
            return Err(CliError::local(format!(
                "image file {} is {len} bytes, but the manifest {} says files[0].size is {size}",
                a.file.display(),
                a.manifest.display()
            )));
        }
    }
    let compression = f0
        .and_then(|f| f.compression())
        .map(str::to_string)
        .unwrap_or_else(|| compression_from_name(&a.file).to_string());
    let sha1 = f0.and_then(|f| f.sha1()).map(str::to_string);

    // 1. The manifest. With a uuid, AdminImportImage keeps it (and drops
    // `files`, which describe someone else's copy); without, CreateImage
    // assigns one and must not be sent `files`.
    let intr = Interrupt::install()?;
    let created = match manifest::uuid_of(&manifest).map(str::to_string) {
        Some(uuid) => client.call(
            "POST",
            &with_query(&format!("/images/{}", seg(&uuid)), &[("action", "import")]),
            Body::Json(&Value::Object(manifest.clone())),
        ),
        None => {
            manifest.remove("files");
            client.call(
                "POST",
                "/images",
                Body::Json(&Value::Object(manifest.clone())),
            )
        }
    }?
    .1;
    let uuid = uuid_of(&created)
        .ok_or_else(|| CliError::local("the daemon's answer has no uuid"))?
        .to_string();

    // 2. The file, then activation. If either fails, the unactivated image
    // would only be in the way of a retry: remove it.
    let result = (|| -> Result<Value> {
        let mut q = vec![
            ("compression", compression.clone()),
            ("size", len.to_string()),
        ];
        if let Some(s) = &sha1 {
            q.push(("sha1", s.clone()));
        }
        let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let path = with_query(&format!("/images/{}/file", seg(&uuid)), &q);
        let mut progress = Progress::new(format!("upload {}", short(&uuid)), Mode::detect(a.quiet));
        progress.update(0, Some(len));
        let mut on_progress = |sent: u64| {
            progress.update(sent, Some(len));
            !intr.pending()
        };
        let up = client.call(
            "PUT",
            &path,
            Body::Stream {
                reader: &mut file,
                len,
                progress: &mut on_progress,
            },
        );
        match &up {
            Ok(_) => progress.finish("done"),
            Err(ClientError::Aborted) => progress.finish("interrupted"),
            Err(_) => progress.finish("failed"),
        }
        up?;
        let (_, activated) = client.call(
            "POST",
            &with_query(
                &format!("/images/{}", seg(&uuid)),
                &[("action", "activate")],
            ),
            Body::Empty,
        )?;
        Ok(activated)
    })();
    let activated = match result {
        Ok(v) => v,
        Err(e) => {
            let cleanup = match client.call("DELETE", &format!("/images/{}", seg(&uuid)), Body::Empty)
            {
                Ok(_) => format!("the half-added image {uuid} was removed from the store"),
                Err(d) => format!(
                    "the half-added image {uuid} could not be removed ({d}); remove it with: imgstore image delete {uuid}"
                ),
            };
            return Err(e.with_detail(cleanup));
        }
    };
    if a.json {
        emit(&output::pretty(&activated));
    } else {
        emit(&format!(
            "Added image {} to the store\n",
            describe(&uuid, Some(&activated))
        ));
    }
    Ok(())
}

fn install(conn: &Conn, a: InstallArgs) -> Result<()> {
    let client = conn.client()?;
    // The daemon opens the files itself: give it absolute paths, and fail
    // here, naming the path as given, when one is missing.
    let mut paths = Vec::new();
    for (what, p) in [("manifest", &a.manifest), ("image file", &a.file)] {
        let md = std::fs::metadata(p)
            .map_err(|e| CliError::local(format!("{what} {}: {e}", p.display())))?;
        if !md.is_file() {
            return Err(CliError::local(format!(
                "{what} {}: not a regular file",
                p.display()
            )));
        }
        paths.push(absolute(p)?.display().to_string());
    }
    // For messages only; the daemon validates the manifest.
    let manifest = read_manifest(&a.manifest).ok().map(Value::Object);
    let uuid_hint = manifest.as_ref().and_then(uuid_of).map(str::to_string);
    let mut body = json!({"manifest": paths[0], "file": paths[1]});
    if let Some(p) = &a.pool {
        body["pool"] = json!(p);
    }
    let label = match &uuid_hint {
        Some(u) => format!("install {}", short(u)),
        None => "install".to_string(),
    };
    let Some(task) = start_and_follow(
        &client,
        "POST",
        &with_query("/images", &[("action", "install-from-files")]),
        Body::Json(&body),
        &label,
        &a.follow,
        false,
    )?
    else {
        return Ok(());
    };
    if !a.follow.json {
        let r = result_of(&task);
        let uuid = str_field(r, "image_uuid")
            .map(str::to_string)
            .or(uuid_hint)
            .unwrap_or_else(|| "?".into());
        let pool = str_field(r, "pool")
            .map(str::to_string)
            .or(a.pool.clone())
            .map(|p| format!("pool {p}"))
            .unwrap_or_else(|| "the default pool".into());
        emit(&format!(
            "Installed image {} in {pool}\n",
            describe(&uuid, manifest.as_ref())
        ));
    }
    Ok(())
}

fn delete(conn: &Conn, a: PoolImageArgs) -> Result<()> {
    let pool = conn.pool(&a.pool)?;
    let client = conn.client()?;
    let (status, v) = client
        .call(
            "DELETE",
            &format!("/pools/{}/images/{}", seg(&pool), seg(&a.uuid)),
            Body::Empty,
        )
        .map_err(image_missing_is_3)?;
    if status == 202 && v.get("id").is_some() {
        let intr = Interrupt::install()?;
        let label = format!("delete {}", short(&a.uuid));
        if follow_to_end(&client, v, &label, false, false, &intr, None)?.is_none() {
            return Ok(());
        }
    }
    emit(&format!("Deleted image {} from pool {pool}\n", a.uuid));
    Ok(())
}

/// `FIELD=STRING` or `FIELD:=JSON`.
fn parse_field(arg: &str) -> Result<(String, Value)> {
    if let Some((k, v)) = arg.split_once(":=") {
        if !k.is_empty() && !k.contains('=') {
            let v = serde_json::from_str(v).map_err(|e| {
                CliError::usage(format!("{arg:?}: the value after := is not JSON: {e}"))
            })?;
            return Ok((k.to_string(), v));
        }
    }
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), Value::String(v.to_string()))),
        _ => Err(CliError::usage(format!(
            "{arg:?} is not FIELD=VALUE or FIELD:=JSON"
        ))),
    }
}

fn create(conn: &Conn, a: CreateArgs) -> Result<()> {
    let mut manifest = match &a.manifest {
        Some(p) => read_manifest(p)?,
        None => Map::new(),
    };
    for f in &a.fields {
        let (k, v) = parse_field(f)?;
        manifest.insert(k, v);
    }
    let client = conn.client()?;
    let mut body = json!({
        "dataset": a.dataset,
        "manifest": Value::Object(manifest.clone()),
        "incremental": a.incremental,
    });
    if let Some(c) = &a.compression {
        body["compression"] = json!(c);
    }
    let Some(task) = start_and_follow(
        &client,
        "POST",
        &with_query("/images", &[("action", "create-from-dataset")]),
        Body::Json(&body),
        &format!("create from {}", a.dataset),
        &a.follow,
        false,
    )?
    else {
        return Ok(());
    };
    if !a.follow.json {
        let r = result_of(&task);
        let uuid = str_field(r, "image_uuid").unwrap_or("?");
        let m = r
            .get("manifest")
            .cloned()
            .unwrap_or(Value::Object(manifest));
        emit(&format!(
            "Created image {} from {}\n",
            describe(uuid, Some(&m)),
            a.dataset
        ));
    }
    Ok(())
}

fn export(conn: &Conn, a: ExportArgs) -> Result<()> {
    let client = conn.client()?;
    let dir = absolute(&a.dir)?;
    let dir = dir.canonicalize().unwrap_or(dir);
    let dir_s = dir.display().to_string();
    let path = with_query(
        &format!("/images/{}", seg(&a.uuid)),
        &[("action", "export"), ("path", &dir_s)],
    );
    let label = format!("export {}", short(&a.uuid));
    let Some(task) =
        start_and_follow(&client, "POST", &path, Body::Empty, &label, &a.follow, true)?
    else {
        return Ok(());
    };
    if !a.follow.json {
        let mut out = format!("Exported image {} to {dir_s}\n", a.uuid);
        if let Value::Object(r) = result_of(&task) {
            for (k, v) in r {
                if let Some(s) = v.as_str().filter(|s| s.starts_with('/')) {
                    out.push_str(&format!("  {k}: {s}\n"));
                }
            }
        }
        emit(&out);
    }
    Ok(())
}

fn ancestry(conn: &Conn, a: AncestryArgs) -> Result<()> {
    let listing = Listing::new(&[], &a.table, ANCESTRY_COLUMNS, &[])?;
    let pool = conn.pool(&a.pool)?;
    let client = conn.client()?;
    let fetch = |uuid: &str| client.get(&format!("/pools/{}/images/{}", seg(&pool), seg(uuid)));
    let uuid_of = |v: &Value| {
        output::lookup(v, "uuid")
            .and_then(|u| u.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let mut chain = vec![fetch(&a.uuid).map_err(image_missing_is_3)?];
    let mut seen = vec![a.uuid.clone()];
    while let Some(origin) = chain
        .last()
        .and_then(|last| output::lookup(last, "origin"))
        .and_then(|o| o.as_str().map(str::to_string))
    {
        let child = chain.last().map(uuid_of).unwrap_or_default();
        if seen.contains(&origin) {
            return Err(CliError::local(format!(
                "the origin chain of image {} loops at {origin}",
                a.uuid
            )));
        }
        seen.push(origin.clone());
        match fetch(&origin) {
            Ok(v) => chain.push(v),
            Err(ClientError::Api(e)) if is_missing_image(&e) => {
                return Err(CliError {
                    exit: EXIT_NOT_INSTALLED,
                    code: Some("OriginNotInstalled".into()),
                    message: format!(
                        "origin {origin} of image {child} is not installed in pool {pool}"
                    ),
                    details: vec![],
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The chain's order is the answer: no sort unless asked.
    listing.print(chain);
    Ok(())
}

/// The images a vacuum answer lists (an array, or an object holding one).
/// Prints the daemon's vacuum report (`{dry_run, removed: [{kind, subject,
/// bytes}], skipped: [{subject, reason}], bytes}`) one line per item.
fn print_vacuum(v: &Value) {
    let dry = v.get("dry_run").and_then(Value::as_bool).unwrap_or(false);
    let verb = if dry { "would remove" } else { "removed" };
    let removed = v
        .get("removed")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = String::new();
    for r in &removed {
        out.push_str(&format!(
            "{verb} {} {} ({} bytes)\n",
            str_field(r, "kind").unwrap_or("?"),
            str_field(r, "subject").unwrap_or("?"),
            r.get("bytes").and_then(Value::as_u64).unwrap_or(0)
        ));
    }
    for k in v
        .get("skipped")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push_str(&format!(
            "kept {}: {}\n",
            str_field(k, "subject").unwrap_or("?"),
            str_field(k, "reason").unwrap_or("")
        ));
    }
    out.push_str(&format!(
        "{verb} {} items, {} bytes{}\n",
        removed.len(),
        v.get("bytes").and_then(Value::as_u64).unwrap_or(0),
        if dry {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    ));
    emit(&out);
}

/// `imgstore vacuum`: the daemon's garbage collection (POST /vacuum):
/// unreferenced blobs, stale temp files, expired placeholders and tasks,
/// and with --uninstall-unused-days, installed images nothing uses.
fn vacuum(conn: &Conn, a: VacuumArgs) -> Result<()> {
    let client = conn.client()?;
    let days = a.uninstall_unused_days.map(|d| d.to_string());
    let run = |dry: bool| -> Result<Value> {
        let mut q = vec![("dry_run", if dry { "true" } else { "false" })];
        if let Some(d) = &days {
            q.push(("uninstall_unused_days", d.as_str()));
        }
        if let Some(p) = &a.pool {
            q.push(("pool", p.as_str()));
        }
        let (_, v) = client.call("POST", &with_query("/vacuum", &q), Body::Empty)?;
        Ok(v)
    };
    if !a.dry_run && days.is_some() && !a.force {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage(
                "vacuum --uninstall-unused-days uninstalls images: confirm with -f (or run it on a \
                 terminal, or see what it would do with -n)",
            ));
        }
        let plan = run(true)?;
        print_vacuum(&plan);
        eprint!("Go ahead? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(CliError::local("vacuum aborted; nothing was removed"));
        }
    }
    let v = run(a.dry_run)?;
    if a.json {
        emit(&output::pretty(&v));
    } else {
        print_vacuum(&v);
    }
    Ok(())
}

fn images(conn: &Conn, a: ImagesArgs) -> Result<()> {
    let listing = Listing::new(&a.filters, &a.table, STORE_COLUMNS, &["published_at"])?;
    let client = conn.client()?;
    let all = a.all || a.filters.iter().any(|f| f.starts_with("state="));
    let state = if all { "all" } else { "active" };
    // The daemon pages at 1000; a uuid marker starts the next page at that
    // image (included), so skip it.
    let mut items: Vec<Value> = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut q = vec![("state", state.to_string()), ("limit", "1000".to_string())];
        if let Some(m) = &marker {
            q.push(("marker", m.clone()));
        }
        let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = array(client.get(&with_query("/images", &q))?, "the image list")?;
        let n = page.len();
        let fresh: Vec<Value> = page
            .into_iter()
            .filter(|i| marker.as_deref().is_none_or(|m| uuid_of(i) != Some(m)))
            .collect();
        let next = fresh.last().and_then(uuid_of).map(str::to_string);
        items.extend(fresh);
        match next {
            Some(m) if n >= 1000 => marker = Some(m),
            _ => break,
        }
    }
    listing.print(items);
    Ok(())
}

fn image(conn: &Conn, c: ImageCmd) -> Result<()> {
    let client = conn.client()?;
    match c {
        ImageCmd::Get { uuid } => {
            let v = client
                .get(&format!("/images/{}", seg(&uuid)))
                .map_err(image_missing_is_3)?;
            emit(&output::pretty(&v));
        }
        ImageCmd::Delete { uuid } => {
            client
                .call("DELETE", &format!("/images/{}", seg(&uuid)), Body::Empty)
                .map_err(image_missing_is_3)?;
            emit(&format!("Deleted image {uuid} from the store\n"));
        }
        ImageCmd::GetFile {
            uuid,
            output: out,
            quiet,
        } => get_file(&client, &uuid, &out, quiet)?,
    }
    Ok(())
}

/// Downloads into `out.partial`, checks the SHA-1 the daemon announces in
/// its ETag, then renames; a failed or interrupted download leaves nothing.
fn get_file(client: &Client, uuid: &str, out: &Path, quiet: bool) -> Result<()> {
    use sha1::Digest;
    let to_stdout = out == Path::new("-");
    let partial = {
        let mut p = out.as_os_str().to_owned();
        p.push(".partial");
        PathBuf::from(p)
    };
    let mut sink: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(&partial)
                .map_err(|e| CliError::local(format!("{}: {e}", partial.display())))?,
        )
    };
    let intr = Interrupt::install()?;
    let mut hasher = sha1::Sha1::new();
    let mut progress = Progress::new(format!("download {}", short(uuid)), Mode::detect(quiet));
    let mut tee = HashWriter {
        inner: &mut sink,
        hasher: &mut hasher,
    };
    let r = client.download(
        &format!("/images/{}/file", seg(uuid)),
        &mut tee,
        &mut |done, total| {
            progress.update(done, total);
            !intr.pending()
        },
    );
    let fail = |e: CliError| {
        if !to_stdout {
            let _ = std::fs::remove_file(&partial);
        }
        Err(e)
    };
    let headers = match r {
        Ok(h) => {
            progress.finish("done");
            h
        }
        Err(e) => {
            progress.finish("failed");
            return fail(image_missing_is_3(e));
        }
    };
    if let Err(e) = sink.flush() {
        return fail(CliError::local(format!("writing {}: {e}", out.display())));
    }
    drop(sink);
    let got = hex::encode(hasher.finalize());
    let want = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
        .map(|(_, v)| v.trim_matches('"').to_string());
    if let Some(want) = want {
        if want != got {
            return fail(CliError::local(format!(
                "the file of image {uuid} has SHA-1 {got}, but the daemon announced {want}"
            )));
        }
    }
    if !to_stdout {
        std::fs::rename(&partial, out)
            .map_err(|e| CliError::local(format!("renaming to {}: {e}", out.display())))?;
    }
    Ok(())
}

struct HashWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: &'a mut sha1::Sha1,
}

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha1::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn tasks(conn: &Conn, a: TasksArgs) -> Result<()> {
    let listing = Listing::new(&a.filters, &a.table, TASK_COLUMNS, &["created_at"])?;
    let items = array(conn.client()?.get("/tasks")?, "the task list")?;
    listing.print(items);
    Ok(())
}

fn task_cmd(conn: &Conn, c: TaskCmd) -> Result<()> {
    let client = conn.client()?;
    match c {
        TaskCmd::Get { id } => {
            let v = client.get(&format!("/tasks/{}", seg(&id)))?;
            emit(&output::pretty(&v));
        }
        TaskCmd::Cancel { id } => {
            let (_, v) = client.call("DELETE", &format!("/tasks/{}", seg(&id)), Body::Empty)?;
            match str_field(&v, "status") {
                Some(s) => emit(&format!("Task {id}: {s}\n")),
                None => emit(&format!("Cancelled task {id}\n")),
            }
        }
        TaskCmd::Wait {
            id,
            timeout,
            quiet,
            json,
        } => {
            let timeout = match timeout {
                Some(t) if !(t.is_finite() && t >= 0.0) => {
                    return Err(CliError::usage(format!(
                        "--timeout {t}: expected a number of seconds"
                    )))
                }
                t => t.map(Duration::from_secs_f64),
            };
            let intr = Interrupt::install()?;
            let t = client.get(&format!("/tasks/{}", seg(&id)))?;
            let label = format!("{} {}", str_field(&t, "type").unwrap_or("task"), short(&id));
            let done = follow_to_end(&client, t, &label, quiet, json, &intr, timeout)?;
            if done.is_some() && !json {
                emit(&format!("Task {id}: success\n"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_fields() {
        assert_eq!(
            parse_field("name=my base").unwrap(),
            ("name".into(), json!("my base"))
        );
        assert_eq!(
            parse_field("image_size:=10240").unwrap(),
            ("image_size".into(), json!(10240))
        );
        assert_eq!(
            parse_field("tags:={\"a\":1}").unwrap(),
            ("tags".into(), json!({"a": 1}))
        );
        assert_eq!(
            parse_field("description=a:=b").unwrap(),
            ("description".into(), json!("a:=b"))
        );
        assert_eq!(parse_field("x:=nope").unwrap_err().exit, 2);
        assert_eq!(parse_field("novalue").unwrap_err().exit, 2);
    }

    #[test]
    fn compression_is_guessed_from_the_name() {
        assert_eq!(compression_from_name(Path::new("a.zfs.gz")), "gzip");
        assert_eq!(compression_from_name(Path::new("a.zfs.bz2")), "bzip2");
        assert_eq!(compression_from_name(Path::new("a.zvol.xz")), "xz");
        assert_eq!(compression_from_name(Path::new("a.zst")), "zstd");
        assert_eq!(compression_from_name(Path::new("a.zfs")), "none");
    }

    #[test]
    fn missing_images_but_not_missing_routes_exit_3() {
        let api = |code: &str, message: &str| {
            ClientError::Api(ApiError {
                status: 404,
                code: code.into(),
                message: message.into(),
                errors: vec![],
                request_id: None,
            })
        };
        assert_eq!(
            image_missing_is_3(api("ResourceNotFound", "image x not found")).exit,
            3
        );
        assert_eq!(
            image_missing_is_3(api("ImageNotInstalled", "not installed")).exit,
            3
        );
        assert_eq!(
            image_missing_is_3(api(
                "ResourceNotFound",
                "route GET /pools/z/images/x does not exist"
            ))
            .exit,
            1
        );
    }
}
