//! Logging: one line per event on stderr, with a level that SIGHUP can
//! change without a restart.
//!
//! The default format is Bunyan's JSON, which the SmartOS/Triton tools
//! (`bunyan`, `json`, the SDC log pipeline) read: every line has `name`,
//! `hostname`, `pid`, `level` as a number (trace 10, debug 20, info 30,
//! warn 40, error 50), `msg`, `time` (RFC 3339 UTC with milliseconds) and
//! `v: 0`, then the event's own fields and those of the spans it is in.
//! These core fields win over an event field of the same name.
//! `--log-format text` (or `log_format = "text"`) is for people instead.

use serde_json::{Map, Value};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{reload, util::SubscriberInitExt, EnvFilter, Layer, Registry};

/// Changes the live log level.
pub struct LevelHandle(reload::Handle<EnvFilter, Registry>);

impl LevelHandle {
    /// # Errors
    /// The directive does not parse, or the subscriber is gone.
    pub fn set(&self, level: &str) -> Result<(), LevelError> {
        let f = EnvFilter::try_new(level)?;
        Ok(self.0.reload(f)?)
    }
}

/// Why the live log level could not be changed; the message is the
/// underlying error's own.
#[derive(Debug, thiserror::Error)]
pub enum LevelError {
    #[error(transparent)]
    Directive(#[from] tracing_subscriber::filter::ParseError),
    #[error(transparent)]
    Reload(#[from] reload::Error),
}

/// Installs the global subscriber. `format` is "json" (Bunyan) or "text".
pub fn init(level: &str, format: &str) -> LevelHandle {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    if format == "text" {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init();
    } else {
        registry.with(Bunyan::stderr("imgstore")).init();
    }
    LevelHandle(handle)
}

/// Bunyan's numeric level.
pub fn bunyan_level(level: &Level) -> u8 {
    match *level {
        Level::TRACE => 10,
        Level::DEBUG => 20,
        Level::INFO => 30,
        Level::WARN => 40,
        Level::ERROR => 50,
    }
}

type Sink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// A tracing layer that writes Bunyan JSON lines.
pub struct Bunyan {
    name: String,
    hostname: String,
    pid: u32,
    sink: Sink,
}

impl Bunyan {
    /// Lines go to stderr, each with a single `write` so that lines from
    /// different threads never interleave.
    pub fn stderr(name: &str) -> Bunyan {
        Bunyan::with_sink(
            name,
            Arc::new(|line: &[u8]| {
                let _ = std::io::stderr().lock().write_all(line);
            }),
        )
    }

    pub fn with_sink(name: &str, sink: Sink) -> Bunyan {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown".to_string());
        Bunyan {
            name: name.to_string(),
            hostname,
            pid: std::process::id(),
            sink,
        }
    }
}

/// Field values recorded as JSON.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
}

impl<S> Layer<S> for Bunyan
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            match ext.get_mut::<Fields>() {
                Some(f) => values.record(f),
                None => {
                    let mut f = Fields::default();
                    values.record(&mut f);
                    ext.insert(f);
                }
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        line.insert("name".into(), Value::from(self.name.as_str()));
        line.insert("hostname".into(), Value::from(self.hostname.as_str()));
        line.insert("pid".into(), Value::from(self.pid));
        line.insert(
            "level".into(),
            Value::from(bunyan_level(event.metadata().level())),
        );
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<Fields>() {
                    fields.extend(f.0.clone());
                }
            }
        }
        let mut own = Fields::default();
        event.record(&mut own);
        fields.extend(own.0);
        let msg = match fields.remove("message") {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        line.insert("msg".into(), Value::from(msg));
        // Bunyan's `time` is the daemon's one timestamp shape.
        line.insert("time".into(), Value::from(crate::time::now_timestamp()));
        line.insert("v".into(), Value::from(0));
        let target = event.metadata().target();
        if !target.starts_with("imgstore") {
            fields
                .entry("component")
                .or_insert_with(|| Value::from(target));
        }
        for (k, v) in fields {
            line.entry(k).or_insert(v);
        }
        let mut bytes = serde_json::to_vec(&Value::Object(line)).unwrap_or_default();
        bytes.push(b'\n');
        (self.sink)(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn capture(f: impl FnOnce()) -> Vec<Value> {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let o = out.clone();
        let layer = Bunyan::with_sink(
            "imgstore",
            Arc::new(move |b: &[u8]| o.lock().unwrap().extend_from_slice(b)),
        );
        let sub = tracing_subscriber::registry()
            .with(EnvFilter::new("trace"))
            .with(layer);
        tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect()
    }

    #[test]
    fn lines_have_the_bunyan_core_fields() {
        let lines = capture(|| {
            let span = tracing::info_span!("req", req_id = "r-1");
            let _g = span.enter();
            tracing::warn!(status = 404u16, ok = false, path = %"/x", "request");
            tracing::trace!("fine detail");
            tracing::error!(pid = 1u32, name = "not the logger", "core fields win");
        });
        assert_eq!(lines.len(), 3);
        let l = &lines[0];
        assert_eq!(l["name"], "imgstore");
        assert!(l["hostname"].as_str().is_some_and(|h| !h.is_empty()));
        assert_eq!(l["pid"], std::process::id());
        assert_eq!(l["level"], 40);
        assert_eq!(l["msg"], "request");
        assert_eq!(l["v"], 0);
        assert_eq!(l["status"], 404);
        assert_eq!(l["ok"], false);
        assert_eq!(l["path"], "/x");
        assert_eq!(l["req_id"], "r-1", "span fields are included");
        assert!(l.get("message").is_none());
        let time = l["time"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok()
                && time.ends_with('Z')
                && time.len() == "2024-05-06T07:08:09.123Z".len(),
            "{time}"
        );
        assert_eq!(lines[1]["level"], 10);
        assert_eq!(lines[2]["level"], 50);
        assert_eq!(lines[2]["pid"], std::process::id());
        assert_eq!(lines[2]["name"], "imgstore");
    }

    #[test]
    fn levels_are_bunyans_numbers() {
        let got: Vec<u8> = [
            Level::TRACE,
            Level::DEBUG,
            Level::INFO,
            Level::WARN,
            Level::ERROR,
        ]
        .iter()
        .map(bunyan_level)
        .collect();
        assert_eq!(got, vec![10, 20, 30, 40, 50]);
    }
}
