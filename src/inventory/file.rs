//! The inventory file (`rekey inventory -o FILE`, or `--output json`): JSON lines, a header
//! first, then one record per resource in the inventory's order. The header carries what
//! planning reads from the cloud besides the resources — every key reference each account
//! resolved, the key-access verdicts of the campaign's consumers and of its Cloud KMS keys, the
//! fingerprint of each AWS team key's policy those verdicts rest on — so that `rekey plan
//! --from-inventory FILE` plans without credentials. Records keep the encryption as read; a
//! plan classifies them again under the campaign it is given (docs/plan-format.md).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{classify, map_key, pin_id, PinnedKeys, Record};
use crate::access::Verdict;
use crate::campaign::LoadedCampaign;
use crate::error::{ProviderError, RekeyError};
use crate::events::Reporter;
use crate::matching::Target;
use crate::model::{KmsKey, Provider, Resource, ResourceKind};
use crate::providers::KeyRead;

/// The first field of the header line.
pub const FORMAT: &str = "rekey-inventory";
/// The first field of the trailer line, written when the inventory finished.
pub const END: &str = "rekey-inventory-end";
/// The inventory file version this build writes and reads.
pub const VERSION: u32 = 2;

/// The header line of an inventory file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    pub version: u32,
    pub campaign: String,
    /// sha256 of the campaign file the inventory was taken with.
    pub campaign_sha256: String,
    pub created_at: String,
    pub rekey_version: String,
    /// What the campaign selected (regions, accounts, buckets, object source, SageMaker
    /// kinds, Cloud Storage buckets, acceptances): a plan from the file must select the same.
    pub selection: serde_json::Value,
    /// Each AWS account read, with every key reference it resolved (`null`: no such key).
    pub accounts: Vec<AccountKeys>,
    /// The team keys as the inventory's campaign pinned them (Cloud KMS keys with the state
    /// the preflight read).
    pub keys: PinnedKeys,
    /// Key ARN → sha256 of its key policy as read when the verdicts were made.
    pub key_policies: BTreeMap<String, String>,
    /// Key-access verdicts of the campaign's `consumers:` (AWS).
    pub consumers: Vec<Verdict>,
    /// Verdicts of the Cloud KMS preflight (the Cloud Storage service agent on each key).
    pub gcp_keys: Vec<Verdict>,
}

/// One AWS account of an inventory and the key references it resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountKeys {
    pub name: String,
    /// The account id of a named account (reached by AssumeRole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub resolved: BTreeMap<String, Option<KmsKey>>,
}

/// The last line of an inventory file: written only when the inventory finished, it counts
/// the records and hashes every line before it, header included (a file cut short, or a
/// header and records of two inventories, is refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trailer {
    /// Always [`END`].
    pub format: String,
    pub records: u64,
    /// sha256 of the lines before the trailer, each with its newline.
    pub sha256: String,
}

/// Hashes the lines of an inventory as they are written or read.
#[derive(Default)]
pub struct Seal {
    hash: Sha256,
    records: u64,
}

impl Seal {
    /// A line of the file (the header or a record), without its newline.
    pub fn line(&mut self, line: &str, record: bool) {
        self.hash.update(line.as_bytes());
        self.hash.update(b"\n");
        self.records += u64::from(record);
    }

    pub fn trailer(self) -> Trailer {
        Trailer {
            format: END.into(),
            records: self.records,
            sha256: format!("sha256:{}", hex::encode(self.hash.finalize())),
        }
    }
}

/// What an inventory selects: the parts of a campaign that decide which resources are read
/// and how (not the mapping, stages, keys or limits, which a plan may change).
pub fn selection(c: &LoadedCampaign) -> serde_json::Value {
    let aws = c.spec.aws.as_ref().map(|a| {
        serde_json::json!({
            "region": a.region,
            "endpoint_url": a.endpoint_url,
            "accounts": a.accounts,
            "s3": a.s3.as_ref().map(|s| serde_json::json!({
                "buckets": s.buckets,
                "versions": s.versions,
                "inventory": s.inventory,
                // Which versions a report must list depends on the engine.
                "report_engine": (!s.inventory.is_list()).then(|| s.engine.local()),
            })),
            "sagemaker": a.sagemaker,
        })
    });
    let gcp = c.spec.gcp.as_ref().map(|g| {
        serde_json::json!({
            "project": g.project,
            "endpoint": g.endpoint,
            "buckets": g.gcs.as_ref().map(|s| &s.buckets),
        })
    });
    serde_json::json!({
        "aws": aws,
        "gcp": gcp,
        "accept_unverified": c.spec.preflight.accept_unverified,
    })
}

/// sha256 of a key policy document, as `sha256:HEX`.
pub fn policy_fingerprint(policy: &serde_json::Value) -> String {
    let bytes = serde_json::to_vec(policy).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A key reader that remembers every answer (the inventory's header keeps them).
pub struct Recording<'a, K> {
    inner: &'a K,
    seen: std::sync::Mutex<BTreeMap<String, Option<KmsKey>>>,
}

impl<'a, K> Recording<'a, K> {
    pub fn new(inner: &'a K) -> Self {
        Recording {
            inner,
            seen: Default::default(),
        }
    }

    pub fn into_resolved(self) -> BTreeMap<String, Option<KmsKey>> {
        self.seen.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: KeyRead> KeyRead for Recording<'_, K> {
    async fn describe_key(&self, key_ref: &str) -> Result<Option<KmsKey>, ProviderError> {
        let key = self.inner.describe_key(key_ref).await?;
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key_ref.to_string(), key.clone());
        Ok(key)
    }
}

/// A key reader that answers from an inventory's header (every reference asked for was
/// checked to be there first).
struct Replay<'a>(&'a BTreeMap<String, Option<KmsKey>>);

impl KeyRead for Replay<'_> {
    async fn describe_key(&self, key_ref: &str) -> Result<Option<KmsKey>, ProviderError> {
        Ok(self.0.get(key_ref).cloned().flatten())
    }
}

/// An inventory file opened for planning: the keys and verdicts its header gives under the
/// campaign at hand, and its records.
pub struct Saved {
    pub header: Header,
    pub pinned: PinnedKeys,
    pub access: Vec<Verdict>,
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    path: String,
    seal: Seal,
}

fn again(path: &str) -> String {
    format!("take the inventory again with credentials: `rekey inventory -c CAMPAIGN -o {path}` (or plan online, without --from-inventory)")
}

/// Open a saved inventory for planning with `campaign`: refused (exit 2) when it is not a
/// current inventory file, selects other resources than the campaign, or lacks a key or a
/// verdict the campaign needs. No cloud call is made.
pub async fn open(
    path: &Path,
    campaign: &LoadedCampaign,
    reporter: &dyn Reporter,
) -> Result<Saved, RekeyError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path)
        .map_err(|e| RekeyError::io(format!("reading the inventory {shown}"), e))?;
    let mut lines = std::io::BufReader::new(file).lines();
    let first = lines
        .next()
        .transpose()
        .map_err(|e| RekeyError::io(format!("reading the inventory {shown}"), e))?
        .unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(&first).unwrap_or_default();
    if value["format"] != FORMAT {
        return Err(RekeyError::usage(
            format!("{shown} is not a rekey inventory file (its first line is not a `{FORMAT}` header; files of rekey before inventory format {VERSION} have none)"),
            again(&shown),
        ));
    }
    if value["version"] != VERSION {
        return Err(RekeyError::usage(
            format!(
                "{shown} is inventory format {}, this rekey reads format {VERSION}",
                value["version"]
            ),
            again(&shown),
        ));
    }
    let header: Header = serde_json::from_value(value).map_err(|e| {
        RekeyError::usage(
            format!("{shown}: the inventory header is not valid: {e}"),
            again(&shown),
        )
    })?;
    let wanted = selection(campaign);
    if header.selection != wanted {
        let parts: Vec<String> = ["aws", "gcp", "accept_unverified"]
            .iter()
            .filter(|k| header.selection[**k] != wanted[**k])
            .map(|k| k.to_string())
            .collect();
        return Err(RekeyError::usage(
            format!(
                "{} selects other resources than the inventory {shown} was taken with (differs in: {}); a plan from a saved inventory may change keys, mapping, stages and limits, not what is read",
                campaign.path.display(),
                parts.join(", ")
            ),
            again(&shown),
        ));
    }
    let mut seal = Seal::default();
    seal.line(&first, false);
    let pinned = pin_keys(campaign, &header, &shown, reporter).await?;
    let mut access = Vec::new();
    let region = campaign.region().to_string();
    for account in &header.accounts {
        for (usage, key_arn, role) in
            crate::preflight::consumer_usages(campaign, &account.name, &pinned)
        {
            let found = header
                .consumers
                .iter()
                .find(|v| v.key_arn == key_arn && crate::preflight::usage_of(v, &region) == usage);
            let Some(v) = found else {
                return Err(RekeyError::usage(
                    format!("{shown} has no key-access verdict for consumer {} on {key_arn} ({role}): the campaign's consumers or keys changed since the inventory", usage.principal),
                    again(&shown),
                ));
            };
            access.push(Verdict { role, ..v.clone() });
        }
    }
    // The Cloud KMS preflight runs for campaigns with Cloud Storage buckets: one verdict per
    // pinned key, as online.
    for (id, key) in pinned.iter().filter(|_| has_gcs(campaign)) {
        if !super::split_pin(id).1.starts_with("gcp:") {
            continue;
        }
        let Some(v) = header.gcp_keys.iter().find(|v| v.key_arn == key.arn) else {
            return Err(RekeyError::usage(
                format!(
                    "{shown} has no Cloud KMS check of {} (team key {id})",
                    key.arn
                ),
                again(&shown),
            ));
        };
        access.push(v.clone());
    }
    Ok(Saved {
        header,
        pinned,
        access,
        lines,
        path: shown,
        seal,
    })
}

/// Whether planning checks Cloud KMS keys (a campaign with Cloud Storage buckets).
fn has_gcs(campaign: &LoadedCampaign) -> bool {
    campaign.spec.gcp.as_ref().is_some_and(|g| g.gcs.is_some())
}

/// The campaign's team keys pinned from the header, as `resolve_all` pins them online.
async fn pin_keys(
    campaign: &LoadedCampaign,
    header: &Header,
    shown: &str,
    reporter: &dyn Reporter,
) -> Result<PinnedKeys, RekeyError> {
    let mut pinned = super::pin_gcp_keys(campaign);
    for (id, key) in pinned.iter_mut().filter(|_| has_gcs(campaign)) {
        let Some(seen) = header.keys.values().find(|k| k.arn == key.arn) else {
            return Err(RekeyError::usage(
                format!(
                    "{shown} did not check the Cloud KMS key {} (team key {id})",
                    key.arn
                ),
                again(shown),
            ));
        };
        key.state = seen.state.clone();
    }
    for account in &header.accounts {
        for (name, k) in &campaign.spec.keys {
            let Some(alias) = &k.aws else { continue };
            if !account.resolved.contains_key(alias) {
                return Err(RekeyError::usage(
                    format!(
                        "{shown} did not resolve {alias} (team key {name}) in account {}",
                        account.name
                    ),
                    again(shown),
                ));
            }
        }
        pinned.extend(
            super::resolve_keys_in(
                campaign,
                &Replay(&account.resolved),
                &account.name,
                account.id.as_deref(),
                reporter,
            )
            .await?,
        );
    }
    Ok(pinned)
}

impl Saved {
    /// Hand each record, classified again under `campaign`, to `sink`, in the file's order;
    /// refused (exit 2) when the records are not in the order an inventory writes them
    /// (SageMaker, then each bucket before its objects, S3 before Cloud Storage) or the file
    /// does not end with the trailer that seals them. Records already handed over are
    /// planned only if the whole file holds: a plan is written after the last one.
    pub fn records(
        &mut self,
        campaign: &LoadedCampaign,
        mut sink: impl FnMut(Record) -> Result<(), RekeyError>,
    ) -> Result<u64, RekeyError> {
        let mut bucket_tags = BTreeMap::new();
        let mut n = 0;
        let Saved {
            header,
            pinned,
            lines,
            path,
            seal,
            ..
        } = self;
        let remap = Remap {
            header,
            pinned,
            path,
        };
        let bad = |line: usize, why: String| {
            RekeyError::usage(format!("{path} line {line}: {why}"), again(path))
        };
        // Where the file is: 0 SageMaker, 1 S3, 2 Cloud Storage; and the current bucket.
        let mut phase = 0;
        let mut bucket: Option<(String, String)> = None;
        let mut trailer: Option<Trailer> = None;
        for (i, line) in lines.enumerate() {
            let at = i + 2;
            let line = line.map_err(|e| RekeyError::io(format!("reading {path}"), e))?;
            if line.trim().is_empty() {
                continue;
            }
            if trailer.is_some() {
                return Err(bad(at, "a line after the end of the inventory".into()));
            }
            if line.contains(END) {
                if let Ok(t) = serde_json::from_str::<Trailer>(&line) {
                    trailer = Some(t);
                    continue;
                }
            }
            seal.line(&line, true);
            let record: Record = serde_json::from_str(&line)
                .map_err(|e| bad(at, format!("not an inventory record: {e}")))?;
            let (want, object_of) = match &record.resource {
                Resource::SagemakerEndpoint(_)
                | Resource::SagemakerNotebookInstance(_)
                | Resource::SagemakerTrainingJob(_) => (0, None),
                Resource::S3Bucket(b) => {
                    bucket = Some((b.account.clone(), b.bucket.clone()));
                    (1, None)
                }
                Resource::S3Object(o) => (1, Some((o.account.clone(), o.bucket.clone()))),
                Resource::GcsBucket(b) => {
                    bucket = Some((b.account.clone(), b.bucket.clone()));
                    (2, None)
                }
                Resource::GcsObject(o) => (2, Some((o.account.clone(), o.bucket.clone()))),
            };
            if want < phase {
                return Err(bad(
                    at,
                    format!(
                        "{} comes after records an inventory writes later (SageMaker, then S3, then Cloud Storage)",
                        record.resource.display_name()
                    ),
                ));
            }
            phase = want;
            if let Some(of) = object_of {
                if bucket.as_ref() != Some(&of) {
                    return Err(bad(
                        at,
                        format!(
                            "{} does not follow its bucket's record",
                            record.resource.display_name()
                        ),
                    ));
                }
            }
            let tags = match &record.resource {
                Resource::S3Bucket(b) => {
                    bucket_tags = b.tags.clone();
                    b.tags.clone()
                }
                Resource::GcsBucket(b) => {
                    bucket_tags = b.labels.clone();
                    b.labels.clone()
                }
                Resource::S3Object(_) | Resource::GcsObject(_) => bucket_tags.clone(),
                Resource::SagemakerEndpoint(e) => e.tags.clone(),
                Resource::SagemakerNotebookInstance(o) | Resource::SagemakerTrainingJob(o) => {
                    o.tags.clone()
                }
            };
            let record = match record.resource {
                Resource::SagemakerEndpoint(_) => remap.endpoint(campaign, record, &tags),
                resource => classify(campaign, pinned, resource, &tags),
            };
            sink(record)?;
            n += 1;
        }
        let Some(trailer) = trailer else {
            return Err(RekeyError::usage(
                format!("{path} ends without the line `rekey inventory` writes when it finishes: the inventory did not finish, or the file was cut short"),
                again(path),
            ));
        };
        let sealed = std::mem::take(seal).trailer();
        if trailer != sealed {
            return Err(RekeyError::usage(
                format!(
                    "{path} does not match its own end line ({} records and {} recorded, {} and {} read): the file was changed or put together from two inventories",
                    trailer.records, trailer.sha256, sealed.records, sealed.sha256
                ),
                again(path),
            ));
        }
        Ok(n)
    }
}

/// What classifying a record again reads besides the campaign.
struct Remap<'a> {
    header: &'a Header,
    pinned: &'a PinnedKeys,
    path: &'a str,
}

impl Remap<'_> {
    /// An endpoint classified again. Its key-access verdicts were made at inventory time for
    /// the keys the inventory's campaign chose; when the campaign at hand moves the endpoint
    /// or one of its artifacts to another key, they say nothing of the new key: the endpoint
    /// is blocked until it is planned online.
    fn endpoint(
        &self,
        campaign: &LoadedCampaign,
        record: Record,
        tags: &BTreeMap<String, String>,
    ) -> Record {
        let Resource::SagemakerEndpoint(mut e) = record.resource else {
            unreachable!("called for endpoints")
        };
        let account = e.account.clone();
        let was = |team: Option<&str>| {
            team.and_then(|k| self.header.keys.get(&pin_id(k, &account)))
                .map(|p| p.arn.clone())
        };
        let now = |team: Option<&str>| {
            team.and_then(|k| self.pinned.get(&pin_id(k, &account)))
                .map(|p| p.arn.clone())
        };
        let mut moved = Vec::new();
        for m in &mut e.models {
            for a in &mut m.artifacts {
                let Some((bucket, key)) =
                    a.url.strip_prefix("s3://").and_then(|p| p.split_once('/'))
                else {
                    continue;
                };
                let target = Target {
                    provider: Provider::Aws,
                    account: &account,
                    kind: ResourceKind::S3Object,
                    bucket: Some(bucket),
                    object_key: Some(key),
                    name: key,
                    tags: &a.bucket_tags,
                    key: None,
                };
                let team = map_key(campaign, &target).map(str::to_string);
                if was(a.team_key.as_deref()) != now(team.as_deref()) {
                    moved.push(format!("artifact {}", a.url));
                    a.key_access = None;
                }
                a.team_key = team;
            }
        }
        let before = was(record.team_key.as_deref());
        let mut out = classify(campaign, self.pinned, Resource::SagemakerEndpoint(e), tags);
        if now(out.team_key.as_deref()) != before {
            moved.push("the endpoint".into());
        }
        if let (false, Resource::SagemakerEndpoint(e)) = (moved.is_empty(), &mut out.resource) {
            let principal = e
                .models
                .first()
                .map(|m| m.execution_role_arn.clone())
                .unwrap_or_default();
            let key = now(out.team_key.as_deref()).unwrap_or_default();
            e.access = vec![crate::preflight::unseen(
                &principal,
                &key,
                "execution role of the endpoint's models",
                format!(
                    "the campaign moves {} to another key than the saved inventory {} checked access for: plan online to check the new key",
                    moved.join(", "),
                    self.path
                ),
            )];
        }
        out
    }
}

/// The header of an inventory taken now with `campaign`.
#[allow(clippy::too_many_arguments)]
pub fn header(
    campaign: &LoadedCampaign,
    created_at: String,
    accounts: Vec<AccountKeys>,
    keys: PinnedKeys,
    key_policies: BTreeMap<String, String>,
    consumers: Vec<Verdict>,
    gcp_keys: Vec<Verdict>,
) -> Result<Header, RekeyError> {
    let campaign_sha256 = crate::plan::file_sha256(&campaign.path)
        .map_err(|e| RekeyError::io(format!("reading {}", campaign.path.display()), e))?;
    Ok(Header {
        format: FORMAT.into(),
        version: VERSION,
        campaign: campaign.spec.campaign.clone(),
        campaign_sha256,
        created_at,
        rekey_version: env!("CARGO_PKG_VERSION").into(),
        selection: selection(campaign),
        accounts,
        keys,
        key_policies,
        consumers,
        gcp_keys,
    })
}
