//! The campaign file: parsed, then validated up front, so that bad input fails with the
//! file, line and fix before any cloud call.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::FileError;
use crate::matching::Matcher;
use crate::model::ResourceKind;

/// The campaign format versions this build understands.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    pub version: u32,
    pub campaign: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpSection>,
    pub keys: BTreeMap<String, KeyRef>,
    #[serde(default)]
    pub mapping: Vec<MappingRule>,
    #[serde(default)]
    pub stages: Vec<StageRule>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// Principals outside the estate's own resources that use the team keys (apps, pipelines):
    /// the preflight checks each may use its keys before anything moves onto them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<Consumer>,
    #[serde(default)]
    pub preflight: Preflight,
    /// How `rekey keys` writes the team keys and their policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_policy: Option<KeyPolicy>,
}

/// `key_policy:` — the team keys as code (`rekey keys`, docs/keys.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyPolicy {
    /// The key administrators (IAM role or user ARNs): they manage the keys, never use them.
    #[serde(default)]
    pub admins: Vec<String>,
    /// The identities that run rekey (apply, rollback); default: the caller of `rekey keys`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<String>,
    /// Restrict key users to requests made through S3 or SageMaker (`kms:ViaService`), as
    /// each uses the key; `false`: no such condition.
    #[serde(default = "yes")]
    pub via_service: bool,
    /// Cloud KMS members (`serviceAccount:…`, `group:…`) that use the team keys besides the
    /// Cloud Storage service agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gcp_members: Vec<String>,
    /// Automatic rotation period, in days (AWS: 90–2560; Cloud KMS: the key's rotation period).
    #[serde(default = "rotation_days")]
    pub rotation_days: u32,
}

fn yes() -> bool {
    true
}

fn rotation_days() -> u32 {
    365
}

/// A principal that uses team keys (`consumers:`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// An IAM role or user ARN.
    pub principal: String,
    /// The team keys it uses (names under `keys:`).
    pub keys: Vec<String>,
    /// How its requests reach KMS: `s3` (reading and writing objects), `sagemaker`, or
    /// `direct` (calling KMS itself).
    #[serde(default)]
    pub via: ConsumerVia,
    /// The KMS actions it needs; default `kms:Decrypt` and `kms:GenerateDataKey`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ConsumerVia {
    #[default]
    S3,
    Sagemaker,
    Direct,
}

impl ConsumerVia {
    /// `kms:ViaService` of the principal's requests in `region` (none for `direct`).
    pub fn service(self, region: &str) -> Option<String> {
        match self {
            ConsumerVia::S3 => Some(format!("s3.{region}.amazonaws.com")),
            ConsumerVia::Sagemaker => Some(format!("sagemaker.{region}.amazonaws.com")),
            ConsumerVia::Direct => None,
        }
    }
}

/// `preflight:` — what the key-access preflight may take on the operator's word.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Preflight {
    #[serde(default)]
    pub accept_unverified: crate::access::Acceptance,
    /// Bucket hazards the operator accepts, per bucket glob.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept_hazards: Vec<AcceptHazards>,
}

/// `{ bucket: "ml-dr-*", accept: [replication-gap] }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptHazards {
    pub bucket: String,
    pub accept: Vec<Hazard>,
}

/// What around a bucket would break when it moves to a CMK (issue 10).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Hazard {
    /// A replication rule that does not replicate SSE-KMS objects.
    ReplicationGap,
    /// A bucket policy Deny that refuses SSE-KMS writes (the copies).
    EncryptionPolicy,
    /// A CloudFront origin access identity reads the bucket: it cannot read SSE-KMS objects.
    OaiOrigin,
    /// A CloudFront origin reads the bucket anonymously (no OAC or OAI, or the website
    /// endpoint): anonymous requests cannot read SSE-KMS objects.
    PublicOrigin,
    /// The bucket receives S3 server access logs, which S3 delivers only to buckets whose
    /// default encryption is SSE-S3.
    LogTarget,
}

impl Hazard {
    pub fn as_str(self) -> &'static str {
        match self {
            Hazard::ReplicationGap => "replication-gap",
            Hazard::EncryptionPolicy => "encryption-policy",
            Hazard::OaiOrigin => "oai-origin",
            Hazard::PublicOrigin => "public-origin",
            Hazard::LogTarget => "log-target",
        }
    }
}

impl Preflight {
    /// Whether the campaign accepts `hazard` for `bucket`.
    pub fn accepts(&self, bucket: &str, hazard: Hazard) -> bool {
        self.accept_hazards.iter().any(|a| {
            a.accept.contains(&hazard)
                && globset::Glob::new(&a.bucket)
                    .map(|g| g.compile_matcher().is_match(bucket))
                    .unwrap_or(false)
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    pub region: String,
    /// Overrides the SDK's endpoint (for emulators); `AWS_ENDPOINT_URL` works too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AwsAccount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Section>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sagemaker: Option<SageMakerSection>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsAccount {
    pub name: String,
    pub role_arn: String,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Versions {
    /// Only the current version of each object.
    #[default]
    Current,
    /// Every version, non-current ones included.
    All,
}

#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Deserialize,
    Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum S3Engine {
    /// In-place CopyObject guarded by the planned ETag.
    #[default]
    Copy,
    /// S3 UpdateObjectEncryption: re-keys in place without a copy.
    UpdateEncryption,
    /// `update-encryption` where it applies, `copy` elsewhere.
    Auto,
    /// S3 Batch Operations jobs of `S3UpdateObjectEncryption` (one per bucket, storage class
    /// and key); what a job cannot do runs as `auto` does, locally.
    BatchUpdateEncryption,
    /// S3 Batch Operations jobs of `S3PutObjectCopy` (current objects up to 5 GB); the rest
    /// runs as `copy` does, locally. Batch copy has no ETag condition: `unguarded`.
    BatchCopy,
}

impl S3Engine {
    /// The engine whose rules decide each object's step (the local one, for a batch engine).
    pub fn local(self) -> S3Engine {
        match self {
            S3Engine::BatchUpdateEncryption => S3Engine::Auto,
            S3Engine::BatchCopy => S3Engine::Copy,
            e => e,
        }
    }

    pub fn is_batch(self) -> bool {
        matches!(self, S3Engine::BatchUpdateEncryption | S3Engine::BatchCopy)
    }
}

/// `aws.s3.batch`: where a batch engine's jobs read their manifests and write their reports,
/// the role they run as, and what rekey may accept on the operator's word.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSection {
    pub manifest_bucket: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest_prefix: String,
    pub report_bucket: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub report_prefix: String,
    /// The job role (trusts batchoperations.s3.amazonaws.com).
    pub role_arn: String,
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// Jobs wait for `UpdateJobStatus Ready` (the S3 console's confirmation) before they run.
    #[serde(default)]
    pub confirm: bool,
    /// `batch-copy` overwrites without an ETag condition: apply refuses it unless this says
    /// the buckets' writers are frozen for the window.
    #[serde(default)]
    pub accept_unguarded: bool,
    /// At the window's end: `cancel` the running jobs (default) or `leave` them to finish.
    #[serde(default)]
    pub at_window_end: AtWindowEnd,
    /// A job lists at most this many objects (more make more jobs): rekey builds a job's
    /// manifest in memory, about 100 bytes per object.
    #[serde(
        default = "default_max_objects_per_job",
        skip_serializing_if = "is_default_max_objects"
    )]
    pub max_objects_per_job: u64,
}

fn default_max_objects_per_job() -> u64 {
    1_000_000
}

fn is_default_max_objects(n: &u64) -> bool {
    *n == default_max_objects_per_job()
}

fn default_priority() -> i32 {
    10
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AtWindowEnd {
    #[default]
    Cancel,
    Leave,
}

/// CopyObject copies at most 5 GiB; above that rekey uses UploadPartCopy.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 5 * 1024 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    pub buckets: Vec<String>,
    #[serde(default)]
    pub versions: Versions,
    #[serde(default)]
    pub engine: S3Engine,
    /// Objects larger than this are copied with UploadPartCopy.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: u64,
    /// Where objects are found: LIST + HEAD (default), or S3 Inventory reports.
    #[serde(default, skip_serializing_if = "ObjectSource::is_list")]
    pub inventory: ObjectSource,
    /// Required by the batch engines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchSection>,
}

/// `aws.s3.inventory`: `list` (LIST + one HEAD per object), `report` (every bucket from its
/// newest S3 Inventory report), or `{ source: report, buckets: [GLOB], manifests: { BUCKET:
/// s3://…/manifest.json } }` (some buckets, or a named report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ObjectSource {
    pub report: bool,
    /// Bucket globs planned from reports (empty: all of them).
    pub buckets: Vec<String>,
    /// A named report per bucket, instead of the newest one.
    pub manifests: BTreeMap<String, String>,
}

impl ObjectSource {
    pub fn is_list(&self) -> bool {
        *self == ObjectSource::default()
    }

    /// Whether `bucket` is planned from a report, and from which manifest if one is named.
    pub fn report_for(&self, bucket: &str) -> Option<Option<&str>> {
        if !self.report {
            return None;
        }
        let named = self.manifests.get(bucket).map(String::as_str);
        let matched = self.buckets.is_empty()
            || named.is_some()
            || self.buckets.iter().any(|g| {
                globset::Glob::new(g)
                    .map(|g| g.compile_matcher().is_match(bucket))
                    .unwrap_or(false)
            });
        matched.then_some(named)
    }
}

impl<'de> Deserialize<'de> for ObjectSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            source: String,
            #[serde(default)]
            buckets: Vec<String>,
            #[serde(default)]
            manifests: BTreeMap<String, String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Full(Full),
        }
        let source = |word: &str| match word {
            "list" => Ok(false),
            "report" => Ok(true),
            other => Err(serde::de::Error::custom(format!(
                "aws.s3.inventory {other:?} is neither `list` nor `report`"
            ))),
        };
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "aws.s3.inventory is `list`, `report`, or { source: report, buckets: [...], manifests: { BUCKET: s3://.../manifest.json } }",
            )
        })? {
            Raw::Word(w) => Ok(ObjectSource {
                report: source(&w)?,
                ..Default::default()
            }),
            Raw::Full(f) => {
                for (bucket, url) in &f.manifests {
                    let local = url
                        .strip_prefix("file://")
                        .is_some_and(|p| p.starts_with('/'));
                    if !url.ends_with("/manifest.json")
                        || (crate::s3report::split_url(url).is_none() && !local)
                    {
                        return Err(serde::de::Error::custom(format!(
                            "aws.s3.inventory.manifests.{bucket}: {url:?} is not s3://BUCKET/…/manifest.json (or file:///…/manifest.json for a report copied to disk)"
                        )));
                    }
                }
                Ok(ObjectSource {
                    report: source(&f.source)?,
                    buckets: f.buckets,
                    manifests: f.manifests,
                })
            }
        }
    }
}

fn default_multipart_threshold() -> u64 {
    DEFAULT_MULTIPART_THRESHOLD
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SageMakerSection {
    #[serde(default)]
    pub endpoints: bool,
    #[serde(default)]
    pub notebook_instances: bool,
    #[serde(default)]
    pub training_jobs: bool,
    /// UpdateEndpoint's `DeploymentConfig` (blue/green with CloudWatch alarms for
    /// auto-rollback), passed through as written; without it the endpoint's last deployment
    /// config is retained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_config: Option<serde_json::Value>,
}

/// The fields of SageMaker's DeploymentConfig.
pub const DEPLOYMENT_CONFIG_FIELDS: &[&str] = &[
    "BlueGreenUpdatePolicy",
    "RollingUpdatePolicy",
    "AutoRollbackConfiguration",
];

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcpSection {
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsSection>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcsSection {
    pub buckets: Vec<String>,
    /// `maxBytesRewrittenPerCall` for object rewrites (a multiple of 1 MiB; none: GCS decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_rewritten_per_call: Option<u64>,
    /// `rewrite` (rekey's own guarded rewrites, the default) or `batch-rewrite` (storage batch
    /// operations jobs, docs/batch.md).
    #[serde(default, skip_serializing_if = "is_default_gcs_engine")]
    pub engine: GcsEngine,
    /// Where `batch-rewrite` puts its manifests, and what it may accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<GcsBatchSection>,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum GcsEngine {
    #[default]
    Rewrite,
    BatchRewrite,
}

fn is_default_gcs_engine(e: &GcsEngine) -> bool {
    *e == GcsEngine::Rewrite
}

/// `gcp.gcs.batch`: storage batch operations jobs for `batch-rewrite`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcsBatchSection {
    pub manifest_bucket: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest_prefix: String,
    /// A batch rewrite takes no generation condition: apply refuses it unless this says the
    /// buckets' writers are frozen for the window.
    #[serde(default)]
    pub accept_unguarded: bool,
    /// At the window's end: `cancel` the running jobs (default) or `leave` them to finish.
    #[serde(default)]
    pub at_window_end: AtWindowEnd,
    #[serde(
        default = "default_max_objects_per_job",
        skip_serializing_if = "is_default_max_objects"
    )]
    pub max_objects_per_job: u64,
}

/// A logical team key and the provider keys behind it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<String>,
}

/// What a rule matches on. Every field given must match; an empty match matches everything.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<crate::model::Provider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ResourceKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tag: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingRule {
    #[serde(rename = "match")]
    pub matches: MatchSpec,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageRule {
    pub name: String,
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<MatchSpec>,
    /// The S3 engine of this stage's objects (default: `aws.s3.engine`), e.g. a canary
    /// stage run locally and the bulk as batch jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<S3Engine>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_rps")]
    pub requests_per_second: u32,
}

fn default_concurrency() -> usize {
    32
}
fn default_rps() -> u32 {
    500
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            concurrency: default_concurrency(),
            requests_per_second: default_rps(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub days: Vec<Weekday>,
    pub start: String,
    pub end: String,
    #[serde(default = "default_tz")]
    pub timezone: String,
}

fn default_tz() -> String {
    "UTC".into()
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// A campaign that passed validation, with its rules compiled.
#[derive(Debug, Clone)]
pub struct LoadedCampaign {
    pub path: PathBuf,
    pub spec: Campaign,
    pub mapping: Vec<(Matcher, String)>,
    pub stages: Vec<(String, Option<Matcher>)>,
    pub buckets: Vec<globset::GlobMatcher>,
}

impl LoadedCampaign {
    /// Whether any stage (or the campaign) uses a batch engine.
    pub fn uses_batch(&self) -> bool {
        self.gcs_batch().is_some() || self.uses_s3_batch()
    }

    /// Whether any stage (or the campaign) runs S3 objects with a batch engine.
    pub fn uses_s3_batch(&self) -> bool {
        self.s3().is_some_and(|s| s.engine.is_batch())
            || self
                .spec
                .stages
                .iter()
                .any(|st| st.engine.is_some_and(|e| e.is_batch()))
    }

    /// `gcp.gcs.batch` when the Cloud Storage engine is `batch-rewrite`.
    pub fn gcs_batch(&self) -> Option<&GcsBatchSection> {
        let g = self.spec.gcp.as_ref()?.gcs.as_ref()?;
        (g.engine == GcsEngine::BatchRewrite)
            .then_some(g.batch.as_ref())
            .flatten()
    }

    pub fn s3(&self) -> Option<&S3Section> {
        self.spec.aws.as_ref().and_then(|a| a.s3.as_ref())
    }

    /// The AWS region of the campaign (empty without an `aws:` section).
    pub fn region(&self) -> &str {
        self.spec
            .aws
            .as_ref()
            .map(|a| a.region.as_str())
            .unwrap_or_default()
    }
}

/// Read, parse and validate a campaign file.
pub fn load(path: &Path) -> Result<LoadedCampaign, FileError> {
    let src = std::fs::read_to_string(path).map_err(|e| FileError {
        path: path.to_path_buf(),
        line: None,
        message: format!("cannot read the campaign file: {}", io_reason(&e)),
        fix: "pass an existing, readable campaign file with -c".into(),
    })?;
    parse(path, &src)
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Parse and validate campaign text; `path` is only used in messages.
pub fn parse(path: &Path, src: &str) -> Result<LoadedCampaign, FileError> {
    let err = |line: Option<usize>, message: String, fix: &str| FileError {
        path: path.to_path_buf(),
        line,
        message,
        fix: fix.to_string(),
    };
    if src.trim().is_empty() {
        return Err(err(
            None,
            "the campaign file is empty".into(),
            "start from the example in README.md (version, campaign, keys, mapping)",
        ));
    }
    // Check the version first, so that a newer file fails on its version, not on a field.
    if let Ok(serde_yaml::Value::Mapping(m)) = serde_yaml::from_str::<serde_yaml::Value>(src) {
        match m.get("version") {
            None => {
                return Err(err(
                    Some(1),
                    "the campaign has no `version`".into(),
                    "add `version: 1` at the top of the file",
                ))
            }
            Some(serde_yaml::Value::Number(n))
                if n.as_u64()
                    .is_some_and(|v| SUPPORTED_VERSIONS.contains(&(v as u32))) => {}
            Some(v) => {
                return Err(err(
                    locate_key(src, &["version"]),
                    format!(
                        "campaign version {} is not supported by this rekey (it knows {})",
                        serde_yaml::to_string(v).unwrap_or_default().trim(),
                        SUPPORTED_VERSIONS
                            .iter()
                            .map(|v| v.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "set `version: 1`, or use the rekey release that wrote this file",
                ))
            }
        }
    }
    let spec: Campaign = serde_yaml::from_str(src).map_err(|e| {
        let line = e.location().map(|l| l.line());
        let mut message = e.to_string();
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        let fix = if message.contains("unknown field") {
            "remove the field or correct its spelling; the allowed fields are listed above"
        } else if message.contains("missing field") {
            "add the missing field"
        } else if message.contains("unknown variant") {
            "use one of the values listed above"
        } else if message.contains("invalid type") {
            "give the value the type named above"
        } else {
            "correct the YAML at that line"
        };
        err(line, message, fix)
    })?;
    validate(path, src, spec)
}

fn validate(path: &Path, src: &str, spec: Campaign) -> Result<LoadedCampaign, FileError> {
    let err = |line: Option<usize>, message: String, fix: String| FileError {
        path: path.to_path_buf(),
        line,
        message,
        fix,
    };
    // A batch section's `max_objects_per_job` is within 1..10,000,000.
    let check_max_objects = |line: Option<usize>, section: &str, n: u64| {
        if (1..=10_000_000).contains(&n) {
            return Ok(());
        }
        Err(err(
            line,
            format!("{section}.max_objects_per_job {n} is outside 1..10,000,000"),
            "rekey builds a job's manifest in memory (about 100 bytes per object): keep jobs at 10 million objects or fewer".into(),
        ))
    };
    let valid_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !valid_name(&spec.campaign) {
        return Err(err(
            locate_key(src, &["campaign"]),
            format!("campaign name {:?} is not a valid name", spec.campaign),
            "use 1 to 64 letters, digits, '-' or '_' (it names plan and journal files)".into(),
        ));
    }
    if let Some(kp) = &spec.key_policy {
        if !(90..=2560).contains(&kp.rotation_days) {
            return Err(err(
                locate_key(src, &["key_policy", "rotation_days"]),
                format!(
                    "key_policy.rotation_days {} is outside 90..2560",
                    kp.rotation_days
                ),
                "AWS KMS rotates a key every 90 to 2560 days: pick a period in that range".into(),
            ));
        }
        if let Some(a) = kp
            .admins
            .iter()
            .chain(&kp.operators)
            .find(|a| crate::providers::iam::split_principal(a).is_none())
        {
            return Err(err(
                locate_key(src, &["key_policy"]),
                format!("key_policy names {a:?}, which is not an IAM role or user ARN"),
                "use ARNs like arn:aws:iam::111122223333:role/KeyAdmins".into(),
            ));
        }
    }
    if spec.aws.is_none() && spec.gcp.is_none() {
        return Err(err(
            None,
            "the campaign names no provider".into(),
            "add an `aws:` section (region, s3 buckets) or a `gcp:` section".into(),
        ));
    }
    if let Some(aws) = &spec.aws {
        if aws.region.trim().is_empty() {
            return Err(err(
                locate_key(src, &["aws", "region"]),
                "aws.region is empty".into(),
                "set the region of the estate, e.g. `region: us-east-1`".into(),
            ));
        }
        if let Some(s3) = &aws.s3 {
            if s3.buckets.is_empty() {
                return Err(err(
                    locate_key(src, &["aws", "s3"]),
                    "aws.s3.buckets is empty, so no bucket would be inventoried".into(),
                    "list bucket names or globs, e.g. `buckets: [\"ml-*\"]`".into(),
                ));
            }
            if s3.multipart_threshold < 5 * 1024 * 1024
                || s3.multipart_threshold > DEFAULT_MULTIPART_THRESHOLD
            {
                return Err(err(
                    locate_key(src, &["aws", "s3", "multipart_threshold"]),
                    format!(
                        "aws.s3.multipart_threshold {} is outside 5 MiB..5 GiB",
                        s3.multipart_threshold
                    ),
                    "S3 parts are at least 5 MiB and CopyObject copies at most 5 GiB: pick a value between".into(),
                ));
            }
            let batch_stage = spec
                .stages
                .iter()
                .any(|st| st.engine.is_some_and(|e| e.is_batch()));
            match (&s3.batch, s3.engine.is_batch() || batch_stage) {
                (None, true) => {
                    return Err(err(
                        locate_key(src, &["aws", "s3", "engine"]),
                        "a batch engine needs `aws.s3.batch`".into(),
                        "add `batch: { manifest_bucket: B, report_bucket: B, role_arn: arn:aws:iam::ACCOUNT:role/NAME }` under aws.s3".into(),
                    ))
                }
                (Some(b), _) => {
                    let line = locate_key(src, &["aws", "s3", "batch"]);
                    if !is_role_arn(&b.role_arn) {
                        return Err(err(
                            line,
                            format!("aws.s3.batch.role_arn {:?} is not an IAM role ARN", b.role_arn),
                            "use arn:aws:iam::<12-digit account>:role/<name> (the role S3 Batch Operations runs the jobs as)".into(),
                        ));
                    }
                    for (what, name) in [("manifest_bucket", &b.manifest_bucket), ("report_bucket", &b.report_bucket)] {
                        if name.is_empty() || name.contains('/') || name.contains(':') {
                            return Err(err(
                                line,
                                format!("aws.s3.batch.{what} {name:?} is not a bucket name"),
                                "name a bucket (no s3://, no prefix: prefixes go in manifest_prefix / report_prefix)".into(),
                            ));
                        }
                    }
                    check_max_objects(line, "aws.s3.batch", b.max_objects_per_job)?;
                    if !(0..=i32::MAX).contains(&b.priority) {
                        return Err(err(
                            line,
                            format!("aws.s3.batch.priority {} is negative", b.priority),
                            "S3 Batch Operations priorities are 0 or more (higher runs first)".into(),
                        ));
                    }
                }
                (None, false) => {}
            }
        }
        let mut seen = BTreeSet::new();
        for (i, a) in aws.accounts.iter().enumerate() {
            if !seen.insert(a.name.clone()) {
                return Err(err(
                    locate_item(src, &["aws", "accounts"], i),
                    format!("account name {:?} is used twice", a.name),
                    "give each account a unique name".into(),
                ));
            }
            if !is_role_arn(&a.role_arn) {
                return Err(err(
                    locate_item(src, &["aws", "accounts"], i),
                    format!(
                        "account {:?} has role_arn {:?}, which is not an IAM role ARN",
                        a.name, a.role_arn
                    ),
                    "use arn:aws:iam::<12-digit account>:role/<name>".into(),
                ));
            }
        }
    }
    if let Some(d) = spec
        .aws
        .as_ref()
        .and_then(|a| a.sagemaker.as_ref())
        .and_then(|s| s.deployment_config.as_ref())
    {
        let line = locate_key(src, &["aws", "sagemaker", "deployment_config"]);
        let Some(m) = d.as_object() else {
            return Err(err(
                line,
                "aws.sagemaker.deployment_config is not a mapping".into(),
                "write SageMaker's DeploymentConfig, e.g. `BlueGreenUpdatePolicy: {...}` and `AutoRollbackConfiguration: { Alarms: [...] }`".into(),
            ));
        };
        if let Some(k) = m
            .keys()
            .find(|k| !DEPLOYMENT_CONFIG_FIELDS.contains(&k.as_str()))
        {
            return Err(err(
                line,
                format!("aws.sagemaker.deployment_config has field {k:?}, which DeploymentConfig does not have"),
                format!("use only {}", DEPLOYMENT_CONFIG_FIELDS.join(", ")),
            ));
        }
        if !m.contains_key("BlueGreenUpdatePolicy") && !m.contains_key("RollingUpdatePolicy") {
            return Err(err(
                line,
                "aws.sagemaker.deployment_config names no update policy".into(),
                "add BlueGreenUpdatePolicy or RollingUpdatePolicy (or remove the section to keep the endpoint's own)".into(),
            ));
        }
    }
    for (i, a) in spec.preflight.accept_hazards.iter().enumerate() {
        if let Err(e) = globset::Glob::new(&a.bucket) {
            return Err(err(
                locate_item(src, &["preflight", "accept_hazards"], i),
                format!(
                    "preflight.accept_hazards bucket {:?} is not a glob: {e}",
                    a.bucket
                ),
                "name a bucket or a glob such as \"ml-dr-*\"".into(),
            ));
        }
        if a.accept.is_empty() {
            return Err(err(
                locate_item(src, &["preflight", "accept_hazards"], i),
                format!(
                    "preflight.accept_hazards for {:?} accepts nothing",
                    a.bucket
                ),
                "list the hazards accepted: replication-gap, encryption-policy, oai-origin".into(),
            ));
        }
    }
    for (i, c) in spec.consumers.iter().enumerate() {
        let line = locate_item(src, &["consumers"], i);
        let iam = c.principal.starts_with("arn:aws:iam::")
            && (c.principal.contains(":role/") || c.principal.contains(":user/"));
        if !iam {
            return Err(err(
                line,
                format!("consumer {:?} is not an IAM role or user ARN", c.principal),
                "use arn:aws:iam::<account>:role/<name> (or :user/<name>)".into(),
            ));
        }
        if c.keys.is_empty() {
            return Err(err(
                line,
                format!("consumer {} names no key", c.principal),
                "list the team keys it uses, e.g. `keys: [fraud]`".into(),
            ));
        }
        if let Some(k) = c.keys.iter().find(|k| !spec.keys.contains_key(*k)) {
            return Err(err(
                line,
                format!(
                    "consumer {} uses key {k:?}, which `keys:` does not define",
                    c.principal
                ),
                format!(
                    "use one of {}",
                    spec.keys.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if let Some(a) = c
            .actions
            .iter()
            .find(|a| !a.to_ascii_lowercase().starts_with("kms:") || a.contains('*'))
        {
            return Err(err(
                line,
                format!("consumer {} lists action {a:?}", c.principal),
                "name KMS actions exactly, e.g. kms:Decrypt, kms:GenerateDataKey (no wildcards)"
                    .into(),
            ));
        }
    }
    if spec.keys.is_empty() {
        return Err(err(
            locate_key(src, &["keys"]),
            "the `keys` section is empty".into(),
            "define at least one team key, e.g. `fraud: { aws: alias/ml-fraud }`".into(),
        ));
    }
    for (name, k) in &spec.keys {
        let line = locate_key(src, &["keys", name]);
        if k.aws.is_none() && k.gcp.is_none() {
            return Err(err(
                line,
                format!("key {name:?} names no provider key"),
                "give it `aws: alias/...` and/or `gcp: projects/.../cryptoKeys/...`".into(),
            ));
        }
        if let Some(a) = &k.aws {
            if !is_aws_key_ref(a) {
                return Err(err(
                    line,
                    format!(
                        "key {name:?} has aws key {a:?}, which is not an alias, key id or key ARN"
                    ),
                    "write `alias/NAME`, an alias or key ARN, or a key id".into(),
                ));
            }
            if a == "alias/aws/s3" || a.ends_with(":alias/aws/s3") {
                return Err(err(
                    line,
                    format!("key {name:?} is the AWS-managed aws/s3 key, which is what this migration moves away from"),
                    "name the team's customer-managed key alias".into(),
                ));
            }
        }
        if let Some(g) = &k.gcp {
            if !is_gcp_key_name(g) {
                return Err(err(
                    line,
                    format!("key {name:?} has gcp key {g:?}, which is not a full Cloud KMS key name"),
                    "write projects/P/locations/L/keyRings/R/cryptoKeys/K (without /cryptoKeyVersions)".into(),
                ));
            }
        }
    }
    let known_keys = || spec.keys.keys().cloned().collect::<Vec<_>>().join(", ");
    let mut mapping = Vec::new();
    for (i, rule) in spec.mapping.iter().enumerate() {
        let line = locate_item(src, &["mapping"], i);
        if !spec.keys.contains_key(&rule.key) {
            return Err(err(
                line,
                format!(
                    "mapping[{i}] maps to key {:?}, which is not defined under `keys`",
                    rule.key
                ),
                format!("use one of: {}, or add it under `keys`", known_keys()),
            ));
        }
        if rule.matches.key.is_some() {
            return Err(err(
                line,
                format!("mapping[{i}] matches on `key`, but the key is what the mapping decides"),
                "match on provider, account, kind, bucket, prefix, name or tag here; `key` is for stages".into(),
            ));
        }
        let m = Matcher::compile(&rule.matches)
            .map_err(|e| err(line, format!("mapping[{i}]: {e}"), GLOB_FIX.into()))?;
        mapping.push((m, rule.key.clone()));
    }
    let mut stages = Vec::new();
    let mut names = BTreeSet::new();
    for (i, st) in spec.stages.iter().enumerate() {
        let line = locate_item(src, &["stages"], i);
        if !valid_name(&st.name) {
            return Err(err(
                line,
                format!("stage name {:?} is not a valid name", st.name),
                "use 1 to 64 letters, digits, '-' or '_' (it names a checkpoint)".into(),
            ));
        }
        if !names.insert(st.name.clone()) {
            return Err(err(
                line,
                format!("stage {:?} is defined twice", st.name),
                "give each stage a unique name".into(),
            ));
        }
        if st.matches.is_none() && i + 1 != spec.stages.len() {
            return Err(err(
                line,
                format!(
                    "stage {:?} has no match, so it takes everything left and the stages after it would stay empty",
                    st.name
                ),
                "give it a `match`, or move it to the end of `stages`".into(),
            ));
        }
        let m =
            match &st.matches {
                None => None,
                Some(spec_match) => {
                    if let Some(k) = &spec_match.key {
                        if !spec.keys.contains_key(k) {
                            return Err(err(
                                line,
                                format!(
                                "stage {:?} matches key {k:?}, which is not defined under `keys`",
                                st.name
                            ),
                                format!("use one of: {}", known_keys()),
                            ));
                        }
                    }
                    Some(Matcher::compile(spec_match).map_err(|e| {
                        err(line, format!("stage {:?}: {e}", st.name), GLOB_FIX.into())
                    })?)
                }
            };
        stages.push((st.name.clone(), m));
    }
    if stages.is_empty() {
        stages.push(("all".to_string(), None));
    }
    if spec.limits.concurrency == 0 || spec.limits.concurrency > 1024 {
        return Err(err(
            locate_key(src, &["limits", "concurrency"]),
            format!(
                "limits.concurrency {} is outside 1..1024",
                spec.limits.concurrency
            ),
            "pick a concurrency between 1 and 1024 (32 is a good start)".into(),
        ));
    }
    if spec.limits.requests_per_second == 0 {
        return Err(err(
            locate_key(src, &["limits", "requests_per_second"]),
            "limits.requests_per_second is 0, so nothing could ever run".into(),
            "set a positive rate, e.g. 500".into(),
        ));
    }
    if let Some(w) = &spec.window {
        let line = locate_key(src, &["window"]);
        if w.days.is_empty() {
            return Err(err(
                line,
                "window.days is empty".into(),
                "list the days of the window, e.g. [sat, sun]".into(),
            ));
        }
        for (field, v) in [("start", &w.start), ("end", &w.end)] {
            if parse_hhmm(v).is_none() {
                return Err(err(
                    line,
                    format!("window.{field} {v:?} is not a time of day"),
                    "write 24-hour HH:MM, e.g. \"02:00\"".into(),
                ));
            }
        }
        if parse_utc_offset(&w.timezone).is_none()
            && crate::window::named_zone(&w.timezone).is_none()
        {
            return Err(err(
                line,
                format!("window.timezone {:?} is not a known time zone", w.timezone),
                "use an IANA name such as Europe/Berlin (daylight saving time is followed), UTC, or a fixed offset such as +02:00"
                    .into(),
            ));
        }
    }
    if let Some(gcs) = spec.gcp.as_ref().and_then(|g| g.gcs.as_ref()) {
        let line = locate_key(src, &["gcp", "gcs"]);
        if gcs.buckets.is_empty() {
            return Err(err(
                line,
                "gcp.gcs.buckets is empty, so no bucket would be inventoried".into(),
                "list bucket names or globs, e.g. `buckets: [\"ml-*\"]`".into(),
            ));
        }
        for b in &gcs.buckets {
            crate::matching::glob(b)
                .map_err(|e| err(line, format!("gcp.gcs.buckets: {e}"), GLOB_FIX.into()))?;
        }
        if let Some(m) = gcs.max_bytes_rewritten_per_call {
            if m == 0 || m % (1024 * 1024) != 0 {
                return Err(err(
                    line,
                    format!("gcp.gcs.max_bytes_rewritten_per_call {m} is not a multiple of 1 MiB"),
                    "GCS takes whole MiB: use 1048576 or a multiple".into(),
                ));
            }
        }
        match (&gcs.batch, gcs.engine) {
            (None, GcsEngine::BatchRewrite) => {
                return Err(err(
                    locate_key(src, &["gcp", "gcs", "engine"]),
                    "engine batch-rewrite needs `gcp.gcs.batch`".into(),
                    "add `batch: { manifest_bucket: B }` under gcp.gcs (a bucket the jobs' manifests go to)".into(),
                ))
            }
            (Some(b), _) => {
                let line = locate_key(src, &["gcp", "gcs", "batch"]);
                let n = &b.manifest_bucket;
                if n.is_empty() || n.contains('/') || n.contains(':') {
                    return Err(err(
                        line,
                        format!("gcp.gcs.batch.manifest_bucket {n:?} is not a bucket name"),
                        "name a bucket (no gs://, no prefix: a prefix goes in manifest_prefix)".into(),
                    ));
                }
                check_max_objects(line, "gcp.gcs.batch", b.max_objects_per_job)?;
            }
            (None, GcsEngine::Rewrite) => {}
        }
    }
    let mut buckets = Vec::new();
    if let Some(s3) = spec.aws.as_ref().and_then(|a| a.s3.as_ref()) {
        for b in &s3.buckets {
            let g = crate::matching::glob(b).map_err(|e| {
                err(
                    locate_key(src, &["aws", "s3", "buckets"]),
                    format!("aws.s3.buckets: {e}"),
                    GLOB_FIX.into(),
                )
            })?;
            buckets.push(g);
        }
    }
    Ok(LoadedCampaign {
        path: path.to_path_buf(),
        spec,
        mapping,
        stages,
        buckets,
    })
}

const GLOB_FIX: &str = "globs use `*` and `?`; escape a literal `[` or `{` as `[[]` or `[{]`";

fn is_role_arn(s: &str) -> bool {
    let p: Vec<&str> = s.splitn(6, ':').collect();
    p.len() == 6
        && p[0] == "arn"
        && p[1].starts_with("aws")
        && p[2] == "iam"
        && p[4].len() == 12
        && p[4].bytes().all(|b| b.is_ascii_digit())
        && p[5].starts_with("role/")
}

fn is_aws_key_ref(s: &str) -> bool {
    if let Some(name) = s.strip_prefix("alias/") {
        return !name.is_empty();
    }
    if s.starts_with("arn:aws") {
        let p: Vec<&str> = s.splitn(6, ':').collect();
        return p.len() == 6
            && p[2] == "kms"
            && (p[5].starts_with("key/") || p[5].starts_with("alias/"));
    }
    // A bare key id: a UUID, or a multi-Region key id (mrk-...).
    let uuid_like = s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    uuid_like || (s.starts_with("mrk-") && s.len() > 4)
}

fn is_gcp_key_name(s: &str) -> bool {
    let p: Vec<&str> = s.split('/').collect();
    p.len() == 8
        && p[0] == "projects"
        && p[2] == "locations"
        && p[4] == "keyRings"
        && p[6] == "cryptoKeys"
        && p.iter().all(|x| !x.is_empty())
}

/// Minutes after midnight of an "HH:MM" time.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Offset from UTC in minutes of "UTC", "Z" or "+HH:MM" / "-HH:MM".
pub fn parse_utc_offset(s: &str) -> Option<i32> {
    if s == "UTC" || s == "Z" {
        return Some(0);
    }
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    Some(sign * parse_hhmm(&s[1..])? as i32)
}

/// The 1-based line of a key reached through nested block mappings, best effort: the line of
/// the deepest key found (flow mappings on one line resolve to that line).
pub fn locate_key(src: &str, path: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = src.lines().collect();
    let mut from = 0usize;
    let mut min_indent = 0usize;
    let mut found = None;
    for (depth, key) in path.iter().enumerate() {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if depth > 0 && i > from && indent < min_indent {
                break; // left the parent's block
            }
            let t = trimmed.trim_start_matches("- ");
            if t.starts_with(&format!("{key}:"))
                || t.starts_with(&format!("\"{key}\":"))
                || (depth > 0 && i == from.saturating_sub(1) && line.contains(&format!("{key}:")))
            {
                hit = Some((i, indent));
                break;
            }
            if depth > 0 && line.contains(&format!(" {key}:")) && line.contains('{') {
                hit = Some((i, indent));
                break;
            }
        }
        match hit {
            Some((i, indent)) => {
                found = Some(i + 1);
                from = i + 1;
                min_indent = indent + 1;
            }
            None => break,
        }
    }
    found
}

/// The 1-based line of the `index`-th item of a block sequence under `path`.
pub fn locate_item(src: &str, path: &[&str], index: usize) -> Option<usize> {
    let section = locate_key(src, path)?;
    let lines: Vec<&str> = src.lines().collect();
    let section_indent = {
        let l = lines[section - 1];
        l.len() - l.trim_start().len()
    };
    let mut item_indent = None;
    let mut count = 0;
    for (i, line) in lines.iter().enumerate().skip(section) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent < section_indent || (indent == section_indent && !trimmed.starts_with("- ")) {
            break;
        }
        if trimmed.starts_with("- ") || trimmed == "-" {
            let ii = *item_indent.get_or_insert(indent);
            if indent == ii {
                if count == index {
                    return Some(i + 1);
                }
                count += 1;
            }
        }
    }
    Some(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_keys_and_items() {
        let src = "version: 1\nlimits:\n  concurrency: 0\nmapping:\n  - { match: {}, key: a }\n  - { match: {}, key: b }\n";
        assert_eq!(locate_key(src, &["limits", "concurrency"]), Some(3));
        assert_eq!(locate_item(src, &["mapping"], 1), Some(6));
        assert_eq!(locate_key(src, &["nope"]), None);
    }

    #[test]
    fn times_and_offsets() {
        assert_eq!(parse_hhmm("02:30"), Some(150));
        assert_eq!(parse_hhmm("24:00"), None);
        assert_eq!(parse_utc_offset("-05:00"), Some(-300));
        assert_eq!(parse_utc_offset("Europe/Paris"), None);
    }

    #[test]
    fn aws_key_refs() {
        assert!(is_aws_key_ref("alias/ml-fraud"));
        assert!(is_aws_key_ref(
            "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        ));
        assert!(is_aws_key_ref("1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert!(!is_aws_key_ref("ml-fraud"));
    }
}
