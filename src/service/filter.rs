//! ListImages query filters: parsing from query pairs (strict: a bad value is
//! an `InvalidParameter` naming the parameter) and matching against records.
//!
//! IMGAPI semantics (imgapi.md section 1): `name`/`version` with a `~` prefix
//! match a substring; `type` (and `os`) with a `!` prefix exclude; `state`
//! defaults to `active` and takes `all`; several `tag.KEY=VALUE` are ANDed;
//! `marker` is a uuid or a date and returns images published at or after it;
//! `sort` is `published_at[.asc|.desc]` (ascending by default);
//! `billing_tag` (may repeat) keeps images whose `billing_tags` hold every
//! one given; an `owner` that is not a UUID matches nothing. We break
//! ties by uuid so that paging with a uuid marker is stable. `package` (an id
//! or name) keeps only images whose requirements accept that package (our
//! addition; see `service::packages`). `account` and `channel` scope the
//! list as `service::visibility` says. Parameters this store does not use
//! (`inclAdminFields`, ...) are ignored, as IMGAPI ignores the ones it does
//! not know.

use super::visibility::{in_channel, listed_for, Channel};
use crate::error::{Error, Result};
use crate::manifest::{self, Manifest, STATES};
use crate::store::meta::{Cached, Fields, ImageRecord, Meta, Requirements, SortKey};
use crate::store::packages::Package;
use std::ops::Bound;
use std::sync::Arc;

pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    Exact(String),
    Substring(String),
    Not(String),
}

impl Match {
    fn parse(value: &str, allow_substring: bool, allow_not: bool) -> Match {
        if let (true, Some(s)) = (allow_substring, value.strip_prefix('~')) {
            Match::Substring(s.to_string())
        } else if let (true, Some(s)) = (allow_not, value.strip_prefix('!')) {
            Match::Not(s.to_string())
        } else {
            Match::Exact(value.to_string())
        }
    }

    fn matches(&self, actual: Option<&str>) -> bool {
        match self {
            Match::Exact(v) => actual == Some(v.as_str()),
            Match::Substring(v) => actual.is_some_and(|a| a.contains(v.as_str())),
            Match::Not(v) => actual != Some(v.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Marker {
    Uuid(String),
    Date(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListFilter {
    pub name: Option<Match>,
    pub version: Option<Match>,
    pub os: Option<Match>,
    pub type_: Option<Match>,
    /// `None` means every state (`state=all`).
    pub state: Option<String>,
    pub owner: Option<String>,
    pub public: Option<bool>,
    pub origin: Option<String>,
    pub tags: Vec<(String, String)>,
    /// `billing_tag` (may repeat): each must be in the image's
    /// `billing_tags`.
    pub billing_tags: Vec<String>,
    pub limit: Option<usize>,
    pub marker: Option<Marker>,
    pub descending: bool,
    /// The `package` parameter as given (an id or a name).
    pub package: Option<String>,
    /// What `package` resolved to; set by the service, which knows the
    /// packages. Only images that accept it are listed.
    pub fit: Option<PackageFit>,
    /// `account`: only the images this account may see are listed
    /// (`visibility::listed_for`). Taken as given, as IMGAPI does.
    pub account: Option<String>,
    /// The channel listed (see `visibility`); set by the service from the
    /// request's `channel`, which it resolves against the configuration.
    pub channel: Option<Channel>,
}

fn single<'a>(pairs: &'a [(String, String)], key: &str) -> Result<Option<&'a str>> {
    let mut found = pairs.iter().filter(|(k, _)| k == key);
    let first = found.next().map(|(_, v)| v.as_str());
    if found.next().is_some() {
        return Err(Error::param(key, "given more than once"));
    }
    Ok(first)
}

fn uuid_param(key: &str, v: &str) -> Result<String> {
    if manifest::is_uuid(v) {
        Ok(v.to_string())
    } else {
        Err(Error::param(key, format!("{v:?} is not a lowercase UUID")))
    }
}

impl ListFilter {
    /// Parses query pairs. Every filter may appear once, except `tag.*`.
    ///
    /// # Errors
    /// `InvalidParameter` naming the first bad parameter.
    pub fn parse(pairs: &[(String, String)]) -> Result<ListFilter> {
        let mut f = ListFilter {
            state: Some("active".into()),
            ..Default::default()
        };
        if let Some(v) = single(pairs, "name")? {
            f.name = Some(Match::parse(v, true, false));
        }
        if let Some(v) = single(pairs, "version")? {
            f.version = Some(Match::parse(v, true, false));
        }
        if let Some(v) = single(pairs, "os")? {
            f.os = Some(Match::parse(v, false, true));
        }
        if let Some(v) = single(pairs, "type")? {
            f.type_ = Some(Match::parse(v, false, true));
        }
        if let Some(v) = single(pairs, "state")? {
            f.state = match v {
                "all" => None,
                s if STATES.contains(&s) => Some(s.to_string()),
                _ => {
                    return Err(Error::param(
                        "state",
                        format!("{v:?} is not one of all, {}", STATES.join(", ")),
                    ))
                }
            };
        }
        if let Some(v) = single(pairs, "owner")? {
            // Not checked: an owner that is not a UUID owns nothing, and
            // IMGAPI answers an empty list.
            f.owner = Some(v.to_string());
        }
        if let Some(v) = single(pairs, "origin")? {
            f.origin = Some(uuid_param("origin", v)?);
        }
        if let Some(v) = single(pairs, "public")? {
            f.public = Some(match v {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(Error::param(
                        "public",
                        format!("{v:?} is not true or false"),
                    ))
                }
            });
        }
        if let Some(v) = single(pairs, "limit")? {
            f.limit = Some(match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(Error::param(
                        "limit",
                        format!("{v:?} is not an integer from 1 to {MAX_LIMIT}"),
                    ))
                }
            });
        }
        if let Some(v) = single(pairs, "marker")? {
            f.marker = Some(if uuid::Uuid::parse_str(v).is_ok() {
                Marker::Uuid(uuid_param("marker", v)?)
            } else if crate::time::parse(v).is_some() {
                Marker::Date(v.to_string())
            } else {
                return Err(Error::param(
                    "marker",
                    format!("{v:?} is neither a UUID nor an RFC 3339 date"),
                ));
            });
        }
        if let Some(v) = single(pairs, "sort")? {
            f.descending = match v {
                "published_at" | "published_at.asc" => false,
                "published_at.desc" => true,
                _ => {
                    return Err(Error::param(
                        "sort",
                        format!("{v:?} is not published_at, published_at.asc or published_at.desc"),
                    ))
                }
            };
        }
        if let Some(v) = single(pairs, "account")? {
            f.account = Some(v.to_string());
        }
        if let Some(v) = single(pairs, "package")? {
            if v.is_empty() {
                return Err(Error::param("package", "must be a package id or name"));
            }
            f.package = Some(v.to_string());
        }
        f.billing_tags = pairs
            .iter()
            .filter(|(k, _)| k == "billing_tag")
            .map(|(_, v)| v.clone())
            .collect();
        for (k, v) in pairs {
            if let Some(tag) = k.strip_prefix("tag.") {
                if tag.is_empty() {
                    return Err(Error::param(k, "tag name is empty"));
                }
                f.tags.push((tag.to_string(), v.clone()));
            }
        }
        Ok(f)
    }

    pub fn matches(&self, rec: &ImageRecord) -> bool {
        self.matches_fields(&rec.fields())
    }

    /// [`ListFilter::matches`] on the fields the store keeps parsed.
    pub fn matches_fields(&self, f: &Fields) -> bool {
        self.name
            .as_ref()
            .is_none_or(|m| m.matches(f.name.as_deref()))
            && self
                .version
                .as_ref()
                .is_none_or(|m| m.matches(f.version.as_deref()))
            && self.os.as_ref().is_none_or(|m| m.matches(f.os.as_deref()))
            && self
                .type_
                .as_ref()
                .is_none_or(|m| m.matches(f.type_.as_deref()))
            && self
                .state
                .as_deref()
                .is_none_or(|st| f.state.as_deref() == Some(st))
            && self
                .owner
                .as_deref()
                .is_none_or(|o| f.owner.as_deref() == Some(o))
            && self
                .origin
                .as_deref()
                .is_none_or(|o| f.origin.as_deref() == Some(o))
            && self.public.is_none_or(|p| f.public == Some(p))
            && self
                .account
                .as_deref()
                .is_none_or(|a| listed_for(f, a, self.state.as_deref()))
            && self.channel.as_ref().is_none_or(|c| in_channel(f, c))
            && self
                .billing_tags
                .iter()
                .all(|t| f.billing_tags.iter().any(|have| have == t))
            && self
                .fit
                .as_ref()
                .is_none_or(|fit| fit.fits(&f.requirements))
            && self.tags.iter().all(|(k, want)| {
                f.tags
                    .as_ref()
                    .and_then(|t| t.get(k))
                    .is_some_and(|v| match v {
                        serde_json::Value::String(s) => s == want,
                        other => {
                            serde_json::to_string(other).ok().as_deref() == Some(want.as_str())
                        }
                    })
            })
    }

    /// The page of `meta`'s images this filter selects, in list order: the
    /// same as [`ListFilter::apply`] on all of them.
    ///
    /// Walks the store's list-order index from the marker and stops once
    /// the page is full, so a page costs what it returns (plus the images
    /// the filters skip), not a sort of the whole store.
    ///
    /// # Errors
    /// A uuid marker that names no image.
    pub fn select(&self, meta: &Meta) -> Result<Vec<Arc<Cached>>> {
        let start = match &self.marker {
            None => None,
            Some(Marker::Date(d)) => Some((normalize_date(d), String::new())),
            Some(Marker::Uuid(u)) => Some(
                meta.sort_key(u)
                    .ok_or_else(|| Error::param("marker", format!("no image {u}")))?,
            ),
        };
        // Ascending, the page holds the images at or after the marker;
        // descending, those at or before it, and a date marker then takes
        // every image of that date (`apply`'s rules).
        let range: (Bound<SortKey>, Bound<SortKey>) = match (start, self.descending) {
            (None, _) => (Bound::Unbounded, Bound::Unbounded),
            (Some(s), false) => (Bound::Included(s), Bound::Unbounded),
            (Some((date, uuid)), true) if uuid.is_empty() => {
                // `date` followed by NUL is the first string after `date`.
                (
                    Bound::Unbounded,
                    Bound::Excluded((format!("{date}\0"), String::new())),
                )
            }
            (Some(s), true) => (Bound::Unbounded, Bound::Included(s)),
        };
        let limit = self.limit.unwrap_or(MAX_LIMIT);
        Ok(meta.with_sorted(|sorted| {
            let iter = sorted.range(range).map(|(_, c)| c);
            let iter: Box<dyn Iterator<Item = &Arc<Cached>>> = if self.descending {
                Box::new(iter.rev())
            } else {
                Box::new(iter)
            };
            iter.filter(|c| self.matches_fields(&c.fields))
                .take(limit)
                .cloned()
                .collect()
        }))
    }

    /// Filters, sorts and pages `all` (records that are not in a [`Meta`],
    /// such as a source's; and the reference [`ListFilter::select`] is
    /// tested against).
    ///
    /// # Errors
    /// A uuid marker that names no image.
    pub fn apply(&self, all: Vec<Arc<ImageRecord>>) -> Result<Vec<Arc<ImageRecord>>> {
        let key = |r: &ImageRecord| {
            (
                r.str_field("published_at").unwrap_or_default().to_string(),
                r.uuid().to_string(),
            )
        };
        let start = match &self.marker {
            None => None,
            Some(Marker::Date(d)) => Some((normalize_date(d), String::new())),
            Some(Marker::Uuid(u)) => {
                let rec = all
                    .iter()
                    .find(|r| r.uuid() == u)
                    .ok_or_else(|| Error::param("marker", format!("no image {u}")))?;
                Some(key(rec))
            }
        };
        let mut out: Vec<_> = all.into_iter().filter(|r| self.matches(r)).collect();
        out.sort_by_cached_key(|r| key(r));
        if self.descending {
            out.reverse();
        }
        if let Some(start) = start {
            out.retain(|r| {
                let k = key(r);
                if self.descending {
                    k <= start || (k.0 == start.0 && start.1.is_empty())
                } else {
                    k >= start
                }
            });
        }
        out.truncate(self.limit.unwrap_or(MAX_LIMIT));
        Ok(out)
    }
}

/// Dates compare as strings once they are in the server's own format.
fn normalize_date(d: &str) -> String {
    crate::time::normalize(d).unwrap_or_else(|| d.to_string())
}

/// What an image's requirements are checked against.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageFit {
    pub memory: u64,
    pub brand: Option<String>,
}

impl PackageFit {
    pub fn of(p: &Package) -> PackageFit {
        PackageFit {
            memory: p.memory,
            brand: p.brand.clone(),
        }
    }

    /// Whether the image with manifest `m` accepts the package (see
    /// `service::packages`).
    pub fn accepts(&self, m: &Manifest) -> bool {
        self.fits(&Requirements::of(m))
    }

    /// [`PackageFit::accepts`] on the parts of `requirements` it reads.
    pub fn fits(&self, reqs: &Requirements) -> bool {
        reqs.min_ram.is_none_or(|min| min <= self.memory)
            && reqs.max_ram.is_none_or(|max| max >= self.memory)
            && match (&self.brand, &reqs.brand) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(s.as_bytes()).into_owned().collect()
    }

    fn rec(uuid: &str, name: &str, published: &str, tags: serde_json::Value) -> Arc<ImageRecord> {
        Arc::new(ImageRecord {
            manifest: json!({"uuid": uuid, "name": name, "version": "1.0", "os": "smartos",
                "type": "zone-dataset", "state": "active", "public": false,
                "owner": "00000000-0000-0000-0000-000000000000",
                "published_at": published, "tags": tags})
            .as_object()
            .unwrap()
            .clone(),
            activated: true,
            content_md5: None,
            icon: None,
        })
    }

    #[test]
    fn parse_rejects_bad_values_naming_the_parameter() {
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=abc", "limit"),
            ("limit=1001", "limit"),
            ("state=bogus", "state"),
            ("public=yes", "public"),
            ("sort=name", "sort"),
            ("marker=yesterday", "marker"),
            ("name=a&name=b", "name"),
        ] {
            let e = ListFilter::parse(&q(query)).unwrap_err();
            assert_eq!(e.code(), "InvalidParameter", "{query}");
            assert_eq!(e.body()["errors"][0]["field"], field, "{query}");
        }
    }

    #[test]
    fn filters_match_imgapi_semantics() {
        let a = rec(
            "aaaaaaaa-0000-4000-8000-000000000000",
            "base-64",
            "2024-01-01T00:00:00.000Z",
            json!({"role": "db", "n": 3}),
        );
        let b = rec(
            "bbbbbbbb-0000-4000-8000-000000000000",
            "minimal",
            "2024-02-01T00:00:00.000Z",
            json!({}),
        );
        let all = vec![a.clone(), b.clone()];
        let run = |s: &str| -> Vec<String> {
            ListFilter::parse(&q(s))
                .unwrap()
                .apply(all.clone())
                .unwrap()
                .iter()
                .map(|r| r.name().unwrap().to_string())
                .collect()
        };
        assert_eq!(run(""), ["base-64", "minimal"]);
        assert_eq!(run("name=~64"), ["base-64"]);
        assert_eq!(run("name=base"), Vec::<String>::new());
        assert_eq!(run("type=!zone-dataset"), Vec::<String>::new());
        assert_eq!(run("tag.role=db"), ["base-64"]);
        assert_eq!(run("tag.role=db&tag.n=3"), ["base-64"]);
        assert_eq!(run("tag.role=db&tag.n=4"), Vec::<String>::new());
        assert_eq!(run("sort=published_at.desc"), ["minimal", "base-64"]);
        assert_eq!(run("limit=1"), ["base-64"]);
        assert_eq!(
            run("marker=bbbbbbbb-0000-4000-8000-000000000000"),
            ["minimal"]
        );
        assert_eq!(run("marker=2024-01-15T00:00:00Z"), ["minimal"]);
        assert_eq!(run("state=unactivated"), Vec::<String>::new());
        assert_eq!(run("public=false&os=smartos"), ["base-64", "minimal"]);
    }

    #[test]
    fn descending_markers_include_the_marker_and_a_whole_date() {
        let recs: Vec<_> = [
            (
                "aaaaaaaa-0000-4000-8000-000000000000",
                "a",
                "2024-01-01T00:00:00.000Z",
            ),
            (
                "bbbbbbbb-0000-4000-8000-000000000000",
                "b",
                "2024-02-01T00:00:00.000Z",
            ),
            (
                "cccccccc-0000-4000-8000-000000000000",
                "c",
                "2024-02-01T00:00:00.000Z",
            ),
            (
                "dddddddd-0000-4000-8000-000000000000",
                "d",
                "2024-03-01T00:00:00.000Z",
            ),
        ]
        .iter()
        .map(|(u, n, p)| rec(u, n, p, json!({})))
        .collect();
        let run = |s: &str| -> Vec<String> {
            ListFilter::parse(&q(s))
                .unwrap()
                .apply(recs.clone())
                .unwrap()
                .iter()
                .map(|r| r.name().unwrap().to_string())
                .collect()
        };
        assert_eq!(run("sort=published_at.desc"), ["d", "c", "b", "a"]);
        assert_eq!(
            run("sort=published_at.desc&marker=2024-02-01T00:00:00Z"),
            ["c", "b", "a"]
        );
        assert_eq!(
            run("sort=published_at.desc&marker=bbbbbbbb-0000-4000-8000-000000000000"),
            ["b", "a"]
        );
        assert_eq!(run("marker=2024-02-01T00:00:00Z&limit=2"), ["b", "c"]);
        assert_eq!(
            run("sort=published_at.desc&marker=2024-01-15T00:00:00Z"),
            ["a"]
        );
    }

    #[test]
    fn select_follows_changes_to_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(dir.path()).unwrap();
        let put = |u: &str, n: &str, p: &str| {
            meta.put((*rec(u, n, p, json!({}))).clone()).unwrap();
        };
        put(
            "aaaaaaaa-0000-4000-8000-000000000000",
            "a",
            "2024-01-01T00:00:00.000Z",
        );
        put(
            "bbbbbbbb-0000-4000-8000-000000000000",
            "b",
            "2024-02-01T00:00:00.000Z",
        );
        // A change of published_at moves the record in the list order.
        put(
            "aaaaaaaa-0000-4000-8000-000000000000",
            "a2",
            "2024-03-01T00:00:00.000Z",
        );
        let names = |s: &str| -> Vec<String> {
            ListFilter::parse(&q(s))
                .unwrap()
                .select(&meta)
                .unwrap()
                .iter()
                .map(|c| c.fields.name.clone().unwrap())
                .collect()
        };
        assert_eq!(names(""), ["b", "a2"]);
        let c = meta
            .get_cached("aaaaaaaa-0000-4000-8000-000000000000")
            .unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(c.json_line()).unwrap();
        assert_eq!(parsed["name"], "a2");
        assert!(c.json_line().ends_with(b"\n"));
        meta.delete("bbbbbbbb-0000-4000-8000-000000000000").unwrap();
        assert_eq!(names(""), ["a2"]);
        assert!(
            ListFilter::parse(&q("marker=bbbbbbbb-0000-4000-8000-000000000000"))
                .unwrap()
                .select(&meta)
                .is_err()
        );
    }

    /// Paging the store's list-order index gives what filtering, sorting
    /// and paging every record (`apply`, the rules ListImages always had)
    /// gives, for every combination of marker, limit, sort and filter,
    /// over records that share dates, lack one, or differ in state.
    #[test]
    fn select_pages_exactly_as_apply() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(dir.path()).unwrap();
        let dates = [
            None,
            Some("2024-01-01T00:00:00.000Z"),
            Some("2024-02-01T00:00:00.000Z"),
            Some("2024-02-01T00:00:00.000Z"),
            Some("2024-02-01T12:00:00.000Z"),
            Some("2024-03-01T00:00:00.000Z"),
        ];
        let mut uuids = Vec::new();
        for i in 0..30u32 {
            let uuid = format!(
                "{:08x}-0000-4000-8000-{:012}",
                i.wrapping_mul(2_654_435_761),
                i
            );
            let mut m = json!({"uuid": uuid, "name": format!("img-{}", i % 4),
                "version": format!("{}.0", i % 3), "os": if i % 3 == 0 { "linux" } else { "smartos" },
                "type": if i % 2 == 0 { "zone-dataset" } else { "zvol" },
                "state": STATES[i as usize % 3],
                "owner": format!("00000000-0000-4000-8000-{:012}", i % 2), "public": i % 2 == 0,
                "tags": {"role": format!("r{}", i % 2), "n": i % 5}});
            if let Some(d) = dates[i as usize % dates.len()] {
                m["published_at"] = json!(d);
            }
            if i % 7 == 0 {
                m["requirements"] = json!({"min_ram": 1024 * (i % 3), "brand": "bhyve"});
            }
            meta.put(ImageRecord {
                manifest: m.as_object().unwrap().clone(),
                activated: i % 3 != 1,
                content_md5: None,
                icon: None,
            })
            .unwrap();
            uuids.push(uuid);
        }
        let all = meta.all();
        let mut markers = vec![
            String::new(),
            "&marker=2024-02-01T00:00:00Z".to_string(),
            "&marker=2024-02-01T00:00:00.000Z".to_string(),
            "&marker=2024-02-01T01:00:00%2B01:00".to_string(),
            "&marker=2024-01-15T00:00:00Z".to_string(),
            "&marker=2023-01-01T00:00:00Z".to_string(),
            "&marker=2025-01-01T00:00:00Z".to_string(),
            "&marker=99999999-0000-4000-8000-000000000000".to_string(),
        ];
        markers.extend(uuids.iter().step_by(3).map(|u| format!("&marker={u}")));
        let fits = [
            None,
            Some(PackageFit {
                memory: 512,
                brand: Some("bhyve".into()),
            }),
            Some(PackageFit {
                memory: 4096,
                brand: Some("kvm".into()),
            }),
        ];
        let mut checked = 0;
        for filter in [
            "state=all",
            "",
            "state=disabled",
            "state=all&name=~img-1",
            "state=all&os=!linux&type=zvol",
            "state=all&tag.role=r1&tag.n=3",
            "state=all&public=true",
        ] {
            for sort in ["", "&sort=published_at", "&sort=published_at.desc"] {
                for limit in ["", "&limit=1", "&limit=4", "&limit=1000"] {
                    for marker in &markers {
                        for fit in &fits {
                            let query = format!("{filter}{sort}{limit}{marker}");
                            let mut f = ListFilter::parse(&q(&query)).unwrap();
                            f.fit = fit.clone();
                            let want = f.apply(all.clone()).map(|v| {
                                v.iter().map(|r| r.uuid().to_string()).collect::<Vec<_>>()
                            });
                            let got = f.select(&meta).map(|v| {
                                v.iter().map(|c| c.fields.uuid.clone()).collect::<Vec<_>>()
                            });
                            match (&want, &got) {
                                (Ok(w), Ok(g)) => assert_eq!(g, w, "{query} {fit:?}"),
                                (Err(w), Err(g)) => {
                                    assert_eq!(g.body(), w.body(), "{query}")
                                }
                                _ => panic!("{query}: {want:?} vs {got:?}"),
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 1000);
    }
}
