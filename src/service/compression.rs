//! Which image file compressions each kind of receiver can install: the one
//! rule every path that hands an image to another server or tool asks.
//!
//! imgadm installs only `none`, `gzip`, `bzip2` and `xz` (it pipes the file
//! through `/usr/bin/{gzip,bzip2,xz} -cdfq` and asserts on anything else;
//! smartos-live `src/img/lib/imgadm.js` `_installZfsImage`), and IMGAPI's
//! AddImageFile refuses any other compression with 422 InvalidParameter
//! (sdc-imgapi `lib/images.js` `apiAddImageFile`, `VALID_FILE_COMPRESSIONS`).
//! `zstd` is imgstore's own addition: only another imgstore can take it.
//!
//! Callers: none pushes an image to another server yet (`imgstore publish`
//! is issue #21; export writes files to a local directory, and sources and
//! the peer listener only serve or fetch). A push to an IMGAPI must call
//! [`check_compression_for`] with [`Receiver::Imgapi`] before sending
//! anything.

use crate::error::{Error, Result};
use crate::manifest::{COMPRESSIONS, IMGAPI_COMPRESSIONS};

/// Who is to install an image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    /// An IMGAPI server (AddImageFile), and every imgadm that imports from it.
    Imgapi,
    /// imgadm itself (`imgadm install -m -f`).
    Imgadm,
    /// Another imgstore (its sources, `imgstore add`).
    Imgstore,
}

impl Receiver {
    /// The compressions this receiver can install.
    pub fn compressions(self) -> &'static [&'static str] {
        match self {
            Receiver::Imgapi | Receiver::Imgadm => IMGAPI_COMPRESSIONS,
            Receiver::Imgstore => COMPRESSIONS,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Receiver::Imgapi => "an IMGAPI server",
            Receiver::Imgadm => "imgadm",
            Receiver::Imgstore => "imgstore",
        }
    }
}

/// Whether an image file compressed with `compression` may go to `to`.
///
/// # Errors
/// [`Error::InvalidParameter`] on field `compression` (422, as IMGAPI
/// answers such an AddImageFile) naming the compression, the receiver and
/// what it accepts; nothing has been sent when this is returned.
pub fn check_compression_for(compression: &str, to: Receiver) -> Result<()> {
    if to.compressions().contains(&compression) {
        return Ok(());
    }
    let hint = if compression == "zstd" {
        ": zstd is imgstore-to-imgstore only; re-create the image with \
         compression gzip (the default)"
    } else {
        ""
    };
    Err(Error::param(
        "compression",
        format!(
            "{} cannot install an image file compressed with {compression:?} \
             (it accepts {}){hint}",
            to.name(),
            to.compressions().join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imgapi_and_imgadm_take_the_four_imgadm_compressions_only() {
        for to in [Receiver::Imgapi, Receiver::Imgadm] {
            for c in ["none", "gzip", "bzip2", "xz"] {
                check_compression_for(c, to).unwrap();
            }
            let e = check_compression_for("zstd", to).unwrap_err();
            assert_eq!(e.code(), "InvalidParameter");
            let msg = e.to_string();
            assert!(msg.contains("\"zstd\"") && msg.contains("imgstore-to-imgstore only"));
            assert_eq!(e.body()["errors"][0]["field"], "compression");
            assert!(check_compression_for("lz4", to).is_err());
        }
    }

    #[test]
    fn imgstore_takes_every_compression_it_writes() {
        for c in COMPRESSIONS {
            check_compression_for(c, Receiver::Imgstore).unwrap();
        }
        assert!(check_compression_for("lz4", Receiver::Imgstore).is_err());
    }
}
