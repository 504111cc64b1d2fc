//! Campaign match rules compiled into matchers, and the attributes a resource offers them.

use std::collections::BTreeMap;

use globset::{GlobBuilder, GlobMatcher};

use crate::campaign::MatchSpec;
use crate::model::{Provider, ResourceKind};

/// Compile one glob (`*`, `?`, `[...]`); `*` crosses `/` so `prefix: "models/*"` reaches
/// nested keys.
pub fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("bad glob {pattern:?}: {}", e.kind()))
}

/// The attributes of a resource that rules match on.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub provider: Provider,
    pub account: &'a str,
    pub kind: ResourceKind,
    pub bucket: Option<&'a str>,
    /// The object key, for objects.
    pub object_key: Option<&'a str>,
    pub name: &'a str,
    pub tags: &'a BTreeMap<String, String>,
    /// The logical team key the mapping chose, for stage rules.
    pub key: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct Matcher {
    provider: Option<Provider>,
    account: Option<GlobMatcher>,
    kind: Option<ResourceKind>,
    bucket: Option<GlobMatcher>,
    prefix: Option<GlobMatcher>,
    name: Option<GlobMatcher>,
    tags: Vec<(String, GlobMatcher)>,
    key: Option<String>,
}

impl Matcher {
    pub fn compile(spec: &MatchSpec) -> Result<Matcher, String> {
        let opt = |p: &Option<String>| p.as_deref().map(glob).transpose();
        let prefix = spec
            .prefix
            .as_deref()
            .map(|p| glob(&format!("{p}*")).map_err(|_| format!("bad prefix glob {p:?}")))
            .transpose()?;
        let mut tags = Vec::new();
        for (k, v) in &spec.tag {
            tags.push((k.clone(), glob(v)?));
        }
        Ok(Matcher {
            provider: spec.provider,
            account: opt(&spec.account)?,
            kind: spec.kind,
            bucket: opt(&spec.bucket)?,
            prefix,
            name: opt(&spec.name)?,
            tags,
            key: spec.key.clone(),
        })
    }

    pub fn matches(&self, t: &Target<'_>) -> bool {
        if self.provider.is_some_and(|p| p != t.provider) {
            return false;
        }
        if self.kind.is_some_and(|k| k != t.kind) {
            return false;
        }
        if let Some(g) = &self.account {
            if !g.is_match(t.account) {
                return false;
            }
        }
        if let Some(g) = &self.bucket {
            if !t.bucket.is_some_and(|b| g.is_match(b)) {
                return false;
            }
        }
        if let Some(g) = &self.prefix {
            // A bucket has no key, so a prefix rule never matches the bucket itself.
            if !t.object_key.is_some_and(|k| g.is_match(k)) {
                return false;
            }
        }
        if let Some(g) = &self.name {
            if !g.is_match(t.name) {
                return false;
            }
        }
        for (k, g) in &self.tags {
            if !t.tags.get(k).is_some_and(|v| g.is_match(v)) {
                return false;
            }
        }
        if let Some(k) = &self.key {
            if t.key != Some(k.as_str()) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(
        bucket: &'a str,
        key: Option<&'a str>,
        tags: &'a BTreeMap<String, String>,
    ) -> Target<'a> {
        Target {
            provider: Provider::Aws,
            account: "default",
            kind: if key.is_some() {
                ResourceKind::S3Object
            } else {
                ResourceKind::S3Bucket
            },
            bucket: Some(bucket),
            object_key: key,
            name: key.unwrap_or(bucket),
            tags,
            key: None,
        }
    }

    #[test]
    fn bucket_glob_prefix_and_tags() {
        let tags: BTreeMap<_, _> = [("team".to_string(), "vision".to_string())].into();
        let none = BTreeMap::new();
        let m = Matcher::compile(&MatchSpec {
            bucket: Some("ml-fraud-*".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(m.matches(&target("ml-fraud-sandbox", None, &none)));
        assert!(!m.matches(&target("ml-vision", None, &none)));

        let m = Matcher::compile(&MatchSpec {
            prefix: Some("models/".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(m.matches(&target("b", Some("models/x/y.tar.gz"), &none)));
        assert!(!m.matches(&target("b", Some("data/models/x"), &none)));
        assert!(
            !m.matches(&target("b", None, &none)),
            "a prefix rule never matches a bucket"
        );

        let m = Matcher::compile(&MatchSpec {
            tag: [("team".to_string(), "vis*".to_string())].into(),
            ..Default::default()
        })
        .unwrap();
        assert!(m.matches(&target("b", None, &tags)));
        assert!(!m.matches(&target("b", None, &none)));
    }

    #[test]
    fn bad_glob_is_reported() {
        assert!(glob("ml-[").unwrap_err().contains("ml-["));
    }
}
