//! The IMGAPI dialect's wire shapes that are not a stored record as is:
//! what the handlers serialise. Field order is the order on the wire.
//! Manifests, packages and tasks go out as the service serialises them.

use serde::Serialize;
use serde_json::{Map, Value};

/// `GET /ping`.
#[derive(Debug, Serialize)]
pub struct Ping {
    pub ping: &'static str,
    pub version: &'static str,
    pub imgapi: bool,
    pub pid: u32,
}

impl Ping {
    /// This daemon's answer.
    pub fn now() -> Ping {
        Ping {
            ping: "pong",
            version: env!("CARGO_PKG_VERSION"),
            imgapi: true,
            pid: std::process::id(),
        }
    }
}

/// One image a source offers, with the URL of that source: an item of
/// `GET /sources/images` (`source` is null if unknown) and the whole of
/// `GET /sources/images/:uuid`.
#[derive(Debug, Serialize)]
pub struct SourceImage {
    pub manifest: Map<String, Value>,
    pub source: Option<String>,
}

/// `GET /sources/images`: the images and the sources that failed (each as
/// `SourceFailure::to_json` writes it).
#[derive(Debug, Serialize)]
pub struct SourceImages {
    pub images: Vec<SourceImage>,
    pub errors: Vec<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The structs write what the handlers wrote with `json!` before.
    #[test]
    fn same_bytes_as_before() {
        let p = Ping::now();
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            json!({"ping": "pong", "version": env!("CARGO_PKG_VERSION"), "imgapi": true, "pid": std::process::id()}).to_string()
        );
        let mut m = Map::new();
        m.insert("uuid".into(), json!("u"));
        let one = SourceImage {
            manifest: m.clone(),
            source: None,
        };
        let list = SourceImages {
            images: vec![one],
            errors: vec![json!({"url": "x"})],
        };
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            json!({"images": [{"manifest": Value::Object(m), "source": null}], "errors": [{"url": "x"}]}).to_string()
        );
    }
}
