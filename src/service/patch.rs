//! JSON Patch (RFC 6902) on image manifests: `PATCH /images/:uuid`.
//!
//! The first half is a small, general RFC 6902 implementation on a
//! `serde_json::Value` ([`parse`], [`apply`]) with JSON Pointers (RFC 6901,
//! `~0`/`~1` escapes). All six operations are implemented; `apply` works on
//! a copy, so a failing operation leaves the input untouched.
//!
//! The second half is the use case ([`Service::patch_image`]). What a patch
//! may touch is what `?action=update` may change ([`MUTABLE_FIELDS`]); the
//! patched manifest then goes through the very same normalisation and
//! whole-manifest validation as an update, and everything happens under the
//! write lock, so `test` operations and the write see the same state.
//!
//! Outcomes, decided here and pinned by the tests:
//! - a document that is not a JSON Patch (not an array, unknown `op`, missing
//!   `path`/`value`/`from`, a pointer without a leading `/` or with a bad
//!   escape): 400 `InvalidContent` naming the operation's index;
//! - an operation that writes (`add`, `remove`, `replace`, `move` at either
//!   end, `copy` at its target) under a field that is not mutable (`uuid`,
//!   `files`, `state`, `published_at`, `type`, ...), or at the whole
//!   document: 422 `ValidationFailed`, one `NotAllowed` error per such path,
//!   with the path in the field (dotted) and in the message (as a pointer).
//!   422, not 403, because `?action=update` reports the same condition as
//!   422 `ValidationFailed` and a client should not see two answers for one
//!   rule; nothing about the caller would make the request acceptable.
//!   Reading an immutable field (`test`, the `from` of `copy`) is allowed;
//! - a `test` that fails: 409 `PatchTestFailed` (RFC 5789 section 2.2,
//!   "conflicting state"), the image unchanged;
//! - an operation whose target does not exist (remove/replace of an absent
//!   member, an array index out of range, add under a missing parent): 409
//!   `PatchConflict`, the image unchanged;
//! - a result that is not a valid manifest: 422 `ValidationFailed` listing
//!   every problem, the image unchanged. Setting a field to `null` is an
//!   error here (use `remove`), unlike the null-deletes rule of an update.
//!
//! An empty patch (`[]`) is valid and changes nothing.

use super::images::check_uuid;
use super::precondition::{etag_of, Precondition};
use super::Service;
use crate::error::{Error, Result};
use crate::manifest::{self, FieldError, MUTABLE_FIELDS};
use crate::store::meta::ImageRecord;
use serde_json::{Map, Value};
use std::sync::Arc;

/// A parsed JSON Pointer: the original text (for messages) and its
/// unescaped reference tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Pointer {
    pub text: String,
    pub tokens: Vec<String>,
}

impl Pointer {
    /// Parses an RFC 6901 pointer: `""` is the whole document, otherwise
    /// `/`-separated tokens where `~1` is `/` and `~0` is `~`.
    ///
    /// # Errors
    /// No leading `/`, or a `~` not followed by `0` or `1`.
    pub fn parse(s: &str) -> std::result::Result<Pointer, PointerError> {
        if s.is_empty() {
            return Ok(Pointer {
                text: String::new(),
                tokens: vec![],
            });
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(PointerError::NoLeadingSlash(s.to_string()));
        };
        let tokens = rest
            .split('/')
            .map(|t| {
                let mut out = String::with_capacity(t.len());
                let mut chars = t.chars();
                while let Some(c) = chars.next() {
                    if c != '~' {
                        out.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(PointerError::BadEscape(s.to_string())),
                    }
                }
                Ok(out)
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(Pointer {
            text: s.to_string(),
            tokens,
        })
    }

    /// `a.b.0`, the way field errors name nested fields.
    pub fn dotted(&self) -> String {
        self.tokens.join(".")
    }

    fn is_proper_prefix_of(&self, other: &Pointer) -> bool {
        self.tokens.len() < other.tokens.len() && other.tokens.starts_with(&self.tokens)
    }
}

/// A JSON Pointer that does not parse (RFC 6901).
#[derive(Debug, thiserror::Error)]
pub enum PointerError {
    #[error("JSON pointer {0:?} must be empty or start with /")]
    NoLeadingSlash(String),
    #[error("JSON pointer {0:?} has a ~ not followed by 0 or 1")]
    BadEscape(String),
}

/// An operation object that is not an RFC 6902 operation; becomes
/// [`PatchError::Malformed`] with the operation's index.
#[derive(Debug, thiserror::Error)]
enum OpError {
    #[error("an operation must be a JSON object")]
    NotAnObject,
    #[error("missing \"{0}\"")]
    Missing(&'static str),
    #[error("\"{0}\" must be a string")]
    NotAString(&'static str),
    #[error("unknown op {0:?}: expected add, remove, replace, move, copy or test")]
    UnknownOp(String),
    #[error(transparent)]
    Pointer(#[from] PointerError),
}

/// An operation whose target does not fit the document; becomes
/// [`PatchError::Conflict`] with the operation's index and path.
#[derive(Debug, thiserror::Error)]
enum TargetError {
    #[error("{0:?} does not exist")]
    Missing(String),
    #[error("cannot move {from:?} into its own child {path:?}")]
    MoveIntoChild { from: String, path: String },
    #[error("{0:?} is not an array index")]
    NotAnIndex(String),
    #[error("index {index} is past the end of an array of {len}")]
    PastTheEnd { index: usize, len: usize },
    #[error("the parent of {0:?} is not an object or an array")]
    ParentNotAContainer(String),
    #[error("the parent of {0:?} does not exist")]
    NoParent(String),
    #[error("the whole document cannot be removed")]
    WholeDocument,
}

/// One operation of a patch document.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Add { path: Pointer, value: Value },
    Remove { path: Pointer },
    Replace { path: Pointer, value: Value },
    Move { from: Pointer, path: Pointer },
    Copy { from: Pointer, path: Pointer },
    Test { path: Pointer, value: Value },
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Add { .. } => "add",
            Op::Remove { .. } => "remove",
            Op::Replace { .. } => "replace",
            Op::Move { .. } => "move",
            Op::Copy { .. } => "copy",
            Op::Test { .. } => "test",
        }
    }

    fn path(&self) -> &Pointer {
        match self {
            Op::Add { path, .. }
            | Op::Remove { path }
            | Op::Replace { path, .. }
            | Op::Move { path, .. }
            | Op::Copy { path, .. }
            | Op::Test { path, .. } => path,
        }
    }

    /// The locations this operation changes (a `move` removes its `from`).
    pub fn writes(&self) -> Vec<&Pointer> {
        match self {
            Op::Test { .. } => vec![],
            Op::Move { from, path } => vec![from, path],
            other => vec![other.path()],
        }
    }
}

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchError {
    /// The document is not a valid JSON Patch.
    Malformed(String),
    /// The document does not fit the target's structure.
    Conflict(String),
    /// A `test` operation did not match.
    TestFailed(String),
}

impl From<PatchError> for Error {
    fn from(e: PatchError) -> Error {
        match e {
            PatchError::Malformed(m) => Error::MalformedBody(m),
            PatchError::Conflict(m) => Error::PatchConflict(m),
            PatchError::TestFailed(m) => Error::PatchTestFailed(m),
        }
    }
}

/// Parses a patch document. Members other than `op`, `path`, `from` and
/// `value` are ignored, as RFC 6902 requires.
///
/// # Errors
/// `Malformed`, naming the index of the first bad operation.
pub fn parse(doc: &Value) -> std::result::Result<Vec<Op>, PatchError> {
    let Some(items) = doc.as_array() else {
        return Err(PatchError::Malformed(
            "a JSON Patch document must be an array of operations".into(),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            parse_op(item).map_err(|m| PatchError::Malformed(format!("patch[{i}]: {m}")))
        })
        .collect()
}

fn parse_op(item: &Value) -> std::result::Result<Op, OpError> {
    let Some(obj) = item.as_object() else {
        return Err(OpError::NotAnObject);
    };
    let pointer = |key: &'static str| -> std::result::Result<Pointer, OpError> {
        match obj.get(key) {
            None => Err(OpError::Missing(key)),
            Some(Value::String(s)) => Ok(Pointer::parse(s)?),
            Some(_) => Err(OpError::NotAString(key)),
        }
    };
    let value = || -> std::result::Result<Value, OpError> {
        obj.get("value").cloned().ok_or(OpError::Missing("value"))
    };
    let op = match obj.get("op") {
        None => return Err(OpError::Missing("op")),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(OpError::NotAString("op")),
    };
    Ok(match op {
        "add" => Op::Add {
            path: pointer("path")?,
            value: value()?,
        },
        "remove" => Op::Remove {
            path: pointer("path")?,
        },
        "replace" => Op::Replace {
            path: pointer("path")?,
            value: value()?,
        },
        "move" => Op::Move {
            from: pointer("from")?,
            path: pointer("path")?,
        },
        "copy" => Op::Copy {
            from: pointer("from")?,
            path: pointer("path")?,
        },
        "test" => Op::Test {
            path: pointer("path")?,
            value: value()?,
        },
        other => return Err(OpError::UnknownOp(other.to_string())),
    })
}

/// Applies `ops` in order to a copy of `doc` and returns the result.
///
/// # Errors
/// `Conflict` or `TestFailed`, naming the operation's index and path; `doc`
/// is never modified.
pub fn apply(doc: &Value, ops: &[Op]) -> std::result::Result<Value, PatchError> {
    let mut out = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        let at = || format!("patch[{i}] ({} {:?})", op.name(), op.path().text);
        match op {
            Op::Add { path, value } => add(&mut out, path, value.clone()),
            Op::Remove { path } => remove(&mut out, path).map(drop),
            Op::Replace { path, value } => match get_mut(&mut out, &path.tokens) {
                Some(target) => {
                    *target = value.clone();
                    Ok(())
                }
                None => Err(TargetError::Missing(path.text.clone())),
            },
            Op::Move { from, path } => {
                if from == path {
                    Ok(())
                } else if from.is_proper_prefix_of(path) {
                    Err(TargetError::MoveIntoChild {
                        from: from.text.clone(),
                        path: path.text.clone(),
                    })
                } else {
                    remove(&mut out, from).and_then(|v| add(&mut out, path, v))
                }
            }
            Op::Copy { from, path } => match get(&out, &from.tokens).cloned() {
                Some(v) => add(&mut out, path, v),
                None => Err(TargetError::Missing(from.text.clone())),
            },
            Op::Test { path, value } => {
                return match get(&out, &path.tokens) {
                    Some(actual) if json_eq(actual, value) => continue,
                    Some(actual) => Err(PatchError::TestFailed(format!(
                        "{}: test failed: the value is {actual}, not {value}",
                        at()
                    ))),
                    None => Err(PatchError::TestFailed(format!(
                        "{}: test failed: {:?} does not exist",
                        at(),
                        path.text
                    ))),
                }
            }
        }
        .map_err(|m| PatchError::Conflict(format!("{}: {m}", at())))?;
    }
    Ok(out)
}

/// An array index token: `0` or digits without a leading zero.
fn index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

fn get<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens.iter().try_fold(doc, |v, t| match v {
        Value::Object(m) => m.get(t),
        Value::Array(a) => a.get(index(t)?),
        _ => None,
    })
}

fn get_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens.iter().try_fold(doc, |v, t| match v {
        Value::Object(m) => m.get_mut(t),
        Value::Array(a) => a.get_mut(index(t)?),
        _ => None,
    })
}

fn add(doc: &mut Value, path: &Pointer, value: Value) -> std::result::Result<(), TargetError> {
    let Some((last, parent)) = path.tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, parent) {
        Some(Value::Object(m)) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let i = if last == "-" {
                a.len()
            } else {
                index(last).ok_or_else(|| TargetError::NotAnIndex(last.clone()))?
            };
            if i > a.len() {
                return Err(TargetError::PastTheEnd {
                    index: i,
                    len: a.len(),
                });
            }
            a.insert(i, value);
            Ok(())
        }
        Some(_) => Err(TargetError::ParentNotAContainer(path.text.clone())),
        None => Err(TargetError::NoParent(path.text.clone())),
    }
}

fn remove(doc: &mut Value, path: &Pointer) -> std::result::Result<Value, TargetError> {
    let Some((last, parent)) = path.tokens.split_last() else {
        return Err(TargetError::WholeDocument);
    };
    let missing = || TargetError::Missing(path.text.clone());
    match get_mut(doc, parent) {
        Some(Value::Object(m)) => m.remove(last).ok_or_else(missing),
        Some(Value::Array(a)) => match index(last) {
            Some(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}

/// RFC 6902 equality: numbers compare by value (`1` equals `1.0`), objects
/// regardless of member order.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// One `NotAllowed` error per write outside the mutable fields.
fn check_paths(ops: &[Op]) -> Result<()> {
    let mut errs = Vec::new();
    let mut paths = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        for p in op.writes() {
            let allowed = p
                .tokens
                .first()
                .is_some_and(|f| MUTABLE_FIELDS.contains(&f.as_str()));
            if !allowed {
                let what = match p.tokens.first() {
                    None => "the whole manifest cannot be replaced or removed".to_string(),
                    Some(f) => format!(
                        "{f} cannot be changed by a patch (it is immutable or set by another action)"
                    ),
                };
                errs.push(FieldError {
                    field: p.dotted(),
                    code: "NotAllowed".into(),
                    message: format!("patch[{i}] ({} {:?}): {what}", op.name(), p.text),
                });
                paths.push(format!("{:?}", p.text));
            }
        }
    }
    if errs.is_empty() {
        return Ok(());
    }
    Err(Error::Validation(
        format!(
            "patch writes to paths that cannot be changed: {}",
            paths.join(", ")
        ),
        errs,
    ))
}

/// The `?action=update` changes that turn `before` into `after`: changed
/// mutable fields with their new values, removed ones as `null`.
fn changes(before: &Map<String, Value>, after: &Value) -> Result<Map<String, Value>> {
    let Some(after) = after.as_object() else {
        return Err(Error::validation(vec![FieldError {
            field: String::new(),
            code: "Invalid".into(),
            message: "the patched manifest is not a JSON object".into(),
        }]));
    };
    let mut out = Map::new();
    let mut errs = Vec::new();
    for &f in MUTABLE_FIELDS {
        match (before.get(f), after.get(f)) {
            (b, a) if b == a => {}
            (_, None) => {
                out.insert(f.into(), Value::Null);
            }
            (_, Some(Value::Null)) => errs.push(FieldError {
                field: f.into(),
                code: "Invalid".into(),
                message: format!("{f} must not be null; use a remove operation to delete it"),
            }),
            (_, Some(v)) => {
                out.insert(f.into(), v.clone());
            }
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(Error::validation(errs))
    }
}

impl Service {
    /// `PATCH /images/:uuid`: applies a JSON Patch to the manifest,
    /// atomically (see the module doc for every outcome).
    ///
    /// # Errors
    /// `ResourceNotFound`; `MalformedBody` for a bad document;
    /// `ValidationFailed` for writes to immutable paths or an invalid result;
    /// `PatchTestFailed`, `PatchConflict`; I/O errors from storing.
    pub async fn patch_image(
        self: &Arc<Self>,
        uuid: String,
        doc: Value,
    ) -> Result<Arc<ImageRecord>> {
        self.patch_image_if(uuid, doc, Precondition::none()).await
    }

    /// The JSON Patch guarded by `cond` (`If-Match`), checked under the
    /// write lock with the patch's own `test` operations.
    pub async fn patch_image_if(
        self: &Arc<Self>,
        uuid: String,
        doc: Value,
        cond: Precondition,
    ) -> Result<Arc<ImageRecord>> {
        check_uuid(&uuid)?;
        let ops = parse(&doc)?;
        check_paths(&ops)?;
        self.mutate(move |svc| {
            let cur = svc.get_image(&uuid)?;
            cond.check_write(&etag_of(&cur))?;
            let after = apply(&Value::Object(cur.manifest.clone()), &ops)?;
            let changes = changes(&cur.manifest, &after)?;
            if changes.is_empty() {
                return Ok(cur);
            }
            let m =
                manifest::apply_update(&cur.manifest, &Value::Object(changes), svc.manifest_mode())
                    .map_err(Error::validation)?;
            svc.check_origin(&m)?;
            let mut rec = (*cur).clone();
            rec.manifest = m;
            svc.put(rec)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(doc: Value, patch: Value) -> std::result::Result<Value, PatchError> {
        apply(&doc, &parse(&patch)?)
    }

    #[test]
    fn pointers_unescape_in_the_right_order() {
        let p = Pointer::parse("/a~1b/m~0n/~01").unwrap();
        assert_eq!(p.tokens, ["a/b", "m~n", "~1"]);
        assert_eq!(Pointer::parse("").unwrap().tokens, Vec::<String>::new());
        assert_eq!(Pointer::parse("/").unwrap().tokens, [""]);
        assert!(Pointer::parse("a").is_err());
        assert!(Pointer::parse("/a~2").is_err());
        assert!(Pointer::parse("/a~").is_err());
    }

    /// RFC 6901 section 5's examples.
    #[test]
    fn rfc6901_examples() {
        let doc = json!({"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3,
            "g|h": 4, "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8});
        let at = |p: &str| get(&doc, &Pointer::parse(p).unwrap().tokens).cloned();
        assert_eq!(at(""), Some(doc.clone()));
        assert_eq!(at("/foo"), Some(json!(["bar", "baz"])));
        assert_eq!(at("/foo/0"), Some(json!("bar")));
        assert_eq!(at("/"), Some(json!(0)));
        assert_eq!(at("/a~1b"), Some(json!(1)));
        assert_eq!(at("/m~0n"), Some(json!(8)));
        assert_eq!(at("/ "), Some(json!(7)));
        assert_eq!(at("/foo/01"), None);
        assert_eq!(at("/foo/2"), None);
    }

    #[test]
    fn each_operation() {
        let doc = json!({"a": {"b": 1}, "l": [1, 2]});
        let ok = |p: Value| run(doc.clone(), p).unwrap();
        assert_eq!(
            ok(json!([{"op": "add", "path": "/a/c", "value": 2}])),
            json!({"a": {"b": 1, "c": 2}, "l": [1, 2]})
        );
        assert_eq!(
            ok(json!([{"op": "add", "path": "/l/1", "value": 9}]))["l"],
            json!([1, 9, 2])
        );
        assert_eq!(
            ok(json!([{"op": "add", "path": "/l/-", "value": 9}]))["l"],
            json!([1, 2, 9])
        );
        assert_eq!(
            ok(json!([{"op": "add", "path": "/a/b", "value": 5}]))["a"],
            json!({"b": 5}),
            "add replaces an existing member"
        );
        assert_eq!(
            ok(json!([{"op": "remove", "path": "/l/0"}]))["l"],
            json!([2])
        );
        assert_eq!(
            ok(json!([{"op": "replace", "path": "/a/b", "value": [3]}]))["a"]["b"],
            json!([3])
        );
        assert_eq!(
            ok(json!([{"op": "move", "from": "/a/b", "path": "/z"}])),
            json!({"a": {}, "l": [1, 2], "z": 1})
        );
        assert_eq!(
            ok(json!([{"op": "copy", "from": "/l", "path": "/a/l"}]))["a"]["l"],
            json!([1, 2])
        );
        assert_eq!(
            ok(json!([{"op": "test", "path": "/a", "value": {"b": 1.0}}])),
            doc
        );
        assert_eq!(ok(json!([{"op": "add", "path": "", "value": 3}])), json!(3));
    }

    #[test]
    fn failures_leave_the_input_untouched() {
        let doc = json!({"a": 1, "l": []});
        let conflict = |p: Value| match run(doc.clone(), p) {
            Err(PatchError::Conflict(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(conflict(json!([{"op": "remove", "path": "/x"}])).contains("\"/x\""));
        conflict(json!([{"op": "replace", "path": "/x", "value": 1}]));
        conflict(json!([{"op": "add", "path": "/x/y", "value": 1}]));
        conflict(json!([{"op": "add", "path": "/l/1", "value": 1}]));
        conflict(json!([{"op": "add", "path": "/a/b", "value": 1}]));
        conflict(json!([{"op": "move", "from": "/l", "path": "/l/0"}]));
        conflict(json!([{"op": "copy", "from": "/nope", "path": "/b"}]));
        let m = match run(
            doc.clone(),
            json!([{"op": "add", "path": "/b", "value": 1}, {"op": "test", "path": "/a", "value": 2}]),
        ) {
            Err(PatchError::TestFailed(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(m.contains("patch[1]"), "{m}");
        assert_eq!(doc, json!({"a": 1, "l": []}));
    }

    #[test]
    fn malformed_documents_name_the_operation() {
        for (patch, want) in [
            (json!({"op": "add"}), "must be an array"),
            (json!([1]), "patch[0]: an operation must be a JSON object"),
            (json!([{"path": "/a"}]), "missing \"op\""),
            (json!([{"op": "frob", "path": "/a"}]), "unknown op"),
            (json!([{"op": "add", "path": "/a"}]), "missing \"value\""),
            (json!([{"op": "move", "path": "/a"}]), "missing \"from\""),
            (json!([{"op": "remove", "path": "a"}]), "start with /"),
            (
                json!([{"op": "test", "path": "/a", "value": 1}, {"op": "remove"}]),
                "patch[1]: missing \"path\"",
            ),
        ] {
            match parse(&patch) {
                Err(PatchError::Malformed(m)) => assert!(m.contains(want), "{m}"),
                other => panic!("{patch}: {other:?}"),
            }
        }
        // null is a value; unknown members are ignored.
        assert!(parse(&json!([{"op": "add", "path": "/a", "value": null, "x": 1}])).is_ok());
    }

    #[test]
    fn only_mutable_fields_may_be_written() {
        let ops = parse(&json!([
            {"op": "test", "path": "/uuid", "value": "x"},
            {"op": "copy", "from": "/state", "path": "/description"},
            {"op": "replace", "path": "/uuid", "value": "x"},
            {"op": "remove", "path": "/files/0"},
            {"op": "move", "from": "/published_at", "path": "/tags/p"},
            {"op": "add", "path": "", "value": {}}
        ]))
        .unwrap();
        let e = check_paths(&ops).unwrap_err();
        let b = e.body();
        assert_eq!(b["code"], "ValidationFailed");
        let fields: Vec<&str> = b["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["uuid", "files.0", "published_at", ""]);
        assert!(
            b["message"].as_str().unwrap().contains("\"/files/0\""),
            "{b}"
        );
        assert!(check_paths(&ops[..2]).is_ok());
    }
}
