//! IMGAPI sources: `GET BASE/images` (paged with `limit`/`marker`),
//! `GET BASE/images/:uuid` and `GET BASE/images/:uuid/file`, each with the
//! source's `?channel=` when it has one. Another imgstore's peer listener
//! (`src/server/peer.rs`) is such a source.

use super::client::{self, FetchError, Http};
use super::{remote_image, FileLoc, RemoteImage};
use std::collections::HashSet;

/// IMGAPI's largest page.
const PAGE: usize = 1000;

fn with_channel(url: String, channel: Option<&str>, first: bool) -> String {
    match channel {
        None => url,
        Some(c) => {
            let sep = if first { '?' } else { '&' };
            let enc: String = form_urlencoded::byte_serialize(c.as_bytes()).collect();
            format!("{url}{sep}channel={enc}")
        }
    }
}

fn file_url(base: &str, channel: Option<&str>, uuid: &str) -> String {
    with_channel(format!("{base}/images/{uuid}/file"), channel, true)
}

fn image(v: &serde_json::Value, base: &str, channel: Option<&str>) -> Option<RemoteImage> {
    remote_image(v, |_, uuid| {
        Some(FileLoc::Url(file_url(base, channel, uuid)))
    })
}

/// The active images, every page of them.
pub async fn list(
    http: &Http,
    base: &str,
    channel: Option<&str>,
    insecure: bool,
) -> Result<Vec<RemoteImage>, FetchError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut marker: Option<String> = None;
    loop {
        let mut url = format!("{base}/images?limit={PAGE}");
        if let Some(m) = &marker {
            url.push_str(&format!("&marker={m}"));
        }
        let url = with_channel(url, channel, false);
        let v = http.get_json(&url, insecure, client::META).await?;
        let Some(items) = v.as_array() else {
            return Err(FetchError::Invalid {
                url,
                detail: "expected a JSON array of images".into(),
            });
        };
        let mut fresh = 0;
        for item in items {
            if let Some(img) = image(item, base, channel) {
                if seen.insert(img.uuid().to_string()) {
                    marker = Some(img.uuid().to_string());
                    out.push(img);
                    fresh += 1;
                }
            }
        }
        // A marker page repeats the marker itself (published_at >= it).
        if items.len() < PAGE || fresh == 0 {
            return Ok(out);
        }
    }
}

/// One image; `None` on 404.
pub async fn get(
    http: &Http,
    base: &str,
    channel: Option<&str>,
    insecure: bool,
    uuid: &str,
) -> Result<Option<RemoteImage>, FetchError> {
    let url = with_channel(format!("{base}/images/{uuid}"), channel, true);
    let v = match http.get_json(&url, insecure, client::META).await {
        Ok(v) => v,
        Err(FetchError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    match image(&v, base, channel) {
        Some(img) if img.uuid() == uuid => Ok(Some(img)),
        _ => Err(FetchError::Invalid {
            url,
            detail: format!("expected the manifest of image {uuid}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_carry_the_channel() {
        assert_eq!(file_url("http://h", None, "u"), "http://h/images/u/file");
        assert_eq!(
            file_url("http://h", Some("a b"), "u"),
            "http://h/images/u/file?channel=a+b"
        );
        assert_eq!(
            with_channel("http://h/images?limit=1".into(), Some("dev"), false),
            "http://h/images?limit=1&channel=dev"
        );
    }
}
