//! The codecs of `files[].compression`: a decompressor and a compressor for
//! each name (`none`, `gzip`, `bzip2`, `xz`, `zstd`), the file-name
//! extension the export layout gives each, and [`CHUNK`], the one buffer
//! size every data path (ingest, install, export, downloads, uploads) moves
//! bytes in.
//!
//! The bottom of the stack: no other module of the crate is used here, so
//! anything may use it; [`CodecError`] becomes a `crate::error::Error`
//! where a request is answered.

use std::io::{self, Read, Write};

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
    Gzip(flate2::write::GzEncoder<W>),
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
                    .map_err(|e| CodecError::Start("starting zstd", e))?;
                // Compress on every core, like `zstd -T0`.
                let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
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
