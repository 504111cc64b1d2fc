//! The migration's vocabulary: providers, resource kinds, encryption classes and the
//! resources an inventory yields.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Aws,
    Gcp,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
        })
    }
}

/// What a resource is. The names are the ones a campaign's `kind:` match uses.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceKind {
    S3Bucket,
    S3Object,
    SagemakerEndpoint,
    SagemakerEndpointConfig,
    SagemakerModel,
    SagemakerNotebookInstance,
    SagemakerTrainingJob,
    GcsBucket,
    GcsObject,
    /// Kinds `rekey guard` finds in infrastructure code (not inventoried).
    SagemakerDomain,
    SagemakerFeatureGroup,
    VertexEndpoint,
    VertexDataset,
    VertexModel,
    BigqueryDataset,
}

impl ResourceKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ResourceKind::S3Bucket => "s3-bucket",
            ResourceKind::S3Object => "s3-object",
            ResourceKind::SagemakerEndpoint => "sagemaker-endpoint",
            ResourceKind::SagemakerEndpointConfig => "sagemaker-endpoint-config",
            ResourceKind::SagemakerModel => "sagemaker-model",
            ResourceKind::SagemakerNotebookInstance => "sagemaker-notebook-instance",
            ResourceKind::SagemakerTrainingJob => "sagemaker-training-job",
            ResourceKind::SagemakerDomain => "sagemaker-domain",
            ResourceKind::SagemakerFeatureGroup => "sagemaker-feature-group",
            ResourceKind::VertexEndpoint => "vertex-endpoint",
            ResourceKind::VertexDataset => "vertex-dataset",
            ResourceKind::VertexModel => "vertex-model",
            ResourceKind::BigqueryDataset => "bigquery-dataset",
            ResourceKind::GcsBucket => "gcs-bucket",
            ResourceKind::GcsObject => "gcs-object",
        }
    }

    pub fn provider(&self) -> Provider {
        match self {
            ResourceKind::GcsBucket | ResourceKind::GcsObject => Provider::Gcp,
            _ => Provider::Aws,
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The precise encryption class of a resource (DESIGN.md §4).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum EncryptionClass {
    /// S3-managed keys (AES256).
    SseS3,
    /// The AWS-managed `aws/s3` KMS key.
    AwsManagedKms,
    /// A customer-managed key that is not the resource's team key.
    ForeignCmk,
    /// Already on the team key: nothing to do.
    TargetCmk,
    /// Customer-provided keys: reported, never touched.
    SseC,
    /// Dual-layer SSE-KMS: reported, never touched.
    DsseKms,
    GoogleManaged,
    Cmek,
    Unencrypted,
    /// An encryption rekey does not know (a newer algorithm): never planned (DESIGN.md I5).
    Unknown,
}

impl EncryptionClass {
    pub fn as_str(&self) -> &'static str {
        match self {
            EncryptionClass::SseS3 => "sse-s3",
            EncryptionClass::AwsManagedKms => "aws-managed-kms",
            EncryptionClass::ForeignCmk => "foreign-cmk",
            EncryptionClass::TargetCmk => "target-cmk",
            EncryptionClass::SseC => "sse-c",
            EncryptionClass::DsseKms => "dsse-kms",
            EncryptionClass::GoogleManaged => "google-managed",
            EncryptionClass::Cmek => "cmek",
            EncryptionClass::Unencrypted => "unencrypted",
            EncryptionClass::Unknown => "unknown",
        }
    }
}

impl fmt::Display for EncryptionClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Server-side encryption as S3 reports it, with any KMS key already resolved to its ARN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub struct S3Encryption {
    /// `none`, `AES256`, `aws:kms`, `aws:kms:dsse`, or `sse-c`.
    pub algorithm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    /// The KMS key manager (`AWS` or `CUSTOMER`), when the key is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_manager: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub bucket_key: bool,
    /// A bucket rule's `BlockedEncryptionTypes` (e.g. `SSE-C`): kept when the rule changes.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub blocked_types: Vec<String>,
}

impl S3Encryption {
    pub const NONE: &'static str = "none";
    pub const SSE_C: &'static str = "sse-c";

    /// The class of this encryption for a resource whose team key is `target` (an ARN).
    pub fn classify(&self, target: Option<&str>) -> EncryptionClass {
        match self.algorithm.as_str() {
            "AES256" => EncryptionClass::SseS3,
            "aws:kms:dsse" => EncryptionClass::DsseKms,
            Self::SSE_C => EncryptionClass::SseC,
            "aws:kms" => {
                if self.key_manager.as_deref() == Some("AWS") {
                    EncryptionClass::AwsManagedKms
                } else if target.is_some() && self.kms_key_arn.as_deref() == target {
                    EncryptionClass::TargetCmk
                } else {
                    EncryptionClass::ForeignCmk
                }
            }
            Self::NONE | "" => EncryptionClass::Unencrypted,
            _ => EncryptionClass::Unknown,
        }
    }
}

/// Object Lock state of an object, as HEAD reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct ObjectLock {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub legal_hold: bool,
    /// The bucket has Object Lock, and the object's retention and legal hold could not be
    /// read (HEAD leaves them out without s3:GetObjectRetention / s3:GetObjectLegalHold).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub unreadable: bool,
}

impl ObjectLock {
    /// Locked, or not known not to be (I5: a check that cannot decide blocks).
    pub fn is_locked(&self) -> bool {
        self.mode.is_some() || self.legal_hold || self.unreadable
    }
}

/// An S3 bucket and what the inventory learned about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct S3Bucket {
    pub account: String,
    pub region: String,
    pub bucket: String,
    /// The bucket's default encryption rule; `algorithm: none` when it has none.
    pub default_encryption: S3Encryption,
    /// `Enabled`, `Suspended`, or `Unversioned`.
    pub versioning: String,
    pub object_lock: bool,
    pub tags: BTreeMap<String, String>,
    /// Object ACLs are in force (Object Ownership is not BucketOwnerEnforced).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub acls: bool,
    /// A lifecycle transition or a website configuration can change objects' class or
    /// redirect without changing their ETag: each copy reads the object first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changes_in_place: bool,
    /// The S3 Inventory report its objects were read from (none: LIST + HEAD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportSource>,
    /// What surrounds the bucket: its policy, replication and event notifications.
    #[serde(default, skip_serializing_if = "Surroundings::is_empty")]
    pub surroundings: Surroundings,
    /// The consumer graph: every principal the bucket policy or replication lets use the
    /// bucket, with its key-access verdict for each team key of the account (DESIGN §5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<crate::access::Verdict>,
}

/// The S3 Inventory report a bucket's objects came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReportSource {
    /// `s3://…/manifest.json`.
    pub manifest: String,
    /// When the report's scan began (RFC 3339): objects written after it are not in it.
    pub created: String,
    /// The inventory configuration it was chosen from (none: named in the campaign).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<String>,
}

/// A bucket's policy, replication and notification configuration, as read at inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Surroundings {
    /// The bucket policy (JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication>,
    #[serde(default, skip_serializing_if = "Notifications::is_empty")]
    pub notifications: Notifications,
    /// The bucket's access points in the owner's account, each with its policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_points: Vec<AccessPoint>,
    /// CloudFront origins (in the campaign's account) that read the bucket, directly or
    /// through one of its access points' aliases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<CdnOrigin>,
}

/// An S3 access point of a bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AccessPoint {
    pub name: String,
    pub arn: String,
    /// The alias a client (or a CloudFront origin) may use in place of the bucket name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alias: String,
    /// The access point policy (JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// One origin of a CloudFront distribution whose domain is the bucket (or an alias of one of
/// its access points), and how CloudFront signs its requests to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CdnOrigin {
    /// The distribution's ARN.
    pub distribution: String,
    /// The origin's id within the distribution.
    pub origin: String,
    pub domain: String,
    /// The origin access control, when CloudFront signs with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oac: Option<String>,
    /// The origin access identity (`origin-access-identity/cloudfront/ID`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oai: Option<String>,
    /// The origin is the bucket's website endpoint (a custom origin; anonymous reads).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub website: bool,
    /// The origin access control's SigningBehavior (`always`, `never`, `no-override`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<String>,
    /// The origin path (path-style origins name their bucket there).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin_path: String,
    /// The origin cannot be tied to one bucket (an Object Lambda access point, a path-style
    /// endpoint without a bucket): it is an unseen reader of every bucket.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unattributed: bool,
}

/// What an origin domain (and its origin path) reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginTarget {
    /// A bucket by name (or an access point alias, which looks like one); `website`: through
    /// its website endpoint (anonymous reads).
    Bucket { name: String, website: bool },
    /// An access point's own hostname (`NAME-ACCOUNT.s3-accesspoint.REGION.amazonaws.com`).
    AccessPoint { name: String, account: String },
    /// An S3 hostname rekey cannot tie to one bucket (an Object Lambda access point, a
    /// path-style endpoint without a bucket in the origin path).
    Unattributed,
    /// Another AWS service (a load balancer, API Gateway, MediaStore, ...): not S3.
    NotS3,
}

/// Whether `service` (the labels of an `amazonaws.com` host from the S3 label on) is an S3
/// endpoint: `s3`, `s3-REGION`, `s3-external-1`, `s3-fips[-REGION]`, `s3-website[-REGION]`,
/// `s3-accelerate`, `s3-accesspoint`, `s3-object-lambda`, `s3-global`, then only `dualstack`,
/// `fips` or region labels.
fn is_s3_service(service: &str) -> bool {
    let is_region = |l: &str| {
        let parts: Vec<&str> = l.split('-').collect();
        parts.len() >= 3
            && parts[0].len() == 2
            && parts[0].bytes().all(|b| b.is_ascii_lowercase())
            && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
            && parts[1..parts.len() - 1]
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
    };
    let mut labels = service.split('.');
    let first = labels.next().unwrap_or_default();
    let first_ok = matches!(
        first,
        "s3" | "s3-external-1"
            | "s3-fips"
            | "s3-website"
            | "s3-accelerate"
            | "s3-accesspoint"
            | "s3-object-lambda"
            | "s3-global"
    ) || ["s3-", "s3-website-", "s3-fips-"]
        .iter()
        .any(|p| first.strip_prefix(p).is_some_and(is_region));
    first_ok && labels.all(|l| matches!(l, "dualstack" | "fips") || is_region(l))
}

/// What an origin reads: `B.s3.amazonaws.com`, `B.s3.REGION.amazonaws.com`,
/// `B.s3-REGION.amazonaws.com`, `B.s3.dualstack.REGION.amazonaws.com`, `B.s3-fips…`,
/// `B.s3-website-REGION.amazonaws.com`, `B.s3-website.REGION.amazonaws.com` (and
/// `.amazonaws.com.cn`); an access point or Object Lambda hostname; path style
/// (`s3.REGION.amazonaws.com` with the bucket as the origin path's first segment). A domain
/// outside AWS is taken as a bucket of that name served as a website (a CNAME onto a bucket's
/// website endpoint); a bucket of that name is rarely anything else.
pub fn origin_target(domain: &str, origin_path: &str) -> OriginTarget {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let Some(host) = domain
        .strip_suffix(".amazonaws.com")
        .or_else(|| domain.strip_suffix(".amazonaws.com.cn"))
    else {
        return OriginTarget::Bucket {
            name: domain.clone(),
            website: true,
        };
    };
    // The last ".s3" (or a leading "s3") that starts an S3 service part (a bucket name may
    // itself hold ".s3"; a load balancer may be named "s3-...").
    let mut candidates: Vec<usize> = host.match_indices(".s3").map(|(i, _)| i + 1).collect();
    if host.starts_with("s3") {
        candidates.insert(0, 0);
    }
    let Some(i) = candidates
        .into_iter()
        .rev()
        .find(|&i| is_s3_service(&host[i..]))
    else {
        return OriginTarget::NotS3;
    };
    let service = &host[i..];
    if service.starts_with("s3-object-lambda") {
        return OriginTarget::Unattributed;
    }
    if i == 0 {
        // Path style: the bucket is the origin path's first segment.
        return match origin_path.trim_start_matches('/').split('/').next() {
            Some(b) if !b.is_empty() => OriginTarget::Bucket {
                name: b.to_string(),
                website: service.starts_with("s3-website"),
            },
            _ => OriginTarget::Unattributed,
        };
    }
    let name = &host[..i - 1];
    if service.starts_with("s3-global") {
        // A Multi-Region Access Point: `ALIAS.accesspoint.s3-global.amazonaws.com`.
        return match name.strip_suffix(".accesspoint") {
            Some(alias) => OriginTarget::Bucket {
                name: alias.to_string(),
                website: false,
            },
            None => OriginTarget::Unattributed,
        };
    }
    if service.starts_with("s3-accesspoint") {
        return match name.rsplit_once('-') {
            Some((ap, account))
                if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) =>
            {
                OriginTarget::AccessPoint {
                    name: ap.to_string(),
                    account: account.to_string(),
                }
            }
            _ => OriginTarget::Unattributed,
        };
    }
    if name.ends_with("--ol-s3") {
        // An Object Lambda access point alias.
        return OriginTarget::Unattributed;
    }
    OriginTarget::Bucket {
        name: name.to_string(),
        website: service.starts_with("s3-website"),
    }
}

impl Surroundings {
    pub fn is_empty(&self) -> bool {
        *self == Surroundings::default()
    }

    /// What the plan judged: apply and verify refuse a bucket whose surroundings changed.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let text = serde_json::to_string(self).unwrap_or_default();
        format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Replication {
    pub role: String,
    pub rules: Vec<ReplicationRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReplicationRule {
    pub id: String,
    pub enabled: bool,
    /// The rule's prefix filter (empty: the whole bucket; a tag filter counts as the whole
    /// bucket, the careful reading).
    #[serde(default)]
    pub prefix: String,
    pub destination_bucket: String,
    /// `SourceSelectionCriteria.SseKmsEncryptedObjects` is Enabled.
    pub sse_kms_opt_in: bool,
    /// `Destination.EncryptionConfiguration.ReplicaKmsKeyID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_kms_key: Option<String>,
}

/// Event notifications that fire on object creation (a copy is one), by destination kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Notifications {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_create: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub eventbridge: bool,
}

impl Notifications {
    pub fn is_empty(&self) -> bool {
        self.on_create.is_empty() && !self.eventbridge
    }
}

/// One S3 object version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct S3Object {
    pub account: String,
    pub region: String,
    pub bucket: String,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    pub is_latest: bool,
    pub size: u64,
    pub etag: String,
    pub storage_class: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_status: Option<String>,
    pub last_modified: String,
    pub encryption: S3Encryption,
    #[serde(skip_serializing_if = "lock_is_default", default)]
    pub lock: ObjectLock,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website_redirect: Option<String>,
    /// A content hash that survives a rewrite (Cloud Storage objects' MD5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
}

fn lock_is_default(l: &ObjectLock) -> bool {
    *l == ObjectLock::default()
}

/// One model artifact URL of a SageMaker model, with the team key its S3 location maps to
/// and whether the model's execution role may use that key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SmArtifact {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_key: Option<String>,
    /// Why the execution role cannot use the team key (with the statement to add); none: it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_access: Option<String>,
    /// The tags of the artifact's bucket, which the mapping read (a plan from a saved
    /// inventory maps the artifact again with them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bucket_tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SmModel {
    pub name: String,
    pub execution_role_arn: String,
    pub artifacts: Vec<SmArtifact>,
}

/// A SageMaker endpoint, its current config's keys, and the models it serves: the artifact
/// graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SmEndpoint {
    pub account: String,
    pub region: String,
    pub name: String,
    pub arn: String,
    pub status: String,
    pub config: String,
    /// The config's KmsKeyId resolved to an ARN; none: service-managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_manager: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data_capture: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_capture_kms_key_arn: Option<String>,
    /// The config has an async-inference output (its key is re-keyed too).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub async_output: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_output_kms_key_arn: Option<String>,
    /// Production and shadow variants: what storage the config's KmsKeyId covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<crate::providers::sagemaker::VariantInfo>,
    pub models: Vec<SmModel>,
    pub tags: BTreeMap<String, String>,
    /// The key-access preflight: every principal that will use the team keys of this endpoint
    /// and its artifacts, with its verdict (DESIGN §5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<crate::access::Verdict>,
    /// The fingerprint of the config and models the preflight checked.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_sha256: String,
}

impl SmEndpoint {
    /// No storage a KmsKeyId covers (local NVMe or serverless variants only) and no data
    /// capture or async output: nothing for a key to do.
    pub fn nothing_to_cover(&self) -> bool {
        crate::providers::sagemaker::volume_key(&self.variants).coverage
            == crate::providers::sagemaker::Coverage::NotCovered
            && !self.data_capture
            && !self.async_output
    }
}

/// A notebook instance or training job: reported (they cannot be re-keyed in place).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SmOther {
    pub account: String,
    pub region: String,
    pub name: String,
    pub arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_manager: Option<String>,
    /// Training jobs: the volume key and the S3 output path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_kms_key_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_path: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// The class of a SageMaker resource's key: none or AWS-managed is service-managed.
pub fn classify_key(
    arn: Option<&str>,
    manager: Option<&str>,
    target: Option<&str>,
) -> EncryptionClass {
    match arn {
        None => EncryptionClass::AwsManagedKms,
        Some(_) if manager == Some("AWS") => EncryptionClass::AwsManagedKms,
        Some(a) if Some(a) == target => EncryptionClass::TargetCmk,
        Some(_) => EncryptionClass::ForeignCmk,
    }
}

/// A Cloud Storage bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GcsBucket {
    /// `gcp:PROJECT`.
    pub account: String,
    pub project: String,
    pub bucket: String,
    pub location: String,
    /// The default Cloud KMS key (version suffix stripped); none: Google-managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_kms_key: Option<String>,
    pub versioning: bool,
    pub labels: BTreeMap<String, String>,
    /// The bucket's default storage class (what a rewrite naming no class gives an object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

/// A Cloud Storage object (its live generation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GcsObject {
    pub account: String,
    pub bucket: String,
    pub name: String,
    pub generation: i64,
    pub size: u64,
    pub storage_class: String,
    pub content_type: String,
    /// The object's Cloud KMS key (version suffix stripped); none: Google-managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub customer_supplied: bool,
    /// The content's MD5 (or CRC32C): a rewrite keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// A hold or retention that keeps the live object from being replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
}

/// The class of a GCS key: none is Google-managed; keys compare as key names.
pub fn classify_gcs(
    key: Option<&str>,
    customer_supplied: bool,
    target: Option<&str>,
) -> EncryptionClass {
    match key {
        _ if customer_supplied => EncryptionClass::SseC,
        None => EncryptionClass::GoogleManaged,
        Some(k) if Some(k) == target => EncryptionClass::TargetCmk,
        Some(_) => EncryptionClass::Cmek,
    }
}

/// Anything the inventory yields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Resource {
    S3Bucket(S3Bucket),
    S3Object(S3Object),
    SagemakerEndpoint(SmEndpoint),
    SagemakerNotebookInstance(SmOther),
    SagemakerTrainingJob(SmOther),
    GcsBucket(GcsBucket),
    GcsObject(GcsObject),
}

impl Resource {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::S3Bucket(_) => ResourceKind::S3Bucket,
            Resource::S3Object(_) => ResourceKind::S3Object,
            Resource::SagemakerEndpoint(_) => ResourceKind::SagemakerEndpoint,
            Resource::SagemakerNotebookInstance(_) => ResourceKind::SagemakerNotebookInstance,
            Resource::SagemakerTrainingJob(_) => ResourceKind::SagemakerTrainingJob,
            Resource::GcsBucket(_) => ResourceKind::GcsBucket,
            Resource::GcsObject(_) => ResourceKind::GcsObject,
        }
    }

    pub fn provider(&self) -> Provider {
        self.kind().provider()
    }

    /// The account (as the campaign names it) the resource lives in.
    pub fn account(&self) -> &str {
        match self {
            Resource::S3Bucket(b) => &b.account,
            Resource::S3Object(o) => &o.account,
            Resource::SagemakerEndpoint(e) => &e.account,
            Resource::SagemakerNotebookInstance(o) | Resource::SagemakerTrainingJob(o) => {
                &o.account
            }
            Resource::GcsBucket(b) => &b.account,
            Resource::GcsObject(o) => &o.account,
        }
    }

    /// A name a human reads: `s3://bucket` or `s3://bucket/key`.
    pub fn display_name(&self) -> String {
        match self {
            Resource::S3Bucket(b) => format!("s3://{}", b.bucket),
            Resource::S3Object(o) => match &o.version_id {
                Some(v) if !o.is_latest => format!("s3://{}/{} (version {v})", o.bucket, o.key),
                _ => format!("s3://{}/{}", o.bucket, o.key),
            },
            Resource::SagemakerEndpoint(e) => format!("sagemaker:endpoint/{}", e.name),
            Resource::SagemakerNotebookInstance(n) => {
                format!("sagemaker:notebook-instance/{}", n.name)
            }
            Resource::SagemakerTrainingJob(t) => format!("sagemaker:training-job/{}", t.name),
            Resource::GcsBucket(b) => format!("gs://{}", b.bucket),
            Resource::GcsObject(o) => format!("gs://{}/{}", o.bucket, o.name),
        }
    }
}

/// A KMS key as KMS describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KmsKey {
    pub arn: String,
    pub key_id: String,
    /// `AWS` or `CUSTOMER`.
    pub manager: String,
    /// `Enabled`, `Disabled`, `PendingDeletion`, ...
    pub state: String,
    pub spec: String,
    pub usage: String,
}

impl KmsKey {
    pub fn region(&self) -> Option<&str> {
        self.arn.split(':').nth(3)
    }

    pub fn account(&self) -> Option<&str> {
        self.arn.split(':').nth(4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_domains_name_what_they_read() {
        let b = |n: &str, w: bool| OriginTarget::Bucket {
            name: n.into(),
            website: w,
        };
        let cases = [
            ("b.s3.amazonaws.com", "", b("b", false)),
            (
                "my.bucket.s3.us-east-1.amazonaws.com",
                "",
                b("my.bucket", false),
            ),
            (
                "logs.s3-archive.s3-eu-west-1.amazonaws.com",
                "",
                b("logs.s3-archive", false),
            ),
            ("b.s3.dualstack.eu-west-1.amazonaws.com", "", b("b", false)),
            ("b.s3-fips.us-east-1.amazonaws.com", "", b("b", false)),
            ("b.s3-website-us-east-1.amazonaws.com", "", b("b", true)),
            ("b.s3-website.eu-central-1.amazonaws.com", "", b("b", true)),
            ("B.S3.cn-north-1.amazonaws.com.cn.", "", b("b", false)),
            (
                "ap-abc-s3alias.s3.us-east-1.amazonaws.com",
                "",
                b("ap-abc-s3alias", false),
            ),
            ("s3.us-east-1.amazonaws.com", "/b/prefix", b("b", false)),
            ("www.example.com", "", b("www.example.com", true)),
            (
                "analytics-123456789012.s3-accesspoint.us-east-1.amazonaws.com",
                "",
                OriginTarget::AccessPoint {
                    name: "analytics".into(),
                    account: "123456789012".into(),
                },
            ),
            (
                "analytics-123456789012.s3-accesspoint.dualstack.us-east-1.amazonaws.com",
                "",
                OriginTarget::AccessPoint {
                    name: "analytics".into(),
                    account: "123456789012".into(),
                },
            ),
            (
                "olap-123456789012.s3-object-lambda.us-east-1.amazonaws.com",
                "",
                OriginTarget::Unattributed,
            ),
            (
                "my-olap-abc--ol-s3.s3.us-east-1.amazonaws.com",
                "",
                OriginTarget::Unattributed,
            ),
            ("s3.amazonaws.com", "", OriginTarget::Unattributed),
            (
                "mfzwi23gnjvgw.mrap.accesspoint.s3-global.amazonaws.com",
                "",
                b("mfzwi23gnjvgw.mrap", false),
            ),
            (
                "s3-proxy-1234567890.us-east-1.elb.amazonaws.com",
                "",
                OriginTarget::NotS3,
            ),
            ("b.s3-proxy.elb.amazonaws.com", "", OriginTarget::NotS3),
            ("b.s3-external-1.amazonaws.com", "", b("b", false)),
            ("b.s3-accelerate.amazonaws.com", "", b("b", false)),
            ("s3.dualstack.us-east-1.amazonaws.com", "b/x", b("b", false)),
            ("b.s3.us-gov-west-1.amazonaws.com", "", b("b", false)),
            ("b.elb.amazonaws.com", "", OriginTarget::NotS3),
            (
                "abc.execute-api.us-east-1.amazonaws.com",
                "",
                OriginTarget::NotS3,
            ),
        ];
        for (domain, path, want) in cases {
            assert_eq!(origin_target(domain, path), want, "{domain}");
        }
    }

    fn kms(arn: &str, manager: &str) -> S3Encryption {
        S3Encryption {
            algorithm: "aws:kms".into(),
            kms_key_arn: Some(arn.into()),
            key_manager: Some(manager.into()),
            ..Default::default()
        }
    }

    #[test]
    fn classify_compares_arns_not_aliases() {
        let target = "arn:aws:kms:us-east-1:111111111111:key/aaaa";
        assert_eq!(
            kms(target, "CUSTOMER").classify(Some(target)),
            EncryptionClass::TargetCmk
        );
        assert_eq!(
            kms("arn:aws:kms:us-east-1:111111111111:key/bbbb", "CUSTOMER").classify(Some(target)),
            EncryptionClass::ForeignCmk
        );
        // The same key named by alias is not an ARN match: callers must resolve first.
        assert_eq!(
            kms("alias/ml-fraud", "CUSTOMER").classify(Some(target)),
            EncryptionClass::ForeignCmk
        );
        assert_eq!(
            kms(target, "AWS").classify(Some(target)),
            EncryptionClass::AwsManagedKms
        );
        assert_eq!(
            kms(target, "CUSTOMER").classify(None),
            EncryptionClass::ForeignCmk
        );
    }

    #[test]
    fn classify_other_algorithms() {
        let e = |a: &str| S3Encryption {
            algorithm: a.into(),
            ..Default::default()
        };
        assert_eq!(e("AES256").classify(None), EncryptionClass::SseS3);
        assert_eq!(e("aws:kms:dsse").classify(None), EncryptionClass::DsseKms);
        assert_eq!(e("sse-c").classify(None), EncryptionClass::SseC);
        assert_eq!(e("none").classify(None), EncryptionClass::Unencrypted);
        assert_eq!(e("aws:fancy").classify(None), EncryptionClass::Unknown);
    }
}
