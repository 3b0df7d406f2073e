//! Daemon configuration: the TOML file, its embedded defaults, and validation.
//!
//! Every key has a default, so the daemon runs with no file at all. Unknown
//! keys are rejected (`deny_unknown_fields`): a typo in a config file must not
//! silently fall back to a default. `conf/imgstore.toml` documents each key;
//! a unit test checks that it parses to exactly [`Config::default`].

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The path read when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/imgstore/imgstore.toml";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Root of the store: sled database, blobs, manifest records, temp files.
    pub data_dir: PathBuf,
    /// The Unix socket the API is served on.
    pub socket: PathBuf,
    /// Octal permission bits of the socket, as a string ("0660").
    pub socket_mode: String,
    /// Group that owns the socket; empty keeps the daemon's primary group.
    pub socket_group: String,
    /// User that owns the socket; empty keeps the daemon's user.
    pub socket_owner: String,
    /// tracing filter: error, warn, info, debug, trace (or a directive list).
    pub log_level: String,
    /// "json" (Bunyan-shaped lines) or "text".
    pub log_format: String,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// Pool images are installed into when a request names none.
    pub default_pool: String,
    pub limits: Limits,
    pub access: Access,
    pub zfs: ZfsConfig,
    /// Remote image sources, in order. They seed the persisted list the
    /// first time the daemon starts on a data dir; after that `/sources`
    /// owns the list (see `sources/mod.rs`).
    pub sources: Vec<SourceConfig>,
    pub peer: PeerConfig,
    /// IMGAPI channels (`[[channels]]`). Empty: the store has no channels,
    /// as an IMGAPI configured without them (no `GET /channels`, `?channel=`
    /// ignored). Otherwise one of them must be the default.
    pub channels: Vec<ChannelConfig>,
    pub imgapi: ImgapiConfig,
}

/// One IMGAPI channel (sdc-imgapi `config.channels[]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// `^[a-z][a-z0-9_-]*$`.
    pub name: String,
    pub description: String,
    /// The channel CreateImage and AdminImportImage put images in, and the
    /// one a request without `?channel=` looks in. Exactly one channel has it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
}

/// How the IMGAPI dialect behaves where IMGAPI's own config decides.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImgapiConfig {
    /// IMGAPI's `mode`: which manifest validation rules apply.
    pub mode: ImgapiMode,
}

/// IMGAPI's config `mode` (sdc-imgapi `lib/config.js`): `dc` for a
/// datacenter's own images (owners, private and public images side by side,
/// as a headnode IMGAPI runs), `public` for a public image repository
/// (every image public), `private` for a private repository (no image
/// public).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImgapiMode {
    #[default]
    Dc,
    Public,
    Private,
}

/// One remote image source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Base URL (`http(s)://...`, may carry `?channel=NAME`), or for type
    /// `file` an absolute directory path (or `file:///dir`).
    pub url: String,
    #[serde(rename = "type", default)]
    pub kind: SourceKind,
    /// Accept any TLS certificate (lab setups only; logged at each use).
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// An IMGAPI-compatible server (another imgstore's peer listener too).
    #[default]
    Imgapi,
    /// A static "poor man's" DSAPI server: a JSON array at the base URL.
    Dsapi,
    /// A local directory in the export layout.
    File,
}

/// Where a source's images are, as [`SourceConfig::target`] parses it.
#[derive(Debug, Clone)]
pub enum SourceTarget {
    Imgapi {
        /// Scheme and authority plus path, without a trailing `/`.
        base: String,
        channel: Option<String>,
    },
    Dsapi {
        /// The URL the index is read from, as given (less `?channel=`).
        index: String,
        /// `index` without a trailing `/`: files are at `BASE/UUID/PATH`.
        base: String,
    },
    File {
        dir: PathBuf,
    },
}

impl SourceConfig {
    /// Checks the source and says where its images are, from its URL
    /// (trimmed) and kind. Here rather than in `sources/` so that
    /// [`Config::validate`] can check `sources` without depending on the
    /// code that fetches from them.
    ///
    /// # Errors
    /// A message naming the problem: not an http(s) URL (imgapi, dsapi), not
    /// an absolute path (file), a query parameter other than `channel`.
    pub fn target(&self) -> Result<SourceTarget, ConfigError> {
        let url = self.url.trim();
        if url.is_empty() {
            return Err(invalid("url is empty".into()));
        }
        let target = match self.kind {
            SourceKind::File => {
                let path = url.strip_prefix("file://").unwrap_or(url);
                let dir = PathBuf::from(path);
                if !dir.is_absolute() || path.contains('?') {
                    return Err(invalid(format!(
                        "url {url:?}: a file source is an absolute directory path (or file:///dir)"
                    )));
                }
                SourceTarget::File { dir }
            }
            SourceKind::Imgapi | SourceKind::Dsapi => {
                let (base, channel) = split_channel(url)?;
                let uri: hyper::Uri = base.parse().map_err(|source| ConfigError::Url {
                    url: url.to_string(),
                    source,
                })?;
                if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                    return Err(invalid(format!(
                        "url {url:?}: expected an http:// or https:// URL with a host"
                    )));
                }
                let trimmed = base.trim_end_matches('/').to_string();
                if self.kind == SourceKind::Imgapi {
                    SourceTarget::Imgapi {
                        base: trimmed,
                        channel,
                    }
                } else {
                    SourceTarget::Dsapi {
                        index: base,
                        base: trimmed,
                    }
                }
            }
        };
        if self.insecure && !url.starts_with("https://") {
            return Err(invalid(format!(
                "url {url:?}: insecure only applies to https:// sources"
            )));
        }
        Ok(target)
    }
}

/// Splits `?channel=` off an http(s) URL; any other query parameter is an
/// error (nothing else is understood, so silently dropping it would hide a
/// mistake).
fn split_channel(url: &str) -> Result<(String, Option<String>), ConfigError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut channel = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "channel" if !v.is_empty() => channel = Some(v.into_owned()),
            other => {
                return Err(invalid(format!(
                "url {url:?}: query parameter {other:?} is not understood (only ?channel=NAME is)"
            )))
            }
        }
    }
    Ok((base.to_string(), channel))
}

/// The optional TCP listener that serves the read-only IMGAPI subset to
/// other nodes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerConfig {
    /// `""` (off) or `ADDR:PORT`, e.g. `"127.0.0.1:9090"`.
    pub listen: String,
}

/// Who may change the store. Anyone who can connect to the socket (its mode,
/// owner and group decide that) may read; a peer whose uid (SO_PEERCRED) is
/// in `writer_uids`, or whose primary gid or a supplementary group
/// (SO_PEERGROUPS) is in `writer_gids`, may also write. The daemon's own uid is always a writer. See `src/access.rs`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    pub writer_uids: Vec<u32>,
    pub writer_gids: Vec<u32>,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            writer_uids: vec![0],
            writer_gids: Vec::new(),
        }
    }
}

/// Limits that protect the daemon from runaway or hostile clients. All can
/// be changed with SIGHUP.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest JSON request body (manifests, updates), in bytes.
    pub max_body_bytes: u64,
    /// Largest image file accepted by AddImageFile, in bytes.
    pub max_file_bytes: u64,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Seconds a client has to send its request headers.
    pub header_timeout_secs: u64,
    /// Seconds a request body may stall (no byte received) before it is cut
    /// off; also how long a response write may stay blocked on a client that
    /// does not read.
    pub idle_timeout_secs: u64,
    /// An image upload must bring at least this many bytes per second,
    /// averaged over each `idle_timeout_secs` window, or it is cut off (a
    /// client trickling a byte a minute never trips the idle timeout alone).
    pub min_upload_bytes_per_sec: u64,
    /// Seconds a JSON request body (manifest, update, task request) has to
    /// arrive whole.
    pub request_timeout_secs: u64,
    /// Largest request head (request line plus headers), in bytes.
    pub max_header_bytes: usize,
    /// Background tasks (install, create, export, ...) running at once;
    /// further requests are refused with 429 `TooManyTasks`.
    pub max_tasks: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZfsConfig {
    /// `zfs` command (a name looked up on PATH, or an absolute path).
    pub zfs_bin: String,
    /// `zpool` command.
    pub zpool_bin: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("/var/imgstore"),
            socket: PathBuf::from("/var/run/imgstore.sock"),
            socket_mode: "0660".into(),
            socket_group: String::new(),
            socket_owner: String::new(),
            log_level: "info".into(),
            log_format: "json".into(),
            shutdown_grace_secs: 30,
            default_pool: "zones".into(),
            limits: Limits::default(),
            access: Access::default(),
            zfs: ZfsConfig::default(),
            sources: Vec::new(),
            peer: PeerConfig::default(),
            channels: Vec::new(),
            imgapi: ImgapiConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_file_bytes: 64 * 1024 * 1024 * 1024,
            max_connections: 1024,
            header_timeout_secs: 30,
            idle_timeout_secs: 120,
            min_upload_bytes_per_sec: 1024,
            request_timeout_secs: 60,
            max_header_bytes: 16 * 1024,
            max_tasks: 16,
        }
    }
}

impl Default for ZfsConfig {
    fn default() -> Self {
        ZfsConfig {
            zfs_bin: "zfs".into(),
            zpool_bin: "zpool".into(),
        }
    }
}

impl Limits {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// Why a config, or one source in it, is not usable. The messages are the
/// ones operators read at startup and on reload; they name the file, the
/// key and the value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read; what is in it is wrong.
    #[error("config {}: {source}", .path.display())]
    In {
        path: PathBuf,
        #[source]
        source: Box<ConfigError>,
    },
    #[error("{}", .0.to_string().trim())]
    Syntax(#[source] toml::de::Error),
    #[error("log_level {level:?}: {source}")]
    LogLevel {
        level: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("sources[{index}]: {source}")]
    Source {
        index: usize,
        #[source]
        source: Box<ConfigError>,
    },
    #[error("url {url:?} is not a valid URL: {source}")]
    Url {
        url: String,
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    /// A value the types accept but the rules do not.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

impl Config {
    /// Loads the config. An explicit path must exist; the default path may be
    /// absent, in which case the embedded defaults are used.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML, has an unknown key or a
    /// value that fails [`Config::validate`]. The message names the file.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default())
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Config::parse(&text).map_err(|e| ConfigError::In {
            path,
            source: Box::new(e),
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(ConfigError::Syntax)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that TOML types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.socket_mode_bits()?;
        if !matches!(self.log_format.as_str(), "json" | "text") {
            return Err(invalid(format!(
                "log_format: expected \"json\" or \"text\", got {:?}",
                self.log_format
            )));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level).map_err(|source| {
            ConfigError::LogLevel {
                level: self.log_level.clone(),
                source,
            }
        })?;
        if self.socket.as_os_str().len() > 100 {
            return Err(invalid(format!(
                "socket: path {} is longer than the 100 bytes a Unix socket address holds",
                self.socket.display()
            )));
        }
        if self.limits.max_connections == 0 {
            return Err(invalid("limits.max_connections must be at least 1".into()));
        }
        let l = &self.limits;
        if l.header_timeout_secs == 0 || l.idle_timeout_secs == 0 || l.request_timeout_secs == 0 {
            return Err(invalid("limits: timeouts must be at least 1 second".into()));
        }
        for (i, s) in self.sources.iter().enumerate() {
            s.target().map_err(|e| ConfigError::Source {
                index: i,
                source: Box::new(e),
            })?;
        }
        if !self.peer.listen.is_empty() {
            self.peer
                .listen
                .parse::<std::net::SocketAddr>()
                .map_err(|_| {
                    invalid(format!(
                        "peer.listen: expected \"\" (off) or ADDR:PORT such as \"127.0.0.1:9090\", got {:?}",
                        self.peer.listen
                    ))
                })?;
        }
        if l.max_header_bytes < 1024 {
            return Err(invalid(format!(
                "limits.max_header_bytes must be at least 1024, got {}",
                l.max_header_bytes
            )));
        }
        if l.max_tasks == 0 {
            return Err(invalid("limits.max_tasks must be at least 1".into()));
        }
        self.validate_channels()
    }

    /// The `[[channels]]` rules of sdc-imgapi's `channelInfoFromConfig`:
    /// names match `^[a-z][a-z0-9_-]*$`, no name twice, one default.
    fn validate_channels(&self) -> Result<(), ConfigError> {
        if self.channels.is_empty() {
            return Ok(());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.channels.iter().enumerate() {
            let mut chars = c.name.chars();
            let ok = chars.next().is_some_and(|f| f.is_ascii_lowercase())
                && chars.all(|ch| {
                    ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-'
                });
            if !ok {
                return Err(invalid(format!(
                    "channels[{i}].name: {:?} must match ^[a-z][a-z0-9_-]*$",
                    c.name
                )));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(invalid(format!(
                    "channels[{i}].name: {:?} is configured twice",
                    c.name
                )));
            }
        }
        let defaults: Vec<&str> = self
            .channels
            .iter()
            .filter(|c| c.default)
            .map(|c| c.name.as_str())
            .collect();
        if defaults.len() != 1 {
            return Err(invalid(format!(
                "channels: exactly one channel must have default = true, got {}",
                if defaults.is_empty() {
                    "none".to_string()
                } else {
                    defaults.join(", ")
                }
            )));
        }
        Ok(())
    }

    /// The default channel, when channels are configured.
    pub fn default_channel(&self) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.default)
    }

    /// The socket mode as permission bits.
    pub fn socket_mode_bits(&self) -> Result<u32, ConfigError> {
        let s = self.socket_mode.trim_start_matches("0o");
        match u32::from_str_radix(s, 8) {
            Ok(m) if m <= 0o777 => Ok(m),
            _ => Err(invalid(format!(
                "socket_mode: expected octal permission bits such as \"0660\", got {:?}",
                self.socket_mode
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_config_equals_embedded_defaults() {
        let text = include_str!("../conf/imgstore.toml");
        assert_eq!(Config::parse(text).unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("data_dirr = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("data_dirr"), "{err}");
        let err = Config::parse("[limits]\nmax_fle_bytes = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_fle_bytes"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Config::parse("socket_mode = \"999\"").is_err());
        assert!(Config::parse("log_format = \"xml\"").is_err());
        assert!(Config::parse("log_level = \"info,[\"").is_err());
        assert_eq!(
            Config::parse("socket_mode = \"0600\"")
                .unwrap()
                .socket_mode_bits()
                .ok(),
            Some(0o600)
        );
    }

    #[test]
    fn sources_and_peer_are_parsed_and_checked() {
        let c = Config::parse(
            "sources = [{url = \"https://images.example.com\"}, {url = \"/srv/img\", type = \"file\"}]\n[peer]\nlisten = \"127.0.0.1:9090\"\n",
        )
        .unwrap();
        assert_eq!(c.sources[0].kind, SourceKind::Imgapi);
        assert!(!c.sources[0].insecure);
        assert_eq!(c.sources[1].kind, SourceKind::File);
        assert_eq!(c.peer.listen, "127.0.0.1:9090");
        let err = Config::parse("sources = [{url = \"ftp://x\"}]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sources[0]"), "{err}");
        let err = Config::parse("sources = [{url = \"http://x\", type = \"docker\"}]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("docker"), "{err}");
        let err = Config::parse("[peer]\nlisten = \"9090\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("peer.listen"), "{err}");
    }

    #[test]
    fn channels_are_parsed_and_checked() {
        let c = Config::parse(
            "[[channels]]\nname = \"dev\"\ndescription = \"d\"\n[[channels]]\nname = \"release\"\ndescription = \"r\"\ndefault = true\n",
        )
        .unwrap();
        assert_eq!(c.channels.len(), 2);
        assert_eq!(c.default_channel().unwrap().name, "release");
        for (text, needle) in [
            ("[[channels]]\nname = \"Dev\"\ndescription = \"\"\ndefault = true\n", "channels[0].name"),
            ("[[channels]]\nname = \"dev\"\ndescription = \"\"\n", "none"),
            ("[[channels]]\nname = \"a\"\ndescription = \"\"\ndefault = true\n[[channels]]\nname = \"b\"\ndescription = \"\"\ndefault = true\n", "a, b"),
            ("[[channels]]\nname = \"a\"\ndescription = \"\"\ndefault = true\n[[channels]]\nname = \"a\"\ndescription = \"\"\n", "twice"),
            ("[[channels]]\nname = \"a\"\n", "description"),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn missing_default_file_means_defaults_but_explicit_missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/imgstore.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/imgstore.toml"), "{err}");
    }

    #[test]
    fn imgapi_mode_is_dc_by_default_and_one_of_three() {
        assert_eq!(Config::default().imgapi.mode, ImgapiMode::Dc);
        for (text, mode) in [
            ("dc", ImgapiMode::Dc),
            ("public", ImgapiMode::Public),
            ("private", ImgapiMode::Private),
        ] {
            let c = Config::parse(&format!("[imgapi]\nmode = \"{text}\"")).unwrap();
            assert_eq!(c.imgapi.mode, mode);
        }
        let e = Config::parse("[imgapi]\nmode = \"open\"").unwrap_err();
        assert!(e.to_string().contains("open"), "{e}");
    }
}
