//! `rekey guard`: keep new ML infrastructure on the team keys. Reads Terraform plans or states
//! (`terraform show -json`) and CloudFormation templates (JSON or YAML), finds the resources
//! that hold ML data or serve models, maps each to its team key with the campaign's rules, and
//! reports every key attribute that is not on it. Keys are compared by ARN (AWS, aliases
//! resolved through KMS) or by resource name (Cloud KMS), never by alias text — except for a
//! key the same document creates, which has no ARN yet and counts as the team key when the
//! document gives it the team key's alias. docs/guard.md.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::campaign::LoadedCampaign;
use crate::error::RekeyError;
use crate::inventory::{map_key, pin_id, PinnedKeys};
use crate::matching::Target;
use crate::model::{KmsKey, Provider, ResourceKind};
use crate::providers::KeyRead;

/// What is wrong with a key attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// No key: the service encrypts with its own (SSE-S3, a SageMaker or Google default).
    MissingKey,
    /// A service-managed key named explicitly (`AES256`, `aws/s3`, an AWS managed key).
    ServiceManagedKey,
    /// The key of another team of the campaign.
    OtherTeamKey,
    /// A customer-managed key that is no team key of the campaign.
    WrongKey,
    /// An alias (or key id) that resolves to no key, or to another key than the team's.
    AliasMismatch,
    /// A key the document itself creates, under another alias than the team key's.
    NewKeyNotTeam,
    /// A key the guard cannot tell statically (a variable, an import, a value known after apply).
    UnresolvedKey,
}

impl Rule {
    pub const ALL: [Rule; 7] = [
        Rule::MissingKey,
        Rule::ServiceManagedKey,
        Rule::OtherTeamKey,
        Rule::WrongKey,
        Rule::AliasMismatch,
        Rule::NewKeyNotTeam,
        Rule::UnresolvedKey,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Rule::MissingKey => "missing-key",
            Rule::ServiceManagedKey => "service-managed-key",
            Rule::OtherTeamKey => "other-team-key",
            Rule::WrongKey => "wrong-key",
            Rule::AliasMismatch => "alias-mismatch",
            Rule::NewKeyNotTeam => "new-key-not-team",
            Rule::UnresolvedKey => "unresolved-key",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Rule::MissingKey => "The resource names no KMS key, so the service encrypts it with a key it manages, not the team's customer-managed key.",
            Rule::ServiceManagedKey => "The resource names a service-managed key (SSE-S3, aws/s3 or another AWS managed key) instead of the team's customer-managed key.",
            Rule::OtherTeamKey => "The resource is on another team's key of the campaign.",
            Rule::WrongKey => "The resource is on a customer-managed key that is not its team's key.",
            Rule::AliasMismatch => "The key is given by an alias or id that does not resolve to the team's key.",
            Rule::NewKeyNotTeam => "The resource uses a key created in the same code, which is not given the team key's alias.",
            Rule::UnresolvedKey => "The key cannot be told from the code (a variable, an imported value, or a value known only after apply).",
        }
    }

    /// The SARIF level: a key that cannot be told is a warning, the rest errors.
    pub fn level(self) -> &'static str {
        match self {
            Rule::UnresolvedKey => "warning",
            _ => "error",
        }
    }
}

/// How a key attribute names its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    Missing,
    ServiceManaged(String),
    /// An ARN, alias, alias ARN or key id (AWS), or a Cloud KMS key name.
    Literal(String),
    /// A key created in the same document (no ARN yet), with the alias the document gives it.
    NewKey {
        address: String,
        alias: Option<String>,
    },
    Unresolved(String),
}

/// A resource found in a document, with its key attributes.
#[derive(Debug, Clone)]
pub struct Found {
    pub file: String,
    pub line: Option<usize>,
    /// The Terraform address or the CloudFormation logical id.
    pub address: String,
    pub resource_type: String,
    pub provider: Provider,
    pub kind: ResourceKind,
    pub name: String,
    pub bucket: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// (attribute path, key).
    pub slots: Vec<(String, KeyRef)>,
    /// What the guard could not read of what maps the resource (a tag or name given by an
    /// expression): if no rule maps it, it is reported rather than passed.
    pub uncertain: Vec<String>,
}

/// One key attribute not on its team key.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub rule: Rule,
    pub level: &'static str,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub address: String,
    pub resource_type: String,
    pub name: String,
    pub attribute: String,
    pub team_key: String,
    /// The team key's ARN (AWS) or name (Cloud KMS).
    pub expected: String,
    /// What the attribute names, as resolved.
    pub found: String,
    pub message: String,
}

/// The result of a guard run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub files: usize,
    /// Resources the rules map to a team key, and how many of them are on it throughout.
    pub checked: usize,
    pub compliant: usize,
    /// Resources that hold ML data but no rule of the campaign maps (or whose team key has no
    /// key for their cloud).
    pub not_mapped: Vec<String>,
    /// Resource types the guard does not know, with how many of each (ignored).
    pub ignored: BTreeMap<String, usize>,
    pub findings: Vec<Finding>,
}

fn bad(file: &str, why: impl std::fmt::Display) -> RekeyError {
    RekeyError::usage(
        format!("{file}: {why}"),
        "pass `terraform show -json PLANFILE` output, or a CloudFormation template (JSON or YAML)",
    )
}

/// Read one document: its ML resources and the unknown types it holds.
pub fn read(
    path: &Path,
    region: &str,
) -> Result<(Vec<Found>, BTreeMap<String, usize>), RekeyError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| bad(&file, e))?;
    let doc: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| bad(&file, format!("not JSON: {e}")))?
    } else {
        let y: serde_yaml::Value =
            serde_yaml::from_str(&text).map_err(|e| bad(&file, format!("not YAML: {e}")))?;
        yaml_to_json(y)
    };
    if doc.get("format_version").is_some()
        && (doc.get("planned_values").is_some()
            || doc.get("values").is_some()
            || doc.get("terraform_version").is_some())
    {
        let major = doc["format_version"]
            .as_str()
            .unwrap_or("")
            .split('.')
            .next();
        if major != Some("1") {
            return Err(bad(
                &file,
                format!(
                    "Terraform JSON format {} is not supported (major version 1 is)",
                    doc["format_version"]
                ),
            ));
        }
        return Ok(terraform(&doc, &file, &text));
    }
    if doc.get("Resources").is_some_and(Value::is_object) {
        return Ok(cloudformation(&doc, &file, &text, region));
    }
    Err(bad(
        &file,
        "neither a Terraform JSON plan or state (format_version, planned_values) nor a CloudFormation template (Resources)",
    ))
}

/// YAML (CloudFormation's short forms included: `!Ref X`, `!GetAtt A.B`, `!Sub …`) as JSON.
fn yaml_to_json(y: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match y {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(v) => Value::Array(v.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let k = match k {
                        Y::String(s) => s,
                        other => serde_yaml::to_string(&other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    (k, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = yaml_to_json(t.value);
            let (name, inner) = match (tag, inner) {
                ("Ref", v) => ("Ref".to_string(), v),
                ("GetAtt", Value::String(s)) => (
                    "Fn::GetAtt".to_string(),
                    Value::Array(
                        s.splitn(2, '.')
                            .map(|p| Value::String(p.to_string()))
                            .collect(),
                    ),
                ),
                (other, v) => (format!("Fn::{other}"), v),
            };
            serde_json::json!({ name: inner })
        }
    }
}

/// The 1-based line where `needle` first occurs.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg.parse::<usize>() {
            Ok(i) => cur.get(i)?,
            Err(_) => cur.get(*seg)?,
        };
    }
    Some(cur)
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// A Terraform resource's tags or labels as the provider applies them: the provider's default
/// tags (`tags_all`) and labels (`effective_labels`, `terraform_labels`) included.
fn tf_tags(values: &Value, attr: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let merged: &[&str] = if attr == "labels" {
        &["effective_labels", "terraform_labels", "labels"]
    } else {
        &["tags_all", "tags"]
    };
    for a in merged {
        out.extend(string_map(values.get(*a)));
    }
    out
}

/// A name known only after apply but built from a known prefix (`bucket_prefix`): the prefix
/// and the 26 digits Terraform appends, as a glob sees it.
fn prefixed(prefix: &str) -> String {
    format!("{prefix}{}", "0".repeat(26))
}

/// A key named literally: an AWS managed key's alias is service-managed.
fn literal(s: &str) -> KeyRef {
    if s.starts_with("alias/aws/") || s.contains(":alias/aws/") {
        KeyRef::ServiceManaged(s.to_string())
    } else {
        KeyRef::Literal(s.to_string())
    }
}

/// Where a Terraform resource type keeps its keys: (kind, provider, name attribute, tags
/// attribute, [(block that must be present, key attribute path)]).
type Slots = &'static [(Option<&'static str>, &'static [&'static str])];
fn terraform_kind(t: &str) -> Option<(ResourceKind, Provider, &'static str, &'static str, Slots)> {
    use Provider::{Aws, Gcp};
    use ResourceKind as K;
    Some(match t {
        "aws_sagemaker_endpoint_configuration" => (
            K::SagemakerEndpointConfig,
            Aws,
            "name",
            "tags",
            &[
                (None, &["kms_key_arn"]),
                (
                    Some("data_capture_config"),
                    &["data_capture_config", "0", "kms_key_id"],
                ),
                (
                    Some("async_inference_config"),
                    &[
                        "async_inference_config",
                        "0",
                        "output_config",
                        "0",
                        "kms_key_id",
                    ],
                ),
            ],
        ),
        "aws_sagemaker_notebook_instance" => (
            K::SagemakerNotebookInstance,
            Aws,
            "name",
            "tags",
            &[(None, &["kms_key_id"])],
        ),
        "aws_sagemaker_domain" => (
            K::SagemakerDomain,
            Aws,
            "domain_name",
            "tags",
            &[(None, &["kms_key_id"])],
        ),
        "aws_sagemaker_feature_group" => (
            K::SagemakerFeatureGroup,
            Aws,
            "feature_group_name",
            "tags",
            &[
                (
                    Some("offline_store_config"),
                    &[
                        "offline_store_config",
                        "0",
                        "s3_storage_config",
                        "0",
                        "kms_key_id",
                    ],
                ),
                (
                    Some("online_store_config"),
                    &[
                        "online_store_config",
                        "0",
                        "security_config",
                        "0",
                        "kms_key_id",
                    ],
                ),
            ],
        ),
        "google_storage_bucket" => (
            K::GcsBucket,
            Gcp,
            "name",
            "labels",
            &[(None, &["encryption", "0", "default_kms_key_name"])],
        ),
        "google_vertex_ai_endpoint" => (
            K::VertexEndpoint,
            Gcp,
            "name",
            "labels",
            &[(None, &["encryption_spec", "0", "kms_key_name"])],
        ),
        "google_vertex_ai_dataset" => (
            K::VertexDataset,
            Gcp,
            "display_name",
            "labels",
            &[(None, &["encryption_spec", "0", "kms_key_name"])],
        ),
        "google_vertex_ai_model" | "google_vertex_ai_index" => (
            K::VertexModel,
            Gcp,
            "display_name",
            "labels",
            &[(None, &["encryption_spec", "0", "kms_key_name"])],
        ),
        "google_bigquery_dataset" => (
            K::BigqueryDataset,
            Gcp,
            "dataset_id",
            "labels",
            &[(
                None,
                &["default_encryption_configuration", "0", "kms_key_name"],
            )],
        ),
        _ => return None,
    })
}

/// Types the guard reads for what they tell about others (not counted as unknown).
const TERRAFORM_HELPERS: &[&str] = &[
    "aws_kms_key",
    "aws_kms_alias",
    "aws_s3_bucket_server_side_encryption_configuration",
    "google_kms_key_ring",
    "google_kms_crypto_key",
];

struct TfDoc<'a> {
    /// Planned (or state) resources by address.
    resources: Vec<&'a Value>,
    by_address: HashMap<String, &'a Value>,
    /// Configuration expressions by address (instance keys removed).
    config: HashMap<String, &'a Value>,
}

fn tf_resources<'a>(module: &'a Value, out: &mut Vec<&'a Value>) {
    if let Some(rs) = module.get("resources").and_then(Value::as_array) {
        out.extend(rs.iter().filter(|r| r["mode"] != "data"));
    }
    if let Some(children) = module.get("child_modules").and_then(Value::as_array) {
        for c in children {
            tf_resources(c, out);
        }
    }
}

fn tf_config<'a>(module: &'a Value, prefix: &str, out: &mut HashMap<String, &'a Value>) {
    if let Some(rs) = module.get("resources").and_then(Value::as_array) {
        for r in rs {
            if let (Some(a), Some(e)) = (r["address"].as_str(), r.get("expressions")) {
                out.insert(format!("{prefix}{a}"), e);
            }
        }
    }
    if let Some(calls) = module.get("module_calls").and_then(Value::as_object) {
        for (name, call) in calls {
            let inner = format!("{prefix}module.{name}.");
            // A module's input variables, as `module.NAME.var.X`: their expressions refer
            // to the calling module.
            if let Some(args) = call.get("expressions").and_then(Value::as_object) {
                for (var, e) in args {
                    out.insert(format!("{inner}var.{var}"), e);
                }
            }
            if let Some(m) = call.get("module") {
                tf_config(m, &inner, out);
            }
        }
    }
}

/// Whether a reference is the resource itself of another reference in the list (Terraform
/// lists `aws_kms_key.k.arn` and `aws_kms_key.k`, `var.x` and `var.x.y`).
fn is_attribute_of_key(r: &str, refs: &[String]) -> bool {
    refs.iter()
        .any(|o| o != r && (o.starts_with(&format!("{r}.")) || r.starts_with(&format!("{o}."))))
}

/// `module.a["x"].module.b[0].aws_s3_bucket.c[1]` → (`module.a.module.b.`, `aws_s3_bucket.c`).
fn tf_split(address: &str) -> (String, String) {
    let mut parts: Vec<String> = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for ch in address.chars() {
        match ch {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => parts.push(std::mem::take(&mut cur)),
            c if depth == 0 => cur.push(c),
            _ => {}
        }
    }
    parts.push(cur);
    let n = parts.len();
    let prefix: String = parts[..n.saturating_sub(2)]
        .iter()
        .map(|p| format!("{p}."))
        .collect();
    (prefix, parts[n.saturating_sub(2)..].join("."))
}

impl<'a> TfDoc<'a> {
    fn expressions(&self, address: &str) -> Option<&'a Value> {
        let (prefix, local) = tf_split(address);
        self.config.get(&format!("{prefix}{local}")).copied()
    }

    /// The resource addresses (with the module prefix of `from`) an expression refers to.
    fn references(&self, from: &str, expr: Option<&Value>) -> Vec<String> {
        let (prefix, _) = tf_split(from);
        expr.and_then(|e| e.get("references"))
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .filter_map(Value::as_str)
                    .map(|r| format!("{prefix}{r}"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The planned resource a reference (`aws_kms_key.k.arn`) names.
    fn referenced(&self, reference: &str) -> Option<(&'a Value, String)> {
        let mut parts: Vec<&str> = reference.split('.').collect();
        while parts.len() >= 2 {
            let addr = parts.join(".");
            if let Some(r) = self.by_address.get(&addr) {
                return Some((r, addr));
            }
            // A resource with count / for_each: its first instance by address (each instance
            // is a key of the same configuration).
            if let Some((a, r)) = self
                .by_address
                .iter()
                .filter(|(a, _)| a.starts_with(&format!("{addr}[")))
                .min_by(|x, y| x.0.cmp(y.0))
            {
                return Some((r, a.clone()));
            }
            parts.pop();
        }
        None
    }

    /// The alias a Terraform document gives a key it creates.
    fn alias_of(&self, key_address: &str) -> Option<String> {
        self.resources
            .iter()
            .filter(|r| r["type"] == "aws_kms_alias")
            .find(|r| {
                let addr = r["address"].as_str().unwrap_or_default();
                self.references(
                    addr,
                    self.expressions(addr).and_then(|e| e.get("target_key_id")),
                )
                .iter()
                .any(|x| x == key_address || x.starts_with(&format!("{key_address}.")))
            })
            .and_then(|r| r["values"]["name"].as_str().map(str::to_string))
    }

    /// A key named by a string: an alias the document itself defines (or moves) is followed
    /// to the key the document gives it, not to the one it names today.
    fn named(&self, s: &str) -> KeyRef {
        let alias = match s.split_once(":alias/") {
            Some((_, a)) => format!("alias/{a}"),
            None if s.starts_with("alias/") => s.to_string(),
            None => return literal(s),
        };
        let defined = self
            .resources
            .iter()
            .find(|r| r["type"] == "aws_kms_alias" && r["values"]["name"].as_str() == Some(&alias));
        match defined {
            Some(r) => self.alias_target(r).unwrap_or_else(|| literal(s)),
            None => literal(s),
        }
    }

    /// The key an alias resource of the document targets.
    fn alias_target(&self, alias: &Value) -> Option<KeyRef> {
        let name = alias["values"]["name"].as_str().map(str::to_string);
        if let Some(t) = alias["values"]["target_key_id"]
            .as_str()
            .filter(|t| !t.is_empty())
        {
            return Some(literal(t));
        }
        let addr = alias["address"].as_str().unwrap_or_default();
        for k in self.references(
            addr,
            self.expressions(addr).and_then(|e| e.get("target_key_id")),
        ) {
            if let Some((key, kaddr)) = self.referenced(&k) {
                if key["type"] == "aws_kms_key" {
                    return Some(match key["values"]["arn"].as_str() {
                        Some(arn) => KeyRef::Literal(arn.to_string()),
                        None => KeyRef::NewKey {
                            address: kaddr,
                            alias: name,
                        },
                    });
                }
            }
        }
        None
    }

    /// The key an attribute of a resource names.
    fn key_ref(&self, resource: &Value, path: &[&str]) -> KeyRef {
        if let Some(s) = at(&resource["values"], path)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            return self.named(s);
        }
        let addr = resource["address"].as_str().unwrap_or_default();
        match self.expressions(addr).and_then(|e| at(e, path)) {
            Some(expr) => self.resolve(&tf_split(addr).0, expr, 0),
            None => KeyRef::Missing,
        }
    }

    /// The key an expression in the module at `prefix` names: a key or alias resource of the
    /// document, through module input variables to the module that passes them.
    fn resolve(&self, prefix: &str, expr: &Value, depth: usize) -> KeyRef {
        let refs: Vec<String> = expr
            .get("references")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(|r| format!("{prefix}{r}"))
                    .collect()
            })
            .unwrap_or_default();
        // Every key the expression may name: one, or the guard cannot tell which (a
        // conditional, a lookup).
        let mut keys: Vec<KeyRef> = Vec::new();
        for r in &refs {
            if let Some(k) = self.resolve_reference(r) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
                continue;
            }
            if let (Some(var), true) = (self.config.get(r), depth < 16) {
                let parent = prefix
                    .trim_end_matches('.')
                    .rsplitn(3, '.')
                    .nth(2)
                    .map(|p| format!("{p}."))
                    .unwrap_or_default();
                match self.resolve(&parent, var, depth + 1) {
                    KeyRef::Unresolved(_) => {}
                    k if !keys.contains(&k) => keys.push(k),
                    _ => {}
                }
            }
        }
        // A reference the guard cannot follow (a variable, a data source, a local) beside a
        // key it can: which one applies is decided at apply time.
        let unfollowed = refs.iter().any(|r| {
            self.referenced(r).is_none()
                && !self.config.contains_key(r)
                && !is_attribute_of_key(r, &refs)
        });
        match (keys.len(), unfollowed) {
            (1, false) => return keys.remove(0),
            (0, _) => {}
            _ => {
                return KeyRef::Unresolved(format!("one of several keys ({})", refs.join(", ")));
            }
        }
        match expr.get("constant_value") {
            Some(Value::String(s)) if !s.is_empty() => self.named(s),
            Some(Value::Null) | None if refs.is_empty() => KeyRef::Missing,
            _ => KeyRef::Unresolved(if refs.is_empty() {
                "a value known only after apply".into()
            } else {
                refs.join(", ")
            }),
        }
    }

    /// The key a reference to a resource of the document names, if it is a key or an alias.
    fn resolve_reference(&self, r: &str) -> Option<KeyRef> {
        let (target, taddr) = self.referenced(r)?;
        match target["type"].as_str().unwrap_or_default() {
            "aws_kms_key" => Some(match target["values"]["arn"].as_str() {
                Some(arn) => KeyRef::Literal(arn.to_string()),
                None => KeyRef::NewKey {
                    alias: self.alias_of(&taddr),
                    address: taddr,
                },
            }),
            "aws_kms_alias" => self
                .alias_target(target)
                .or_else(|| target["values"]["name"].as_str().map(literal)),
            "google_kms_crypto_key" => Some(match target["values"]["id"].as_str() {
                Some(id) => KeyRef::Literal(id.to_string()),
                None => KeyRef::NewKey {
                    address: taddr,
                    alias: None,
                },
            }),
            _ => None,
        }
    }
}

fn terraform(doc: &Value, file: &str, text: &str) -> (Vec<Found>, BTreeMap<String, usize>) {
    let root = doc
        .get("planned_values")
        .or_else(|| doc.get("values"))
        .map(|v| &v["root_module"]);
    let mut resources = Vec::new();
    if let Some(root) = root {
        tf_resources(root, &mut resources);
    }
    let mut config = HashMap::new();
    if let Some(c) = doc.get("configuration").map(|c| &c["root_module"]) {
        tf_config(c, "", &mut config);
    }
    let by_address = resources
        .iter()
        .filter_map(|r| r["address"].as_str().map(|a| (a.to_string(), *r)))
        .collect();
    let d = TfDoc {
        resources,
        by_address,
        config,
    };
    let mut found = Vec::new();
    let mut ignored = BTreeMap::new();
    for r in &d.resources {
        let t = r["type"].as_str().unwrap_or_default();
        let address = r["address"].as_str().unwrap_or_default().to_string();
        // The address as JSON writes it (`b[\"raw\"]` for a for_each key).
        let line = line_of(text, &serde_json::to_string(&address).unwrap_or_default());
        let values = &r["values"];
        if t == "aws_s3_bucket" {
            let mut uncertain = Vec::new();
            let name = match (values["bucket"].as_str(), values["bucket_prefix"].as_str()) {
                (Some(b), _) => b.to_string(),
                (None, Some(prefix)) => prefixed(prefix),
                (None, None) => {
                    uncertain.push("its bucket name is known only after apply".into());
                    address.clone()
                }
            };
            let slot = s3_bucket_slot(&d, r, &name);
            found.push(Found {
                file: file.into(),
                line,
                address,
                resource_type: t.into(),
                provider: Provider::Aws,
                kind: ResourceKind::S3Bucket,
                bucket: Some(name.clone()),
                name,
                tags: tf_tags(values, "tags"),
                uncertain,
                slots: vec![slot],
            });
            continue;
        }
        let Some((kind, provider, name_attr, tags_attr, slots)) = terraform_kind(t) else {
            if !TERRAFORM_HELPERS.contains(&t) {
                *ignored.entry(t.to_string()).or_default() += 1;
            }
            continue;
        };
        let name = values[name_attr].as_str().unwrap_or(&address).to_string();
        let slots = slots
            .iter()
            .filter(|(block, _)| {
                block.is_none_or(|b| {
                    values[b].as_array().is_some_and(|a| !a.is_empty())
                        || d.expressions(&address).is_some_and(|e| e.get(b).is_some())
                })
            })
            .map(|(_, path)| (path.join("."), d.key_ref(r, path)))
            .collect();
        found.push(Found {
            file: file.into(),
            line,
            address,
            resource_type: t.into(),
            provider,
            kind,
            bucket: (kind == ResourceKind::GcsBucket).then(|| name.clone()),
            name,
            tags: tf_tags(values, tags_attr),
            uncertain: if values[name_attr].is_string() {
                Vec::new()
            } else {
                vec![format!("its {name_attr} is known only after apply")]
            },
            slots,
        });
    }
    (found, ignored)
}

/// A Terraform bucket's default encryption: its separate configuration resource (by name or
/// by reference), or the inline block of older providers; none means SSE-S3.
fn s3_bucket_slot(d: &TfDoc<'_>, bucket: &Value, name: &str) -> (String, KeyRef) {
    let addr = bucket["address"].as_str().unwrap_or_default();
    let config = d.resources.iter().find(|r| {
        r["type"] == "aws_s3_bucket_server_side_encryption_configuration"
            && (r["values"]["bucket"].as_str() == Some(name) || {
                let a = r["address"].as_str().unwrap_or_default();
                d.references(a, d.expressions(a).and_then(|e| e.get("bucket")))
                    .iter()
                    .any(|x| x == addr || x.starts_with(&format!("{addr}.")))
            })
    });
    let (holder, base): (&Value, Vec<&str>) = match config {
        Some(c) => (
            c,
            vec!["rule", "0", "apply_server_side_encryption_by_default", "0"],
        ),
        None if bucket["values"]["server_side_encryption_configuration"]
            .as_array()
            .is_some_and(|a| !a.is_empty()) =>
        {
            (
                bucket,
                vec![
                    "server_side_encryption_configuration",
                    "0",
                    "rule",
                    "0",
                    "apply_server_side_encryption_by_default",
                    "0",
                ],
            )
        }
        None => {
            return (
                "server_side_encryption_configuration".into(),
                KeyRef::Missing,
            )
        }
    };
    let mut alg_path = base.clone();
    alg_path.push("sse_algorithm");
    let mut key_path = base;
    key_path.push("kms_master_key_id");
    let attribute = format!(
        "{}{}",
        if config.is_some() {
            format!("{}.", holder["address"].as_str().unwrap_or_default())
        } else {
            String::new()
        },
        key_path.join(".")
    );
    let algorithm = at(&holder["values"], &alg_path)
        .and_then(Value::as_str)
        .unwrap_or("AES256");
    if algorithm == "AES256" {
        return (attribute, KeyRef::ServiceManaged("SSE-S3 (AES256)".into()));
    }
    match d.key_ref(holder, &key_path) {
        KeyRef::Missing => (
            attribute,
            KeyRef::ServiceManaged(format!("{algorithm} with the AWS managed key aws/s3")),
        ),
        k => (attribute, k),
    }
}

/// Where a CloudFormation type keeps its keys: (kind, provider, name property, [(property
/// that must be present, key path)]).
type CfnSlots = &'static [(Option<&'static str>, &'static [&'static str])];
fn cfn_kind(t: &str) -> Option<(ResourceKind, &'static str, CfnSlots)> {
    use ResourceKind as K;
    Some(match t {
        "AWS::SageMaker::EndpointConfig" => (
            K::SagemakerEndpointConfig,
            "EndpointConfigName",
            &[
                (None, &["KmsKeyId"]),
                (
                    Some("DataCaptureConfig"),
                    &["DataCaptureConfig", "KmsKeyId"],
                ),
                (
                    Some("AsyncInferenceConfig"),
                    &["AsyncInferenceConfig", "OutputConfig", "KmsKeyId"],
                ),
            ],
        ),
        "AWS::SageMaker::NotebookInstance" => (
            K::SagemakerNotebookInstance,
            "NotebookInstanceName",
            &[(None, &["KmsKeyId"])],
        ),
        "AWS::SageMaker::Domain" => (K::SagemakerDomain, "DomainName", &[(None, &["KmsKeyId"])]),
        "AWS::SageMaker::FeatureGroup" => (
            K::SagemakerFeatureGroup,
            "FeatureGroupName",
            &[
                (
                    Some("OfflineStoreConfig"),
                    &["OfflineStoreConfig", "S3StorageConfig", "KmsKeyId"],
                ),
                (
                    Some("OnlineStoreConfig"),
                    &["OnlineStoreConfig", "SecurityConfig", "KmsKeyId"],
                ),
            ],
        ),
        _ => return None,
    })
}

struct CfnDoc<'a> {
    resources: &'a serde_json::Map<String, Value>,
    parameters: Option<&'a serde_json::Map<String, Value>>,
    /// The region a stack deploys to (`${AWS::Region}`): the campaign's.
    region: String,
}

impl CfnDoc<'_> {
    /// A string property as the stack will have it: a literal, a parameter's default, or a
    /// `Fn::Sub` of pseudo parameters and defaulted parameters (the account written as
    /// `000000000000`, so that a name glob sees its shape); `None` when it depends on more.
    fn text(&self, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Object(_) if v.get("Ref").is_some() => self.parameter(v["Ref"].as_str()?),
            Value::Object(_) => {
                let template = match v.get("Fn::Sub")? {
                    Value::String(s) => s.clone(),
                    Value::Array(a) if a.len() == 1 => a[0].as_str()?.to_string(),
                    _ => return None,
                };
                let mut out = String::new();
                let mut rest = template.as_str();
                while let Some(i) = rest.find("${") {
                    out.push_str(&rest[..i]);
                    let end = rest[i..].find('}')? + i;
                    let name = &rest[i + 2..end];
                    out.push_str(&match name {
                        "AWS::Region" => self.region.clone(),
                        "AWS::AccountId" => "000000000000".into(),
                        "AWS::Partition" => "aws".into(),
                        p => self.parameter(p)?,
                    });
                    rest = &rest[end + 1..];
                }
                out.push_str(rest);
                Some(out)
            }
            _ => None,
        }
    }

    fn parameter(&self, name: &str) -> Option<String> {
        self.parameters?.get(name)?["Default"]
            .as_str()
            .map(str::to_string)
    }

    /// The logical id an intrinsic names (`Ref X`, `Fn::GetAtt [X, Arn]`).
    fn target(v: &Value) -> Option<&str> {
        if let Some(r) = v.get("Ref").and_then(Value::as_str) {
            return Some(r);
        }
        match v.get("Fn::GetAtt")? {
            Value::Array(a) => a.first()?.as_str(),
            Value::String(s) => s.split('.').next(),
            _ => None,
        }
    }

    fn alias_of(&self, key_id: &str) -> Option<String> {
        self.resources
            .values()
            .filter(|r| r["Type"] == "AWS::KMS::Alias")
            .find(|r| Self::target(&r["Properties"]["TargetKeyId"]) == Some(key_id))
            .and_then(|r| r["Properties"]["AliasName"].as_str().map(str::to_string))
    }

    fn key_ref(&self, v: Option<&Value>) -> KeyRef {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return KeyRef::Missing;
        };
        if let Some(s) = v.as_str() {
            return literal(s);
        }
        if let Some(id) = Self::target(v) {
            if let Some(r) = self.resources.get(id) {
                return match r["Type"].as_str() {
                    Some("AWS::KMS::Key") => KeyRef::NewKey {
                        address: id.into(),
                        alias: self.alias_of(id),
                    },
                    Some("AWS::KMS::Alias") => {
                        let name = r["Properties"]["AliasName"].as_str().map(str::to_string);
                        match Self::target(&r["Properties"]["TargetKeyId"]) {
                            Some(k)
                                if self
                                    .resources
                                    .get(k)
                                    .is_some_and(|k| k["Type"] == "AWS::KMS::Key") =>
                            {
                                KeyRef::NewKey {
                                    address: k.into(),
                                    alias: name,
                                }
                            }
                            _ => name
                                .map_or(KeyRef::Unresolved(format!("Ref {id}")), |n| literal(&n)),
                        }
                    }
                    _ => KeyRef::Unresolved(format!("Ref {id}")),
                };
            }
            // A parameter: its default, the value a stack gets unless it is given another.
            if let Some(d) = self
                .parameters
                .and_then(|p| p.get(id))
                .and_then(|p| p["Default"].as_str())
            {
                return literal(d);
            }
            return KeyRef::Unresolved(format!("Ref {id}"));
        }
        // `Fn::Sub` of an alias ARN in this account and region: the alias decides.
        let sub = match v.get("Fn::Sub") {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(Value::Array(a)) => a.first().and_then(Value::as_str),
            _ => None,
        };
        if let Some(s) = sub {
            // The alias in this stack's account (`${AWS::AccountId}`) is the alias; in an
            // account written out, the ARN of that account's alias.
            let own = s.contains("${AWS::AccountId}");
            let arn = s
                .replace("${AWS::Partition}", "aws")
                .replace("${AWS::Region}", &self.region);
            if let Some(alias) = arn.split(":alias/").nth(1).filter(|a| !a.contains("${")) {
                if own {
                    return literal(&format!("alias/{alias}"));
                }
                if !arn.contains("${") {
                    return literal(&arn);
                }
            }
            return KeyRef::Unresolved(format!("Fn::Sub {s}"));
        }
        KeyRef::Unresolved(v.to_string())
    }
}

fn cloudformation(
    doc: &Value,
    file: &str,
    text: &str,
    region: &str,
) -> (Vec<Found>, BTreeMap<String, usize>) {
    let Some(resources) = doc["Resources"].as_object() else {
        return Default::default();
    };
    let d = CfnDoc {
        resources,
        parameters: doc.get("Parameters").and_then(Value::as_object),
        region: region.to_string(),
    };
    let mut found = Vec::new();
    let mut ignored = BTreeMap::new();
    for (id, r) in resources {
        let t = r["Type"].as_str().unwrap_or_default();
        let props = &r["Properties"];
        let line = line_of(text, &format!("\"{id}\"")).or_else(|| {
            text.lines()
                .position(|l| l.trim_start().starts_with(&format!("{id}:")))
                .map(|i| i + 1)
        });
        let mut uncertain = Vec::new();
        let mut tags = BTreeMap::new();
        for tag in props["Tags"].as_array().into_iter().flatten() {
            let Some(k) = tag["Key"].as_str() else {
                uncertain.push(format!("a tag key is {}", tag["Key"]));
                continue;
            };
            match d.text(&tag["Value"]) {
                Some(v) => {
                    tags.insert(k.to_string(), v);
                }
                None => uncertain.push(format!("tag {k} is {}", tag["Value"])),
            }
        }
        if t == "AWS::S3::Bucket" {
            let name = match &props["BucketName"] {
                Value::Null => {
                    uncertain.push("CloudFormation names the bucket".into());
                    id.clone()
                }
                v => d.text(v).unwrap_or_else(|| {
                    uncertain.push(format!("its name is {v}"));
                    id.clone()
                }),
            };
            let default = &props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
                ["ServerSideEncryptionByDefault"];
            let attribute = "BucketEncryption.ServerSideEncryptionConfiguration.0.ServerSideEncryptionByDefault.KMSMasterKeyID".to_string();
            let key = match default["SSEAlgorithm"].as_str() {
                None => KeyRef::Missing,
                Some("AES256") => KeyRef::ServiceManaged("SSE-S3 (AES256)".into()),
                Some(alg) => match d.key_ref(default.get("KMSMasterKeyID")) {
                    KeyRef::Missing => {
                        KeyRef::ServiceManaged(format!("{alg} with the AWS managed key aws/s3"))
                    }
                    k => k,
                },
            };
            found.push(Found {
                file: file.into(),
                line,
                address: id.clone(),
                resource_type: t.into(),
                provider: Provider::Aws,
                kind: ResourceKind::S3Bucket,
                bucket: Some(name.clone()),
                name,
                tags,
                slots: vec![(attribute, key)],
                uncertain,
            });
            continue;
        }
        let Some((kind, name_prop, slots)) = cfn_kind(t) else {
            if !matches!(t, "AWS::KMS::Key" | "AWS::KMS::Alias") {
                *ignored.entry(t.to_string()).or_default() += 1;
            }
            continue;
        };
        let slots = slots
            .iter()
            .filter(|(block, _)| block.is_none_or(|b| !props[b].is_null()))
            .map(|(_, path)| (path.join("."), d.key_ref(at(props, path))))
            .collect();
        found.push(Found {
            file: file.into(),
            line,
            address: id.clone(),
            resource_type: t.into(),
            provider: Provider::Aws,
            kind,
            bucket: None,
            name: match &props[name_prop] {
                Value::Null => id.clone(),
                v => d.text(v).unwrap_or_else(|| {
                    uncertain.push(format!("its name is {v}"));
                    id.clone()
                }),
            },
            tags,
            slots,
            uncertain,
        });
    }
    (found, ignored)
}

/// The team keys the guard compares with: AWS pinned in `account`, Cloud KMS by name.
pub struct Teams<'a> {
    pub campaign: &'a LoadedCampaign,
    pub account: &'a str,
    pub pinned: &'a PinnedKeys,
}

impl Teams<'_> {
    /// (team key, expected ARN or name) of a resource, if the rules map it and the team key
    /// has a key in its cloud.
    fn team(&self, f: &Found) -> Option<(String, String)> {
        let account = match f.provider {
            Provider::Aws => self.account.to_string(),
            Provider::Gcp => self
                .campaign
                .spec
                .gcp
                .as_ref()
                .map(|g| crate::inventory::gcp_account(&g.project))
                .unwrap_or_else(|| "gcp".into()),
        };
        let target = Target {
            provider: f.provider,
            account: &account,
            kind: f.kind,
            bucket: f.bucket.as_deref(),
            object_key: None,
            name: &f.name,
            tags: &f.tags,
            key: None,
        };
        let team = map_key(self.campaign, &target)?;
        let k = self.campaign.spec.keys.get(team)?;
        // An AWS team key whose alias does not exist in the account: nothing can be on it
        // yet (only a key the code creates under that alias): the empty expectation.
        let expected = match f.provider {
            Provider::Aws => {
                k.aws.as_ref()?;
                self.pinned
                    .get(&pin_id(team, self.account))
                    .map(|p| p.arn.clone())
                    .unwrap_or_default()
            }
            Provider::Gcp => crate::providers::gcs::key_name(k.gcp.as_ref()?),
        };
        Some((team.to_string(), expected))
    }

    /// The team that owns a key ARN or name, if any.
    fn owner(&self, provider: Provider, key: &str) -> Option<String> {
        self.campaign
            .spec
            .keys
            .iter()
            .find(|(team, k)| match provider {
                Provider::Aws => self
                    .pinned
                    .get(&pin_id(team, self.account))
                    .is_some_and(|p| p.arn == key),
                Provider::Gcp => k
                    .gcp
                    .as_ref()
                    .is_some_and(|g| crate::providers::gcs::key_name(g) == key),
            })
            .map(|(t, _)| t.clone())
    }

    fn alias_of_team(&self, team: &str) -> Option<&str> {
        self.campaign.spec.keys.get(team)?.aws.as_deref()
    }
}

/// Check the resources against their team keys; `kms` resolves AWS key references.
pub async fn check<K: KeyRead>(
    teams: &Teams<'_>,
    found: &[Found],
    kms: Option<&K>,
    report: &mut Report,
) -> Result<(), RekeyError> {
    let mut described: HashMap<String, Option<KmsKey>> = HashMap::new();
    for f in found {
        let Some((team, expected)) = teams.team(f) else {
            if f.uncertain.is_empty() {
                report
                    .not_mapped
                    .push(format!("{} ({})", f.address, f.file));
            } else {
                // What would map it is not known here: reported, not passed.
                report.checked += 1;
                report.findings.push(finding(
                    f,
                    "",
                    "?",
                    "",
                    Rule::UnresolvedKey,
                    String::new(),
                    format!(
                        "no rule maps it as the guard reads it, but {}: its team key cannot be told",
                        f.uncertain.join("; ")
                    ),
                ));
            }
            continue;
        };
        report.checked += 1;
        let mut ok = true;
        let absent = f.provider == Provider::Aws && expected.is_empty();
        for (attribute, key) in &f.slots {
            let team_alias = teams.alias_of_team(&team);
            let verdict: Option<(Rule, String, String)> = match key {
                // The team key does not exist in this account: only a key this code creates
                // under its alias will be it.
                KeyRef::NewKey {
                    alias: Some(a), ..
                } if absent && Some(a.as_str()) == team_alias => None,
                _ if absent => Some((
                    Rule::AliasMismatch,
                    String::new(),
                    format!(
                        "team key {team} ({}) does not exist in account {}, so nothing can be on it",
                        team_alias.unwrap_or_default(),
                        teams.account
                    ),
                )),
                KeyRef::Missing => Some((
                    Rule::MissingKey,
                    "none".into(),
                    "no KMS key: the service encrypts with a key it manages".into(),
                )),
                KeyRef::ServiceManaged(s) => Some((
                    Rule::ServiceManagedKey,
                    s.clone(),
                    format!("{s} is service-managed"),
                )),
                KeyRef::Unresolved(s) => Some((
                    Rule::UnresolvedKey,
                    s.clone(),
                    format!("the key comes from {s}, which the guard cannot tell"),
                )),
                KeyRef::NewKey { address, alias } => {
                    match alias {
                        // The alias names the team key today: a new key cannot take it
                        // (CreateAlias fails, and the resource is made on the new key all the
                        // same).
                        Some(a)
                            if f.provider == Provider::Aws && Some(a.as_str()) == team_alias =>
                        {
                            Some((
                                Rule::NewKeyNotTeam,
                                format!("{address} ({a})"),
                                format!("{a} already names {expected}; the key created at {address} would be another key"),
                            ))
                        }
                        Some(a) => {
                            let other = teams
                                .campaign
                                .spec
                                .keys
                                .iter()
                                .find(|(_, k)| k.aws.as_deref() == Some(a.as_str()))
                                .map(|(t, _)| t.clone());
                            Some(match other {
                                Some(o) => (
                                    Rule::OtherTeamKey,
                                    format!("{address} ({a})"),
                                    format!("the key created at {address} takes {a}, team key {o}'s alias"),
                                ),
                                None => (
                                    Rule::NewKeyNotTeam,
                                    format!("{address} ({a})"),
                                    format!("the key created at {address} is {a}, not team key {team}"),
                                ),
                            })
                        }
                        None => Some((
                            Rule::NewKeyNotTeam,
                            address.clone(),
                            format!("the key created at {address} has no alias of team key {team}"),
                        )),
                    }
                }
                KeyRef::Literal(s) => {
                    literal_verdict(teams, f, s, &expected, kms, &mut described).await?
                }
            };
            if let Some((rule, found_key, why)) = verdict {
                ok = false;
                report.findings.push(finding(
                    f, attribute, &team, &expected, rule, found_key, why,
                ));
            }
        }
        if ok {
            report.compliant += 1;
        }
    }
    Ok(())
}

/// The verdict on a key named literally (ARN, alias, key id, Cloud KMS name): `None` when it
/// is the team key. AWS references are described through KMS (cached in `described`).
async fn literal_verdict<K: KeyRead>(
    teams: &Teams<'_>,
    f: &Found,
    s: &str,
    expected: &str,
    kms: Option<&K>,
    described: &mut HashMap<String, Option<KmsKey>>,
) -> Result<Option<(Rule, String, String)>, RekeyError> {
    let resolved = match f.provider {
        Provider::Gcp => Some(crate::providers::gcs::key_name(s)),
        Provider::Aws => {
            let Some(kms) = kms else {
                return Err(RekeyError::Internal(
                    "AWS key references need a KMS client".into(),
                ));
            };
            // An ARN of another account than the team key's is not the team key (an alias
            // never reaches across accounts).
            let account_of = |a: &str| {
                a.strip_prefix("arn:")
                    .and_then(|r| r.split(':').nth(3))
                    .map(str::to_string)
            };
            if let (Some(theirs), Some(ours)) = (account_of(s), account_of(expected)) {
                if theirs != ours {
                    let rule = if s.contains(":alias/") {
                        Rule::AliasMismatch
                    } else {
                        Rule::WrongKey
                    };
                    return Ok(Some((
                        rule,
                        s.to_string(),
                        format!("{s} is of account {theirs}, not the team key's account {ours}"),
                    )));
                }
            }
            if !described.contains_key(s) {
                let d = match kms.describe_key(s).await {
                    Ok(d) => d,
                    // A key the CI role may not describe: the guard cannot tell what it is.
                    Err(crate::error::ProviderError::PermissionDenied { .. }) => {
                        return Ok(Some((
                            Rule::UnresolvedKey,
                            s.to_string(),
                            format!("{s} cannot be described with these credentials (kms:DescribeKey denied)"),
                        )));
                    }
                    Err(e) => return Err(e.into()),
                };
                described.insert(s.to_string(), d);
            }
            match &described[s] {
                Some(k) if k.manager == "AWS" => {
                    return Ok(Some((
                        Rule::ServiceManagedKey,
                        k.arn.clone(),
                        format!("{s} is an AWS managed key ({})", k.arn),
                    )));
                }
                Some(k) => Some(k.arn.clone()),
                None => None,
            }
        }
    };
    let named = !(s.starts_with("arn:") && s.contains(":key/")) && f.provider == Provider::Aws;
    Ok(match resolved {
        Some(r) if r == expected => None,
        None => Some((
            Rule::AliasMismatch,
            s.to_string(),
            format!("{s} resolves to no key in this account"),
        )),
        Some(r) => match teams.owner(f.provider, &r) {
            Some(o) => Some((
                Rule::OtherTeamKey,
                r.clone(),
                format!("{s} is team key {o}'s key"),
            )),
            None if named => Some((
                Rule::AliasMismatch,
                r.clone(),
                format!("{s} resolves to {r}, not the team key"),
            )),
            None => Some((
                Rule::WrongKey,
                r.clone(),
                format!("{r} is no team key of the campaign"),
            )),
        },
    })
}

fn finding(
    f: &Found,
    attribute: &str,
    team: &str,
    expected: &str,
    rule: Rule,
    found: String,
    why: String,
) -> Finding {
    Finding {
        rule,
        level: rule.level(),
        file: f.file.clone(),
        line: f.line,
        address: f.address.clone(),
        resource_type: f.resource_type.clone(),
        name: f.name.clone(),
        attribute: attribute.into(),
        team_key: team.into(),
        expected: expected.into(),
        found,
        message: format!(
            "{} {} ({}): {attribute}: {why}; expected team key {team} ({expected})",
            f.resource_type, f.name, f.address
        ),
    }
}

/// The report as text: one line per finding, then a summary.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    for f in &r.findings {
        out.push_str(&format!(
            "{}:{}: {}[{}] {}\n",
            f.file,
            f.line.map(|l| l.to_string()).unwrap_or_default(),
            f.level,
            f.rule.id(),
            f.message
        ));
    }
    let ignored: usize = r.ignored.values().sum();
    out.push_str(&format!(
        "guard: {} file{}, {} resource{} checked, {} on their team key, {} finding{}; {} not mapped by the campaign's rules; {} of unknown types ignored{}\n",
        r.files,
        if r.files == 1 { "" } else { "s" },
        r.checked,
        if r.checked == 1 { "" } else { "s" },
        r.compliant,
        r.findings.len(),
        if r.findings.len() == 1 { "" } else { "s" },
        r.not_mapped.len(),
        ignored,
        if r.ignored.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                r.ignored
                    .iter()
                    .map(|(t, n)| format!("{t} ×{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    ));
    out
}

/// The report as SARIF 2.1.0, one run, a rule per [`Rule`].
pub fn sarif(r: &Report) -> Value {
    let rules: Vec<Value> = Rule::ALL
        .iter()
        .map(|rule| {
            serde_json::json!({
                "id": rule.id(),
                "shortDescription": { "text": rule.description() },
                "defaultConfiguration": { "level": rule.level() },
            })
        })
        .collect();
    let results: Vec<Value> = r
        .findings
        .iter()
        .map(|f| {
            let mut physical = serde_json::json!({
                "artifactLocation": { "uri": f.file.replace('\\', "/") },
            });
            if let Some(l) = f.line {
                physical["region"] = serde_json::json!({ "startLine": l });
            }
            serde_json::json!({
                "ruleId": f.rule.id(),
                "ruleIndex": Rule::ALL.iter().position(|x| *x == f.rule).unwrap_or(0),
                "level": f.level,
                "message": { "text": f.message },
                "locations": [{
                    "physicalLocation": physical,
                    "logicalLocations": [{
                        "fullyQualifiedName": f.address,
                        "kind": "resource",
                    }],
                }],
                "properties": {
                    "attribute": f.attribute,
                    "teamKey": f.team_key,
                    "expected": f.expected,
                    "found": f.found,
                },
            })
        })
        .collect();
    serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "rekey",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "results": results,
        }]
    })
}
