//! Inventory: list what the campaign selects, read each resource's encryption, resolve every
//! KMS key to its ARN, and classify each resource against its team key. Streams: memory
//! stays bounded by the concurrency, not by the size of the estate.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::campaign::{LoadedCampaign, Versions};
use crate::error::{ProviderError, RekeyError};
use crate::events::{Event, Reporter};
use crate::matching::Target;
use crate::model::{
    EncryptionClass, KmsKey, Provider, Resource, ResourceKind, S3Bucket, S3Encryption, S3Object,
};
use crate::providers::{KeyRead, S3Read};

pub mod file;

/// The account name used when the campaign names no accounts (the caller's own).
pub const DEFAULT_ACCOUNT: &str = "default";

/// A team key pinned to the key its alias resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PinnedKey {
    /// The key as the campaign names it (alias, ARN or id).
    pub alias: String,
    pub arn: String,
    pub key_id: String,
    pub region: String,
    pub state: String,
}

/// Team key name → pinned AWS key.
pub type PinnedKeys = BTreeMap<String, PinnedKey>;

/// One inventoried resource, with the team key the mapping chose and its class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Record {
    #[serde(flatten)]
    pub resource: Resource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_key: Option<String>,
    pub class: EncryptionClass,
}

/// Resolve every team key's AWS alias to its key ARN and check it can be a target.
pub async fn resolve_keys<K: KeyRead>(
    campaign: &LoadedCampaign,
    kms: &K,
    reporter: &dyn Reporter,
) -> Result<PinnedKeys, RekeyError> {
    resolve_keys_in(campaign, kms, DEFAULT_ACCOUNT, None, reporter).await
}

/// The pinned-key id of a team key in an account: `fraud`, or `fraud@fraud-bu` for a named
/// account of a multi-account campaign.
pub fn pin_id(team: &str, account: &str) -> String {
    if account == DEFAULT_ACCOUNT {
        team.to_string()
    } else {
        format!("{team}@{account}")
    }
}

/// (team key, account) of a pinned-key id.
pub fn split_pin(id: &str) -> (&str, &str) {
    id.split_once('@').unwrap_or((id, DEFAULT_ACCOUNT))
}

/// Resolve the team keys in one account. In a named account (`account_id` given) a team key
/// whose alias does not resolve there is left out (a resource mapping to it is refused at
/// plan time), and a key ARN of another account is refused: a resource is never planned under
/// another account's key.
pub async fn resolve_keys_in<K: KeyRead>(
    campaign: &LoadedCampaign,
    kms: &K,
    account: &str,
    account_id: Option<&str>,
    reporter: &dyn Reporter,
) -> Result<PinnedKeys, RekeyError> {
    let mut pinned = PinnedKeys::new();
    let region = campaign.region();
    let file = campaign.path.display();
    for (name, k) in &campaign.spec.keys {
        let Some(alias) = &k.aws else { continue };
        if let (Some(id), Some(owner)) = (
            account_id,
            alias.strip_prefix("arn:").and_then(|a| a.split(':').nth(3)),
        ) {
            if owner != id {
                return Err(RekeyError::usage(
                    format!("team key {name:?} names {alias}, a key of account {owner}, but account {account} is {id}: a resource is never planned under another account's key"),
                    format!("use an alias (`alias/NAME`) that each account defines, in keys.{name}.aws of {file}"),
                ));
            }
        }
        let Some(key) = kms.describe_key(alias).await? else {
            if account_id.is_some() {
                continue;
            }
            return Err(RekeyError::usage(
                format!("team key {name:?}: {alias} does not exist in {region}"),
                format!("create the key and its alias, or correct keys.{name}.aws in {file}"),
            ));
        };
        check_target_key(name, alias, &key).map_err(|(m, f)| RekeyError::usage(m, f))?;
        reporter.event(&Event::KeyResolved {
            key: pin_id(name, account),
            alias: alias.clone(),
            arn: key.arn.clone(),
        });
        pinned.insert(
            pin_id(name, account),
            PinnedKey {
                alias: alias.clone(),
                region: key.region().unwrap_or(region).to_string(),
                arn: key.arn,
                key_id: key.key_id,
                state: key.state,
            },
        );
    }
    Ok(pinned)
}

/// Whether a key can be a migration target: a customer-managed, enabled, symmetric
/// encryption key. Errors are (message, fix).
pub fn check_target_key(name: &str, alias: &str, key: &KmsKey) -> Result<(), (String, String)> {
    if key.manager != "CUSTOMER" {
        return Err((
            format!(
                "team key {name:?}: {alias} is an AWS-managed key ({})",
                key.arn
            ),
            "point the team key at a customer-managed key".into(),
        ));
    }
    if key.state != "Enabled" {
        return Err((
            format!("team key {name:?}: {alias} ({}) is {}", key.arn, key.state),
            "enable the key (or cancel its deletion) before planning".into(),
        ));
    }
    if key.spec != "SYMMETRIC_DEFAULT" || key.usage != "ENCRYPT_DECRYPT" {
        return Err((
            format!(
                "team key {name:?}: {alias} is a {} {} key; S3 needs a symmetric encryption key",
                key.spec, key.usage
            ),
            "point the team key at a SYMMETRIC_DEFAULT ENCRYPT_DECRYPT key".into(),
        ));
    }
    Ok(())
}

/// Describes KMS keys once each, however many objects name them.
struct KeyCache<'a, K> {
    kms: &'a K,
    known: Mutex<HashMap<String, Option<KmsKey>>>,
}

/// A bucket whose objects come from an S3 Inventory report.
struct ReportBucket<'a> {
    account: &'a str,
    bucket: &'a str,
    settings: &'a crate::providers::BucketSettings,
    tags: &'a BTreeMap<String, String>,
    all_versions: bool,
    concurrency: usize,
}

impl ReportBucket<'_> {
    /// Stream the report's rows into records: each data file is downloaded to a temporary
    /// file, its MD5 checked against the manifest, and read as it decompresses. Only SSE-KMS
    /// and DSSE-KMS objects are HEADed (their key, which undo needs, is not in the report).
    #[allow(clippy::too_many_arguments)]
    async fn objects<S: S3Read, K: KeyRead>(
        &self,
        campaign: &LoadedCampaign,
        pinned: &PinnedKeys,
        s3: &S,
        cache: &KeyCache<'_, K>,
        found: &crate::s3report::Found,
        reporter: &dyn Reporter,
        stats: &mut InventoryStats,
        sink: &mut impl FnMut(Record) -> Result<(), RekeyError>,
    ) -> Result<(), RekeyError> {
        use std::io::Seek;
        let bucket = self.bucket;
        let dest = found.manifest.destination();
        let (mut n, mut bytes, mut heads) = (0u64, 0u64, 0u64);
        for file in &found.manifest.files {
            let what = format!("s3://{dest}/{}", file.key);
            let (md5, mut tmp) = match found.local_file(&file.key) {
                Some(path) => {
                    let mut f = std::fs::File::open(&path).map_err(|e| {
                        RekeyError::io(format!("reading the report file {}", path.display()), e)
                    })?;
                    let md5 = crate::s3report::md5_of(&mut f).map_err(|e| {
                        RekeyError::io(format!("reading the report file {}", path.display()), e)
                    })?;
                    (md5, f)
                }
                None => {
                    let mut tmp = tempfile::tempfile().map_err(|e| {
                        RekeyError::io("creating a temporary file for the report", e)
                    })?;
                    let md5 = s3.download(dest, &file.key, &mut tmp).await?;
                    (md5, tmp)
                }
            };
            if !md5.eq_ignore_ascii_case(&file.md5) {
                return Err(RekeyError::Usage {
                    message: format!(
                        "{what}: its MD5 is {md5}, the manifest {} says {}: the data file is damaged or was replaced",
                        found.url, file.md5
                    ),
                    fix: "plan from the next report (or name an intact one under aws.s3.inventory.manifests)".into(),
                });
            }
            tmp.rewind()
                .map_err(|e| RekeyError::io("reading the report's temporary copy", e))?;
            let rows: Box<dyn Iterator<Item = _> + Send> =
                if found.manifest.file_format == "Parquet" {
                    Box::new(crate::s3report::parquet_rows(tmp)?)
                } else {
                    Box::new(crate::s3report::csv_rows(
                        &found.columns,
                        std::io::BufReader::new(tmp),
                    ))
                };
            let mut objects = std::pin::pin!(stream::iter(rows)
                .map(|row| async move { self.object(s3, cache, row).await })
                .buffered(self.concurrency));
            while let Some(obj) = objects.try_next().await? {
                let (obj, headed) = match obj {
                    Row::Object(o, headed) => (*o, headed),
                    Row::Skipped => continue,
                    Row::Vanished => {
                        stats.vanished += 1;
                        heads += 1;
                        continue;
                    }
                };
                n += 1;
                bytes += obj.size;
                heads += u64::from(headed);
                sink(classify(
                    campaign,
                    pinned,
                    Resource::S3Object(obj),
                    self.tags,
                ))?;
                if (stats.objects + n).is_multiple_of(500) {
                    reporter.event(&Event::Progress {
                        objects: stats.objects + n,
                        bytes: stats.bytes + bytes,
                    });
                }
            }
        }
        stats.objects += n;
        stats.bytes += bytes;
        stats.head_requests += heads;
        reporter.event(&Event::BucketDone {
            bucket: bucket.to_string(),
            objects: n,
            bytes,
            list_pages: 0,
        });
        reporter.event(&Event::Warning {
            message: format!(
                "s3://{bucket}: {n} objects from the inventory report {} of {} ({heads} HEAD requests for SSE-KMS and DSSE-KMS keys); objects written since are not in this plan",
                found.url,
                found.manifest.created()
            ),
        });
        Ok(())
    }

    async fn object<S: S3Read, K: KeyRead>(
        &self,
        s3: &S,
        cache: &KeyCache<'_, K>,
        row: Result<crate::s3report::Row, crate::s3report::ReportError>,
    ) -> Result<Row, RekeyError> {
        let row = row?;
        if row.bucket != self.bucket {
            return Err(RekeyError::Usage {
                message: format!(
                    "the report of s3://{} lists an object of s3://{}",
                    self.bucket, row.bucket
                ),
                fix: "name a manifest of this bucket's report".into(),
            });
        }
        // Delete markers hold no data; a current-only plan leaves noncurrent versions.
        if row.delete_marker || (!self.all_versions && !row.is_latest) {
            return Ok(Row::Skipped);
        }
        let mut object = S3Object {
            account: self.account.into(),
            region: self.settings.region.clone(),
            bucket: self.bucket.to_string(),
            key: row.key.clone(),
            version_id: row.version_id.clone(),
            is_latest: row.is_latest,
            size: row.size,
            etag: row.etag.clone(),
            storage_class: row.storage_class.clone(),
            archive_status: row.archive_status.clone(),
            last_modified: row.last_modified.clone(),
            encryption: Default::default(),
            lock: row.lock.clone(),
            website_redirect: None,
            content_hash: None,
        };
        match row.encryption() {
            // NOT-SSE, SSE-S3, SSE-C: no key to learn or resolve.
            Some(e) => {
                object.encryption = e;
                object.encryption.bucket_key = row.bucket_key;
                Ok(Row::Object(Box::new(object), false))
            }
            // Boxed: most rows take no HEAD, and a HEAD's future is large to move.
            None => Box::pin(self.headed(s3, cache, object, &row)).await,
        }
    }

    /// An SSE-KMS or DSSE-KMS object of the report, HEADed for its key: the version the
    /// report saw (the current object in an unversioned bucket).
    async fn headed<S: S3Read, K: KeyRead>(
        &self,
        s3: &S,
        cache: &KeyCache<'_, K>,
        mut object: S3Object,
        row: &crate::s3report::Row,
    ) -> Result<Row, RekeyError> {
        let head = match s3
            .head_object(self.bucket, &row.key, row.version_id.as_deref())
            .await
        {
            Ok(h) => h,
            Err(ProviderError::NotFound { .. }) => return Ok(Row::Vanished),
            Err(e) => return Err(e.into()),
        };
        if !head.etag.is_empty() {
            object.etag = head.etag;
            object.size = head.size;
            object.storage_class = head.storage_class;
            object.archive_status = head.archive_status;
            object.version_id = object.version_id.or(head.version_id);
        }
        object.website_redirect = head.website_redirect;
        object.encryption = head.encryption;
        object.encryption.bucket_key = object.encryption.bucket_key || row.bucket_key;
        cache.resolve(&mut object.encryption).await?;
        Ok(Row::Object(Box::new(object), true))
    }
}

/// One row of a report, as the inventory takes it.
enum Row {
    /// An object to record, and whether it took a HEAD.
    Object(Box<S3Object>, bool),
    /// A delete marker, or a noncurrent version of a current-only plan.
    Skipped,
    /// HEADed for its key, and gone since the report.
    Vanished,
}

impl<K: KeyRead> KeyCache<'_, K> {
    /// Fill in the canonical ARN and key manager of a KMS encryption.
    async fn resolve(&self, enc: &mut S3Encryption) -> Result<(), ProviderError> {
        if !enc.algorithm.starts_with("aws:kms") {
            return Ok(());
        }
        // `aws:kms` with no key means the account's AWS-managed key.
        let key_ref = enc
            .kms_key_arn
            .clone()
            .unwrap_or_else(|| "alias/aws/s3".into());
        let mut known = self.known.lock().await;
        let key = match known.get(&key_ref) {
            Some(k) => k.clone(),
            None => {
                let k = self.kms.describe_key(&key_ref).await?;
                known.insert(key_ref.clone(), k.clone());
                k
            }
        };
        match key {
            Some(k) => {
                enc.kms_key_arn = Some(k.arn);
                enc.key_manager = Some(k.manager);
            }
            None if enc.kms_key_arn.is_none() => enc.key_manager = Some("AWS".into()),
            // A key we cannot describe (deleted, or another account's): keep what S3 said.
            None => {}
        }
        Ok(())
    }
}

/// The team key the mapping chooses for a resource: first match wins.
pub fn map_key<'c>(campaign: &'c LoadedCampaign, target: &Target<'_>) -> Option<&'c str> {
    campaign
        .mapping
        .iter()
        .find(|(m, _)| m.matches(target))
        .map(|(_, k)| k.as_str())
}

/// The match attributes of a resource; `tags` are the bucket's for objects.
pub fn target_of<'a>(
    resource: &'a Resource,
    tags: &'a BTreeMap<String, String>,
    key: Option<&'a str>,
) -> Target<'a> {
    match resource {
        Resource::GcsBucket(b) => Target {
            provider: Provider::Gcp,
            account: &b.account,
            kind: ResourceKind::GcsBucket,
            bucket: Some(&b.bucket),
            object_key: None,
            name: &b.bucket,
            tags,
            key,
        },
        Resource::GcsObject(o) => Target {
            provider: Provider::Gcp,
            account: &o.account,
            kind: ResourceKind::GcsObject,
            bucket: Some(&o.bucket),
            object_key: Some(&o.name),
            name: &o.name,
            tags,
            key,
        },
        Resource::S3Bucket(b) => Target {
            provider: Provider::Aws,
            account: &b.account,
            kind: ResourceKind::S3Bucket,
            bucket: Some(&b.bucket),
            object_key: None,
            name: &b.bucket,
            tags,
            key,
        },
        Resource::S3Object(o) => Target {
            provider: Provider::Aws,
            account: &o.account,
            kind: ResourceKind::S3Object,
            bucket: Some(&o.bucket),
            object_key: Some(&o.key),
            name: &o.key,
            tags,
            key,
        },
        Resource::SagemakerEndpoint(e) => Target {
            provider: Provider::Aws,
            account: &e.account,
            kind: ResourceKind::SagemakerEndpoint,
            bucket: None,
            object_key: None,
            name: &e.name,
            tags,
            key,
        },
        Resource::SagemakerNotebookInstance(o) | Resource::SagemakerTrainingJob(o) => Target {
            provider: Provider::Aws,
            account: &o.account,
            kind: resource.kind(),
            bucket: None,
            object_key: None,
            name: &o.name,
            tags,
            key,
        },
    }
}

/// Classify a resource against the team key the mapping chooses for it.
pub fn classify(
    campaign: &LoadedCampaign,
    pinned: &PinnedKeys,
    resource: Resource,
    tags: &BTreeMap<String, String>,
) -> Record {
    let mut team_key = map_key(campaign, &target_of(&resource, tags, None)).map(str::to_string);
    if let (None, Resource::SagemakerEndpoint(e)) = (&team_key, &resource) {
        // An endpoint no rule names takes the team key of its artifacts, when they agree.
        let keys: std::collections::BTreeSet<&str> = e
            .models
            .iter()
            .flat_map(|m| &m.artifacts)
            .filter_map(|a| a.team_key.as_deref())
            .collect();
        if keys.len() == 1 {
            team_key = keys.into_iter().next().map(str::to_string);
        }
    }
    let target = team_key
        .as_deref()
        .and_then(|k| pinned.get(&pin_id(k, resource.account())))
        .map(|p| p.arn.as_str());
    let class = match &resource {
        Resource::GcsBucket(b) => {
            crate::model::classify_gcs(b.default_kms_key.as_deref(), false, target)
        }
        Resource::GcsObject(o) => {
            crate::model::classify_gcs(o.kms_key.as_deref(), o.customer_supplied, target)
        }
        Resource::S3Bucket(b) => b.default_encryption.classify(target),
        Resource::S3Object(o) => o.encryption.classify(target),
        Resource::SagemakerEndpoint(e) => {
            let volume = crate::providers::sagemaker::volume_key(&e.variants);
            let outputs = e.data_capture || e.async_output;
            let main =
                if e.kms_key_arn.is_none() && !volume.is_covered() && outputs && target.is_some() {
                    // No volume key where none covers anything: the outputs decide.
                    EncryptionClass::TargetCmk
                } else {
                    crate::model::classify_key(
                        e.kms_key_arn.as_deref(),
                        e.key_manager.as_deref(),
                        target,
                    )
                };
            if main == EncryptionClass::TargetCmk
                && ((e.data_capture && e.data_capture_kms_key_arn.as_deref() != target)
                    || (e.async_output && e.async_output_kms_key_arn.as_deref() != target))
            {
                EncryptionClass::ForeignCmk
            } else {
                main
            }
        }
        Resource::SagemakerNotebookInstance(o) | Resource::SagemakerTrainingJob(o) => {
            crate::model::classify_key(o.kms_key_arn.as_deref(), o.key_manager.as_deref(), target)
        }
    };
    Record {
        resource,
        team_key,
        class,
    }
}

/// Counts of one inventory run.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct InventoryStats {
    pub buckets: u64,
    pub objects: u64,
    pub bytes: u64,
    pub list_pages: u64,
    pub head_requests: u64,
    /// Objects listed, then deleted before their HEAD: skipped.
    pub vanished: u64,
}

/// Run the inventory, handing each record to `sink` in a deterministic order: buckets by
/// name, each bucket record before its objects, objects in listing order.
#[allow(clippy::too_many_arguments)]
pub async fn run<S, K>(
    campaign: &LoadedCampaign,
    account: &str,
    s3: &S,
    kms: &K,
    pinned: &PinnedKeys,
    reporter: &dyn Reporter,
    mut sink: impl FnMut(Record) -> Result<(), RekeyError>,
) -> Result<InventoryStats, RekeyError>
where
    S: S3Read,
    K: KeyRead + crate::providers::iam::AccessRead,
{
    let mut stats = InventoryStats::default();
    let Some(s3_section) = campaign.s3() else {
        return Ok(stats);
    };
    let all_versions = s3_section.versions == Versions::All;
    let concurrency = campaign.spec.limits.concurrency;
    let cache = KeyCache {
        kms,
        known: Mutex::new(HashMap::new()),
    };
    // The team keys objects of this account may move to: each bucket's readers are checked
    // against each (few keys; reads cached per run).
    let account_keys: Vec<String> = {
        let mut k: Vec<String> = pinned
            .iter()
            .filter(|(id, _)| split_pin(id).1 == account)
            .map(|(_, p)| p.arn.clone())
            .collect();
        k.sort();
        k.dedup();
        k
    };
    let mut access =
        crate::preflight::AccessCache::new(kms, campaign.spec.preflight.accept_unverified.clone());
    // The buckets' owner: the account rekey reads them as (keys may live in another account).
    let owner_account = access
        .caller()
        .await?
        .split(':')
        .nth(4)
        .unwrap_or_default()
        .to_string();
    let buckets: Vec<String> = s3
        .list_buckets()
        .await?
        .into_iter()
        .filter(|b| campaign.buckets.iter().any(|g| g.is_match(b)))
        .collect();
    reporter.event(&Event::BucketsSelected {
        buckets: buckets.clone(),
    });
    let region = campaign.region().to_string();
    for (index, bucket) in buckets.iter().enumerate() {
        reporter.event(&Event::BucketStarted {
            bucket: bucket.clone(),
            index,
            total: buckets.len(),
        });
        let settings = s3.bucket_settings(bucket).await?;
        if settings.region != region {
            reporter.event(&Event::Warning {
                message: format!(
                    "s3://{bucket} is in {}, not the campaign's region {region}; its KMS keys must be in {}",
                    settings.region, settings.region
                ),
            });
        }
        let mut default_encryption = settings.default_encryption.clone();
        cache.resolve(&mut default_encryption).await?;
        let tags = settings.tags.clone();
        // Objects from an S3 Inventory report, when the campaign says so (chosen and checked
        // before anything of the bucket is recorded).
        let report = match s3_section.inventory.report_for(bucket) {
            Some(named) => {
                let needs = crate::s3report::Needs {
                    // UpdateObjectEncryption is pinned to the version the plan saw.
                    versions: all_versions
                        || (settings.versioning != "Unversioned"
                            && s3_section.engine.local() != crate::campaign::S3Engine::Copy),
                    object_lock: settings.object_lock,
                };
                Some(crate::s3report::find(s3, bucket, needs, named).await?)
            }
            None => None,
        };
        let surroundings = s3.surroundings(bucket).await?;
        let graph =
            crate::preflight::bucket_graph(bucket, &owner_account, &settings.region, &surroundings);
        let bucket_access =
            crate::preflight::bucket_verdicts(&mut access, &graph, &account_keys).await?;
        let bucket_record = Resource::S3Bucket(S3Bucket {
            surroundings,
            access: bucket_access,
            account: account.into(),
            region: settings.region.clone(),
            bucket: bucket.clone(),
            default_encryption,
            versioning: settings.versioning.clone(),
            object_lock: settings.object_lock,
            tags: tags.clone(),
            acls: settings.acls,
            changes_in_place: settings.changes_in_place,
            report: report.as_ref().map(crate::s3report::Found::source),
        });
        sink(classify(campaign, pinned, bucket_record, &tags))?;
        stats.buckets += 1;
        if let Some(found) = &report {
            let at = ReportBucket {
                account,
                bucket,
                settings: &settings,
                tags: &tags,
                all_versions,
                concurrency,
            };
            at.objects(
                campaign, pinned, s3, &cache, found, reporter, &mut stats, &mut sink,
            )
            .await?;
            continue;
        }

        let pages = Arc::new(AtomicU64::new(0));
        let listing = {
            let pages = pages.clone();
            stream::try_unfold(Some(None::<String>), move |state| {
                let pages = pages.clone();
                async move {
                    let Some(token) = state else {
                        return Ok::<_, ProviderError>(None);
                    };
                    let page = s3.list_page(bucket, all_versions, token).await?;
                    pages.fetch_add(1, Ordering::Relaxed);
                    let next = page.next.map(Some);
                    Ok(Some((page.objects, next)))
                }
            })
        };
        let cache = &cache;
        let settings = &settings;
        let mut objects = std::pin::pin!(listing
            .map_ok(|page| stream::iter(page.into_iter().map(Ok)))
            .try_flatten()
            .map_ok(|listed| async move {
                let head = match s3
                    .head_object(bucket, &listed.key, listed.version_id.as_deref())
                    .await
                {
                    Ok(h) => h,
                    // Deleted between the listing and the HEAD: nothing to plan.
                    Err(ProviderError::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let mut encryption = head.encryption;
                cache.resolve(&mut encryption).await?;
                // HEAD leaves retention and legal hold out without the permissions to read
                // them: in an Object Lock bucket they are read, or the object is unknown.
                let mut lock = head.lock;
                if settings.object_lock && !lock.is_locked() {
                    match s3
                        .object_lock(bucket, &listed.key, listed.version_id.as_deref())
                        .await
                    {
                        Ok(l) => lock = l,
                        Err(ProviderError::NotFound { .. }) => return Ok(None),
                        Err(e) => return Err(e),
                    }
                }
                let known = !head.etag.is_empty();
                Ok::<_, ProviderError>(Some(S3Object {
                    account: account.into(),
                    region: settings.region.clone(),
                    bucket: bucket.clone(),
                    key: listed.key,
                    // In a versioned bucket, the version the HEAD saw (UpdateObjectEncryption
                    // is pinned to it).
                    version_id: listed.version_id.or(head.version_id),
                    is_latest: listed.is_latest,
                    size: if known { head.size } else { listed.size },
                    etag: if known { head.etag } else { listed.etag },
                    storage_class: if known {
                        head.storage_class
                    } else {
                        listed.storage_class
                    },
                    archive_status: head.archive_status,
                    last_modified: listed.last_modified,
                    encryption,
                    lock,
                    website_redirect: head.website_redirect,
                    content_hash: None,
                }))
            })
            .try_buffered(concurrency));
        let (mut n, mut bytes) = (0u64, 0u64);
        while let Some(obj) = objects.try_next().await? {
            let Some(obj) = obj else {
                stats.vanished += 1;
                continue;
            };
            n += 1;
            bytes += obj.size;
            stats.head_requests += 1;
            sink(classify(campaign, pinned, Resource::S3Object(obj), &tags))?;
            if (stats.objects + n).is_multiple_of(500) {
                reporter.event(&Event::Progress {
                    objects: stats.objects + n,
                    bytes: stats.bytes + bytes,
                });
            }
        }
        stats.objects += n;
        stats.bytes += bytes;
        let list_pages = pages.load(Ordering::Relaxed);
        stats.list_pages += list_pages;
        reporter.event(&Event::BucketDone {
            bucket: bucket.clone(),
            objects: n,
            bytes,
            list_pages,
        });
    }
    Ok(stats)
}

impl<K: KeyRead> KeyCache<'_, K> {
    /// The ARN and key manager of a key named in any form; `None` ARN keeps the name as given.
    async fn describe(
        &self,
        key_ref: &str,
    ) -> Result<(Option<String>, Option<String>), ProviderError> {
        let mut known = self.known.lock().await;
        let key = match known.get(key_ref) {
            Some(k) => k.clone(),
            None => {
                let k = self.kms.describe_key(key_ref).await?;
                known.insert(key_ref.to_string(), k.clone());
                k
            }
        };
        Ok(match key {
            Some(k) => (Some(k.arn), Some(k.manager)),
            None => (Some(key_ref.to_string()), None),
        })
    }
}

/// Inventory SageMaker (endpoints with their configs and models, notebook instances,
/// training jobs) as the campaign asks, before S3: each endpoint carries its artifact graph,
/// with the team key of every artifact and whether the model's execution role may use it.
pub async fn run_sagemaker<A>(
    campaign: &LoadedCampaign,
    account: &str,
    aws: &A,
    pinned: &PinnedKeys,
    mut sink: impl FnMut(Record) -> Result<(), RekeyError>,
) -> Result<u64, RekeyError>
where
    A: crate::providers::sagemaker::SageMakerApi
        + S3Read
        + KeyRead
        + crate::providers::iam::AccessRead,
{
    use crate::model::{SmArtifact, SmEndpoint, SmModel, SmOther};
    use crate::preflight::{artifact_reader, endpoint_deployer, output_writer, AccessCache};
    let Some(sm) = campaign
        .spec
        .aws
        .as_ref()
        .and_then(|a| a.sagemaker.as_ref())
    else {
        return Ok(0);
    };
    let region = campaign.region().to_string();
    let cache = KeyCache {
        kms: aws,
        known: Mutex::new(HashMap::new()),
    };
    let mut access = AccessCache::new(aws, campaign.spec.preflight.accept_unverified.clone());
    let mut bucket_tags: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let mut n = 0;
    if sm.endpoints {
        for name in aws.list_endpoints().await? {
            let (arn, status, config_name) = aws.describe_endpoint(&name).await?;
            let config_json = aws.endpoint_config_json(&config_name).await?;
            let config = crate::providers::sagemaker::EndpointConfigInfo::from_json(
                &config_name,
                &config_json,
            );
            let mut model_infos = Vec::new();
            let (kms_key_arn, key_manager) = match &config.kms_key_id {
                Some(k) => cache.describe(k).await?,
                None => (None, None),
            };
            let data_capture_kms_key_arn = match &config.data_capture_kms_key_id {
                Some(k) => cache.describe(k).await?.0,
                None => None,
            };
            let async_output_kms_key_arn = match &config.async_output_kms_key_id {
                Some(k) => cache.describe(k).await?.0,
                None => None,
            };
            let mut verdicts = Vec::new();
            // (principal, why) of what rekey cannot follow: blocks the endpoint (I5).
            let mut unseen: Vec<(String, String)> = config
                .variants
                .iter()
                .filter(|v| v.model.is_none())
                .map(|v| {
                    (
                        config.execution_role_arn.clone().unwrap_or_default(),
                        format!(
                            "variant {} names no model (inference components), whose models and their artifacts rekey does not read",
                            v.name
                        ),
                    )
                })
                .collect();
            let mut models = Vec::new();
            for model_name in &config.model_names {
                let m = aws.describe_model(model_name).await?;
                model_infos.push(m.clone());
                unseen.extend(
                    m.unseen
                        .iter()
                        .map(|why| (m.execution_role_arn.clone(), why.clone())),
                );
                let mut artifacts = Vec::new();
                for url in &m.artifacts {
                    let Some((bucket, key)) =
                        url.strip_prefix("s3://").and_then(|p| p.split_once('/'))
                    else {
                        artifacts.push(SmArtifact {
                            url: url.clone(),
                            team_key: None,
                            key_access: None,
                            bucket_tags: BTreeMap::new(),
                        });
                        continue;
                    };
                    if !bucket_tags.contains_key(bucket) {
                        let tags = match aws.bucket_settings(bucket).await {
                            Ok(s) => s.tags,
                            Err(ProviderError::NotFound { .. }) => BTreeMap::new(),
                            Err(e) => return Err(e.into()),
                        };
                        bucket_tags.insert(bucket.to_string(), tags);
                    }
                    let tags = &bucket_tags[bucket];
                    let target = Target {
                        provider: Provider::Aws,
                        account,
                        kind: ResourceKind::S3Object,
                        bucket: Some(bucket),
                        object_key: Some(key),
                        name: key,
                        tags,
                        key: None,
                    };
                    let team_key = map_key(campaign, &target).map(str::to_string);
                    let mut key_access = None;
                    if let Some(p) = team_key
                        .as_deref()
                        .and_then(|k| pinned.get(&pin_id(k, account)))
                    {
                        let role = format!("execution role of model {}, reading {url}", m.name);
                        let v = access
                            .verdict(
                                &artifact_reader(&m.execution_role_arn, &region),
                                &p.arn,
                                &role,
                            )
                            .await?;
                        if !v.allowed() {
                            key_access = Some(v.summary());
                        }
                        verdicts.push(v);
                    }
                    artifacts.push(SmArtifact {
                        url: url.clone(),
                        team_key,
                        key_access,
                        bucket_tags: tags.clone(),
                    });
                }
                models.push(SmModel {
                    name: m.name,
                    execution_role_arn: m.execution_role_arn,
                    artifacts,
                });
            }
            let tags = aws.tags(&arn).await?;
            let e = SmEndpoint {
                account: account.into(),
                region: region.clone(),
                name,
                arn,
                status,
                config: config_name,
                kms_key_arn,
                key_manager,
                data_capture: config.data_capture,
                data_capture_kms_key_arn,
                async_output: config.async_output,
                async_output_kms_key_arn,
                variants: config.variants.clone(),
                models,
                tags: tags.clone(),
                access: Vec::new(),
                source_sha256: crate::providers::sagemaker::source_fingerprint(
                    &config_json,
                    &model_infos,
                ),
            };
            let mut record = classify(campaign, pinned, Resource::SagemakerEndpoint(e), &tags);
            // Who uses the endpoint's own team key once it moves: the execution roles write
            // capture and async output through S3; rekey itself creates the config (SageMaker
            // describes the key and grants the instances under the caller's identity).
            if let (Some(p), Resource::SagemakerEndpoint(e)) = (
                record
                    .team_key
                    .as_deref()
                    .and_then(|k| pinned.get(&pin_id(k, account))),
                &mut record.resource,
            ) {
                let outputs = e.data_capture || e.async_output;
                let mut roles: Vec<String> = e
                    .models
                    .iter()
                    .map(|m| m.execution_role_arn.clone())
                    .chain(config.execution_role_arn.clone())
                    .collect();
                roles.sort();
                roles.dedup();
                if outputs {
                    for r in &roles {
                        let role =
                            "execution role of the endpoint, writing data capture / async output";
                        verdicts.push(
                            access
                                .verdict(&output_writer(r, &region), &p.arn, role)
                                .await?,
                        );
                    }
                }
                let volume = crate::providers::sagemaker::volume_key(&e.variants);
                if volume.coverage != crate::providers::sagemaker::Coverage::NotCovered || outputs {
                    let me = access.caller().await?;
                    let role = crate::preflight::REKEY_ROLE;
                    verdicts.push(
                        access
                            .verdict(&endpoint_deployer(&me, &region), &p.arn, role)
                            .await?,
                    );
                }
            }
            // One verdict per principal, key and request (models often share a role).
            let mut seen = std::collections::HashSet::new();
            verdicts.retain(|v| {
                seen.insert((
                    v.principal.clone(),
                    v.key_arn.clone(),
                    v.actions.clone(),
                    v.via_service.clone(),
                ))
            });
            let endpoint_key = record
                .team_key
                .as_deref()
                .and_then(|k| pinned.get(&pin_id(k, account)))
                .map(|p| p.arn.clone())
                .unwrap_or_default();
            for (principal, why) in unseen {
                verdicts.push(crate::preflight::unseen(
                    &principal,
                    &endpoint_key,
                    "execution role of the endpoint's models",
                    format!("{why}: the key it needs cannot be checked; deploy it from S3 (ModelDataUrl / ModelDataSource) or re-key it by hand"),
                ));
            }
            if let Resource::SagemakerEndpoint(e) = &mut record.resource {
                e.access = verdicts;
            }
            sink(record)?;
            n += 1;
        }
    }
    let others = [(sm.notebook_instances, true), (sm.training_jobs, false)];
    for (wanted, notebook) in others {
        if !wanted {
            continue;
        }
        // A notebook is described like a training job with only its volume key.
        let items: Vec<crate::providers::sagemaker::TrainingJobInfo> = if notebook {
            aws.list_notebooks()
                .await?
                .into_iter()
                .map(|nb| crate::providers::sagemaker::TrainingJobInfo {
                    name: nb.name,
                    arn: nb.arn,
                    output_kms_key_id: nb.kms_key_id,
                    volume_kms_key_id: None,
                    output_path: None,
                })
                .collect()
        } else {
            aws.list_training_jobs().await?
        };
        for crate::providers::sagemaker::TrainingJobInfo {
            name,
            arn,
            output_kms_key_id: key,
            volume_kms_key_id: volume_key,
            output_path,
        } in items
        {
            let (kms_key_arn, key_manager) = match &key {
                Some(k) => cache.describe(k).await?,
                None => (None, None),
            };
            let volume_kms_key_arn = match &volume_key {
                Some(k) => cache.describe(k).await?.0,
                None => None,
            };
            let tags = aws.tags(&arn).await?;
            let o = SmOther {
                account: account.into(),
                region: region.clone(),
                name,
                arn,
                kms_key_arn,
                key_manager,
                volume_kms_key_arn,
                output_path,
                tags: tags.clone(),
            };
            let r = if notebook {
                Resource::SagemakerNotebookInstance(o)
            } else {
                Resource::SagemakerTrainingJob(o)
            };
            sink(classify(campaign, pinned, r, &tags))?;
            n += 1;
        }
    }
    Ok(n)
}

/// The account name of a GCP project's resources.
pub fn gcp_account(project: &str) -> String {
    format!("gcp:{project}")
}

/// Pin the campaign's GCP team keys: Cloud KMS keys are named in full (no aliases), so the
/// name is the pin; the version suffix, if any, is stripped.
pub fn pin_gcp_keys(campaign: &LoadedCampaign) -> PinnedKeys {
    let mut pinned = PinnedKeys::new();
    let Some(gcp) = &campaign.spec.gcp else {
        return pinned;
    };
    for (team, k) in &campaign.spec.keys {
        if let Some(name) = &k.gcp {
            let name = crate::providers::gcs::key_name(name);
            let parts: Vec<&str> = name.split('/').collect();
            pinned.insert(
                pin_id(team, &gcp_account(&gcp.project)),
                PinnedKey {
                    alias: name.clone(),
                    arn: name.clone(),
                    key_id: parts.last().copied().unwrap_or_default().to_string(),
                    region: parts.get(3).copied().unwrap_or_default().to_string(),
                    state: "unchecked".into(),
                },
            );
        }
    }
    pinned
}

/// Inventory the campaign's GCS buckets and their live objects (bucket record first).
pub async fn run_gcs(
    campaign: &LoadedCampaign,
    gcs: &crate::providers::gcs::GcsClient,
    pinned: &PinnedKeys,
    reporter: &dyn Reporter,
    mut sink: impl FnMut(Record) -> Result<(), RekeyError>,
) -> Result<InventoryStats, RekeyError> {
    use crate::model::{GcsBucket, GcsObject};
    let mut stats = InventoryStats::default();
    let Some(gcp) = &campaign.spec.gcp else {
        return Ok(stats);
    };
    let Some(section) = &gcp.gcs else {
        return Ok(stats);
    };
    let globs: Vec<globset::GlobMatcher> = section
        .buckets
        .iter()
        .filter_map(|b| crate::matching::glob(b).ok())
        .collect();
    let account = gcp_account(&gcp.project);
    let buckets: Vec<String> = gcs
        .list_buckets()
        .await?
        .into_iter()
        .filter(|b| globs.iter().any(|g| g.is_match(b)))
        .collect();
    reporter.event(&Event::BucketsSelected {
        buckets: buckets.iter().map(|b| format!("gs://{b}")).collect(),
    });
    for (index, bucket) in buckets.iter().enumerate() {
        reporter.event(&Event::BucketStarted {
            bucket: format!("gs://{bucket}"),
            index,
            total: buckets.len(),
        });
        let info = gcs.get_bucket(bucket).await?;
        let labels = info.labels.clone();
        let record = Resource::GcsBucket(GcsBucket {
            account: account.clone(),
            project: gcp.project.clone(),
            bucket: bucket.clone(),
            location: info.location.clone(),
            default_kms_key: info.default_kms_key.clone(),
            versioning: info.versioning,
            labels: labels.clone(),
            storage_class: Some(info.storage_class.clone()),
        });
        sink(classify(campaign, pinned, record, &labels))?;
        stats.buckets += 1;
        let mut token = None;
        let (mut n, mut bytes, mut pages) = (0u64, 0u64, 0u64);
        loop {
            let (items, next) = gcs.list_objects(bucket, false, 1000, token).await?;
            pages += 1;
            for o in items {
                n += 1;
                bytes += o.size;
                let r = Resource::GcsObject(GcsObject {
                    account: account.clone(),
                    bucket: bucket.clone(),
                    name: o.name,
                    generation: o.generation,
                    size: o.size,
                    storage_class: o.storage_class,
                    content_type: o.content_type,
                    kms_key: o.kms_key,
                    customer_supplied: o.customer_supplied,
                    content_hash: o.content_hash,
                    hold: o.hold,
                });
                sink(classify(campaign, pinned, r, &labels))?;
            }
            token = next;
            if token.is_none() {
                break;
            }
        }
        stats.objects += n;
        stats.bytes += bytes;
        stats.list_pages += pages;
        reporter.event(&Event::BucketDone {
            bucket: format!("gs://{bucket}"),
            objects: n,
            bytes,
            list_pages: pages,
        });
    }
    Ok(stats)
}
