//! Stream plumbing shared by install, create and export: a reader fed by a
//! channel (so reading+hashing runs on its own thread), the decompressors
//! and compressors for every `files[].compression`, and a copy loop with a
//! large buffer that checks for cancellation.

use crate::error::{Error, Result};
use crate::tasks::TaskCtx;
use bytes::Bytes;
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender};

/// Chunk size of every pipeline: large enough that syscalls and thread
/// hand-offs are noise, small enough that a few in flight stay cheap.
pub const CHUNK: usize = 1 << 20;

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

/// Wraps `src` in the decompressor for `compression`.
///
/// # Errors
/// An unknown compression name.
pub fn decompressor<'a>(
    compression: &str,
    src: impl Read + Send + 'a,
) -> Result<Box<dyn Read + Send + 'a>> {
    Ok(match compression {
        "none" => Box::new(src),
        "gzip" => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(CHUNK, src),
        )),
        "bzip2" => Box::new(bzip2::read::MultiBzDecoder::new(
            io::BufReader::with_capacity(CHUNK, src),
        )),
        "xz" => Box::new(liblzma::read::XzDecoder::new_multi_decoder(
            io::BufReader::with_capacity(CHUNK, src),
        )),
        "zstd" => Box::new(
            zstd::stream::read::Decoder::with_buffer(io::BufReader::with_capacity(CHUNK, src))
                .map_err(|e| Error::internal("starting zstd", e))?,
        ),
        other => {
            return Err(Error::param(
                "compression",
                format!("unknown compression {other:?}"),
            ))
        }
    })
}

/// A compressor writing into `dst`; `finish` must be called to flush the
/// trailer and get `dst` back.
pub enum Compressor<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Bzip2(bzip2::write::BzEncoder<W>),
    Xz(liblzma::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// # Errors
    /// An unknown compression name, or the encoder cannot start.
    pub fn new(compression: &str, dst: W) -> Result<Compressor<W>> {
        Ok(match compression {
            "none" => Compressor::None(dst),
            "gzip" => Compressor::Gzip(flate2::write::GzEncoder::new(
                dst,
                flate2::Compression::default(),
            )),
            "bzip2" => Compressor::Bzip2(bzip2::write::BzEncoder::new(
                dst,
                bzip2::Compression::default(),
            )),
            "xz" => Compressor::Xz(liblzma::write::XzEncoder::new(dst, 6)),
            "zstd" => {
                let mut enc = zstd::stream::write::Encoder::new(dst, 3)
                    .map_err(|e| Error::internal("starting zstd", e))?;
                // Compress on every core, like `zstd -T0`.
                let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
                if workers > 1 {
                    enc.multithread(workers)
                        .map_err(|e| Error::internal("zstd workers", e))?;
                }
                Compressor::Zstd(enc)
            }
            other => {
                return Err(Error::param(
                    "compression",
                    format!("unknown compression {other:?}"),
                ))
            }
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(e) => e.finish(),
            Compressor::Bzip2(e) => e.finish(),
            Compressor::Xz(e) => e.finish(),
            Compressor::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(e) => e.write(buf),
            Compressor::Bzip2(e) => e.write(buf),
            Compressor::Xz(e) => e.write(buf),
            Compressor::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(e) => e.flush(),
            Compressor::Bzip2(e) => e.flush(),
            Compressor::Xz(e) => e.flush(),
            Compressor::Zstd(e) => e.flush(),
        }
    }
}

/// The file name extension of a compression, as the export layout uses.
pub fn extension(compression: &str) -> &'static str {
    match compression {
        "gzip" => ".gz",
        "bzip2" => ".bz2",
        "xz" => ".xz",
        "zstd" => ".zst",
        _ => "",
    }
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
    fn every_compression_round_trips() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 97) as u8).collect();
        for c in crate::manifest::COMPRESSIONS {
            let mut enc = Compressor::new(c, Vec::new()).unwrap();
            enc.write_all(&data).unwrap();
            let packed = enc.finish().unwrap();
            let mut out = Vec::new();
            decompressor(c, &packed[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data, "{c}");
        }
    }

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
