//! Running `zfs` and `zpool`: argument vectors (never a shell), `LC_ALL=C`
//! so messages are the untranslated ones `error.rs` classifies, stderr
//! captured and turned into a [`ZfsError`]; and the long-running `zfs
//! receive` / `zfs send` children with their stream pipes.
//!
//! A [`ReceiveChild`] or [`SendChild`] can be killed from another thread
//! through a cloneable [`Canceller`]; it is killed and reaped on drop, and
//! its stderr is drained by a thread so a chatty child can never fill the
//! pipe and deadlock. Everything here blocks: callers run it on blocking
//! threads.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::error::{classify, classify_receive, pool_of, Result, ZfsError};
use super::names::PoolName;

/// How much of a child's stderr is kept; the rest is read and dropped.
const STDERR_LIMIT: usize = 64 * 1024;

/// Size asked for the stream pipes of send and receive: 16 times Linux's
/// default 64 KiB, so the pipeline's 1 MiB chunks cross in one write and one
/// read instead of sixteen wake-ups on each side. Capped by the kernel at
/// `/proc/sys/fs/pipe-max-size` (1 MiB by default); other systems keep
/// their default.
const STREAM_PIPE_BYTES: i32 = 1 << 20;

/// Which binary to run.
#[derive(Debug, Clone, Copy)]
pub(super) enum Bin {
    Zfs,
    Zpool,
}

/// The `zfs` and `zpool` binaries, and how every command is run. Cheap to
/// clone; a running child keeps one to classify its failure.
#[derive(Debug, Clone)]
pub(super) struct Runner {
    zfs_bin: PathBuf,
    zpool_bin: PathBuf,
}

impl Runner {
    pub(super) fn new(zfs_bin: PathBuf, zpool_bin: PathBuf) -> Runner {
        Runner { zfs_bin, zpool_bin }
    }

    pub(super) fn bin(&self, bin: Bin) -> &Path {
        match bin {
            Bin::Zfs => &self.zfs_bin,
            Bin::Zpool => &self.zpool_bin,
        }
    }

    /// The command line, for humans and error messages.
    pub(super) fn argv(&self, bin: Bin, args: &[&str]) -> String {
        display_argv(self.bin(bin), args)
    }

    fn command(&self, bin: Bin, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin(bin));
        cmd.args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs a command to completion and returns its raw output.
    pub(super) fn output(&self, bin: Bin, args: &[&str]) -> Result<Output> {
        let mut cmd = self.command(bin, args);
        let started = Instant::now();
        let out = retry_text_busy(|| cmd.output()).map_err(|e| spawn_error(e, self.bin(bin)))?;
        tracing::debug!(
            argv = %self.argv(bin, args),
            status = ?out.status.code(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ran zfs command"
        );
        Ok(out)
    }

    /// Runs a command; on success returns stdout, otherwise the classified
    /// error. `subject` is the dataset the command is about (used when
    /// stderr names none).
    pub(super) fn run(&self, bin: Bin, args: &[&str], subject: &str) -> Result<String> {
        let out = self.output(bin, args)?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let err = classify(&self.argv(bin, args), out.status.code(), &stderr, subject);
        Err(self.refine(err))
    }

    /// True if `pool` is imported (`zpool list`).
    ///
    /// # Errors
    ///
    /// [`ZfsError::NotAvailable`], or [`ZfsError::CommandFailed`] if `zpool
    /// list` fails otherwise.
    pub(super) fn pool_exists(&self, pool: &PoolName) -> Result<bool> {
        let pool = pool.as_str();
        match self.run(Bin::Zpool, &["list", "-H", "-o", "name", pool], pool) {
            Ok(_) => Ok(true),
            Err(ZfsError::PoolNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// zfs-fuse and some OpenZFS paths say "dataset does not exist" when the
    /// whole pool is missing; ask `zpool` which it is. The one part of
    /// classification that needs a command, hence here and not in
    /// `error.rs`.
    pub(super) fn refine(&self, err: ZfsError) -> ZfsError {
        if let ZfsError::DatasetNotFound { name } = &err {
            if let Ok(pool) = PoolName::new(pool_of(name)) {
                if let Ok(false) = self.pool_exists(&pool) {
                    return ZfsError::PoolNotFound {
                        pool: pool.to_string(),
                    };
                }
            }
        }
        err
    }

    /// Starts `zfs <args>` reading the stream to receive into `target`.
    pub(super) fn spawn_receive(&self, args: &[&str], target: &str) -> Result<ReceiveChild> {
        let (proc_, stdin, _) = self.spawn(args, Stdio::piped(), Stdio::null())?;
        let writer = stdin.map(|stdin| ReceiveWriter {
            stdin,
            shared: Arc::clone(&proc_.shared),
        });
        Ok(ReceiveChild {
            writer,
            proc_,
            target: target.to_string(),
            runner: self.clone(),
        })
    }

    /// Starts a `zfs send` with stdout piped; `subject` names the snapshot
    /// for error classification (empty when only a resume token is known).
    pub(super) fn spawn_send(&self, args: &[&str], subject: &str) -> Result<SendChild> {
        let (proc_, _, stdout) = self.spawn(args, Stdio::null(), Stdio::piped())?;
        let reader = stdout.map(|stdout| SendReader {
            stdout,
            shared: Arc::clone(&proc_.shared),
        });
        Ok(SendChild {
            reader,
            proc_,
            snapshot: subject.to_string(),
            runner: self.clone(),
        })
    }

    fn spawn(
        &self,
        args: &[&str],
        stdin: Stdio,
        stdout: Stdio,
    ) -> Result<(Proc, Option<ChildStdin>, Option<ChildStdout>)> {
        let mut cmd = self.command(Bin::Zfs, args);
        cmd.stdin(stdin).stdout(stdout);
        Proc::spawn(cmd, self.argv(Bin::Zfs, args), &self.zfs_bin)
    }
}

/// Retries a spawn that failed with ETXTBSY: another thread forking while a
/// just-written executable was still open for writing (tests write fake
/// `zfs` scripts; harmless elsewhere).
fn retry_text_busy<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut tries = 0;
    loop {
        match f() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn spawn_error(e: io::Error, bin: &Path) -> ZfsError {
    match e.kind() {
        io::ErrorKind::NotFound => ZfsError::NotAvailable {
            detail: format!("{} not found", bin.display()),
        },
        io::ErrorKind::PermissionDenied => ZfsError::NotAvailable {
            detail: format!("{} cannot be executed: {e}", bin.display()),
        },
        _ => ZfsError::Io(e),
    }
}

/// For a human: the command line with arguments quoted where needed.
pub(super) fn display_argv(bin: &Path, args: &[&str]) -> String {
    let mut s = quote(&bin.to_string_lossy());
    for a in args {
        s.push(' ');
        s.push_str(&quote(a));
    }
    s
}

fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@=,+%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

// ---- child processes ----------------------------------------------------------

/// State shared between a running child and its [`Canceller`]s.
#[derive(Debug)]
struct Shared {
    cancelled: AtomicBool,
    state: Mutex<ProcState>,
}

#[derive(Debug)]
struct ProcState {
    child: Child,
    /// Set once the child has been reaped; after that its pid must not be
    /// signalled (it may belong to another process).
    exited: Option<ExitStatus>,
    killed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ProcState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// Kills a running [`ReceiveChild`] or [`SendChild`] from any thread.
///
/// After `cancel`, writes to the receive stream and reads from the send
/// stream fail, and `finish` returns [`ZfsError::Cancelled`] if the process
/// was still running.
#[derive(Debug, Clone)]
pub struct Canceller {
    shared: Arc<Shared>,
}

impl Canceller {
    /// Kills the child (SIGKILL) unless it has already exited. Idempotent.
    pub fn cancel(&self) {
        self.shared.cancelled.store(true, Ordering::SeqCst);
        let mut st = self.shared.lock();
        if st.exited.is_some() {
            return;
        }
        match st.child.try_wait() {
            Ok(Some(status)) => st.exited = Some(status),
            _ => {
                if st.child.kill().is_ok() {
                    st.killed = true;
                    tracing::debug!(pid = st.child.id(), "killed zfs child");
                }
            }
        }
    }

    /// True once [`Canceller::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.shared.is_cancelled()
    }
}

/// A spawned child with its stderr drained by a thread.
#[derive(Debug)]
pub(super) struct Proc {
    shared: Arc<Shared>,
    stderr: Option<JoinHandle<String>>,
    /// The command line, for errors (and tests that check the flags used).
    pub(super) argv: String,
    started: Instant,
}

impl Proc {
    fn spawn(
        mut cmd: Command,
        argv: String,
        bin: &Path,
    ) -> Result<(Proc, Option<ChildStdin>, Option<ChildStdout>)> {
        cmd.stderr(Stdio::piped());
        let mut child = retry_text_busy(|| cmd.spawn()).map_err(|e| spawn_error(e, bin))?;
        tracing::debug!(%argv, pid = child.id(), "started zfs child");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        if let Some(p) = &stdin {
            grow_pipe(p);
        }
        if let Some(p) = &stdout {
            grow_pipe(p);
        }
        let stderr = child.stderr.take().map(|mut pipe| {
            thread::Builder::new()
                .name("zfs-stderr".to_string())
                .spawn(move || drain_capped(&mut pipe))
        });
        let stderr = match stderr.transpose() {
            Ok(h) => h,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ZfsError::Io(e));
            }
        };
        let proc_ = Proc {
            shared: Arc::new(Shared {
                cancelled: AtomicBool::new(false),
                state: Mutex::new(ProcState {
                    child,
                    exited: None,
                    killed: false,
                }),
            }),
            stderr,
            argv,
            started: Instant::now(),
        };
        Ok((proc_, stdin, stdout))
    }

    fn canceller(&self) -> Canceller {
        Canceller {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Waits for the child without holding the lock across the wait, so a
    /// [`Canceller`] can kill it meanwhile (std's `wait` needs `&mut`, hence
    /// polling with a short, growing sleep).
    fn wait(&self) -> io::Result<ExitStatus> {
        let mut delay = Duration::from_millis(1);
        loop {
            {
                let mut st = self.shared.lock();
                if let Some(status) = st.exited {
                    return Ok(status);
                }
                if let Some(status) = st.child.try_wait()? {
                    st.exited = Some(status);
                    return Ok(status);
                }
            }
            thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    fn take_stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Waits and collects stderr: `Ok(None)` on success, `Ok(Some((exit
    /// code, stderr)))` on failure, [`ZfsError::Cancelled`] if it was killed
    /// through a [`Canceller`].
    fn wait_outcome(&mut self) -> Result<Option<(Option<i32>, String)>> {
        let status = self.wait()?;
        let stderr = self.take_stderr();
        let killed = self.shared.lock().killed;
        tracing::debug!(
            argv = %self.argv,
            status = ?status.code(),
            killed,
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            "zfs child finished"
        );
        if killed {
            return Err(ZfsError::Cancelled {
                argv: self.argv.clone(),
            });
        }
        Ok((!status.success()).then(|| (status.code(), stderr)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if st.exited.is_none() {
            let _ = st.child.kill();
            if let Ok(status) = st.child.wait() {
                st.exited = Some(status);
            }
            tracing::debug!(argv = %self.argv, "killed unfinished zfs child on drop");
        }
        // The stderr thread is detached, not joined: it ends when the pipe
        // closes, which a surviving grandchild could delay indefinitely.
    }
}

fn grow_pipe(fd: &impl std::os::fd::AsFd) {
    #[cfg(target_os = "linux")]
    {
        use nix::fcntl::{fcntl, FcntlArg};
        // Best effort: a smaller pipe is only slower.
        let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(STREAM_PIPE_BYTES));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// Reads a pipe to EOF, keeping at most [`STDERR_LIMIT`] bytes.
fn drain_capped(r: &mut impl Read) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = STDERR_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

fn cancelled_io(what: &str) -> io::Error {
    io::Error::other(format!("{what} was cancelled"))
}

// ---- receive and send -----------------------------------------------------------

/// The stdin of a running `zfs receive`. Writes fail once the receive is
/// cancelled (zfs-fuse would otherwise finish the receive from the pipe).
#[derive(Debug)]
pub struct ReceiveWriter {
    stdin: ChildStdin,
    shared: Arc<Shared>,
}

impl Write for ReceiveWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.shared.is_cancelled() {
            return Err(cancelled_io("zfs receive"));
        }
        self.stdin.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stdin.flush()
    }
}

/// A running `zfs receive`.
///
/// Write the stream into it (it implements [`Write`]) or move the writer to
/// a pump thread with [`ReceiveChild::take_writer`]; then call
/// [`ReceiveChild::finish`]. If a write fails (e.g. broken pipe because zfs
/// gave up), still call `finish`: it returns zfs's own reason. Dropping it
/// unfinished kills and reaps the process.
#[derive(Debug)]
pub struct ReceiveChild {
    // Declared first so the pipe is closed before the process is reaped.
    writer: Option<ReceiveWriter>,
    pub(super) proc_: Proc,
    target: String,
    runner: Runner,
}

impl ReceiveChild {
    /// Moves the stream writer out (e.g. to a pump thread). Returns `None`
    /// if it was already taken.
    pub fn take_writer(&mut self) -> Option<ReceiveWriter> {
        self.writer.take()
    }

    /// A handle that kills this receive from any thread.
    pub fn canceller(&self) -> Canceller {
        self.proc_.canceller()
    }

    /// The receive target as given.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Closes the stream (if the writer was not taken), waits for zfs and
    /// classifies its stderr. A taken writer must be dropped first, or this
    /// waits until it is.
    ///
    /// # Errors
    ///
    /// [`ZfsError::Cancelled`] if killed through a [`Canceller`] (with
    /// zfs-fuse the target's state is then unknown: destroy it if it
    /// exists); [`ZfsError::DatasetExists`] (target exists without `-F`, or
    /// has snapshots); [`ZfsError::DatasetNotFound`] (parent, or the target
    /// of an incremental stream); [`ZfsError::PoolNotFound`];
    /// [`ZfsError::CommandFailed`] for invalid, truncated or corrupted
    /// streams and everything else.
    pub fn finish(mut self) -> Result<()> {
        drop(self.writer.take());
        match self.proc_.wait_outcome()? {
            None => Ok(()),
            Some((status, stderr)) => {
                let err = classify_receive(&self.proc_.argv, status, &stderr, &self.target);
                Err(self.runner.refine(err))
            }
        }
    }
}

impl Write for ReceiveChild {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.writer {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("receive writer was taken")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

/// The stdout of a running `zfs send`. Reads fail once it is cancelled.
#[derive(Debug)]
pub struct SendReader {
    stdout: ChildStdout,
    shared: Arc<Shared>,
}

impl Read for SendReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.shared.is_cancelled() {
            return Err(cancelled_io("zfs send"));
        }
        self.stdout.read(buf)
    }
}

/// A running `zfs send`.
///
/// Read the stream from it (it implements [`Read`]) or move the reader to a
/// pump thread with [`SendChild::take_reader`]; read to EOF, then call
/// [`SendChild::finish`]. Dropping it unfinished kills and reaps the process.
#[derive(Debug)]
pub struct SendChild {
    reader: Option<SendReader>,
    pub(super) proc_: Proc,
    snapshot: String,
    runner: Runner,
}

impl SendChild {
    /// Moves the stream reader out. Returns `None` if it was already taken.
    pub fn take_reader(&mut self) -> Option<SendReader> {
        self.reader.take()
    }

    /// A handle that kills this send from any thread.
    pub fn canceller(&self) -> Canceller {
        self.proc_.canceller()
    }

    /// Closes the stream (if the reader was not taken), waits for zfs and
    /// classifies its stderr. Finishing before EOF makes zfs fail with a
    /// broken pipe. A taken reader must be dropped first, or this waits.
    ///
    /// # Errors
    ///
    /// [`ZfsError::Cancelled`]; [`ZfsError::DatasetNotFound`] (the snapshot
    /// or the incremental source); [`ZfsError::PoolNotFound`];
    /// [`ZfsError::CommandFailed`] otherwise (e.g. the incremental source is
    /// not an earlier snapshot of the same dataset or of its origin).
    pub fn finish(mut self) -> Result<()> {
        drop(self.reader.take());
        match self.proc_.wait_outcome()? {
            None => Ok(()),
            Some((status, stderr)) => {
                let err = classify(&self.proc_.argv, status, &stderr, &self.snapshot);
                Err(self.runner.refine(err))
            }
        }
    }
}

impl Read for SendChild {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.reader {
            Some(r) => r.read(buf),
            None => Err(io::Error::other("send reader was taken")),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The children's plumbing, driven through [`Zfs`] against fake
    //! binaries: pipes, cancellation, kill on drop, stderr capture, and
    //! `finish` classifying what the child said.

    use super::*;
    use crate::zfs::fake::{Fake, ALL, ZFS_FUSE};
    use crate::zfs::{ReceiveOpts, SendOpts, Zfs};
    use std::sync::mpsc;

    /// Runs `f` on a thread and fails the test if it takes over 30 s
    /// (a deadlock would otherwise hang the suite).
    fn within_30s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("operation did not finish within 30 s (deadlock?)")
    }

    #[test]
    fn missing_binary_is_not_available() {
        let dir = tempfile::tempdir().unwrap();
        let z = Zfs::new(dir.path().join("no-zfs"), dir.path().join("no-zpool"));
        let e = z.available().unwrap_err();
        assert!(
            matches!(&e, ZfsError::NotAvailable { detail } if detail.contains("no-zpool")),
            "{e:?}"
        );
        let e = z.snapshot("tank/a@s").unwrap_err();
        assert_eq!(e.code(), "ZfsNotAvailable");
    }

    #[test]
    fn receive_pipes_the_stream() {
        let fake = Fake::new(r#"exec cat > "$D/stream""#).with(ZFS_FUSE);
        let mut child = fake.zfs.receive("tank/a", ReceiveOpts::default()).unwrap();
        assert_eq!(child.target(), "tank/a");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        child.write_all(&data).unwrap();
        child.finish().unwrap();
        assert_eq!(fake.file("stream"), data);
    }

    #[test]
    fn receive_from_a_pump_thread() {
        let fake = Fake::new(r#"exec cat > "$D/stream""#).with(ZFS_FUSE);
        let mut child = fake.zfs.receive("tank/a", ReceiveOpts::default()).unwrap();
        let mut w = child.take_writer().unwrap();
        assert!(child.take_writer().is_none());
        let pump = thread::spawn(move || {
            for _ in 0..64 {
                w.write_all(&[7u8; 4096]).unwrap();
            }
        });
        pump.join().unwrap();
        child.finish().unwrap();
        assert_eq!(fake.file("stream").len(), 64 * 4096);
    }

    #[test]
    fn receive_failure_is_classified_after_the_stream() {
        let fake = Fake::new(
            r#"cat >/dev/null; printf "cannot receive new filesystem stream: destination 'tank/a' exists\nmust specify -F to overwrite it\n" >&2; exit 1"#,
        )
        .with(ALL);
        let mut child = fake.zfs.receive("tank/a", ReceiveOpts::default()).unwrap();
        child.write_all(b"stream").unwrap();
        let e = child.finish().unwrap_err();
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == "tank/a"),
            "{e:?}"
        );
    }

    #[test]
    fn receive_that_stops_reading_still_reports_its_error() {
        // zfs gives up at once; the writer gets EPIPE, finish() the reason
        let fake = Fake::new(r#"cat "$F/receive-bad-magic.stderr" >&2; exit 1"#).with(ALL);
        let mut child = fake.zfs.receive("tank/a", ReceiveOpts::default()).unwrap();
        // However slowly the fake exits (seconds under emulation), the
        // pipe (up to 1 MiB) fills and the next write meets the closed end:
        // keep writing until then instead of sleeping and hoping.
        let chunk = vec![0u8; 1 << 20];
        let write = (0..16)
            .map(|_| child.write_all(&chunk))
            .find(|w| w.is_err());
        assert!(matches!(write, Some(Err(_))), "writes never failed");
        let e = child.finish().unwrap_err();
        assert!(
            e.to_string().contains("invalid stream (bad magic number)"),
            "{e}"
        );
    }

    #[test]
    fn chatty_stderr_does_not_deadlock() {
        let fake = Fake::new(
            r#"head -c 1048576 /dev/zero | tr '\0' x >&2; cat > "$D/stream"; echo done >&2; exit 1"#,
        )
        .with(ALL);
        let zfs = fake.zfs.clone();
        let e = within_30s(move || {
            let mut child = zfs.receive("tank/a", ReceiveOpts::default()).unwrap();
            child.write_all(&vec![1u8; 1 << 20]).unwrap();
            child.finish().unwrap_err()
        });
        let ZfsError::CommandFailed { stderr, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(stderr.len() <= 4096 + 6, "kept {} bytes", stderr.len());
        assert_eq!(fake.file("stream").len(), 1 << 20);
    }

    fn pid_is_gone(pid: u32) -> bool {
        use nix::sys::signal::kill;
        use nix::unistd::Pid;
        kill(Pid::from_raw(pid as i32), None).is_err()
    }

    #[test]
    fn cancelled_receive_is_killed_and_refuses_writes() {
        let fake = Fake::new("exec sleep 30").with(ALL);
        let mut child = fake.zfs.receive("tank/a", ReceiveOpts::default()).unwrap();
        let pid = child.proc_.shared.lock().child.id();
        let mut writer = child.take_writer().unwrap();
        writer.write_all(b"some data").unwrap();
        let canceller = child.canceller();
        let c2 = canceller.clone();
        assert!(!c2.is_cancelled());
        let started = Instant::now();
        thread::spawn(move || c2.cancel()).join().unwrap();
        assert!(canceller.is_cancelled());
        let err = writer.write_all(b"more").unwrap_err();
        assert!(err.to_string().contains("cancelled"), "{err}");
        drop(writer);
        let e = child.finish().unwrap_err();
        assert!(
            matches!(&e, ZfsError::Cancelled { argv } if argv.ends_with("receive tank/a")),
            "{e:?}"
        );
        assert_eq!(e.code(), "Cancelled");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(pid_is_gone(pid));
        canceller.cancel(); // after reaping: a no-op, must not signal anything
    }

    #[test]
    fn dropping_an_unfinished_child_kills_and_reaps_it() {
        let fake = Fake::new("exec sleep 30").with(ALL);
        let child = fake.zfs.receive("tank/a", ReceiveOpts::default()).unwrap();
        let pid = child.proc_.shared.lock().child.id();
        let canceller = child.canceller();
        drop(child);
        assert!(pid_is_gone(pid));
        canceller.cancel();

        let send = fake
            .zfs
            .send("tank/a@s", None, SendOpts::default())
            .unwrap();
        let pid = send.proc_.shared.lock().child.id();
        drop(send);
        assert!(pid_is_gone(pid));
    }

    #[test]
    fn send_failures_are_classified() {
        let fake = Fake::new(
            r#"case "$CMD" in
"zpool "*) echo zdrv1 ;;
*"-i"*) cat "$F/zfs-fuse-send-missing-incremental-source.stderr" >&2; exit 1 ;;
*) echo "WARNING: could not send zdrv1/big@nope: does not exist" >&2; exit 1 ;;
esac"#,
        )
        .with(ZFS_FUSE);
        let e = fake
            .zfs
            .send("zdrv1/big@nope", None, SendOpts::default())
            .unwrap()
            .finish()
            .unwrap_err();
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "zdrv1/big@nope"),
            "{e:?}"
        );
        let e = fake
            .zfs
            .send("zdrv1/big@s", Some("@nope"), SendOpts::default())
            .unwrap()
            .finish()
            .unwrap_err();
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "zdrv1/big@nope"),
            "{e:?}"
        );
    }

    #[test]
    fn cancelled_send_is_killed_and_refuses_reads() {
        let fake = Fake::new("exec yes zfs-stream").with(ALL);
        let mut child = fake
            .zfs
            .send("tank/a@s", None, SendOpts::default())
            .unwrap();
        let mut buf = [0u8; 4096];
        child.read_exact(&mut buf).unwrap();
        child.canceller().cancel();
        assert!(child.read(&mut buf).is_err());
        let e = within_30s(move || child.finish().unwrap_err());
        assert_eq!(e.code(), "Cancelled", "{e:?}");
    }

    #[test]
    fn finishing_a_send_early_reports_the_broken_pipe() {
        // zfs-fuse: "warning: cannot send 'P/d@s': Broken pipe"
        let fake = Fake::new(
            r#"trap '' PIPE; while echo data 2>/dev/null; do :; done; cat "$F/zfs-fuse-send-broken-pipe.stderr" >&2; exit 1"#,
        )
        .with(ALL);
        let mut child = fake
            .zfs
            .send("tank/a@s", None, SendOpts::default())
            .unwrap();
        let mut buf = [0u8; 10];
        child.read_exact(&mut buf).unwrap();
        let e = within_30s(move || child.finish().unwrap_err());
        assert!(e.to_string().contains("Broken pipe"), "{e}");
    }
}
