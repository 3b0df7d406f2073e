//! The daemon: owning the data dir and the socket, the accept loop, signals
//! (SIGTERM/SIGINT drain and stop, SIGHUP reloads), and readiness.
//!
//! Ownership follows cloud-hypervisor's pattern: an exclusive `flock` on
//! `<data_dir>/imgstore.lock` (holding our pid, so a refused second daemon can
//! name the holder; see [`PidLock`]) and another on `<socket>.lock`; a stale socket left by a
//! crash is removed only while holding the latter. The socket is created
//! under a restrictive umask and then given its configured mode and group,
//! so it is never briefly more open than configured.

pub mod peer;

use crate::access::{self, Peer};
use crate::api;
use crate::config::{Config, ConfigError};
use crate::conn::{self, HyperErrors, WriteDeadline};
use crate::error::StartError;
use crate::log::LevelHandle;
use crate::service::Service;
use crate::store::layout::{self, PidLock};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use nix::unistd::{Group, User};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, Semaphore};

/// What the daemon is asked to do by a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Shutdown,
    Reload,
}

/// A daemon that owns its data dir and socket and is ready to serve.
pub struct Bound {
    pub svc: Arc<Service>,
    listener: UnixListener,
    socket: PathBuf,
    /// The peer listener (`[peer] listen`), when configured.
    peer: Option<std::net::TcpListener>,
    _data_lock: PidLock,
    _socket_lock: PidLock,
}

/// Locks the data dir, opens the store and binds the socket.
///
/// # Errors
/// A message naming what failed: the lock (with the holder's pid), the store,
/// or the socket path.
pub fn bind(config: Config) -> Result<Bound, StartError> {
    let mode = config.socket_mode_bits()?;
    std::fs::create_dir_all(&config.data_dir).map_err(StartError::during(format!(
        "data dir {}",
        config.data_dir.display()
    )))?;
    let data_lock = PidLock::acquire(
        &layout::lock(&config.data_dir),
        &format!("data dir {}", config.data_dir.display()),
    )?;
    let socket = config.socket.clone();
    if let Some(parent) = socket.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(StartError::during(format!(
            "socket directory {}",
            parent.display()
        )))?;
    }
    let mut lock_name = socket.clone().into_os_string();
    lock_name.push(".lock");
    let socket_lock = PidLock::acquire(
        Path::new(&lock_name),
        &format!("socket {}", socket.display()),
    )?;
    let owner = account(
        "socket_owner",
        &config.socket_owner,
        "user",
        User::from_name,
    )?;
    let group = account(
        "socket_group",
        &config.socket_group,
        "group",
        Group::from_name,
    )?;
    let peer = peer::bind(&config.peer.listen)?;
    let svc = Service::open(config)?;
    // Holding the socket lock, a leftover socket can only be a crashed
    // daemon's.
    match std::fs::remove_file(&socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(StartError::during(format!(
                "removing stale socket {}",
                socket.display()
            ))(e))
        }
        _ => {}
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(&socket);
    nix::sys::stat::umask(old);
    let listener = listener.map_err(StartError::during(format!(
        "binding socket {}",
        socket.display()
    )))?;
    if owner.is_some() || group.is_some() {
        nix::unistd::chown(&socket, owner.map(|u| u.uid), group.map(|g| g.gid)).map_err(
            StartError::during(format!("chown of socket {}", socket.display())),
        )?;
    }
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(mode)).map_err(
        StartError::during(format!("chmod of socket {}", socket.display())),
    )?;
    Ok(Bound {
        svc,
        listener,
        socket,
        peer,
        _data_lock: data_lock,
        _socket_lock: socket_lock,
    })
}

/// Looks up the `kind` ("user", "group") named by the config key `key`
/// (`""` is none), with a message naming the key when it does not exist.
fn account<T>(
    key: &str,
    name: &str,
    kind: &str,
    find: impl FnOnce(&str) -> nix::Result<Option<T>>,
) -> Result<Option<T>, StartError> {
    if name.is_empty() {
        return Ok(None);
    }
    match find(name).map_err(StartError::during(format!("{key} {name:?}")))? {
        Some(found) => Ok(Some(found)),
        None => Err(StartError::Refused(format!(
            "{key} {name:?}: no such {kind}"
        ))),
    }
}

/// Tells systemd (Type=notify) that the daemon is ready, when it runs under
/// systemd. A no-op elsewhere (SMF, a shell).
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), Path::new(&path))
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// Serves until a `Shutdown` arrives on `control`, then drains in-flight
/// requests (bounded by `shutdown_grace_secs`), flushes sled and removes
/// the socket. `on_reload` is called for each `Reload`.
///
/// # Errors
/// Accepting failed in a way that is not per-connection.
pub async fn run(
    bound: Bound,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut on_reload: impl FnMut(&Arc<Service>),
) -> Result<(), StartError> {
    let Bound {
        svc,
        listener,
        socket,
        peer,
        ..
    } = bound;
    let (stop_peer, peer_stopped) = tokio::sync::watch::channel(false);
    let peer_task = peer.map(|l| tokio::spawn(peer::serve(l, svc.clone(), peer_stopped)));
    let mut max_conns = svc.limits().max_connections;
    let permits = Arc::new(Semaphore::new(max_conns));
    let graceful = GracefulShutdown::new();
    tracing::info!(socket = %socket.display(), data_dir = %svc.config().data_dir.display(), pid = std::process::id(), "imgstore ready");
    // The socket is bound and listening: from here a client's connect
    // succeeds and its request is answered as soon as the loop below
    // accepts it, which is what `Type=notify` readiness must promise.
    notify_systemd("READY=1");
    // Undo what interrupted tasks left in ZFS (partial datasets, snapshots),
    // without holding up readiness.
    let recover = svc.clone();
    tokio::task::spawn_blocking(move || recover.recover_journal());
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
            c = control.recv() => match c {
                Some(Control::Reload) => {
                    on_reload(&svc);
                    let want = svc.limits().max_connections;
                    if want > max_conns {
                        permits.add_permits(want - max_conns);
                    } else {
                        permits.forget_permits(max_conns - want);
                    }
                    max_conns = want;
                    continue;
                }
                Some(Control::Shutdown) | None => break,
            },
        };
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            c = control.recv() => match c {
                Some(Control::Reload) => { on_reload(&svc); continue; }
                Some(Control::Shutdown) | None => break,
            },
        };
        let peer = stream
            .peer_cred()
            .map(|c| Peer {
                uid: Some(c.uid()),
                gid: Some(c.gid()),
                pid: c.pid(),
                groups: access::peer_groups(&stream).into(),
            })
            .unwrap_or_default();
        let limits = svc.limits();
        let svc = svc.clone();
        // hyper's own head limit is a backstop well above ours: a head
        // between the two gets a JSON 431 from `api::check_head`, one past
        // hyper's gets hyper's 431, turned into JSON by `conn::HyperErrors`.
        let hyper_head_limit = limits.max_header_bytes.saturating_mul(4).max(64 * 1024);
        let header_timeout = limits.header_timeout_secs;
        let (stream, returned) =
            HyperErrors::new(WriteDeadline::new(stream, limits.idle_timeout()));
        let conn =
            hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(limits.header_timeout_secs))
                .max_header_size(hyper_head_limit)
                .max_buf_size(hyper_head_limit.max(DEFAULT_MAX_BUF))
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| {
                        let svc = svc.clone();
                        let peer = peer.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(api::handle(svc, req, peer).await)
                        }
                    }),
                );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
                if e.is_timeout() {
                    conn::timed_out(&returned, header_timeout).await;
                }
            }
            drop(permit);
        });
    }
    tracing::info!("shutting down: no longer accepting connections");
    notify_systemd("STOPPING=1");
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    let _ = stop_peer.send(true);
    let grace = Duration::from_secs(svc.config().shutdown_grace_secs);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "in-flight requests did not finish in the grace period; cutting them off"
        );
    }
    if let Some(t) = peer_task {
        // Bounded by the same grace period, which ran concurrently.
        let _ = t.await;
    }
    let flush_svc = svc.clone();
    tokio::task::spawn_blocking(move || flush_svc.flush()).await??;
    tracing::info!("stopped");
    Ok(())
}

/// Applies a re-read config (SIGHUP): `log_level`, `limits`,
/// `shutdown_grace_secs` and `default_pool` change live; keys that need a
/// restart keep their running values and are named in a warning. A config
/// that failed to load or validate is refused and the old one kept.
pub fn reload(svc: &Arc<Service>, new: Result<Config, ConfigError>, level: &LevelHandle) {
    let new = match new {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: new config refused; keeping the old one");
            return;
        }
    };
    let old = svc.config();
    let mut changed = Vec::new();
    if new.log_level != old.log_level {
        match level.set(&new.log_level) {
            Ok(()) => changed.push(format!(
                "log_level {:?} -> {:?}",
                old.log_level, new.log_level
            )),
            Err(e) => tracing::error!(error = %e, "SIGHUP: log_level not applied"),
        }
    }
    if new.limits != old.limits {
        changed.push(format!("limits {:?} -> {:?}", old.limits, new.limits));
    }
    if new.access != old.access {
        changed.push(format!("access {:?} -> {:?}", old.access, new.access));
    }
    let mut restart = Vec::new();
    for (name, differs) in [
        ("data_dir", new.data_dir != old.data_dir),
        ("socket", new.socket != old.socket),
        ("socket_mode", new.socket_mode != old.socket_mode),
        ("socket_group", new.socket_group != old.socket_group),
        ("socket_owner", new.socket_owner != old.socket_owner),
        ("log_format", new.log_format != old.log_format),
        ("zfs", new.zfs != old.zfs),
        ("peer", new.peer != old.peer),
        ("channels", new.channels != old.channels),
    ] {
        if differs {
            restart.push(name);
        }
    }
    // Keys that need a restart keep their running values.
    let mut applied = (*old).clone();
    applied.log_level = new.log_level.clone();
    applied.limits = new.limits.clone();
    applied.access = new.access.clone();
    applied.shutdown_grace_secs = new.shutdown_grace_secs;
    applied.default_pool = new.default_pool.clone();
    svc.set_config(applied);
    if !restart.is_empty() {
        tracing::warn!(keys = ?restart, "SIGHUP: these keys changed but need a restart to apply");
    }
    tracing::info!(changed = ?changed, "SIGHUP: configuration reloaded");
}

/// hyper's default read buffer limit (8 KiB + 100 × 4 KiB).
const DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;

/// Turns SIGTERM/SIGINT/SIGHUP into [`Control`] messages. signal-hook runs
/// its own thread, so no signal is lost while the runtime is busy.
///
/// # Errors
/// The handlers cannot be registered.
pub fn signals() -> Result<mpsc::UnboundedReceiver<Control>, StartError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(StartError::during("registering signal handlers"))?;
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let c = if sig == SIGHUP {
                    Control::Reload
                } else {
                    Control::Shutdown
                };
                if tx.send(c).is_err() {
                    break;
                }
            }
        })
        .map_err(StartError::during("starting the signal thread"))?;
    Ok(rx)
}
