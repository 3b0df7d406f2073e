//! DSAPI ("poor man's" image server) sources: the base URL returns a JSON
//! array of manifests, usually v1 (`creator_uuid`, `files[].path`, no `v`),
//! and each file is at `BASE/UUID/PATH`. This is what smartos-image-server
//! serves under `/datasets`, and what any static web server can serve from
//! a directory with an index file (imgapi.md section 7).
//!
//! Manifests are upgraded to v2 as IMGAPI does ([`crate::manifest::upgrade_v1`]);
//! the file's `PATH` is read from the raw manifest first, since the upgrade
//! drops it.

use super::client::{self, FetchError, Http};
use super::{remote_image, FileLoc, RemoteImage};
use crate::manifest::{Manifest, UncheckedFile};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// Characters escaped in a URL path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// The file's name relative to `BASE/UUID/`: `files[0].path`, or the last
/// segment of `files[0].url`. Names that could climb out (`..`) are refused.
fn file_path(raw: &Manifest) -> Option<String> {
    let f = UncheckedFile::of(raw)?;
    let name = match f.path() {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => {
            let url = f.url()?;
            let path = url.split(['?', '#']).next()?;
            path.rsplit('/').next()?.to_string()
        }
    };
    let segments: Vec<&str> = name.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() || segments.iter().any(|s| *s == "." || *s == "..") {
        return None;
    }
    Some(
        segments
            .iter()
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect::<Vec<_>>()
            .join("/"),
    )
}

pub fn file_url(base: &str, raw: &Manifest, uuid: &str) -> Option<String> {
    Some(format!("{base}/{uuid}/{}", file_path(raw)?))
}

/// The index: every manifest it lists that has a uuid.
pub async fn list(
    http: &Http,
    index: &str,
    base: &str,
    insecure: bool,
) -> Result<Vec<RemoteImage>, FetchError> {
    let v = http.get_json(index, insecure, client::META).await?;
    let Some(items) = v.as_array() else {
        return Err(FetchError::Invalid {
            url: index.to_string(),
            detail: "expected a JSON array of manifests".into(),
        });
    };
    Ok(items
        .iter()
        .filter_map(|item| {
            remote_image(item, |raw, uuid| {
                file_url(base, raw, uuid).map(FileLoc::Url)
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: serde_json::Value) -> Manifest {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn file_urls_from_path_or_url() {
        let raw = m(json!({"files": [{"path": "base-1.0 final.zfs.gz"}]}));
        assert_eq!(
            file_url("http://h/datasets", &raw, "u").unwrap(),
            "http://h/datasets/u/base-1.0%20final.zfs.gz"
        );
        let raw = m(json!({"files": [{"url": "https://other/datasets/u/f.zfs.bz2?x=1"}]}));
        assert_eq!(
            file_url("http://h/d", &raw, "u").unwrap(),
            "http://h/d/u/f.zfs.bz2"
        );
        for bad in [
            json!({"files": [{"path": "../../etc/passwd"}]}),
            json!({"files": [{}]}),
            json!({}),
        ] {
            assert_eq!(file_url("http://h", &m(bad.clone()), "u"), None, "{bad}");
        }
    }

    #[test]
    fn v1_manifests_are_upgraded_and_keep_their_file() {
        let raw = json!({"uuid": "u", "name": "n", "version": "1", "creator_uuid": "c",
            "files": [{"path": "n-1.zfs.bz2", "sha1": "s", "size": 3}]});
        let img = remote_image(&raw, |raw, uuid| {
            file_url("http://h", raw, uuid).map(FileLoc::Url)
        })
        .unwrap();
        assert_eq!(
            img.file,
            Some(FileLoc::Url("http://h/u/n-1.zfs.bz2".into()))
        );
        assert_eq!(img.str_field("owner"), Some("c"));
        assert_eq!(img.compression(), Some("bzip2"));
        assert_eq!(img.size(), Some(3));
        assert_eq!(img.manifest["v"], 2);
    }
}
