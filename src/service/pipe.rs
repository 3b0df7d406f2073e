//! Stream plumbing shared by install, create and export: a reader fed by a
//! channel (so reading+hashing runs on its own thread) and a copy loop with
//! a large buffer that checks for cancellation. The (de)compressors they
//! run data through are in [`crate::codec`].

use crate::codec::CHUNK;
use crate::tasks::TaskCtx;
use bytes::Bytes;
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender};

/// Reads chunks sent by another thread; an `Err` chunk becomes a read error.
pub struct ChannelReader {
    rx: Receiver<io::Result<Bytes>>,
    cur: Bytes,
    pos: usize,
}

impl ChannelReader {
    pub fn new(rx: Receiver<io::Result<Bytes>>) -> ChannelReader {
        ChannelReader {
            rx,
            cur: Bytes::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads `src` to the end in [`CHUNK`]s, passing each to `each` (a shared
/// handle, so digest threads can keep it without a copy) and then down the
/// channel. Stops early (without error) when the receiving side hangs up.
/// Used on a dedicated thread.
pub fn produce(
    mut src: impl Read,
    tx: SyncSender<io::Result<Bytes>>,
    mut each: impl FnMut(&Bytes),
) -> io::Result<()> {
    loop {
        let mut buf = vec![0u8; CHUNK];
        let n = match read_full(&mut src, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                let kind = e.kind();
                let msg = e.to_string();
                let _ = tx.send(Err(io::Error::new(kind, msg)));
                return Err(e);
            }
        };
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        let buf = Bytes::from(buf);
        each(&buf);
        if tx.send(Ok(buf)).is_err() {
            return Ok(());
        }
    }
}

/// Fills `buf` as far as the reader allows; returns the bytes read (less
/// than `buf.len()` only at EOF).
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Copies `src` to `dst` in [`CHUNK`]s, counting into the task's progress
/// when `count` is set, and stopping when the task is cancelled.
///
/// # Errors
/// `Cancelled`, or the read/write error (read errors are returned as
/// `Err(Ok(e))`, write errors as `Err(Err(e))` so the caller can tell a
/// corrupt input from a consumer that gave up).
pub fn copy(
    ctx: &TaskCtx,
    src: &mut impl Read,
    dst: &mut impl Write,
    count: bool,
) -> std::result::Result<u64, CopyError> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        if ctx.is_cancelled() {
            return Err(CopyError::Cancelled);
        }
        let n = read_full(src, &mut buf).map_err(CopyError::Read)?;
        if n == 0 {
            return Ok(total);
        }
        dst.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
        if count {
            ctx.add_done(n as u64);
        }
    }
}

#[derive(Debug)]
pub enum CopyError {
    Cancelled,
    Read(io::Error),
    Write(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_reader_passes_errors_and_eof() {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        tx.send(Ok(Bytes::from_static(b"abc"))).unwrap();
        tx.send(Err(io::Error::other("boom"))).unwrap();
        let mut r = ChannelReader::new(rx);
        let mut buf = [0u8; 10];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        assert!(r.read(&mut buf).is_err());
        drop(tx);
        assert_eq!(r.read(&mut buf).unwrap(), 0);
    }
}
