//! The interleaving suite (issue 8, DESIGN.md §1a). For every step kind of the local engines,
//! rekey is driven through an apply, a resumed apply and a rollback while a test hook
//! (scripts/fault_hook.py) acts at the N-th request the command makes: a foreign write to the
//! same resource, a 5xx before or after the request is served, or a SIGKILL before or after
//! it. N sweeps every request of the command. After each trial the invariants are checked
//! against what the cloud says, never against what rekey says it did:
//! - I1 no foreign write is lost or made non-current;
//! - I2 every resource ends on its team key or on its original encryption, and the journal,
//!   the run report and `verify` agree with the cloud;
//! - I3 rollback restores every original, field for field, except reported conflicts;
//! - I4 nothing is deleted (and no multipart upload is left behind).
//!
//! Each kind runs on a server of its own, so the sweeps run side by side.
//! `REKEY_SWEEP_EVERY=K` runs every K-th trial only (a quick look); the default runs all, but
//! every other one for the batch engines (`REKEY_SWEEP_EVERY=1` runs all of theirs too).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
use rekey::providers::gcs::GcsClient;

use crate::harness::{self, unique, Moto};

const PROJECT: &str = "demo-project";
const MIB: usize = 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// CopyObject in an unversioned bucket (with its bucket-default step).
    Copy,
    /// CopyObject of the current version in a versioned bucket.
    CopyVersioned,
    /// UploadPartCopy in two parts + CompleteMultipartUpload.
    Multipart,
    /// UpdateObjectEncryption in an unversioned bucket.
    Update,
    /// UpdateObjectEncryption of every version (`versions: all`) of a versioned bucket.
    UpdateVersions,
    /// A SageMaker endpoint moved to a cloned config.
    Endpoint,
    /// A Cloud Storage bucket default and an object rewrite.
    Gcs,
    /// An S3 Batch Operations UpdateObjectEncryption job over the current version of a
    /// versioned bucket (engine batch-update-encryption): manifest, CreateJob, DescribeJob,
    /// completion report.
    BatchUpdate,
    /// An S3 Batch Operations PutObjectCopy job (engine batch-copy, unguarded, accepted).
    BatchCopy,
    /// A Cloud Storage batch operations rewriteObject job (engine batch-rewrite, unguarded,
    /// accepted).
    GcsBatch,
}

impl Kind {
    fn versioned(self) -> bool {
        matches!(
            self,
            Kind::CopyVersioned | Kind::UpdateVersions | Kind::BatchUpdate | Kind::BatchCopy
        )
    }

    /// A batch engine's kind: only the job's own requests (manifest, S3 Control, report) are
    /// swept in its apply; every other request is the local engines' and swept with them.
    fn batch(self) -> bool {
        matches!(self, Kind::BatchUpdate | Kind::BatchCopy | Kind::GcsBatch)
    }

    fn gcs(self) -> bool {
        matches!(self, Kind::Gcs | Kind::GcsBatch)
    }

    /// The re-keyed object is a new version on top of the planned one.
    fn copies_version(self) -> bool {
        matches!(self, Kind::CopyVersioned | Kind::BatchCopy)
    }
}

/// The bucket (suffix) of a batch kind's manifests and reports.
const OPS: &str = "rekey-ops";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Apply,
    /// An apply killed after its last request (every effect landed, no outcome journaled),
    /// then the resumed apply is swept.
    Resume,
    Rollback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Another writer writes the same resource just before request N.
    Write,
    FailBefore,
    FailAfter,
    KillBefore,
    KillAfter,
}

const FAULTS: [Fault; 5] = [
    Fault::Write,
    Fault::FailBefore,
    Fault::FailAfter,
    Fault::KillBefore,
    Fault::KillAfter,
];

/// A server (or two) of the sweep's own.
struct Lab {
    aws: Moto,
    gcs: Option<Moto>,
    s3: aws_sdk_s3::Client,
    kms: aws_sdk_kms::Client,
    sm: aws_sdk_sagemaker::Client,
}

impl Lab {
    async fn new(kind: Kind) -> Lab {
        let aws = harness::private_overlay(&[("REKEY_OVERLAY_UPDATE_POLLS", "1")]);
        let conf = harness::sdk_config(&aws.endpoint).await;
        Lab {
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&conf)
                    .force_path_style(true)
                    .build(),
            ),
            kms: aws_sdk_kms::Client::new(&conf),
            sm: aws_sdk_sagemaker::Client::new(&conf),
            gcs: kind.gcs().then(harness::private_gcs),
            aws,
        }
    }

    fn gcs_client(&self) -> GcsClient {
        GcsClient::new(PROJECT, self.gcs.as_ref().map(|g| g.endpoint.as_str()))
    }

    fn hook_endpoint(&self, kind: Kind) -> &str {
        match (kind, &self.gcs) {
            (Kind::Gcs | Kind::GcsBatch, Some(g)) => &g.endpoint,
            _ => &self.aws.endpoint,
        }
    }
}

/// One estate: its resources, campaign, plan and what everything looked like before.
struct Estate {
    _dir: tempfile::TempDir,
    prefix: String,
    /// The scope of the hook: the access key rekey signs with (AWS), or the bucket prefix.
    scope: String,
    plan: PathBuf,
    bucket: String,
    key: String,
    team_arn: String,
    before: Snapshot,
}

/// What the cloud says about the estate's resources.
#[derive(Debug, Clone, PartialEq, Default)]
struct Snapshot {
    rule: String,
    /// Every version (or the one object) of the key: version id (or "") → state.
    versions: BTreeMap<String, ObjState>,
    current: Option<String>,
    endpoint_config: String,
    /// Multipart uploads in the bucket, with their parts.
    uploads: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct ObjState {
    body: Vec<u8>,
    /// `AES256`, `aws:kms KEY`, `none`, or a GCS key name.
    encryption: String,
    bucket_key: bool,
    fields: BTreeMap<String, String>,
}

pub(crate) fn http(endpoint: &str, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
}

pub(crate) fn arm(endpoint: &str, scope: &str, spec: serde_json::Value) {
    let mut spec = spec;
    spec["scope"] = scope.into();
    http(endpoint, "POST", "/_rekey/hook", &spec.to_string());
}

pub(crate) fn hook_state(endpoint: &str, scope: &str) -> serde_json::Value {
    serde_json::from_str(&http(
        endpoint,
        "GET",
        &format!("/_rekey/hook?scope={scope}"),
        "",
    ))
    .unwrap_or_default()
}

pub(crate) fn release(endpoint: &str, scope: &str, drop: bool) {
    http(
        endpoint,
        "POST",
        "/_rekey/hook/release",
        &serde_json::json!({ "scope": scope, "drop": drop }).to_string(),
    );
}

fn campaign(kind: Kind, p: &str, gcs: Option<&str>) -> String {
    let s3 = |versions: &str, engine: &str| {
        format!(
            "aws:\n  region: us-east-1\n  s3: {{ buckets: [\"{p}ml-*\"], versions: {versions}, engine: {engine}, multipart_threshold: 5242880 }}\n"
        )
    };
    let (head, mapping) = match kind {
        Kind::Copy | Kind::CopyVersioned | Kind::Multipart => {
            (s3("current", "copy"), format!("{{ match: {{ bucket: \"{p}ml-*\" }}, key: team }}"))
        }
        Kind::Update => (
            s3("current", "update-encryption"),
            format!("{{ match: {{ bucket: \"{p}ml-*\" }}, key: team }}"),
        ),
        Kind::UpdateVersions => (
            s3("all", "update-encryption"),
            format!("{{ match: {{ bucket: \"{p}ml-*\" }}, key: team }}"),
        ),
        Kind::Endpoint => (
            format!(
                "aws:\n  region: us-east-1\n  s3: {{ buckets: [\"{p}none-*\"] }}\n  sagemaker: {{ endpoints: true }}\n"
            ),
            format!("{{ match: {{ kind: sagemaker-endpoint, name: \"{p}*\" }}, key: team }}"),
        ),
        Kind::BatchUpdate | Kind::BatchCopy => {
            let (engine, accept) = if kind == Kind::BatchUpdate {
                ("batch-update-encryption", "")
            } else {
                ("batch-copy", ", accept_unguarded: true")
            };
            (
                format!(
                    "aws:\n  region: us-east-1\n  s3: {{ buckets: [\"{p}ml-*\"], versions: current, engine: {engine}, batch: {{ manifest_bucket: {p}{OPS}, report_bucket: {p}{OPS}, role_arn: \"arn:aws:iam::123456789012:role/{p}jobs\"{accept} }} }}\n"
                ),
                format!("{{ match: {{ bucket: \"{p}ml-*\" }}, key: team }}"),
            )
        }
        Kind::Gcs => (
            format!(
                "gcp:\n  project: {PROJECT}\n  endpoint: {}\n  gcs: {{ buckets: [\"{p}ml-*\"], max_bytes_rewritten_per_call: 1048576 }}\n",
                gcs.unwrap()
            ),
            format!("{{ match: {{ bucket: \"{p}ml-*\" }}, key: team }}"),
        ),
        Kind::GcsBatch => (
            format!(
                "gcp:\n  project: {PROJECT}\n  endpoint: {}\n  gcs: {{ buckets: [\"{p}ml-*\"], engine: batch-rewrite, batch: {{ manifest_bucket: {p}{OPS}, accept_unguarded: true }} }}\n",
                gcs.unwrap()
            ),
            format!("{{ match: {{ bucket: \"{p}ml-*\" }}, key: team }}"),
        ),
    };
    let key = if kind.gcs() {
        crate::harness::gcp_key(gcs.unwrap(), &gcs_key(&format!("{p}team")), "");
        format!("gcp: {}", gcs_key(&format!("{p}team")))
    } else {
        format!("aws: alias/{p}team")
    };
    format!(
        "version: 1\ncampaign: sweep\n{head}keys:\n  team: {{ {key} }}\nmapping:\n  - {mapping}\nstages:\n  - {{ name: only }}\nlimits: {{ concurrency: 1, requests_per_second: 1000 }}\n"
    )
}

fn gcs_key(name: &str) -> String {
    format!("projects/{PROJECT}/locations/us/keyRings/ml/cryptoKeys/{name}")
}

pub(crate) async fn kms_key(kms: &aws_sdk_kms::Client, alias: &str) -> String {
    let k = kms.create_key().send().await.unwrap();
    let m = k.key_metadata().unwrap();
    kms.create_alias()
        .alias_name(alias)
        .target_key_id(m.key_id())
        .send()
        .await
        .unwrap();
    m.arn().unwrap().to_string()
}

fn body_of(kind: Kind, generation: usize) -> Vec<u8> {
    let size = match kind {
        // Two parts (5 MiB and 1 MiB): every boundary of a multipart copy, half the bytes.
        Kind::Multipart => 6 * MIB,
        // A rewrite in three calls of 1 MiB (rewrite tokens).
        Kind::Gcs => 5 * MIB / 2,
        Kind::GcsBatch => 4096,
        _ => 2048,
    };
    (0..size)
        .map(|i| ((i * 31 + generation * 7) % 251) as u8)
        .collect()
}

/// Create the estate of `kind` and plan it, on servers emptied first (trials run one after
/// another on the lab's own servers; an emulator that keeps every trial's resources would
/// slow each inventory down).
async fn estate(lab: &Lab, kind: Kind) -> Estate {
    http(&lab.aws.endpoint, "POST", "/moto-api/reset", "");
    if let Some(g) = &lab.gcs {
        http(&g.endpoint, "POST", "/_rekey/reset", "");
    }
    let p = unique(match kind {
        Kind::Copy => "cp",
        Kind::CopyVersioned => "cv",
        Kind::Multipart => "mp",
        Kind::Update => "up",
        Kind::UpdateVersions => "uv",
        Kind::Endpoint => "ep",
        Kind::Gcs => "gs",
        Kind::GcsBatch => "gb",
        Kind::BatchUpdate => "bu",
        Kind::BatchCopy => "bc",
    });
    let bucket = format!("{p}ml-b");
    let key = "obj".to_string();
    let team_arn = match kind {
        Kind::Gcs | Kind::GcsBatch => gcs_key(&format!("{p}team")),
        _ => kms_key(&lab.kms, &format!("alias/{p}team")).await,
    };
    match kind {
        Kind::Endpoint => {
            let account = "123456789012";
            let role = format!("arn:aws:iam::{account}:role/{p}exec");
            // rekey's own identity (moto's caller, user `moto`) is named by the key policy, so
            // the key-access preflight allows it to deploy the endpoint onto the key.
            let policy = serde_json::json!({ "Version": "2012-10-17", "Statement": [
                { "Sid": "Root", "Effect": "Allow", "Principal": { "AWS": format!("arn:aws:iam::{account}:root") }, "Action": "kms:*", "Resource": "*" },
                { "Sid": "Rekey", "Effect": "Allow", "Principal": { "AWS": format!("arn:aws:iam::{account}:user/moto") },
                  "Action": ["kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*" }
            ]});
            // The caller exists in IAM (without policies of its own, none needed: the key
            // policy names it), so that its permissions boundary is known to be absent.
            let iam = harness::clients(&lab.aws.endpoint).await.iam;
            if let Err(e) = iam.create_user().user_name("moto").send().await {
                let exists = e
                    .as_service_error()
                    .is_some_and(|e| e.is_entity_already_exists_exception());
                assert!(exists, "{e:?}");
            }
            lab.kms
                .put_key_policy()
                .key_id(&team_arn)
                .policy_name("default")
                .policy(policy.to_string())
                .send()
                .await
                .unwrap();
            lab.sm
                .create_model()
                .model_name(format!("{p}model"))
                .execution_role_arn(&role)
                .primary_container(
                    aws_sdk_sagemaker::types::ContainerDefinition::builder()
                        .image(format!("{account}.dkr.ecr.us-east-1.amazonaws.com/x:1"))
                        .model_data_url(format!("s3://{p}none-artifacts/model.tar.gz"))
                        .build(),
                )
                .send()
                .await
                .unwrap();
            for cfg in ["cfg", "other-cfg"] {
                lab.sm
                    .create_endpoint_config()
                    .endpoint_config_name(format!("{p}{cfg}"))
                    .production_variants(
                        aws_sdk_sagemaker::types::ProductionVariant::builder()
                            .variant_name("main")
                            .model_name(format!("{p}model"))
                            .initial_instance_count(1)
                            .instance_type(
                                aws_sdk_sagemaker::types::ProductionVariantInstanceType::MlM5Large,
                            )
                            .build(),
                    )
                    .send()
                    .await
                    .unwrap();
            }
            lab.sm
                .create_endpoint()
                .endpoint_name(format!("{p}ep"))
                .endpoint_config_name(format!("{p}cfg"))
                .send()
                .await
                .unwrap();
        }
        Kind::Gcs | Kind::GcsBatch => {
            let gcs = lab.gcs_client();
            // Objects take the bucket's class when written; the bucket's default is then
            // Standard, so a rewrite that names no class would silently make it Standard.
            gcs.create_bucket(serde_json::json!({ "name": bucket, "storageClass": "COLDLINE" }))
                .await
                .unwrap();
            gcs.upload(&bucket, &key, body_of(kind, 0), None)
                .await
                .unwrap();
            let endpoint = &lab.gcs.as_ref().unwrap().endpoint;
            if kind == Kind::GcsBatch {
                // The object stays in the bucket's default class (a job's rewrite names
                // none); its manifests go to a bucket of the scope; Storage Intelligence on.
                gcs.create_bucket(serde_json::json!({ "name": format!("{p}{OPS}") }))
                    .await
                    .unwrap();
                http(
                    endpoint,
                    "PATCH",
                    &format!("/v2/projects/{PROJECT}/locations/global/storageIntelligenceConfig"),
                    "{\"editionConfig\": \"STANDARD\"}",
                );
            } else {
                http(
                    endpoint,
                    "PATCH",
                    &format!("/storage/v1/b/{bucket}"),
                    "{\"storageClass\": \"STANDARD\"}",
                );
            }
        }
        _ => {
            lab.s3.create_bucket().bucket(&bucket).send().await.unwrap();
            // SSE-S3 by default, SSE-C uploads blocked: the rule must keep both.
            harness::set_sse_s3_default(&lab.s3, &bucket, true).await;
            let versioned = kind.versioned();
            if kind.batch() {
                crate::batch_engine::job_role(
                    &lab.aws.endpoint,
                    &format!("{p}jobs"),
                    "batchoperations.s3.amazonaws.com",
                )
                .await;
                lab.s3
                    .create_bucket()
                    .bucket(format!("{p}{OPS}"))
                    .send()
                    .await
                    .unwrap();
            }
            if versioned {
                harness::enable_versioning(&lab.s3, &bucket).await;
            }
            let legacy = if kind == Kind::UpdateVersions {
                Some(kms_key(&lab.kms, &format!("alias/{p}legacy")).await)
            } else {
                None
            };
            for generation in 0..if versioned { 2 } else { 1 } {
                let mut put = lab
                    .s3
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(ByteStream::from(body_of(kind, generation)))
                    .content_type("application/x-model")
                    .cache_control("max-age=600")
                    .content_disposition("attachment")
                    .expires(aws_smithy_types::DateTime::from_secs(1_900_000_000))
                    .set_website_redirect_location(
                        // A copy job carries no redirect: such objects stay local.
                        (!kind.batch()).then(|| "/elsewhere.html".to_string()),
                    )
                    .metadata("owner", "team")
                    .tagging("team=fraud&tier=gold")
                    .storage_class(StorageClass::StandardIa);
                put = match &legacy {
                    Some(k) => put
                        .server_side_encryption(ServerSideEncryption::AwsKms)
                        .ssekms_key_id(k),
                    None => put.server_side_encryption(ServerSideEncryption::Aes256),
                };
                put.send().await.unwrap();
            }
            if kind == Kind::BatchCopy {
                // A copy job's guard is the end of the second of the newest Last-Modified it
                // planned: a write within that second passes it (the documented reason copy
                // jobs are unguarded). The foreign writes come in later seconds.
                let ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_millis();
                tokio::time::sleep(Duration::from_millis(1050 - u64::from(ms))).await;
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let campaign_path = dir.path().join("campaign.yaml");
    std::fs::write(
        &campaign_path,
        campaign(kind, &p, lab.gcs.as_ref().map(|g| g.endpoint.as_str())),
    )
    .unwrap();
    let plan = dir.path().join("sweep.plan.yaml");
    let out = harness::rekey(&lab.aws.endpoint)
        .args(["plan", "-c"])
        .arg(&campaign_path)
        .arg("-o")
        .arg(&plan)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "plan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scope = if kind.gcs() {
        p.clone()
    } else {
        format!("sweep{}", p.trim_end_matches('-'))
    };
    let mut e = Estate {
        _dir: dir,
        prefix: p,
        scope,
        plan,
        bucket,
        key,
        team_arn,
        before: Snapshot::default(),
    };
    e.before = snapshot(lab, kind, &e).await;
    e
}

async fn s3_state(lab: &Lab, bucket: &str, key: &str, version: Option<&str>) -> Option<ObjState> {
    let h = lab
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_string))
        .send()
        .await
        .ok()?;
    let body = lab
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_string))
        .send()
        .await
        .ok()?
        .body
        .collect()
        .await
        .ok()?
        .into_bytes()
        .to_vec();
    let tags = lab
        .s3
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_string))
        .send()
        .await
        .ok()?;
    let mut fields = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            fields.insert(k.to_string(), v);
        }
    };
    put("content-type", h.content_type().map(str::to_string));
    put("cache-control", h.cache_control().map(str::to_string));
    put(
        "content-disposition",
        h.content_disposition().map(str::to_string),
    );
    put("expires", h.expires_string().map(str::to_string));
    put(
        "website-redirect",
        h.website_redirect_location().map(str::to_string),
    );
    put(
        "storage-class",
        Some(
            h.storage_class()
                .map(|c| c.as_str().to_string())
                .unwrap_or_else(|| "STANDARD".into()),
        ),
    );
    for (k, v) in h.metadata().cloned().unwrap_or_default() {
        put(&format!("meta-{k}"), Some(v));
    }
    for t in tags.tag_set() {
        put(&format!("tag-{}", t.key()), Some(t.value().to_string()));
    }
    Some(ObjState {
        body,
        encryption: match (h.server_side_encryption(), h.ssekms_key_id()) {
            (Some(s), Some(k)) => format!("{} {k}", s.as_str()),
            (Some(s), None) => s.as_str().to_string(),
            (None, _) => "none".into(),
        },
        bucket_key: h.bucket_key_enabled().unwrap_or(false),
        fields,
    })
}

async fn snapshot(lab: &Lab, kind: Kind, e: &Estate) -> Snapshot {
    let mut s = Snapshot::default();
    match kind {
        Kind::Endpoint => {
            let d = lab
                .sm
                .describe_endpoint()
                .endpoint_name(format!("{}ep", e.prefix))
                .send()
                .await
                .unwrap();
            s.endpoint_config = d.endpoint_config_name().unwrap_or_default().to_string();
        }
        Kind::Gcs | Kind::GcsBatch => {
            let gcs = lab.gcs_client();
            s.rule = gcs
                .get_bucket(&e.bucket)
                .await
                .map(|b| b.default_kms_key.unwrap_or_else(|| "google-managed".into()))
                .unwrap_or_default();
            if let Ok(o) = gcs.get_object(&e.bucket, &e.key, None).await {
                let body = gcs.download(&e.bucket, &e.key).await.unwrap_or_default();
                s.current = Some(o.generation.to_string());
                s.versions.insert(
                    o.generation.to_string(),
                    ObjState {
                        body,
                        encryption: o.kms_key.unwrap_or_else(|| "google-managed".into()),
                        bucket_key: false,
                        fields: [("storage-class".to_string(), o.storage_class)].into(),
                    },
                );
            }
        }
        _ => {
            s.rule = match lab
                .s3
                .get_bucket_encryption()
                .bucket(&e.bucket)
                .send()
                .await
            {
                Ok(r) => {
                    let rule = &r.server_side_encryption_configuration().unwrap().rules()[0];
                    let d = rule.apply_server_side_encryption_by_default().unwrap();
                    format!(
                        "{} {} bucket-key={} blocked={:?}",
                        d.sse_algorithm().as_str(),
                        d.kms_master_key_id().unwrap_or("-"),
                        rule.bucket_key_enabled().unwrap_or(false),
                        rule.blocked_encryption_types()
                            .map(|b| b.encryption_type().to_vec())
                            .unwrap_or_default()
                    )
                }
                Err(_) => "none".into(),
            };
            let versions = lab
                .s3
                .list_object_versions()
                .bucket(&e.bucket)
                .send()
                .await
                .unwrap();
            for v in versions.versions() {
                let id = v.version_id().unwrap_or("null").to_string();
                let vid = (id != "null").then_some(id.as_str());
                if let Some(st) = s3_state(lab, &e.bucket, &e.key, vid).await {
                    if v.is_latest() == Some(true) {
                        s.current = Some(id.clone());
                    }
                    s.versions.insert(id, st);
                }
            }
            let uploads = lab
                .s3
                .list_multipart_uploads()
                .bucket(&e.bucket)
                .send()
                .await
                .unwrap();
            for u in uploads.uploads() {
                let parts = lab
                    .s3
                    .list_parts()
                    .bucket(&e.bucket)
                    .key(u.key().unwrap_or_default())
                    .upload_id(u.upload_id().unwrap_or_default())
                    .send()
                    .await
                    .map(|p| p.parts().len())
                    .unwrap_or(0);
                s.uploads.push(parts);
            }
        }
    }
    s
}

/// The foreign write another writer makes; what it wrote.
async fn foreign_write(lab: &Lab, kind: Kind, e: &Estate, n: usize) -> Option<String> {
    match kind {
        Kind::Endpoint => {
            // A redeploy; SageMaker refuses it while an update is in progress.
            lab.sm
                .update_endpoint()
                .endpoint_name(format!("{}ep", e.prefix))
                .endpoint_config_name(format!("{}other-cfg", e.prefix))
                .send()
                .await
                .ok()
                .map(|_| format!("{}other-cfg", e.prefix))
        }
        Kind::Gcs | Kind::GcsBatch => lab
            .gcs_client()
            .upload(&e.bucket, &e.key, format!("foreign {n}").into_bytes(), None)
            .await
            .ok()
            .map(|o| o.generation.to_string()),
        _ => lab
            .s3
            .put_object()
            .bucket(&e.bucket)
            .key(&e.key)
            .body(ByteStream::from(format!("foreign {n}").into_bytes()))
            .send()
            .await
            .ok()
            .map(|o| o.version_id().unwrap_or("null").to_string()),
    }
}

/// The rekey command of a phase, signing with the estate's scope (the hook's access key).
fn command(lab: &Lab, e: &Estate, rollback: bool) -> Command {
    let mut c = harness::rekey(&lab.aws.endpoint);
    c.env("AWS_ACCESS_KEY_ID", &e.scope)
        .arg(if rollback { "rollback" } else { "apply" })
        .arg(&e.plan)
        .arg("--yes")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

struct Ran {
    code: Option<i32>,
    fired: bool,
    wrote: Option<String>,
    log: Vec<String>,
    output: String,
}

/// Run `cmd` with the hook armed for `fault` at request `n` (none: count only), acting on it.
async fn run_hooked(
    lab: &Lab,
    kind: Kind,
    e: &Estate,
    mut cmd: Command,
    at: Option<(usize, Fault)>,
) -> Ran {
    let hooks = lab.hook_endpoint(kind).to_string();
    let spec = match at {
        None => serde_json::json!({ "action": "count" }),
        Some((n, Fault::FailBefore)) => {
            serde_json::json!({ "action": "fail", "at": n, "when": "before" })
        }
        Some((n, Fault::FailAfter)) => {
            serde_json::json!({ "action": "fail", "at": n, "when": "after" })
        }
        Some((n, Fault::KillAfter)) => {
            serde_json::json!({ "action": "pause", "at": n, "when": "after" })
        }
        Some((n, _)) => serde_json::json!({ "action": "pause", "at": n, "when": "before" }),
    };
    arm(&hooks, &e.scope, spec);
    let mut child: Child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut wrote = None;
    let mut acted = false;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!(
                "{kind:?} {at:?}: rekey did not finish within 30 s: {err}\nhook: {}",
                hook_state(&hooks, &e.scope)
            );
        }
        if !acted
            && matches!(
                at,
                Some((_, Fault::Write | Fault::KillBefore | Fault::KillAfter))
            )
        {
            let st = hook_state(&hooks, &e.scope);
            if !st["paused"].is_null() {
                acted = true;
                let (_, fault) = at.unwrap();
                if fault == Fault::Write {
                    wrote = foreign_write(lab, kind, e, at.unwrap().0).await;
                } else {
                    let _ = child.kill(); // SIGKILL
                    let _ = child.wait();
                }
                release(&hooks, &e.scope, fault == Fault::KillBefore);
                continue;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let st = hook_state(&hooks, &e.scope);
    arm(&hooks, &e.scope, serde_json::json!({ "action": "off" }));
    let mut output = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut output);
    }
    Ran {
        code,
        fired: st["fired"].as_bool().unwrap_or(false),
        wrote,
        log: st["log"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default(),
        output,
    }
}

/// Run a phase command without hooks until it settles (a kill or a 5xx leaves work for the
/// next run, as an operator would run it again). Returns the last exit code.
async fn converge(lab: &Lab, kind: Kind, e: &Estate, rollback: bool) -> (Option<i32>, String) {
    let mut last = (None, String::new());
    for _ in 0..4 {
        let r = run_hooked(lab, kind, e, command(lab, e, rollback), None).await;
        last = (r.code, r.output);
        if last.0 == Some(0) {
            break;
        }
        // Exit 3 with nothing left to retry (drift, or conflicts in a rollback) is final.
        if last.0 == Some(3) && !retryable_left(e, rollback) {
            break;
        }
    }
    last
}

fn retryable_left(e: &Estate, rollback: bool) -> bool {
    crate::apply::journal_steps(&e.plan).iter().any(|r| {
        if rollback {
            r.undo_state.as_deref() == Some("failed") || r.undo_state.as_deref() == Some("started")
        } else {
            matches!(r.state.as_str(), "failed" | "started" | "pending")
        }
    })
}

fn on_team(st: &ObjState, team: &str) -> bool {
    st.encryption == format!("aws:kms {team}") || st.encryption == team
}

/// I1 and I4 against the snapshot before the trial and the foreign write, if one happened.
/// `lost_create`: the fault hid the answer of a CreateMultipartUpload, whose empty upload
/// rekey cannot know for its own (and must not abort: it may be another writer's).
fn check_nothing_lost(
    kind: Kind,
    e: &Estate,
    now: &Snapshot,
    wrote: Option<&str>,
    when: &str,
    lost_create: bool,
) -> Result<(), String> {
    if kind == Kind::Endpoint {
        if let Some(cfg) = wrote {
            if now.endpoint_config != cfg {
                return Err(format!(
                    "{when}: the redeploy to {cfg} was undone (now {})",
                    now.endpoint_config
                ));
            }
        }
        return Ok(());
    }
    // I4: every version that existed is still there.
    for v in e.before.versions.keys() {
        if !now.versions.contains_key(v) && !kind.gcs() && v != "null" {
            return Err(format!("{when}: version {v} was deleted"));
        }
    }
    if now.current.is_none() {
        return Err(format!("{when}: the object is gone"));
    }
    let with_parts = now.uploads.iter().filter(|p| **p > 0).count();
    let empty = now.uploads.len() - with_parts;
    if with_parts > 0 || (empty > 0 && !lost_create) {
        return Err(format!(
            "{when}: multipart uploads left behind (parts: {:?})",
            now.uploads
        ));
    }
    // I1: the foreign write is the current version, with its bytes.
    if let Some(w) = wrote {
        let current = now.current.clone().unwrap_or_default();
        let versioned = kind.versioned();
        // A batch rewrite acts on the live object: a foreign write before its task is put on
        // the team key as a new generation, its bytes kept (why such jobs are unguarded).
        if (versioned || kind == Kind::Gcs) && current != w {
            return Err(format!(
                "{when}: the foreign write {w} is no longer current (current {current})"
            ));
        }
        let st = &now.versions[&current];
        if !String::from_utf8_lossy(&st.body).starts_with("foreign ") {
            return Err(format!(
                "{when}: the foreign write's bytes were overwritten"
            ));
        }
    }
    Ok(())
}

/// I2 after an apply settled: on the team key or the original, journal and verify agree.
async fn check_applied(
    lab: &Lab,
    kind: Kind,
    e: &Estate,
    now: &Snapshot,
    wrote: Option<&str>,
) -> Result<(), String> {
    let steps = crate::apply::journal_steps(&e.plan);
    let unsettled: Vec<_> = steps
        .iter()
        .filter(|r| !matches!(r.state.as_str(), "succeeded" | "drifted" | "blocked"))
        .map(|r| format!("{} {}", r.kind, r.state))
        .collect();
    if !unsettled.is_empty() {
        return Err(format!("I2: steps not settled after apply: {unsettled:?}"));
    }
    let mut all_on_team = true;
    match kind {
        Kind::Endpoint => {
            let rekeyed = now.endpoint_config.contains("-rekey-");
            if wrote.is_none() && !rekeyed {
                return Err(format!(
                    "I2: endpoint on {} after apply",
                    now.endpoint_config
                ));
            }
            all_on_team &= rekeyed;
            let ep = steps
                .iter()
                .find(|r| r.kind == "endpoint" && r.key == format!("{}ep", e.prefix))
                .unwrap();
            if (ep.state == "succeeded") != rekeyed {
                return Err(format!(
                    "I2: journal says {} but the endpoint is on {}",
                    ep.state, now.endpoint_config
                ));
            }
        }
        _ => {
            let team_rule = if kind.gcs() {
                e.team_arn.clone()
            } else {
                format!("aws:kms {} bucket-key=true blocked=[SseC]", e.team_arn)
            };
            if now.rule != team_rule {
                return Err(format!(
                    "I2: bucket rule after apply is {} (wanted {team_rule})",
                    now.rule
                ));
            }
            for (v, st) in &now.versions {
                let original = e.before.versions.get(v);
                let foreign = Some(v.as_str()) == wrote
                    || (!kind.gcs() && !kind.versioned() && wrote.is_some());
                let team = on_team(st, &e.team_arn);
                // The plan's resources: the current object, or (versions: all) every planned
                // version; a foreign write is the plan's only in place of the object it replaced.
                // UpdateObjectEncryption's resource is the planned version (verify HEADs it; a
                // version written over it since is judged by the next plan).
                let planned = match kind {
                    Kind::UpdateVersions => original.is_some(),
                    Kind::BatchUpdate => Some(v) == e.before.current.as_ref(),
                    _ => Some(v) == now.current.as_ref(),
                };
                if planned {
                    all_on_team &= team;
                }
                if let Some(orig) = original {
                    if !team && st.encryption != orig.encryption {
                        return Err(format!(
                            "I2: version {v} is on {} (neither team key nor original {})",
                            st.encryption, orig.encryption
                        ));
                    }
                    // Every field but the encryption survives the re-key.
                    if team && !foreign && (st.fields != orig.fields || st.body != orig.body) {
                        return Err(format!(
                            "I2: version {v} changed beyond its key: {:?} -> {:?}",
                            orig.fields, st.fields
                        ));
                    }
                }
            }
            // The journal agrees with the cloud about every object step.
            for r in steps.iter().filter(|r| !r.key.is_empty()) {
                let version = match kind {
                    // Re-keyed in place: the planned version.
                    Kind::UpdateVersions | Kind::BatchUpdate => r.version_id.clone(),
                    _ => now.current.clone(),
                };
                let st = version.as_ref().and_then(|v| now.versions.get(v));
                let mut team = st.is_some_and(|s| on_team(s, &e.team_arn));
                if kind.copies_version() && !team {
                    // A foreign write may have come after the copy: the copy is then a
                    // version of its own below it.
                    team = now.versions.iter().any(|(v, s)| {
                        !e.before.versions.contains_key(v)
                            && Some(v.as_str()) != wrote
                            && on_team(s, &e.team_arn)
                    });
                }
                if r.state == "succeeded" && !team && !(kind.gcs() && wrote.is_some()) {
                    return Err(format!(
                        "I2: journal says {} succeeded, the cloud says {:?}",
                        r.key,
                        st.map(|s| &s.encryption)
                    ));
                }
                if r.state == "drifted" && wrote.is_none() {
                    return Err(format!(
                        "I2: {} drifted with no foreign write: {:?}",
                        r.key, r.reason
                    ));
                }
            }
        }
    }
    // verify agrees with what the cloud says.
    let out = harness::rekey(&lab.aws.endpoint)
        .args(["verify", "--ignore-blocked"])
        .arg(&e.plan)
        .output()
        .unwrap();
    let verified = out.status.code() == Some(0);
    if verified != all_on_team {
        return Err(format!(
            "I2: verify exited {:?} but the cloud says all on the team key = {all_on_team}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    // The run report lists the failed and drifted steps the journal holds.
    let report = e.plan.with_file_name("sweep.report.json");
    if let Ok(text) = std::fs::read_to_string(&report) {
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        // Grouped by reason in the report; every step in the JSON-lines file beside it.
        let listed = doc["groups"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|g| g["section"] == "drifted" || g["section"] == "failed")
                    .map(|g| g["steps"].as_u64().unwrap_or(0))
                    .sum::<u64>()
            })
            .unwrap_or(0) as usize;
        let lines = std::fs::read_to_string(e.plan.with_file_name("sweep.report.steps.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"state\":\"drifted\"") || l.contains("\"state\":\"failed\""))
            .count();
        if lines != listed {
            return Err(format!(
                "I2: the report groups {listed} failed or drifted steps, its step list {lines}"
            ));
        }
        let journaled = steps
            .iter()
            .filter(|r| r.state == "drifted" || r.state == "failed")
            .count();
        if listed != journaled {
            return Err(format!(
                "I2: the report lists {listed} failed or drifted steps, the journal {journaled}"
            ));
        }
    }
    Ok(())
}

/// I3 after a rollback settled: every original back, field for field, unless its conflict is
/// reported (and a conflict only where someone else wrote).
fn check_rolled_back(
    kind: Kind,
    e: &Estate,
    now: &Snapshot,
    wrote: Option<&str>,
    code: Option<i32>,
) -> Result<(), String> {
    let steps = crate::apply::journal_steps(&e.plan);
    let conflicts: Vec<_> = steps
        .iter()
        .filter(|r| r.undo_state.as_deref() == Some("conflict"))
        .collect();
    let failed: Vec<_> = steps
        .iter()
        .filter(|r| matches!(r.undo_state.as_deref(), Some("failed") | Some("started")))
        .map(|r| format!("{} {:?}", r.kind, r.undo_reason))
        .collect();
    if !failed.is_empty() {
        return Err(format!("I3: undo failed or unfinished: {failed:?}"));
    }
    if !conflicts.is_empty() && wrote.is_none() {
        return Err(format!(
            "I3: conflicts with no foreign write: {:?}",
            conflicts.iter().map(|r| &r.undo_reason).collect::<Vec<_>>()
        ));
    }
    let expected = if conflicts.is_empty() {
        Some(0)
    } else {
        Some(3)
    };
    if code != expected {
        return Err(format!(
            "I3: rollback exited {code:?} with {} conflicts",
            conflicts.len()
        ));
    }
    match kind {
        Kind::Endpoint => {
            if wrote.is_none() && now.endpoint_config != e.before.endpoint_config {
                return Err(format!(
                    "I3: endpoint on {} after rollback, was {}",
                    now.endpoint_config, e.before.endpoint_config
                ));
            }
        }
        _ => {
            if now.rule != e.before.rule {
                return Err(format!(
                    "I3: bucket rule {} after rollback, was {}",
                    now.rule, e.before.rule
                ));
            }
            for (v, orig) in &e.before.versions {
                let Some(st) = now.versions.get(v) else {
                    continue;
                };
                // In an unversioned bucket the one object may be the foreign write.
                let replaced = wrote.is_some() && !(kind.versioned() || kind.gcs());
                if replaced {
                    continue;
                }
                if st != orig && !kind.gcs() {
                    // A copy back writes a new current version; the version itself must be as
                    // it was, or (the re-keyed copy, now noncurrent) left on the team key.
                    // So too a version re-keyed in place from SSE-S3, which
                    // UpdateObjectEncryption cannot return to it: the copy back restores the
                    // current object and leaves that version on the team key (or, a newer
                    // write on top, the undo is a reported conflict).
                    let ours = on_team(st, &e.team_arn)
                        && (kind.copies_version() || kind == Kind::BatchUpdate);
                    if !ours {
                        return Err(format!("I3: version {v} is {:?}, was {:?}", st, orig));
                    }
                }
            }
            // The current object is the original again (or the foreign write).
            if let Some(cur) = &now.current {
                let st = &now.versions[cur];
                let original = e.before.current.as_ref().map(|c| &e.before.versions[c]);
                let foreign = String::from_utf8_lossy(&st.body).starts_with("foreign ");
                if !foreign {
                    let o = original.unwrap();
                    if st.encryption != o.encryption
                        || st.fields != o.fields
                        || st.body != o.body
                        || st.bucket_key != o.bucket_key
                    {
                        return Err(format!(
                            "I3: the object after rollback is {st:?}, was {o:?}"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Requests a phase's command makes, counted on a fresh estate with no fault.
async fn count(lab: &Lab, kind: Kind, phase: Phase) -> (usize, Vec<String>) {
    let e = estate(lab, kind).await;
    prepare(lab, kind, phase, &e).await;
    let r = run_hooked(
        lab,
        kind,
        &e,
        command(lab, &e, phase == Phase::Rollback),
        None,
    )
    .await;
    assert!(
        matches!(r.code, Some(0)),
        "{kind:?} {phase:?} without a fault: {:?} {}",
        r.code,
        r.output
    );
    (r.log.len(), r.log)
}

/// Bring an estate to where an apply or a rollback starts.
async fn prepare(lab: &Lab, kind: Kind, phase: Phase, e: &Estate) {
    if phase == Phase::Rollback {
        let (code, out) = converge(lab, kind, e, false).await;
        assert_eq!(
            code,
            Some(0),
            "{kind:?}: the apply before a rollback: {out}"
        );
    }
}

/// One trial: returns whether the fault fired.
async fn trial(
    lab: &Lab,
    kind: Kind,
    phase: Phase,
    n: usize,
    fault: Fault,
    resume_at: usize,
) -> bool {
    let e = estate(lab, kind).await;
    match phase {
        Phase::Apply | Phase::Rollback => prepare(lab, kind, phase, &e).await,
        Phase::Resume => {
            let r = run_hooked(
                lab,
                kind,
                &e,
                command(lab, &e, false),
                Some((resume_at, Fault::KillAfter)),
            )
            .await;
            assert!(r.fired, "{kind:?}: the kill before the resume fired");
        }
    }
    let rollback = phase == Phase::Rollback;
    let ran = run_hooked(lab, kind, &e, command(lab, &e, rollback), Some((n, fault))).await;
    let label = format!("{kind:?} {phase:?} request {n} {fault:?}");
    let wrote = ran.wrote.clone();
    let mut problems = Vec::new();
    let (code, out) =
        if ran.code == Some(0) && fault != Fault::KillBefore && fault != Fault::KillAfter {
            (ran.code, ran.output.clone())
        } else {
            converge(lab, kind, &e, rollback).await
        };
    let now = snapshot(lab, kind, &e).await;
    let lost_create = matches!(fault, Fault::FailAfter | Fault::KillAfter)
        && ran.log.get(n - 1).is_some_and(|r| r.ends_with("?uploads"));
    if let Err(p) = check_nothing_lost(
        kind,
        &e,
        &now,
        wrote.as_deref(),
        "after the phase",
        lost_create,
    ) {
        problems.push(p);
    }
    if rollback {
        if let Err(p) = check_rolled_back(kind, &e, &now, wrote.as_deref(), code) {
            problems.push(p);
        }
    } else {
        if let Err(p) = check_applied(lab, kind, &e, &now, wrote.as_deref()).await {
            problems.push(p);
        }
        let (code, out) = converge(lab, kind, &e, true).await;
        let now = snapshot(lab, kind, &e).await;
        if let Err(p) = check_nothing_lost(
            kind,
            &e,
            &now,
            wrote.as_deref(),
            "after the rollback",
            lost_create,
        ) {
            problems.push(p);
        }
        if let Err(p) = check_rolled_back(kind, &e, &now, wrote.as_deref(), code) {
            problems.push(format!("{p} (rollback output: {out})"));
        }
    }
    assert!(
        problems.is_empty(),
        "{label}: {problems:#?}\nrequests: {:#?}\nlast output: {out}\nfault-run output: {}",
        ran.log,
        ran.output
    );
    ran.fired
}

/// Sweep one kind: every request of apply, resume and rollback, with every fault.
pub async fn sweep(kind: Kind) {
    let lab = Lab::new(kind).await;
    // The batch kinds take every other trial unless told (their trials wait for a job: they
    // are the slowest, and CI's budget is bounded); `REKEY_SWEEP_EVERY=1` runs them all.
    let every: usize = std::env::var("REKEY_SWEEP_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if kind.batch() { 2 } else { 1 })
        .max(1);
    let started = Instant::now();
    let (apply_n, apply_log) = count(&lab, kind, Phase::Apply).await;
    let (rollback_n, _) = count(&lab, kind, Phase::Rollback).await;
    // The resumed apply after a kill at the apply's last request; for a batch kind, right
    // after CreateJob was served (the job runs, its id may not be journaled).
    let resume_at = if kind.batch() {
        1 + apply_log
            .iter()
            .position(|r| {
                r.starts_with("s3 POST /v20180820/jobs")
                    || (r.starts_with("POST ") && r.contains("/locations/global/jobs?jobId="))
            })
            .unwrap_or_else(|| panic!("{kind:?}: no CreateJob in {apply_log:?}"))
    } else {
        apply_n
    };
    let (resume_n, resume_log) = {
        let e = estate(&lab, kind).await;
        let r = run_hooked(
            &lab,
            kind,
            &e,
            command(&lab, &e, false),
            Some((resume_at, Fault::KillAfter)),
        )
        .await;
        assert!(r.fired);
        let r = run_hooked(&lab, kind, &e, command(&lab, &e, false), None).await;
        assert_eq!(
            r.code,
            Some(0),
            "{kind:?}: resume after a kill: {}",
            r.output
        );
        (r.log.len(), r.log)
    };
    // A batch kind's apply and resume: the job's own requests (its manifest and report in the
    // ops bucket, S3 Control); every request of its rollback.
    let swept = |log: &[String]| -> Vec<usize> {
        (1..=log.len())
            .filter(|n| {
                let r = &log[n - 1];
                // A Cloud Storage job's apply is short: every request of it.
                !kind.batch()
                    || kind == Kind::GcsBatch
                    || r.contains(OPS)
                    || r.contains("/v20180820/jobs")
                    || r.contains("/locations/global/jobs")
            })
            .collect()
    };
    let mut trials = 0;
    let mut fired = 0;
    let mut i = 0;
    for (phase, ns) in [
        (Phase::Apply, swept(&apply_log)),
        (Phase::Resume, swept(&resume_log)),
        (Phase::Rollback, (1..=rollback_n).collect()),
    ] {
        for n in ns {
            for fault in FAULTS {
                i += 1;
                if i % every != 0 {
                    continue;
                }
                // REKEY_SWEEP_ONLY=Apply:3:Write replays one trial.
                if let Ok(only) = std::env::var("REKEY_SWEEP_ONLY") {
                    if only != format!("{phase:?}:{n}:{fault:?}") {
                        continue;
                    }
                }
                trials += 1;
                if trial(&lab, kind, phase, n, fault, resume_at).await {
                    fired += 1;
                }
            }
        }
    }
    eprintln!(
        "sweep {kind:?}: {trials} trials ({fired} faults fired) over {apply_n} apply, {resume_n} resume and {rollback_n} rollback requests in {:.0?}; apply requests: {apply_log:?}; resume requests: {resume_log:?}",
        started.elapsed()
    );
    assert!(
        fired * 10 >= trials * 9,
        "{kind:?}: most faults fire ({fired} of {trials})"
    );
}

#[tokio::test]
async fn sweep_copy() {
    sweep(Kind::Copy).await;
}

#[tokio::test]
async fn sweep_copy_versioned() {
    sweep(Kind::CopyVersioned).await;
}

#[tokio::test]
async fn sweep_multipart() {
    sweep(Kind::Multipart).await;
}

#[tokio::test]
async fn sweep_update_encryption() {
    sweep(Kind::Update).await;
}

#[tokio::test]
async fn sweep_update_encryption_every_version() {
    sweep(Kind::UpdateVersions).await;
}

#[tokio::test]
async fn sweep_endpoint() {
    sweep(Kind::Endpoint).await;
}

#[tokio::test]
async fn sweep_gcs() {
    sweep(Kind::Gcs).await;
}

#[tokio::test]
async fn sweep_batch_update_encryption() {
    sweep(Kind::BatchUpdate).await;
}

#[tokio::test]
async fn sweep_batch_copy() {
    sweep(Kind::BatchCopy).await;
}

#[tokio::test]
async fn sweep_gcs_batch_rewrite() {
    sweep(Kind::GcsBatch).await;
}
