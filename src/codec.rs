//! The codecs of `files[].compression`: a decompressor and a compressor for
//! each name (`none`, `gzip`, `bzip2`, `xz`, `zstd`), the file-name
//! extension the export layout gives each, and [`CHUNK`], the one buffer
//! size every data path (ingest, install, export, downloads, uploads) moves
//! bytes in.
//!
//! The bottom of the stack: no other module of the crate is used here, so
//! anything may use it; [`CodecError`] becomes a `crate::error::Error`
//! where a request is answered.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

/// Chunk size of every pipeline: large enough that syscalls and thread
/// hand-offs are noise, small enough that a few in flight stay cheap.
pub const CHUNK: usize = 1 << 20;

/// Why a codec could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A compression name that is none of the known ones.
    #[error("unknown compression {0:?}")]
    Unknown(String),
    /// The codec library refused to start: what was being done, and why.
    #[error("{0}")]
    Start(&'static str, #[source] io::Error),
}

/// Wraps `src` in the decompressor for `compression`.
///
/// # Errors
/// An unknown compression name, or the decoder cannot start.
pub fn decompressor<'a>(
    compression: &str,
    src: impl Read + Send + 'a,
) -> Result<Box<dyn Read + Send + 'a>, CodecError> {
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
                .map_err(|e| CodecError::Start("starting zstd", e))?,
        ),
        other => return Err(CodecError::Unknown(other.to_string())),
    })
}

/// A compressor writing into `dst`; `finish` must be called to flush the
/// trailer and get `dst` back.
pub enum Compressor<W: Write> {
    None(W),
    Gzip(ParallelGzip<W>),
    Bzip2(bzip2::write::BzEncoder<W>),
    Xz(liblzma::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// # Errors
    /// An unknown compression name, or the encoder cannot start.
    pub fn new(compression: &str, dst: W) -> Result<Compressor<W>, CodecError> {
        Ok(match compression {
            "none" => Compressor::None(dst),
            "gzip" => Compressor::Gzip(ParallelGzip::new(dst, workers())),
            "bzip2" => Compressor::Bzip2(bzip2::write::BzEncoder::new(
                dst,
                bzip2::Compression::default(),
            )),
            "xz" => Compressor::Xz(liblzma::write::XzEncoder::new(dst, 6)),
            "zstd" => {
                let mut enc = zstd::stream::write::Encoder::new(dst, 3)
                    .map_err(|e| CodecError::Start("starting zstd", e))?;
                // Compress on every core, like `zstd -T0`.
                let workers = workers() as u32;
                if workers > 1 {
                    enc.multithread(workers)
                        .map_err(|e| CodecError::Start("zstd workers", e))?;
                }
                Compressor::Zstd(enc)
            }
            other => return Err(CodecError::Unknown(other.to_string())),
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

/// Compressor threads: one per core.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A block of input and where its compressed gzip member goes.
type GzipJob = (Vec<u8>, mpsc::SyncSender<io::Result<Vec<u8>>>);

/// Gzip on every core, as `pigz` does: the input is cut into [`CHUNK`]
/// blocks, each compressed by a worker thread into a complete gzip member,
/// and the members are written to `dst` in input order. A concatenation of
/// gzip members is itself a gzip file (RFC 1952 section 2.2): `gzip -cdfq`,
/// which imgadm installs with, reads it whole, as does
/// [`flate2::read::MultiGzDecoder`]. Each block starts a fresh 32 KiB
/// deflate window, which costs a fraction of a percent in size against one
/// single-threaded stream.
///
/// Memory stays flat: at most `2 × workers` blocks are in flight (each
/// [`CHUNK`] in and its member out); `write` waits for the oldest member
/// when that many are outstanding.
pub struct ParallelGzip<W: Write> {
    dst: W,
    buf: Vec<u8>,
    pool: GzipPool,
    /// Members being compressed, oldest first.
    pending: VecDeque<mpsc::Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
    /// Whether any member has been written (an empty input still needs one).
    wrote: bool,
}

/// The worker threads; dropping it stops them (they finish the blocks
/// already queued, whose results nobody reads any more) and joins them.
struct GzipPool {
    jobs: Option<mpsc::SyncSender<GzipJob>>,
    handles: Vec<JoinHandle<()>>,
}

impl Drop for GzipPool {
    fn drop(&mut self) {
        self.jobs = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl<W: Write> ParallelGzip<W> {
    /// Starts `workers` (at least one) compressor threads writing into `dst`.
    pub fn new(dst: W, workers: usize) -> Self {
        let workers = workers.max(1);
        let (tx, rx) = mpsc::sync_channel::<GzipJob>(workers);
        let rx = Arc::new(Mutex::new(rx));
        let handles = (0..workers)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || loop {
                    // The lock is held only while waiting for a job.
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((block, done)) = job else { return };
                    // The writer may have gone (dropped mid-stream): fine.
                    let _ = done.send(gzip_member(&block));
                })
            })
            .collect();
        ParallelGzip {
            dst,
            buf: Vec::with_capacity(CHUNK),
            pool: GzipPool {
                jobs: Some(tx),
                handles,
            },
            pending: VecDeque::new(),
            max_pending: 2 * workers,
            wrote: false,
        }
    }

    /// Hands the buffered block to a worker (waiting for the oldest member
    /// first when enough are in flight).
    fn submit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        while self.pending.len() >= self.max_pending {
            self.write_oldest()?;
        }
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        self.pool
            .jobs
            .as_ref()
            .and_then(|jobs| jobs.send((block, done_tx)).ok())
            .ok_or_else(|| io::Error::other("the gzip workers stopped"))?;
        self.pending.push_back(done_rx);
        Ok(())
    }

    /// Waits for the oldest member and writes it out.
    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else {
            return Ok(());
        };
        let member = rx
            .recv()
            .map_err(|_| io::Error::other("a gzip worker stopped"))??;
        self.dst.write_all(&member)?;
        self.wrote = true;
        Ok(())
    }

    /// Compresses what is left, writes every member in order, stops the
    /// workers and returns `dst`.
    ///
    /// # Errors
    /// Writing to `dst` failed.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit()?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        if !self.wrote {
            // An empty input is one empty member, not an empty file.
            self.dst.write_all(&gzip_member(&[])?)?;
        }
        let ParallelGzip { dst, pool, .. } = self;
        drop(pool);
        Ok(dst)
    }
}

/// One complete gzip member of `block`.
fn gzip_member(block: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(block.len() / 2 + 64),
        flate2::Compression::default(),
    );
    enc.write_all(block)?;
    enc.finish()
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.submit()?;
        }
        Ok(n)
    }

    /// Ends the current member early and writes out everything so far.
    fn flush(&mut self) -> io::Result<()> {
        self.submit()?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.dst.flush()
    }
}

/// Each compression and the file name extension the export layout (and
/// imgadm) gives it; `none` has none.
const EXTENSIONS: &[(&str, &str)] = &[
    ("gzip", ".gz"),
    ("bzip2", ".bz2"),
    ("xz", ".xz"),
    ("zstd", ".zst"),
];

/// The file name extension of a compression, as the export layout uses.
pub fn extension(compression: &str) -> &'static str {
    EXTENSIONS
        .iter()
        .find(|(c, _)| *c == compression)
        .map_or("", |(_, ext)| ext)
}

/// The compression whose [`extension`] is `.ext` (`ext` without its dot),
/// if any: the reverse reading, for a file named by that layout.
pub fn from_extension(ext: &str) -> Option<&'static str> {
    EXTENSIONS
        .iter()
        .find(|(_, e)| e.strip_prefix('.') == Some(ext))
        .map(|(c, _)| *c)
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
    fn parallel_gzip_writes_ordered_members_any_decoder_reads() {
        // 5.5 blocks of data with structure, so members differ.
        let data: Vec<u8> = (0..(CHUNK * 11 / 2) as u32)
            .map(|i| (i / 7 % 251) as u8)
            .collect();
        for workers in [1, 3] {
            let mut enc = ParallelGzip::new(Vec::new(), workers);
            // Odd-sized writes cross block boundaries.
            for piece in data.chunks(333_333) {
                enc.write_all(piece).unwrap();
            }
            let packed = enc.finish().unwrap();
            assert!(packed.len() < data.len() / 4, "{workers}: compresses");
            // One gzip member per block: each starts with the gzip magic.
            let members = packed.windows(3).filter(|w| w == &[0x1f, 0x8b, 8]).count();
            assert!(members >= 6, "{workers}: {members} members");
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&packed[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data, "{workers} workers");
        }
    }

    #[test]
    fn parallel_gzip_of_nothing_is_one_empty_member() {
        let packed = ParallelGzip::new(Vec::new(), 2).finish().unwrap();
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.is_empty() && packed.starts_with(&[0x1f, 0x8b]));
        // Dropped mid-stream: the workers stop, nothing hangs.
        let mut enc = ParallelGzip::new(Vec::new(), 2);
        enc.write_all(&vec![7u8; CHUNK * 3]).unwrap();
        drop(enc);
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!(matches!(
            decompressor("lz4", &b""[..]),
            Err(CodecError::Unknown(n)) if n == "lz4"
        ));
        assert!(Compressor::new("lz4", Vec::new()).is_err());
        assert_eq!(extension("zstd"), ".zst");
        assert_eq!(extension("none"), "");
        for c in crate::manifest::COMPRESSIONS {
            let ext = extension(c);
            if *c != "none" {
                assert_eq!(from_extension(&ext[1..]), Some(*c));
            }
        }
        assert_eq!(from_extension("zip"), None);
        assert_eq!(from_extension(""), None);
    }
}
