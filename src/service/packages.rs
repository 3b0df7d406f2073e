//! Package use cases: validate, create, replace, delete, list with filters,
//! look up by id or name, the all-or-nothing bootstrap load, and which
//! images fit a package.
//!
//! Packages have the shape of the cloud API's (sdc-papi): `id`, `name`,
//! `version`, `memory`, `disk`, `swap` (MiB), `lwps`, `vcpus`, `group`,
//! `description`, `brand`, `flexible_disk`, `disks`, `default`. Rules:
//! - `name`, `version`, `memory`, `disk`, `swap` and `vcpus` are required;
//!   numbers are non-negative integers; `null` counts as absent;
//! - `name` + `version` is unique (409 `PackageExists`); a name may not look
//!   like a uuid, since `/packages/:x` reads a uuid as an id;
//! - `disks` only with `flexible_disk: true`, each `{"size": MiB |
//!   "remaining"}` (size optional, one `remaining` at most), and the sized
//!   disks together no larger than `disk`;
//! - unknown fields are refused, and every problem is reported at once
//!   (422 `ValidationFailed`), as for manifests.
//!
//! A name lookup (`/packages/g4-highcpu-1G`) finds the package of that name
//! with the highest `version` (numeric dot-separated parts compare as
//! numbers), so a bootstrap that loads a new version moves the name along.
//!
//! Fit: an image accepts a package when its `requirements.min_ram` (if any)
//! is at most the package's `memory`, its `requirements.max_ram` (if any) at
//! least that, and, when the package names a `brand`, its
//! `requirements.brand` (if any) is that brand.

use super::filter::{ListFilter, PackageFit};
use super::Service;
use crate::error::{Error, Result};
use crate::manifest::{self, FieldError};
use crate::store::meta::Cached;
use crate::store::packages::Package;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// PAPI's brands.
pub const BRANDS: &[&str] = &["joyent", "joyent-minimal", "lx", "kvm", "bhyve"];

const STRING_FIELDS: &[&str] = &["id", "name", "version", "group", "description", "brand"];
const NUMBER_FIELDS: &[&str] = &["memory", "disk", "swap", "lwps", "vcpus"];
const BOOL_FIELDS: &[&str] = &["flexible_disk", "default"];
const REQUIRED: &[&str] = &["name", "version", "memory", "disk", "swap", "vcpus"];
const MAX_NAME_LEN: usize = 512;
const MAX_VERSION_LEN: usize = 128;
const MAX_TEXT_LEN: usize = 10 * 1024;

fn invalid(field: String, message: String) -> FieldError {
    FieldError {
        field,
        code: "Invalid".into(),
        message,
    }
}

/// Any spelling the uuid crate reads (a package name that looks like a
/// uuid is refused whatever its case); ids themselves are
/// [`manifest::is_uuid`].
fn parses_as_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// Validates a package body and builds the package. `prefix` is put in
/// front of field names (`"3."` for the fourth entry of a load). The `id`
/// is the body's, or empty when it has none: the caller assigns one.
///
/// # Errors
/// Every problem found.
pub fn parse_package(body: &Value, prefix: &str) -> std::result::Result<Package, Vec<FieldError>> {
    let f = |name: &str| format!("{prefix}{name}");
    let Some(obj) = body.as_object() else {
        return Err(vec![invalid(
            prefix.trim_end_matches('.').to_string(),
            "a package must be a JSON object".into(),
        )]);
    };
    let obj: Map<String, Value> = obj
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut errs = Vec::new();
    for key in obj.keys() {
        let known = STRING_FIELDS.contains(&key.as_str())
            || NUMBER_FIELDS.contains(&key.as_str())
            || BOOL_FIELDS.contains(&key.as_str())
            || key == "disks";
        if !known {
            errs.push(invalid(
                f(key),
                format!("{} is an unsupported field", f(key)),
            ));
        }
    }
    for &key in REQUIRED {
        if !obj.contains_key(key) {
            errs.push(FieldError {
                field: f(key),
                code: "MissingParameter".into(),
                message: format!("{} is required", f(key)),
            });
        }
    }
    let string = |key: &str, max: usize, errs: &mut Vec<FieldError>| -> Option<String> {
        match obj.get(key)? {
            Value::String(s) if s.is_empty() => {
                errs.push(invalid(f(key), format!("{} must not be empty", f(key))));
                None
            }
            Value::String(s) if s.chars().count() > max => {
                errs.push(invalid(
                    f(key),
                    format!("{} must be at most {max} characters", f(key)),
                ));
                None
            }
            Value::String(s) => Some(s.clone()),
            _ => {
                errs.push(invalid(f(key), format!("{} must be a string", f(key))));
                None
            }
        }
    };
    let id = string("id", 36, &mut errs);
    if let Some(id) = id.as_deref().filter(|id| !manifest::is_uuid(id)) {
        errs.push(invalid(
            f("id"),
            format!("{} {id:?} is not a lowercase UUID", f("id")),
        ));
    }
    let name = string("name", MAX_NAME_LEN, &mut errs);
    if let Some(n) = &name {
        if n.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            errs.push(invalid(
                f("name"),
                format!(
                    "{} {n:?} must not contain whitespace, control characters or /",
                    f("name")
                ),
            ));
        } else if parses_as_uuid(n) {
            errs.push(invalid(
                f("name"),
                format!(
                    "{} {n:?} must not be a UUID: /packages/:x reads a UUID as an id",
                    f("name")
                ),
            ));
        }
    }
    let version = string("version", MAX_VERSION_LEN, &mut errs);
    if let Some(v) = version
        .as_deref()
        .filter(|v| v.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        errs.push(invalid(
            f("version"),
            format!(
                "{} {v:?} must not contain whitespace or control characters",
                f("version")
            ),
        ));
    }
    let group = string("group", MAX_NAME_LEN, &mut errs);
    let description = string("description", MAX_TEXT_LEN, &mut errs);
    let brand = string("brand", MAX_NAME_LEN, &mut errs);
    if let Some(b) = brand.as_deref().filter(|b| !BRANDS.contains(b)) {
        errs.push(invalid(
            f("brand"),
            format!("{} {b:?} is not one of {}", f("brand"), BRANDS.join(", ")),
        ));
    }
    let number = |key: &str, errs: &mut Vec<FieldError>| -> Option<u64> {
        let v = obj.get(key)?;
        let n = v.as_u64();
        if n.is_none() {
            errs.push(invalid(
                f(key),
                format!("{} must be a non-negative integer, got {v}", f(key)),
            ));
        }
        n
    };
    let memory = number("memory", &mut errs);
    let disk = number("disk", &mut errs);
    let swap = number("swap", &mut errs);
    let lwps = number("lwps", &mut errs);
    let vcpus = number("vcpus", &mut errs);
    let boolean = |key: &str, errs: &mut Vec<FieldError>| -> bool {
        match obj.get(key) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                errs.push(invalid(
                    f(key),
                    format!("{} must be a boolean, got {v}", f(key)),
                ));
                false
            }
        }
    };
    let flexible_disk = boolean("flexible_disk", &mut errs);
    let default = boolean("default", &mut errs);
    let disks = obj.get("disks").and_then(|v| {
        check_disks(v, &f("disks"), flexible_disk, disk, &mut errs);
        v.as_array().cloned()
    });
    match (id, name, version, memory, disk, swap, vcpus) {
        (id, Some(name), Some(version), Some(memory), Some(disk), Some(swap), Some(vcpus))
            if errs.is_empty() =>
        {
            Ok(Package {
                id: id.unwrap_or_default(),
                name,
                version,
                memory,
                disk,
                swap,
                lwps,
                vcpus,
                group,
                description,
                brand,
                flexible_disk,
                disks,
                default,
            })
        }
        _ => Err(errs),
    }
}

fn check_disks(
    v: &Value,
    field: &str,
    flexible: bool,
    disk: Option<u64>,
    errs: &mut Vec<FieldError>,
) {
    if !flexible {
        errs.push(FieldError {
            field: field.into(),
            code: "NotAllowed".into(),
            message: format!("{field} is only allowed with flexible_disk: true"),
        });
    }
    let Some(list) = v.as_array() else {
        errs.push(invalid(field.into(), format!("{field} must be an array")));
        return;
    };
    let mut remaining = 0;
    let mut total: u64 = 0;
    for (i, d) in list.iter().enumerate() {
        let p = format!("{field}.{i}");
        let Some(d) = d.as_object() else {
            errs.push(invalid(p.clone(), format!("{p} must be an object")));
            continue;
        };
        for k in d.keys().filter(|k| *k != "size") {
            errs.push(invalid(
                format!("{p}.{k}"),
                format!("{p}.{k} is an unsupported field"),
            ));
        }
        match d.get("size") {
            None => {}
            Some(Value::String(s)) if s == "remaining" => remaining += 1,
            Some(s) => match s.as_u64() {
                Some(n) => total = total.saturating_add(n),
                None => errs.push(invalid(
                    format!("{p}.size"),
                    format!(
                        "{p}.size must be a non-negative integer (MiB) or \"remaining\", got {s}"
                    ),
                )),
            },
        }
    }
    if remaining > 1 {
        errs.push(invalid(
            field.into(),
            format!("{field}: only one disk may have size \"remaining\""),
        ));
    }
    if let Some(disk) = disk.filter(|&d| total > d) {
        errs.push(invalid(
            field.into(),
            format!("{field}: the disks' sizes add up to {total} MiB, more than disk ({disk} MiB)"),
        ));
    }
}

/// Orders versions: parts split at `.`, `-` and `+`; numeric parts compare
/// as numbers, others as text, a missing part is lower. Total (ties fall
/// back to the plain strings), so "the latest version" is well defined.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let parts = |s: &str| -> Vec<String> { s.split(['.', '-', '+']).map(str::to_string).collect() };
    let (pa, pb) = (parts(a), parts(b));
    for i in 0..pa.len().max(pb.len()) {
        let ord = match (pa.get(i), pb.get(i)) {
            (Some(x), Some(y)) => match (x.parse::<u64>(), y.parse::<u64>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                (Ok(_), Err(_)) => Ordering::Greater,
                (Err(_), Ok(_)) => Ordering::Less,
                _ => x.cmp(y),
            },
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.cmp(b)
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, mid @ .., last] = parts.as_slice() else {
        return pattern == s;
    };
    if s.len() < first.len() + last.len() || !s.starts_with(first) || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for m in mid {
        match rest.find(m) {
            Some(i) => rest = &rest[i + m.len()..],
            None => return false,
        }
    }
    true
}

#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Glob(String),
    Number(u64),
    Bool(bool),
    Json(Value),
}

/// ListPackages filters: one per field, all must match. Strings take `*`
/// wildcards, numbers and booleans match exactly, `disks` matches its JSON
/// exactly. A package without the field never matches.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PackageFilter {
    conds: Vec<(String, Cond)>,
}

impl PackageFilter {
    /// Parses query pairs. Unlike ListImages, unknown parameters are refused:
    /// a misspelt filter must not silently list every package.
    ///
    /// # Errors
    /// `InvalidParameter` naming the first bad or repeated parameter.
    pub fn parse(pairs: &[(String, String)]) -> Result<PackageFilter> {
        let mut conds: Vec<(String, Cond)> = Vec::new();
        for (k, v) in pairs {
            if conds.iter().any(|(f, _)| f == k) {
                return Err(Error::param(k, "given more than once"));
            }
            let cond =
                if STRING_FIELDS.contains(&k.as_str()) {
                    Cond::Glob(v.clone())
                } else if NUMBER_FIELDS.contains(&k.as_str()) {
                    Cond::Number(v.parse().map_err(|_| {
                        Error::param(k, format!("{v:?} is not a non-negative integer"))
                    })?)
                } else if BOOL_FIELDS.contains(&k.as_str()) {
                    Cond::Bool(match v.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(Error::param(k, format!("{v:?} is not true or false"))),
                    })
                } else if k == "disks" {
                    Cond::Json(
                        serde_json::from_str(v)
                            .map_err(|e| Error::param(k, format!("{v:?} is not JSON: {e}")))?,
                    )
                } else {
                    return Err(Error::param(
                        k,
                        format!(
                            "unknown filter; packages can be filtered on {}, {}, {} and disks",
                            STRING_FIELDS.join(", "),
                            NUMBER_FIELDS.join(", "),
                            BOOL_FIELDS.join(", ")
                        ),
                    ));
                };
            conds.push((k.clone(), cond));
        }
        Ok(PackageFilter { conds })
    }

    pub fn matches(&self, p: &Package) -> bool {
        if self.conds.is_empty() {
            return true;
        }
        let v = serde_json::to_value(p).unwrap_or_default();
        self.conds.iter().all(|(field, cond)| {
            let Some(actual) = v.get(field) else {
                return false;
            };
            match cond {
                Cond::Glob(pat) => actual.as_str().is_some_and(|s| glob(pat, s)),
                Cond::Number(n) => actual.as_u64() == Some(*n),
                Cond::Bool(b) => actual.as_bool() == Some(*b),
                Cond::Json(j) => actual == j,
            }
        })
    }
}

/// The answer to a load: the ids by what happened to them, and every
/// package of the file as now stored, in file order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    pub packages: Vec<Package>,
}

fn not_found(x: &str) -> Error {
    Error::ResourceNotFound(format!("package {x:?} not found"))
}

/// A path id for PUT/DELETE: only a lowercase uuid can name a package.
fn check_id(id: &str) -> Result<()> {
    if manifest::is_uuid(id) {
        Ok(())
    } else {
        Err(Error::ResourceNotFound(format!(
            "package {id:?} not found: packages are changed by id (a lowercase UUID)"
        )))
    }
}

fn exists(p: &Package, other: &Package) -> Error {
    Error::PackageExists(format!(
        "package {} version {} already exists (id {})",
        p.name, p.version, other.id
    ))
}

impl Service {
    /// Packages matching `filter`, by name, then version, then id.
    pub fn list_packages(&self, filter: &PackageFilter) -> Vec<Arc<Package>> {
        let mut out: Vec<_> = self
            .packages
            .all()
            .into_iter()
            .filter(|p| filter.matches(p))
            .collect();
        out.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then_with(|| version_cmp(&a.version, &b.version))
                .then_with(|| a.id.cmp(&b.id))
        });
        out
    }

    /// A package by id (when `x` is a uuid) or by name (the highest version).
    ///
    /// # Errors
    /// `ResourceNotFound`.
    pub fn get_package(&self, x: &str) -> Result<Arc<Package>> {
        if let Ok(u) = uuid::Uuid::parse_str(x) {
            return self
                .packages
                .get(&u.hyphenated().to_string())
                .ok_or_else(|| not_found(x));
        }
        self.packages
            .all()
            .into_iter()
            .filter(|p| p.name == x)
            .max_by(|a, b| version_cmp(&a.version, &b.version).then_with(|| b.id.cmp(&a.id)))
            .ok_or_else(|| not_found(x))
    }

    /// The other package with `p`'s name and version, if any.
    fn same_name_version(&self, p: &Package) -> Option<Arc<Package>> {
        self.packages
            .all()
            .into_iter()
            .find(|o| o.id != p.id && o.name == p.name && o.version == p.version)
    }

    fn store_package(&self, p: Package) -> Result<Arc<Package>> {
        let id = p.id.clone();
        self.packages
            .put(p)
            .map_err(|e| Error::io(&format!("storing package {id}"), e))
    }

    /// CreatePackage. The body may carry an `id` (a bootstrap that wants
    /// stable ids); otherwise one is assigned.
    ///
    /// # Errors
    /// `ValidationFailed`; `PackageExists` for a taken id or name+version.
    pub async fn create_package(self: &Arc<Self>, body: Value) -> Result<Arc<Package>> {
        let mut p = parse_package(&body, "").map_err(Error::validation)?;
        self.mutate(move |svc| {
            if p.id.is_empty() {
                p.id = uuid::Uuid::new_v4().to_string();
            } else if svc.packages.get(&p.id).is_some() {
                return Err(Error::PackageExists(format!(
                    "package {} already exists",
                    p.id
                )));
            }
            if let Some(other) = svc.same_name_version(&p) {
                return Err(exists(&p, &other));
            }
            svc.store_package(p)
        })
        .await
    }

    /// UpdatePackage (`PUT`): the body replaces the whole package; an `id`
    /// in it must be the path's.
    ///
    /// # Errors
    /// `ResourceNotFound`, `ValidationFailed`, `PackageExists`.
    pub async fn replace_package(
        self: &Arc<Self>,
        id: String,
        body: Value,
    ) -> Result<Arc<Package>> {
        check_id(&id)?;
        let mut p = parse_package(&body, "").map_err(Error::validation)?;
        if !p.id.is_empty() && p.id != id {
            return Err(Error::validation(vec![invalid(
                "id".into(),
                format!(
                    "id {} in the body does not match the id in the path ({id})",
                    p.id
                ),
            )]));
        }
        p.id = id;
        self.mutate(move |svc| {
            let cur = svc.packages.get(&p.id).ok_or_else(|| not_found(&p.id))?;
            if let Some(other) = svc.same_name_version(&p) {
                return Err(exists(&p, &other));
            }
            if *cur == p {
                return Ok(cur);
            }
            svc.store_package(p)
        })
        .await
    }

    /// DeletePackage.
    ///
    /// # Errors
    /// `ResourceNotFound`.
    pub async fn delete_package(self: &Arc<Self>, id: String) -> Result<()> {
        check_id(&id)?;
        self.mutate(move |svc| {
            svc.packages.get(&id).ok_or_else(|| not_found(&id))?;
            svc.packages
                .delete(&id)
                .map_err(|e| Error::io(&format!("deleting package {id}"), e))
        })
        .await
    }

    /// The bootstrap load: creates or updates every package of `body` (a
    /// JSON array) in one durable step, or changes nothing. An entry with an
    /// `id` is that package; one without is matched to the stored package of
    /// the same name and version, else created. Running the same load twice
    /// changes nothing the second time. Packages not in the body are kept.
    ///
    /// # Errors
    /// `ValidationFailed` listing every problem of every entry (fields
    /// prefixed with the entry's index), including duplicates within the
    /// body; `PackageExists` when an entry would take the name and version
    /// of another stored package.
    pub async fn load_packages(self: &Arc<Self>, body: Value) -> Result<LoadSummary> {
        let Some(items) = body.as_array() else {
            return Err(Error::validation(vec![invalid(
                String::new(),
                "a package load must be a JSON array of packages".into(),
            )]));
        };
        let mut errs = Vec::new();
        let mut pkgs = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match parse_package(item, &format!("{i}.")) {
                Ok(p) => pkgs.push(p),
                Err(e) => errs.extend(e),
            }
        }
        if errs.is_empty() {
            let mut ids = HashMap::new();
            let mut names = HashMap::new();
            for (i, p) in pkgs.iter().enumerate() {
                if !p.id.is_empty() {
                    if let Some(j) = ids.insert(p.id.clone(), i) {
                        errs.push(invalid(
                            format!("{i}.id"),
                            format!("{i}.id {} is also the id of entry {j}", p.id),
                        ));
                    }
                }
                if let Some(j) = names.insert((p.name.clone(), p.version.clone()), i) {
                    errs.push(invalid(
                        format!("{i}.name"),
                        format!(
                            "{i}: package {} version {} is also entry {j}",
                            p.name, p.version
                        ),
                    ));
                }
            }
        }
        if !errs.is_empty() {
            let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
            return Err(Error::Validation(
                format!(
                    "invalid package load, nothing was changed: problems with {}",
                    fields.join(", ")
                ),
                errs,
            ));
        }
        self.mutate(move |svc| svc.load_locked(pkgs)).await
    }

    fn load_locked(&self, mut pkgs: Vec<Package>) -> Result<LoadSummary> {
        let stored = self.packages.all();
        for p in pkgs.iter_mut().filter(|p| p.id.is_empty()) {
            p.id = stored
                .iter()
                .find(|o| o.name == p.name && o.version == p.version)
                .map(|o| o.id.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        }
        // An entry matched by name and version may have been given the id
        // that another entry names explicitly.
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, p) in pkgs.iter().enumerate() {
            if let Some(j) = ids.insert(p.id.as_str(), i) {
                let (a, b) = (&pkgs[j], p);
                return Err(Error::validation(vec![invalid(
                    format!("{i}.id"),
                    format!(
                        "entries {j} ({} {}) and {i} ({} {}) would both be package {}",
                        a.name, a.version, b.name, b.version, p.id
                    ),
                )]));
            }
        }
        // Name+version must stay unique across the stored packages the load
        // does not replace and the loaded ones.
        let replaced: HashSet<&str> = pkgs.iter().map(|p| p.id.as_str()).collect();
        for p in &pkgs {
            if let Some(other) = stored.iter().find(|o| {
                !replaced.contains(o.id.as_str()) && o.name == p.name && o.version == p.version
            }) {
                return Err(exists(p, other));
            }
        }
        let mut summary = LoadSummary {
            created: vec![],
            updated: vec![],
            unchanged: vec![],
            packages: pkgs.clone(),
        };
        let mut changed = Vec::new();
        for p in pkgs {
            match self.packages.get(&p.id) {
                None => summary.created.push(p.id.clone()),
                Some(cur) if *cur == p => {
                    summary.unchanged.push(p.id.clone());
                    continue;
                }
                Some(_) => summary.updated.push(p.id.clone()),
            }
            changed.push(p);
        }
        if !changed.is_empty() {
            self.packages
                .put_all(changed)
                .map_err(|e| Error::io("storing the loaded packages", e))?;
        }
        Ok(summary)
    }

    /// The fit of the package named by a `package=` list filter.
    ///
    /// # Errors
    /// `InvalidParameter` naming `package` when no package matches.
    pub fn package_fit_param(&self, x: &str) -> Result<PackageFit> {
        self.get_package(x)
            .map(|p| PackageFit::of(&p))
            .map_err(|_| Error::param("package", format!("no package has the id or name {x:?}")))
    }

    /// `GET /packages/:x/images`: the images `filter` lists that accept the
    /// package.
    ///
    /// # Errors
    /// `ResourceNotFound` for an unknown package; `filter`'s own errors.
    pub fn package_images(&self, x: &str, filter: &ListFilter) -> Result<Vec<Arc<Cached>>> {
        let p = self.get_package(x)?;
        let mut filter = filter.clone();
        filter.package = Some(p.id.clone());
        filter.fit = Some(PackageFit::of(&p));
        self.list_images(&filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"name": "g4-1G", "version": "1.0.0", "memory": 1024, "disk": 10240,
            "swap": 2048, "vcpus": 1})
    }

    fn fields(r: std::result::Result<Package, Vec<FieldError>>) -> Vec<(String, String)> {
        r.unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    #[test]
    fn minimal_package_gets_defaults() {
        let p = parse_package(&base(), "").unwrap();
        assert_eq!(p.id, "");
        assert!(!p.flexible_disk && !p.default);
        assert_eq!(p.lwps, None);
    }

    #[test]
    fn every_problem_is_reported() {
        let f = fields(parse_package(
            &json!({"name": "a b", "memory": -1, "disk": "10", "swap": 1.5, "vcpus": 1,
                "lwps": true, "brand": "solaris", "default": "yes", "id": "nope",
                "disks": [{"size": 1}], "extra": 1}),
            "",
        ));
        for want in [
            ("extra", "Invalid"),
            ("version", "MissingParameter"),
            ("id", "Invalid"),
            ("name", "Invalid"),
            ("brand", "Invalid"),
            ("memory", "Invalid"),
            ("disk", "Invalid"),
            ("swap", "Invalid"),
            ("lwps", "Invalid"),
            ("default", "Invalid"),
            ("disks", "NotAllowed"),
        ] {
            assert!(
                f.contains(&(want.0.to_string(), want.1.to_string())),
                "{want:?} not in {f:?}"
            );
        }
        let f = fields(parse_package(&json!({}), "2."));
        assert_eq!(f.len(), REQUIRED.len());
        assert!(f
            .iter()
            .all(|(f, c)| f.starts_with("2.") && c == "MissingParameter"));
        let mut uuid_name = base();
        uuid_name["name"] = json!("11111111-1111-4111-8111-111111111111");
        assert_eq!(fields(parse_package(&uuid_name, ""))[0].0, "name");
    }

    #[test]
    fn disks_need_flexible_disk_and_fit_in_disk() {
        let mut p = base();
        p["flexible_disk"] = json!(true);
        p["disks"] = json!([{}, {"size": 4096}, {"size": "remaining"}]);
        assert!(parse_package(&p, "").is_ok());
        p["disks"] = json!([{"size": "remaining"}, {"size": "remaining"}]);
        assert_eq!(
            fields(parse_package(&p, "")),
            [("disks".into(), "Invalid".into())]
        );
        p["disks"] = json!([{"size": 20000}]);
        assert_eq!(
            fields(parse_package(&p, "")),
            [("disks".into(), "Invalid".into())]
        );
        p["disks"] = json!([{"size": -1, "bootable": true}]);
        assert_eq!(
            fields(parse_package(&p, "")),
            [
                ("disks.0.bootable".into(), "Invalid".into()),
                ("disks.0.size".into(), "Invalid".into())
            ]
        );
    }

    #[test]
    fn versions_order_numerically() {
        assert_eq!(version_cmp("1.10.0", "1.9.0"), Ordering::Greater);
        assert_eq!(version_cmp("1.0", "1.0.0"), Ordering::Less);
        assert_eq!(version_cmp("2", "10"), Ordering::Less);
        assert_eq!(version_cmp("1.0.0", "1.0.0"), Ordering::Equal);
        assert_eq!(version_cmp("1.0.a", "1.0.1"), Ordering::Less);
    }

    #[test]
    fn globs() {
        assert!(glob("foo*", "foobar"));
        assert!(glob("*bar", "foobar"));
        assert!(glob("f*o*r", "foobar"));
        assert!(glob("*", ""));
        assert!(glob("a*a", "aa"));
        assert!(!glob("a*a", "a"));
        assert!(!glob("foo", "foobar"));
        assert!(!glob("*baz*", "foobar"));
        assert!(glob("g4-*-1G", "g4-highcpu-1G"));
    }

    #[test]
    fn filters_parse_strictly_and_match() {
        let q = |s: &str| -> Vec<(String, String)> {
            form_urlencoded::parse(s.as_bytes()).into_owned().collect()
        };
        for (query, field) in [
            ("memory=lots", "memory"),
            ("memory=-1", "memory"),
            ("default=yes", "default"),
            ("disks=[", "disks"),
            ("memroy=1", "memroy"),
            ("name=a&name=b", "name"),
        ] {
            let e = PackageFilter::parse(&q(query)).unwrap_err();
            assert_eq!(e.body()["errors"][0]["field"], field, "{query}");
        }
        let p = parse_package(&base(), "").unwrap();
        let m = |s: &str| PackageFilter::parse(&q(s)).unwrap().matches(&p);
        assert!(m(""));
        assert!(m("name=g4*&memory=1024&default=false"));
        assert!(!m("name=g4*&memory=2048"));
        assert!(!m("group=*"), "absent fields never match");
        assert!(!m("flexible_disk=true"));
    }

    #[test]
    fn fit_checks_ram_and_brand() {
        let fit = PackageFit {
            memory: 1024,
            brand: Some("bhyve".into()),
        };
        let m = |r: Value| json!({"requirements": r}).as_object().unwrap().clone();
        assert!(fit.accepts(&Map::new()));
        assert!(fit.accepts(&m(json!({"min_ram": 1024, "max_ram": 1024}))));
        assert!(!fit.accepts(&m(json!({"min_ram": 2048}))));
        assert!(!fit.accepts(&m(json!({"max_ram": 512}))));
        assert!(fit.accepts(&m(json!({"brand": "bhyve"}))));
        assert!(!fit.accepts(&m(json!({"brand": "kvm"}))));
        let any = PackageFit {
            memory: 1024,
            brand: None,
        };
        assert!(any.accepts(&m(json!({"brand": "kvm"}))));
    }
}
