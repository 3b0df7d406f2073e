//! Logging setup: structured lines on stderr, with a level that SIGHUP can
//! change without a restart.

use tracing_subscriber::{
    layer::SubscriberExt, reload, util::SubscriberInitExt, EnvFilter, Registry,
};

/// Changes the live log level.
pub struct LevelHandle(reload::Handle<EnvFilter, Registry>);

impl LevelHandle {
    /// # Errors
    /// The directive does not parse.
    pub fn set(&self, level: &str) -> Result<(), String> {
        let f = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.0.reload(f).map_err(|e| e.to_string())
    }
}

/// Installs the global subscriber. `format` is "json" or "text".
pub fn init(level: &str, format: &str) -> LevelHandle {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    if format == "text" {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init();
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .init();
    }
    LevelHandle(handle)
}
