//! AWS: S3 and KMS through the official SDK, with SDK errors mapped to `ProviderError`.

use std::collections::{BTreeMap, HashMap};

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockLegalHoldStatus};
use aws_smithy_types::date_time::Format;

use crate::error::ProviderError;
use crate::model::{KmsKey, ObjectLock, S3Encryption};
use crate::providers::{
    BucketSettings, CopiedPart, CopyInPlace, Grants, KeyRead, ListPage, ListedObject, ObjectHead,
    S3Read, Written,
};

/// The SDK clients for one account and region.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub kms: aws_sdk_kms::Client,
    pub sagemaker: aws_sdk_sagemaker::Client,
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
    pub s3control: aws_sdk_s3control::Client,
    /// S3 Control in us-west-2, where Multi-Region Access Points are managed.
    pub s3control_mrap: aws_sdk_s3control::Client,
    pub cloudfront: aws_sdk_cloudfront::Client,
    pub region: String,
    pub list_page_size: i32,
    /// The caller's account and the account's CloudFront origins, each read once per run.
    account: std::sync::Arc<tokio::sync::OnceCell<String>>,
    cdn_origins: std::sync::Arc<tokio::sync::OnceCell<Vec<crate::model::CdnOrigin>>>,
    mraps: std::sync::Arc<tokio::sync::OnceCell<Vec<Mrap>>>,
}

/// A Multi-Region Access Point, as far as the consumer graph goes.
#[derive(Debug, Clone)]
struct Mrap {
    name: String,
    alias: String,
    arn: String,
    /// Buckets of the account it routes to.
    buckets: Vec<String>,
    /// Its established policy, and the proposed one when it differs.
    policies: Vec<String>,
}

impl AwsClients {
    /// Build clients from the SDK's default chain (profiles, environment, `AWS_ENDPOINT_URL`);
    /// `endpoint_url` from the campaign overrides the endpoint. Path-style addressing is
    /// used whenever an endpoint is overridden, as emulators and S3-compatible stores expect.
    pub async fn new(region: &str, endpoint_url: Option<&str>) -> AwsClients {
        Self::with_retries(region, endpoint_url, 5).await
    }

    /// The same with the SDK's own retries capped at `max_attempts` (1: none, for callers
    /// that retry themselves, so that retries live in one place).
    pub async fn with_retries(
        region: &str,
        endpoint_url: Option<&str>,
        max_attempts: u32,
    ) -> AwsClients {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts),
            );
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let conf = loader.load().await;
        let custom_endpoint = endpoint_url.is_some()
            || std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        Self::from_conf(&conf, custom_endpoint)
    }

    /// Clients for another account, reached by AssumeRole from the default credentials.
    pub async fn assume(
        region: &str,
        endpoint_url: Option<&str>,
        max_attempts: u32,
        role_arn: &str,
    ) -> AwsClients {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts),
            );
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let conf = loader.load().await;
        let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .session_name("rekey")
            .configure(&conf)
            .build()
            .await;
        let conf = conf
            .into_builder()
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(provider))
            .build();
        let custom_endpoint = endpoint_url.is_some()
            || std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        Self::from_conf(&conf, custom_endpoint)
    }

    /// Build clients from a loaded SDK configuration.
    pub fn from_conf(conf: &aws_config::SdkConfig, path_style: bool) -> AwsClients {
        let s3_conf = aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(path_style)
            .build();
        let mut control = aws_sdk_s3control::config::Builder::from(conf);
        if path_style {
            control = control.interceptor(AccountHostOnLoopback);
        }
        let control_mrap = control
            .clone()
            .region(aws_config::Region::from_static("us-west-2"))
            .build();
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            kms: aws_sdk_kms::Client::new(conf),
            sagemaker: aws_sdk_sagemaker::Client::new(conf),
            iam: aws_sdk_iam::Client::new(conf),
            sts: aws_sdk_sts::Client::new(conf),
            s3control: aws_sdk_s3control::Client::from_conf(control.build()),
            s3control_mrap: aws_sdk_s3control::Client::from_conf(control_mrap),
            cloudfront: aws_sdk_cloudfront::Client::new(conf),
            region: conf.region().map(|r| r.to_string()).unwrap_or_default(),
            list_page_size: 1000,
            account: Default::default(),
            cdn_origins: Default::default(),
            mraps: Default::default(),
        }
    }

    /// The account of the caller (STS GetCallerIdentity), read once.
    pub async fn account(&self) -> Result<String, ProviderError> {
        self.account
            .get_or_try_init(|| async {
                let out = self.sts.get_caller_identity().send().await.map_err(|e| {
                    map_sdk_error("the caller's identity (sts:GetCallerIdentity)", e)
                })?;
                Ok(out.account().unwrap_or_default().to_string())
            })
            .await
            .cloned()
    }

    /// Every S3 origin of every CloudFront distribution of the account, read once, each with
    /// its origin access control's signing behaviour.
    async fn cdn_origins(&self) -> Result<&[crate::model::CdnOrigin], ProviderError> {
        use crate::model::OriginTarget;
        self.cdn_origins
            .get_or_try_init(|| async {
                let mut out = Vec::new();
                let mut marker: Option<String> = None;
                // Bounded: 10,000 pages of 100 distributions is far past any account's quota.
                for _ in 0..10_000 {
                    let page = self
                        .cloudfront
                        .list_distributions()
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| {
                            map_sdk_error(
                                "CloudFront distributions (cloudfront:ListDistributions)",
                                e,
                            )
                        })?;
                    let Some(list) = page.distribution_list() else {
                        break;
                    };
                    for d in list.items() {
                        for o in d.origins().map(|o| o.items()).unwrap_or_default() {
                            let path = o.origin_path().unwrap_or_default();
                            let target = crate::model::origin_target(o.domain_name(), path);
                            if target == OriginTarget::NotS3 {
                                continue;
                            }
                            out.push(crate::model::CdnOrigin {
                                distribution: d.arn().to_string(),
                                origin: o.id().to_string(),
                                domain: o.domain_name().to_string(),
                                oac: o
                                    .origin_access_control_id()
                                    .filter(|x| !x.is_empty())
                                    .map(str::to_string),
                                oai: o
                                    .s3_origin_config()
                                    .map(|c| c.origin_access_identity())
                                    .filter(|x| !x.is_empty())
                                    .map(str::to_string),
                                website: matches!(
                                    target,
                                    OriginTarget::Bucket { website: true, .. }
                                ),
                                signing: None,
                                origin_path: path.to_string(),
                                unattributed: target == OriginTarget::Unattributed,
                            });
                        }
                    }
                    match list.next_marker().filter(|m| !m.is_empty()) {
                        Some(m) if list.is_truncated() => marker = Some(m.to_string()),
                        _ => break,
                    }
                }
                // How each origin access control signs (`never`: not at all).
                let mut signing: HashMap<String, String> = HashMap::new();
                for o in &mut out {
                    let Some(id) = o.oac.clone() else {
                        continue;
                    };
                    if !signing.contains_key(&id) {
                        let got = self
                            .cloudfront
                            .get_origin_access_control()
                            .id(&id)
                            .send()
                            .await
                            .map_err(|e| {
                                map_sdk_error(
                                    format!(
                                        "origin access control {id} (cloudfront:GetOriginAccessControl)"
                                    ),
                                    e,
                                )
                            })?;
                        let behaviour = got
                            .origin_access_control()
                            .and_then(|c| c.origin_access_control_config())
                            .map(|c| c.signing_behavior().as_str().to_string())
                            .unwrap_or_default();
                        signing.insert(id.clone(), behaviour);
                    }
                    o.signing = signing.get(&id).cloned();
                }
                Ok(out)
            })
            .await
            .map(Vec::as_slice)
    }

    /// The account's Multi-Region Access Points (listed once; their control plane is in
    /// us-west-2), each with the buckets it routes to and its policies.
    async fn mraps(&self, account: &str) -> Result<&[Mrap], ProviderError> {
        self.mraps
            .get_or_try_init(|| async {
                let what = "Multi-Region Access Points (s3:ListMultiRegionAccessPoints)";
                let mut out = Vec::new();
                let mut token: Option<String> = None;
                for _ in 0..10_000 {
                    let page = self
                        .s3control_mrap
                        .list_multi_region_access_points()
                        .account_id(account)
                        .set_next_token(token.take())
                        .send()
                        .await
                        .map_err(|e| map_sdk_error(what, e))?;
                    for m in page.access_points() {
                        let name = m.name().unwrap_or_default().to_string();
                        let policy = self
                            .s3control_mrap
                            .get_multi_region_access_point_policy()
                            .account_id(account)
                            .name(&name)
                            .send()
                            .await;
                        let mut policies = Vec::new();
                        match policy {
                            Ok(p) => {
                                let doc = p.policy();
                                if let Some(x) = doc.and_then(|d| d.established()).and_then(|e| e.policy()) {
                                    policies.push(x.to_string());
                                }
                                if let Some(x) = doc.and_then(|d| d.proposed()).and_then(|e| e.policy()) {
                                    if !policies.iter().any(|p| p == x) {
                                        policies.push(x.to_string());
                                    }
                                }
                            }
                            Err(e) if e.code() == Some("NoSuchMultiRegionAccessPointPolicy") => {}
                            Err(e) => {
                                return Err(map_sdk_error(
                                    format!("policy of Multi-Region Access Point {name} (s3:GetMultiRegionAccessPointPolicy)"),
                                    e,
                                ))
                            }
                        }
                        let alias = m.alias().unwrap_or_default().to_string();
                        out.push(Mrap {
                            arn: format!("arn:aws:s3::{account}:accesspoint/{alias}"),
                            buckets: m
                                .regions()
                                .iter()
                                .filter(|r| {
                                    r.bucket_account_id().is_none_or(|a| a.is_empty() || a == account)
                                })
                                .filter_map(|r| r.bucket().map(str::to_string))
                                .collect(),
                            name,
                            alias,
                            policies,
                        });
                    }
                    match page.next_token().filter(|t| !t.is_empty()) {
                        Some(t) => token = Some(t.to_string()),
                        None => break,
                    }
                }
                Ok(out)
            })
            .await
            .map(Vec::as_slice)
    }

    /// A bucket's location constraint as S3 reports it (none: us-east-1).
    async fn bucket_location(&self, bucket: &str) -> Result<String, ProviderError> {
        Ok(self
            .s3
            .get_bucket_location()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("s3://{bucket}"), e))?
            .location_constraint()
            .map(|c| c.as_str().to_string())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "us-east-1".to_string()))
    }

    /// An S3 Control client for `region` (access points are regional).
    fn control_in(&self, region: &str) -> aws_sdk_s3control::Client {
        if region == self.region || region.is_empty() {
            return self.s3control.clone();
        }
        let conf = self
            .s3control
            .config()
            .to_builder()
            .region(aws_config::Region::new(region.to_string()))
            .build();
        aws_sdk_s3control::Client::from_conf(conf)
    }

    /// The bucket's access points in `account`, each with its policy.
    async fn access_points(
        &self,
        account: &str,
        bucket: &str,
        region: &str,
    ) -> Result<Vec<crate::model::AccessPoint>, ProviderError> {
        let what = || format!("access points of s3://{bucket} (s3:ListAccessPoints)");
        let control = self.control_in(region);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..10_000 {
            let page = control
                .list_access_points()
                .account_id(account)
                .bucket(bucket)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| map_sdk_error(what(), e))?;
            for ap in page.access_point_list() {
                let name = ap.name().to_string();
                let policy = match control
                    .get_access_point_policy()
                    .account_id(account)
                    .name(&name)
                    .send()
                    .await
                {
                    Ok(p) => p.policy().map(str::to_string),
                    Err(e) if e.code() == Some("NoSuchAccessPointPolicy") => None,
                    Err(e) => {
                        return Err(map_sdk_error(
                            format!("policy of access point {name} (s3:GetAccessPointPolicy)"),
                            e,
                        ))
                    }
                };
                out.push(crate::model::AccessPoint {
                    arn: ap.access_point_arn().unwrap_or_default().to_string(),
                    alias: ap.alias().unwrap_or_default().to_string(),
                    name,
                    policy,
                });
            }
            match page.next_token().filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        // Multi-Region Access Points that route to this bucket.
        for m in self.mraps(account).await? {
            if !m.buckets.iter().any(|b| b == bucket) {
                continue;
            }
            if m.policies.is_empty() {
                out.push(crate::model::AccessPoint {
                    name: format!("mrap/{}", m.name),
                    arn: m.arn.clone(),
                    alias: m.alias.clone(),
                    policy: None,
                });
            }
            for (i, p) in m.policies.iter().enumerate() {
                out.push(crate::model::AccessPoint {
                    name: if i == 0 {
                        format!("mrap/{}", m.name)
                    } else {
                        format!("mrap/{} (proposed policy)", m.name)
                    },
                    arn: m.arn.clone(),
                    alias: m.alias.clone(),
                    policy: Some(p.clone()),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// S3 Control addresses `{AccountId}.{endpoint host}`. Against an endpoint on a loopback
/// address (an emulator) that name cannot resolve, so the account prefix is taken off again
/// before signing; any other endpoint keeps it.
#[derive(Debug)]
struct AccountHostOnLoopback;

impl aws_sdk_s3control::config::Intercept for AccountHostOnLoopback {
    fn name(&self) -> &'static str {
        "AccountHostOnLoopback"
    }

    fn modify_before_signing(
        &self,
        context: &mut aws_sdk_s3control::config::interceptors::BeforeTransmitInterceptorContextMut<
            '_,
        >,
        _components: &aws_sdk_s3control::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3control::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let uri = context.request().uri().to_string();
        if let Some(fixed) = loopback_without_account(&uri) {
            context.request_mut().set_uri(fixed.as_str())?;
        }
        Ok(())
    }
}

/// `http://123456789012.127.0.0.1:5000/path` → `http://127.0.0.1:5000/path` (also for
/// `localhost`); None for anything else.
fn loopback_without_account(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let (account, host) = rest.split_once('.')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let name = host.split([':', '/']).next().unwrap_or_default();
    let loopback = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback.then(|| format!("{scheme}://{host}"))
}

/// Map any SDK error into the shared error type, by error code first and HTTP status next.
pub fn map_sdk_error<E>(what: impl Into<String>, err: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let what = what.into();
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    let detail = match (&code, err.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        (None, _) => match &err {
            SdkError::DispatchFailure(_) => "could not reach the endpoint".to_string(),
            SdkError::TimeoutError(_) => "timed out".to_string(),
            SdkError::ResponseError(_) => format!(
                "unreadable response (HTTP {}): {}",
                status.unwrap_or(0),
                aws_smithy_types::error::display::DisplayErrorContext(&err)
            ),
            _ => match status {
                Some(s) => format!("HTTP {s}"),
                None => format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(&err)
                ),
            },
        },
    };
    let code = code.as_deref().unwrap_or("");
    match (code, status) {
        ("NoSuchKey" | "NoSuchBucket" | "NotFound" | "NoSuchVersion" | "NotFoundException", _)
        | (_, Some(404)) => ProviderError::NotFound { what },
        ("PreconditionFailed", _) | (_, Some(412)) => ProviderError::Precondition { what },
        ("ConditionalRequestConflict", _) => ProviderError::Conflict { what },
        // S3 closes a request whose body it waited too long for: send it again.
        ("RequestTimeout" | "InternalError" | "OperationAborted", _) => {
            ProviderError::Transient { what, detail }
        }
        (
            "SlowDown"
            | "ThrottlingException"
            | "Throttling"
            | "RequestLimitExceeded"
            | "TooManyRequestsException",
            _,
        )
        | (_, Some(503)) => ProviderError::Throttled { what, detail },
        (c, _) if c.starts_with("KMS.") => ProviderError::KeyUnusable { key: what, detail },
        ("AccessDenied" | "AccessDeniedException", _) | (_, Some(403)) => {
            ProviderError::PermissionDenied { what, detail }
        }
        (_, Some(s)) if s >= 500 => ProviderError::Transient { what, detail },
        (_, None) => ProviderError::Transient { what, detail },
        (_, Some(_)) => ProviderError::Invalid { what, detail },
    }
}

fn fmt_time(t: Option<&aws_smithy_types::DateTime>) -> String {
    t.and_then(|t| t.fmt(Format::DateTime).ok())
        .unwrap_or_default()
}

impl S3Read for AwsClients {
    async fn list_buckets(&self) -> Result<Vec<String>, ProviderError> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .s3
                .list_buckets()
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error("bucket list", e))?;
            names.extend(
                out.buckets()
                    .iter()
                    .filter_map(|b| b.name().map(str::to_string)),
            );
            token = out.continuation_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        names.sort();
        Ok(names)
    }

    async fn bucket_settings(&self, bucket: &str) -> Result<BucketSettings, ProviderError> {
        let what = || format!("s3://{bucket}");
        let region = self.bucket_location(bucket).await?;
        let default_encryption = self.bucket_settings_encryption(bucket).await?;
        let versioning = self
            .s3
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "Unversioned".to_string());
        let tags = match self.s3.get_bucket_tagging().bucket(bucket).send().await {
            Ok(out) => out
                .tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
            Err(e) if e.code() == Some("NoSuchTagSet") || e.code() == Some("NoSuchTagSetError") => {
                BTreeMap::new()
            }
            Err(e) => return Err(map_sdk_error(what(), e)),
        };
        let object_lock = match self
            .s3
            .get_object_lock_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => {
                out.object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled)
            }
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => false,
            Err(e) => return Err(map_sdk_error(what(), e)),
        };
        // No ownership controls at all is a bucket from before they existed: ACLs apply.
        let acls = match self
            .s3
            .get_bucket_ownership_controls()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => !out
                .ownership_controls()
                .map(|c| c.rules())
                .unwrap_or_default()
                .iter()
                .any(|r| r.object_ownership().as_str() == "BucketOwnerEnforced"),
            Err(e) if e.code() == Some("OwnershipControlsNotFoundError") => true,
            Err(e) => return Err(map_sdk_error(what(), e)),
        };
        let transitions = match self
            .s3
            .get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out.rules().iter().any(|r| {
                !r.transitions().is_empty() || !r.noncurrent_version_transitions().is_empty()
            }),
            Err(e) if e.code() == Some("NoSuchLifecycleConfiguration") => false,
            Err(e) => return Err(map_sdk_error(what(), e)),
        };
        let website = match self.s3.get_bucket_website().bucket(bucket).send().await {
            Ok(_) => true,
            Err(e) if e.code() == Some("NoSuchWebsiteConfiguration") => false,
            Err(e) => return Err(map_sdk_error(what(), e)),
        };
        Ok(BucketSettings {
            region,
            default_encryption,
            versioning,
            object_lock,
            tags,
            acls,
            changes_in_place: transitions || website,
        })
    }

    async fn surroundings(
        &self,
        bucket: &str,
    ) -> Result<crate::model::Surroundings, ProviderError> {
        use crate::model::{Notifications, Replication, ReplicationRule, Surroundings};
        let what = || format!("s3://{bucket}");
        let policy = match self.s3.get_bucket_policy().bucket(bucket).send().await {
            Ok(out) => out.policy().map(str::to_string),
            Err(e) if e.code() == Some("NoSuchBucketPolicy") => None,
            Err(e) => return Err(map_sdk_error(what(), e)),
        };
        let replication = match self.s3.get_bucket_replication().bucket(bucket).send().await {
            // A rule of the first schema has its prefix at the top (deprecated in the SDK).
            #[allow(deprecated)]
            Ok(out) => out.replication_configuration().map(|c| Replication {
                role: c.role().to_string(),
                rules: c
                    .rules()
                    .iter()
                    .map(|r| ReplicationRule {
                        id: r.id().unwrap_or_default().to_string(),
                        enabled: r.status().as_str() == "Enabled",
                        prefix: r
                            .filter()
                            .and_then(|f| f.prefix().or_else(|| f.and().and_then(|a| a.prefix())))
                            .or(r.prefix())
                            .unwrap_or_default()
                            .to_string(),
                        destination_bucket: r
                            .destination()
                            .map(|d| d.bucket().to_string())
                            .unwrap_or_default(),
                        sse_kms_opt_in: r
                            .source_selection_criteria()
                            .and_then(|c| c.sse_kms_encrypted_objects())
                            .is_some_and(|s| s.status().as_str() == "Enabled"),
                        replica_kms_key: r
                            .destination()
                            .and_then(|d| d.encryption_configuration())
                            .and_then(|e| e.replica_kms_key_id())
                            .map(str::to_string),
                    })
                    .collect(),
            }),
            Err(e) if e.code() == Some("ReplicationConfigurationNotFoundError") => None,
            Err(e) => return Err(map_sdk_error(what(), e)),
        };
        let n = self
            .s3
            .get_bucket_notification_configuration()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        // A copy is an ObjectCreated:Copy event: any configuration subscribed to it (or to
        // every ObjectCreated event) fires once per copied object.
        let on_create = |events: &[aws_sdk_s3::types::Event]| {
            events.iter().any(|e| {
                let e = e.as_str();
                e == "s3:ObjectCreated:*" || e == "s3:ObjectCreated:Copy"
            })
        };
        let mut fired = Vec::new();
        for t in n.topic_configurations() {
            if on_create(t.events()) {
                fired.push(format!("SNS {}", t.topic_arn()));
            }
        }
        for q in n.queue_configurations() {
            if on_create(q.events()) {
                fired.push(format!("SQS {}", q.queue_arn()));
            }
        }
        for l in n.lambda_function_configurations() {
            if on_create(l.events()) {
                fired.push(format!("Lambda {}", l.lambda_function_arn()));
            }
        }
        let account = self.account().await?;
        // The legacy name of eu-west-1 is not a region S3 Control answers in.
        let region = match self.bucket_location(bucket).await? {
            r if r == "EU" => "eu-west-1".to_string(),
            r => r,
        };
        let access_points = self.access_points(&account, bucket, &region).await?;
        // Origins that read the bucket: by its name, an alias of one of its access points, an
        // access point's own hostname; and those rekey cannot tie to any bucket.
        let origins = self
            .cdn_origins()
            .await?
            .iter()
            .filter(
                |o| match crate::model::origin_target(&o.domain, &o.origin_path) {
                    crate::model::OriginTarget::Bucket { name, .. } => {
                        name == bucket || access_points.iter().any(|a| a.alias == name)
                    }
                    crate::model::OriginTarget::AccessPoint { name, account: a } => {
                        a == account && access_points.iter().any(|x| x.name == name)
                    }
                    crate::model::OriginTarget::Unattributed => true,
                    crate::model::OriginTarget::NotS3 => false,
                },
            )
            .cloned()
            .collect();
        Ok(Surroundings {
            policy,
            replication,
            notifications: Notifications {
                on_create: fired,
                eventbridge: n.event_bridge_configuration().is_some(),
            },
            access_points,
            origins,
        })
    }

    async fn inventory_configurations(
        &self,
        bucket: &str,
    ) -> Result<Vec<crate::s3report::InventoryConfig>, ProviderError> {
        let what =
            || format!("inventory configurations of s3://{bucket} (s3:GetInventoryConfiguration)");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..1_000 {
            let page = self
                .s3
                .list_bucket_inventory_configurations()
                .bucket(bucket)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| map_sdk_error(what(), e))?;
            for c in page.inventory_configuration_list() {
                let dest = c.destination().and_then(|d| d.s3_bucket_destination());
                out.push(crate::s3report::InventoryConfig {
                    id: c.id().to_string(),
                    enabled: c.is_enabled(),
                    destination_bucket: dest.map(|d| d.bucket().to_string()).unwrap_or_default(),
                    destination_prefix: dest.and_then(|d| d.prefix()).map(str::to_string),
                    format: dest
                        .map(|d| d.format().as_str().to_string())
                        .unwrap_or_default(),
                    included_versions: c.included_object_versions().as_str().to_string(),
                    optional_fields: c
                        .optional_fields()
                        .iter()
                        .map(|f| f.as_str().to_string())
                        .collect(),
                    filter_prefix: c.filter().map(|f| f.prefix().to_string()),
                });
            }
            match page
                .next_continuation_token()
                .filter(|_| page.is_truncated() == Some(true))
            {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        Ok(out)
    }

    async fn folders(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, ProviderError> {
        let what = || format!("listing of s3://{bucket}/{prefix}");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..100_000 {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .delimiter("/")
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| map_sdk_error(what(), e))?;
            out.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix())
                    .map(str::to_string),
            );
            match page
                .next_continuation_token()
                .filter(|_| page.is_truncated() == Some(true))
            {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        out.sort();
        Ok(out)
    }

    async fn read_small(
        &self,
        bucket: &str,
        key: &str,
        limit: u64,
    ) -> Result<Vec<u8>, ProviderError> {
        let what = || format!("s3://{bucket}/{key}");
        let out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        if out.content_length().unwrap_or(0).max(0) as u64 > limit {
            return Err(ProviderError::Invalid {
                what: what(),
                detail: format!("larger than {limit} bytes"),
            });
        }
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| ProviderError::Transient {
                what: what(),
                detail: e.to_string(),
            })?;
        Ok(bytes.into_bytes().to_vec())
    }

    async fn download(
        &self,
        bucket: &str,
        key: &str,
        to: &mut std::fs::File,
    ) -> Result<String, ProviderError> {
        use md5::{Digest, Md5};
        use std::io::Write;
        let what = || format!("s3://{bucket}/{key}");
        let mut out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        let mut md5 = Md5::new();
        while let Some(chunk) = out.body.next().await {
            let chunk = chunk.map_err(|e| ProviderError::Transient {
                what: what(),
                detail: e.to_string(),
            })?;
            md5.update(&chunk);
            to.write_all(&chunk).map_err(|e| ProviderError::Other {
                what: what(),
                detail: format!("writing the temporary copy: {e}"),
            })?;
        }
        Ok(hex::encode(md5.finalize()))
    }

    async fn list_page(
        &self,
        bucket: &str,
        all_versions: bool,
        token: Option<String>,
    ) -> Result<ListPage, ProviderError> {
        let what = || format!("listing of s3://{bucket}");
        if !all_versions {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .max_keys(self.list_page_size)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| map_sdk_error(what(), e))?;
            let objects = out
                .contents()
                .iter()
                .map(|o| ListedObject {
                    key: o.key().unwrap_or_default().to_string(),
                    version_id: None,
                    is_latest: true,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().unwrap_or_default().to_string(),
                    storage_class: o
                        .storage_class()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_else(|| "STANDARD".into()),
                    last_modified: fmt_time(o.last_modified()),
                })
                .collect();
            let next = if out.is_truncated() == Some(true) {
                out.next_continuation_token().map(str::to_string)
            } else {
                None
            };
            return Ok(ListPage { objects, next });
        }
        // Version listings page on two markers; carry both in one token.
        let (key_marker, version_marker) = match token.as_deref().and_then(|t| t.split_once('\n')) {
            Some((k, v)) => (
                Some(k.to_string()),
                Some(v.to_string()).filter(|v| !v.is_empty()),
            ),
            None => (None, None),
        };
        let out = self
            .s3
            .list_object_versions()
            .bucket(bucket)
            .max_keys(self.list_page_size)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        let objects = out
            .versions()
            .iter()
            .map(|o| ListedObject {
                key: o.key().unwrap_or_default().to_string(),
                version_id: o.version_id().map(str::to_string).filter(|v| v != "null"),
                is_latest: o.is_latest().unwrap_or(false),
                size: o.size().unwrap_or(0).max(0) as u64,
                etag: o.e_tag().unwrap_or_default().to_string(),
                storage_class: o
                    .storage_class()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|| "STANDARD".into()),
                last_modified: fmt_time(o.last_modified()),
            })
            .collect();
        let next = if out.is_truncated() == Some(true) {
            out.next_key_marker()
                .map(|k| format!("{k}\n{}", out.next_version_id_marker().unwrap_or_default()))
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }

    async fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectHead, ProviderError> {
        let res = self
            .s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .send()
            .await;
        let out = match res {
            Ok(out) => out,
            // S3 answers HEAD on an SSE-C object with a bare 400 unless the customer key is
            // sent. A 400 has other causes, so a one-byte GET, whose error has a body, tells.
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(400) => {
                if self.needs_customer_key(bucket, key, version_id).await? {
                    return Ok(ObjectHead {
                        version_id: version_id.map(str::to_string),
                        encryption: S3Encryption {
                            algorithm: S3Encryption::SSE_C.to_string(),
                            ..Default::default()
                        },
                        ..Default::default()
                    });
                }
                return Err(map_sdk_error(format!("s3://{bucket}/{key}"), e));
            }
            Err(e) => return Err(map_sdk_error(format!("s3://{bucket}/{key}"), e)),
        };
        let algorithm = if out.sse_customer_algorithm().is_some() {
            S3Encryption::SSE_C.to_string()
        } else {
            out.server_side_encryption()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| S3Encryption::NONE.to_string())
        };
        Ok(ObjectHead {
            etag: out.e_tag().unwrap_or_default().to_string(),
            version_id: out.version_id().map(str::to_string).filter(|v| v != "null"),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            storage_class: out
                .storage_class()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "STANDARD".into()),
            archive_status: out.archive_status().map(|a| a.as_str().to_string()),
            encryption: S3Encryption {
                algorithm,
                kms_key_arn: out.ssekms_key_id().map(str::to_string),
                key_manager: None,
                bucket_key: out.bucket_key_enabled().unwrap_or(false),
                blocked_types: Vec::new(),
            },
            lock: ObjectLock {
                mode: out.object_lock_mode().map(|m| m.as_str().to_string()),
                retain_until: out
                    .object_lock_retain_until_date()
                    .and_then(|t| t.fmt(Format::DateTime).ok()),
                legal_hold: out.object_lock_legal_hold_status()
                    == Some(&ObjectLockLegalHoldStatus::On),
                unreadable: false,
            },
            website_redirect: out.website_redirect_location().map(str::to_string),
        })
    }

    async fn object_lock(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectLock, ProviderError> {
        self.read_object_lock(bucket, key, version_id).await
    }
}

impl KeyRead for AwsClients {
    async fn describe_key(&self, key_ref: &str) -> Result<Option<KmsKey>, ProviderError> {
        match self.kms.describe_key().key_id(key_ref).send().await {
            Ok(out) => {
                let Some(m) = out.key_metadata() else {
                    return Ok(None);
                };
                Ok(Some(KmsKey {
                    arn: m.arn().unwrap_or_default().to_string(),
                    key_id: m.key_id().to_string(),
                    manager: m
                        .key_manager()
                        .map(|k| k.as_str().to_string())
                        .unwrap_or_else(|| "CUSTOMER".into()),
                    state: m
                        .key_state()
                        .map(|k| k.as_str().to_string())
                        .unwrap_or_default(),
                    spec: m
                        .key_spec()
                        .map(|k| k.as_str().to_string())
                        .unwrap_or_else(|| "SYMMETRIC_DEFAULT".into()),
                    usage: m
                        .key_usage()
                        .map(|k| k.as_str().to_string())
                        .unwrap_or_else(|| "ENCRYPT_DECRYPT".into()),
                }))
            }
            Err(e) => match map_sdk_error(format!("KMS key {key_ref}"), e) {
                ProviderError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }
}

/// Percent-encode a copy source (`bucket/key`) as S3 expects it. Never with a version id:
/// rekey copies an object onto itself from its current version only (a copy from a pinned
/// version id would make old bytes current, DESIGN.md I1).
pub fn copy_source(bucket: &str, key: &str) -> String {
    let mut s = String::with_capacity(bucket.len() + key.len() + 8);
    for part in [bucket, "/", key] {
        for b in part.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                    s.push(b as char)
                }
                _ => s.push_str(&format!("%{b:02X}")),
            }
        }
    }
    s
}

fn sse_of(enc: &S3Encryption) -> Option<aws_sdk_s3::types::ServerSideEncryption> {
    match enc.algorithm.as_str() {
        "AES256" => Some(aws_sdk_s3::types::ServerSideEncryption::Aes256),
        "aws:kms" => Some(aws_sdk_s3::types::ServerSideEncryption::AwsKms),
        _ => None,
    }
}

fn storage_of(class: &str) -> aws_sdk_s3::types::StorageClass {
    aws_sdk_s3::types::StorageClass::from(class)
}

/// The algorithm of the checksum a HEAD (with checksum mode on) reports, if any.
fn checksum_algorithm_of(
    out: &aws_sdk_s3::operation::head_object::HeadObjectOutput,
) -> Option<String> {
    [
        ("CRC64NVME", out.checksum_crc64_nvme()),
        ("CRC32", out.checksum_crc32()),
        ("CRC32C", out.checksum_crc32_c()),
        ("SHA1", out.checksum_sha1()),
        ("SHA256", out.checksum_sha256()),
    ]
    .into_iter()
    .find(|(_, v)| v.is_some())
    .map(|(a, _)| a.to_string())
}

/// A part's checksum (`ALGORITHM:value`), from UploadPartCopy's result.
fn part_checksum(r: &aws_sdk_s3::types::CopyPartResult) -> Option<String> {
    [
        ("CRC64NVME", r.checksum_crc64_nvme()),
        ("CRC32", r.checksum_crc32()),
        ("CRC32C", r.checksum_crc32_c()),
        ("SHA1", r.checksum_sha1()),
        ("SHA256", r.checksum_sha256()),
    ]
    .into_iter()
    .find_map(|(a, v)| v.map(|v| format!("{a}:{v}")))
}

/// `x-amz-grant-*` value for one grantee.
fn grantee_value(g: &aws_sdk_s3::types::Grantee) -> Option<String> {
    if let Some(id) = g.id() {
        return Some(format!("id=\"{id}\""));
    }
    if let Some(uri) = g.uri() {
        return Some(format!("uri=\"{uri}\""));
    }
    g.email_address().map(|e| format!("emailAddress=\"{e}\""))
}

/// Apply each grant of `grants` to a request builder through `set(builder, permission, value)`.
fn with_grants<T>(call: T, grants: Option<&Grants>, set: impl Fn(T, &str, String) -> T) -> T {
    let Some(g) = grants else { return call };
    let mut call = call;
    for (which, v) in [
        ("full_control", &g.full_control),
        ("read", &g.read),
        ("read_acp", &g.read_acp),
        ("write_acp", &g.write_acp),
    ] {
        if let Some(v) = v {
            call = set(call, which, v.clone());
        }
    }
    call
}

fn job_info(
    id: &str,
    description: Option<&str>,
    status: Option<&aws_sdk_s3control::types::JobStatus>,
    progress: Option<&aws_sdk_s3control::types::JobProgressSummary>,
    failures: &[aws_sdk_s3control::types::JobFailure],
) -> crate::batch::JobInfo {
    crate::batch::JobInfo {
        id: id.to_string(),
        description: description.unwrap_or_default().to_string(),
        status: status.map(|s| s.as_str().to_string()).unwrap_or_default(),
        total: progress
            .and_then(|p| p.total_number_of_tasks())
            .unwrap_or(0) as u64,
        succeeded: progress
            .and_then(|p| p.number_of_tasks_succeeded())
            .unwrap_or(0) as u64,
        failed: progress
            .and_then(|p| p.number_of_tasks_failed())
            .unwrap_or(0) as u64,
        failure_reasons: failures
            .iter()
            .map(|f| {
                (
                    f.failure_code().unwrap_or_default().to_string(),
                    f.failure_reason().unwrap_or_default().to_string(),
                )
            })
            .collect(),
    }
}

impl crate::providers::S3Batch for AwsClients {
    async fn put_manifest(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Result<String, ProviderError> {
        let out = self
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .if_none_match("*")
            .body(aws_sdk_s3::primitives::ByteStream::from(body))
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("s3://{bucket}/{key}"), e))?;
        Ok(out.e_tag().unwrap_or_default().to_string())
    }

    async fn create_job(&self, req: &crate::batch::JobRequest) -> Result<String, ProviderError> {
        use aws_sdk_s3control::types::{
            JobManifest, JobManifestFieldName, JobManifestFormat, JobManifestLocation,
            JobManifestSpec, JobOperation, JobReport, JobReportFormat, JobReportScope,
            ObjectEncryption, S3CopyObjectOperation, S3MetadataDirective, S3StorageClass,
            S3UpdateObjectEncryptionOperation, S3UpdateObjectEncryptionSsekms,
        };
        let what = format!("batch job {}", req.description);
        req.check().map_err(|detail| ProviderError::Invalid {
            what: what.clone(),
            detail,
        })?;
        let bad = |e: aws_smithy_types::error::operation::BuildError| ProviderError::Invalid {
            what: what.clone(),
            detail: e.to_string(),
        };
        let operation = match &req.operation {
            crate::batch::JobOperation::UpdateEncryption {
                key_arn,
                bucket_key,
            } => JobOperation::builder()
                .s3_update_object_encryption(
                    S3UpdateObjectEncryptionOperation::builder()
                        .object_encryption(
                            ObjectEncryption::builder()
                                .ssekms(
                                    S3UpdateObjectEncryptionSsekms::builder()
                                        .kms_key_arn(key_arn)
                                        .bucket_key_enabled(*bucket_key)
                                        .build()
                                        .map_err(bad)?,
                                )
                                .build(),
                        )
                        .build(),
                )
                .build(),
            crate::batch::JobOperation::Copy {
                key_arn,
                bucket_key,
                storage_class,
                unmodified_since,
            } => {
                let mut copy = S3CopyObjectOperation::builder()
                    .target_resource(format!("arn:aws:s3:::{}", req.bucket))
                    .sse_aws_kms_key_id(key_arn)
                    .bucket_key_enabled(*bucket_key)
                    .metadata_directive(S3MetadataDirective::Copy)
                    .storage_class(S3StorageClass::from(storage_class.as_str()));
                if let Some(t) = unmodified_since {
                    copy = copy.un_modified_since_constraint(
                        aws_smithy_types::DateTime::from_secs(t.timestamp()),
                    );
                }
                JobOperation::builder()
                    .s3_put_object_copy(copy.build())
                    .build()
            }
        };
        let mut spec = JobManifestSpec::builder()
            .format(JobManifestFormat::S3BatchOperationsCsv20180820)
            .fields(JobManifestFieldName::Bucket)
            .fields(JobManifestFieldName::Key);
        if req.versioned {
            spec = spec.fields(JobManifestFieldName::VersionId);
        }
        let manifest = JobManifest::builder()
            .spec(spec.build().map_err(bad)?)
            .location(
                JobManifestLocation::builder()
                    .object_arn(format!(
                        "arn:aws:s3:::{}/{}",
                        req.manifest_bucket, req.manifest_key
                    ))
                    .e_tag(req.manifest_etag.trim_matches('"'))
                    .build()
                    .map_err(bad)?,
            )
            .build();
        let report = JobReport::builder()
            .bucket(format!("arn:aws:s3:::{}", req.report_bucket))
            .format(JobReportFormat::ReportCsv20180820)
            .enabled(true)
            .prefix(&req.report_prefix)
            .report_scope(JobReportScope::AllTasks)
            .build();
        let out = self
            .s3control
            .create_job()
            .account_id(self.account().await?)
            .client_request_token(&req.token)
            .description(&req.description)
            .operation(operation)
            .manifest(manifest)
            .report(report)
            .priority(req.priority)
            .role_arn(&req.role_arn)
            .confirmation_required(req.confirm)
            .send()
            .await
            .map_err(|e| map_sdk_error(what.clone(), e))?;
        Ok(out.job_id().unwrap_or_default().to_string())
    }

    async fn find_job(
        &self,
        description: &str,
    ) -> Result<Option<crate::batch::JobInfo>, ProviderError> {
        let account = self.account().await?;
        let mut token: Option<String> = None;
        let mut found: Vec<(aws_smithy_types::DateTime, crate::batch::JobInfo)> = Vec::new();
        loop {
            let page = self
                .s3control
                .list_jobs()
                .account_id(&account)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error("batch jobs (s3:ListJobs)", e))?;
            for j in page.jobs() {
                if j.description() == Some(description) {
                    found.push((
                        j.creation_time()
                            .cloned()
                            .unwrap_or(aws_smithy_types::DateTime::from_secs(0)),
                        job_info(
                            j.job_id().unwrap_or_default(),
                            j.description(),
                            j.status(),
                            j.progress_summary(),
                            &[],
                        ),
                    ));
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        found.sort_by_key(|x| std::cmp::Reverse(x.0));
        Ok(found.into_iter().next().map(|(_, j)| j))
    }

    async fn describe_job(&self, id: &str) -> Result<crate::batch::JobInfo, ProviderError> {
        let out = self
            .s3control
            .describe_job()
            .account_id(self.account().await?)
            .job_id(id)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("batch job {id}"), e))?;
        let j = out.job().ok_or_else(|| ProviderError::NotFound {
            what: format!("batch job {id}"),
        })?;
        Ok(job_info(
            id,
            j.description(),
            j.status(),
            j.progress_summary(),
            j.failure_reasons(),
        ))
    }

    async fn cancel_job(&self, id: &str, reason: &str) -> Result<(), ProviderError> {
        self.s3control
            .update_job_status()
            .account_id(self.account().await?)
            .job_id(id)
            .requested_job_status(aws_sdk_s3control::types::RequestedJobStatus::Cancelled)
            .status_update_reason(reason)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("batch job {id}"), e))?;
        Ok(())
    }
}

impl crate::providers::S3Write for AwsClients {
    async fn bucket_default(&self, bucket: &str) -> Result<S3Encryption, ProviderError> {
        self.bucket_settings_encryption(bucket).await
    }

    async fn set_bucket_default(
        &self,
        bucket: &str,
        rule: &S3Encryption,
    ) -> Result<(), ProviderError> {
        use aws_sdk_s3::types::{
            BlockedEncryptionTypes, EncryptionType, ServerSideEncryptionByDefault,
            ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
        };
        let what = || format!("default encryption of s3://{bucket}");
        let Some(sse) = sse_of(rule).or_else(|| {
            (rule.algorithm == "aws:kms:dsse")
                .then_some(aws_sdk_s3::types::ServerSideEncryption::AwsKmsDsse)
        }) else {
            self.s3
                .delete_bucket_encryption()
                .bucket(bucket)
                .send()
                .await
                .map_err(|e| map_sdk_error(what(), e))?;
            return Ok(());
        };
        let default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(sse)
            .set_kms_master_key_id(rule.kms_key_arn.clone())
            .build()
            .map_err(|e| ProviderError::Invalid {
                what: what(),
                detail: e.to_string(),
            })?;
        let mut r = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(default)
            .bucket_key_enabled(rule.bucket_key);
        // The rule is rewritten whole: a blocked encryption type (SSE-C) left out would be
        // unblocked.
        if !rule.blocked_types.is_empty() {
            r = r.blocked_encryption_types(
                BlockedEncryptionTypes::builder()
                    .set_encryption_type(Some(
                        rule.blocked_types
                            .iter()
                            .map(|t| EncryptionType::from(t.as_str()))
                            .collect(),
                    ))
                    .build(),
            );
        }
        let conf = ServerSideEncryptionConfiguration::builder()
            .rules(r.build())
            .build()
            .map_err(|e| ProviderError::Invalid {
                what: what(),
                detail: e.to_string(),
            })?;
        self.s3
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(conf)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        Ok(())
    }

    async fn copy_in_place(&self, req: &CopyInPlace<'_>) -> Result<Written, ProviderError> {
        let what = || format!("s3://{}/{}", req.bucket, req.key);
        let mut call = self
            .s3
            .copy_object()
            .bucket(req.bucket)
            .key(req.key)
            .copy_source(copy_source(req.bucket, req.key))
            .copy_source_if_match(req.if_match)
            .if_match(req.if_match)
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Copy)
            .tagging_directive(aws_sdk_s3::types::TaggingDirective::Copy)
            .storage_class(storage_of(req.storage_class))
            .set_website_redirect_location(req.website_redirect.map(str::to_string))
            .set_server_side_encryption(sse_of(req.target));
        if req.target.algorithm == "aws:kms" {
            call = call
                .set_ssekms_key_id(req.target.kms_key_arn.clone())
                .bucket_key_enabled(req.target.bucket_key);
        }
        let call = with_grants(call, req.grants, |c, which, v| match which {
            "full_control" => c.grant_full_control(v),
            "read" => c.grant_read(v),
            "read_acp" => c.grant_read_acp(v),
            _ => c.grant_write_acp(v),
        });
        let out = call.send().await.map_err(|e| map_sdk_error(what(), e))?;
        Ok(Written {
            etag: out
                .copy_object_result()
                .and_then(|r| r.e_tag())
                .unwrap_or_default()
                .to_string(),
            version_id: out.version_id().map(str::to_string).filter(|v| v != "null"),
        })
    }

    async fn start_multipart(&self, req: &CopyInPlace<'_>) -> Result<String, ProviderError> {
        let what = || format!("s3://{}/{}", req.bucket, req.key);
        let head = self
            .s3
            .head_object()
            .bucket(req.bucket)
            .key(req.key)
            .if_match(req.if_match)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        let tags = self
            .s3
            .get_object_tagging()
            .bucket(req.bucket)
            .key(req.key)
            .set_version_id(
                head.version_id()
                    .map(str::to_string)
                    .filter(|v| v != "null"),
            )
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        let tagging: Vec<String> = tags
            .tag_set()
            .iter()
            .map(|t| format!("{}={}", url_encode(t.key()), url_encode(t.value())))
            .collect();
        let expires = head
            .expires_string()
            .and_then(|e| aws_smithy_types::DateTime::from_str(e, Format::HttpDate).ok());
        let checksum = checksum_algorithm_of(&head);
        let mut create = self
            .s3
            .create_multipart_upload()
            .bucket(req.bucket)
            .key(req.key)
            .set_content_type(head.content_type().map(str::to_string))
            .set_cache_control(head.cache_control().map(str::to_string))
            .set_content_disposition(head.content_disposition().map(str::to_string))
            .set_content_encoding(head.content_encoding().map(str::to_string))
            .set_content_language(head.content_language().map(str::to_string))
            .set_expires(expires)
            // As the object is now (a lifecycle transition keeps the ETag, not the class).
            .set_website_redirect_location(head.website_redirect_location().map(str::to_string))
            .set_metadata(head.metadata().cloned())
            .set_checksum_algorithm(
                checksum
                    .as_deref()
                    .map(aws_sdk_s3::types::ChecksumAlgorithm::from),
            )
            .set_checksum_type(checksum.as_ref().and(head.checksum_type().cloned()))
            .storage_class(
                head.storage_class()
                    .cloned()
                    .unwrap_or_else(|| storage_of(req.storage_class)),
            )
            .set_server_side_encryption(sse_of(req.target));
        if !tagging.is_empty() {
            create = create.tagging(tagging.join("&"));
        }
        if req.target.algorithm == "aws:kms" {
            create = create
                .set_ssekms_key_id(req.target.kms_key_arn.clone())
                .bucket_key_enabled(req.target.bucket_key);
        }
        let create = with_grants(create, req.grants, |c, which, v| match which {
            "full_control" => c.grant_full_control(v),
            "read" => c.grant_read(v),
            "read_acp" => c.grant_read_acp(v),
            _ => c.grant_write_acp(v),
        });
        let upload = create.send().await.map_err(|e| map_sdk_error(what(), e))?;
        upload
            .upload_id()
            .map(str::to_string)
            .ok_or_else(|| ProviderError::Other {
                what: what(),
                detail: "CreateMultipartUpload returned no upload id".into(),
            })
    }

    async fn copy_part(
        &self,
        req: &CopyInPlace<'_>,
        upload_id: &str,
        number: i32,
        first: u64,
        last: u64,
    ) -> Result<CopiedPart, ProviderError> {
        let out = self
            .s3
            .upload_part_copy()
            .bucket(req.bucket)
            .key(req.key)
            .upload_id(upload_id)
            .part_number(number)
            .copy_source(copy_source(req.bucket, req.key))
            .copy_source_if_match(req.if_match)
            .copy_source_range(format!("bytes={first}-{last}"))
            .send()
            .await
            .map_err(|e| {
                map_sdk_error(format!("s3://{}/{} part {number}", req.bucket, req.key), e)
            })?;
        let r = out.copy_part_result();
        Ok(CopiedPart {
            number,
            etag: r.and_then(|r| r.e_tag()).unwrap_or_default().to_string(),
            checksum: r.and_then(part_checksum),
        })
    }

    async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<CopiedPart>, ProviderError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .s3
                .list_parts()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| {
                    map_sdk_error(format!("upload {upload_id} of s3://{bucket}/{key}"), e)
                })?;
            for p in out.parts() {
                let checksum = [
                    ("CRC64NVME", p.checksum_crc64_nvme()),
                    ("CRC32", p.checksum_crc32()),
                    ("CRC32C", p.checksum_crc32_c()),
                    ("SHA1", p.checksum_sha1()),
                    ("SHA256", p.checksum_sha256()),
                ]
                .into_iter()
                .find_map(|(a, v)| v.map(|v| format!("{a}:{v}")));
                parts.push(CopiedPart {
                    number: p.part_number().unwrap_or(0),
                    etag: p.e_tag().unwrap_or_default().to_string(),
                    checksum,
                });
            }
            marker = out.next_part_number_marker().map(str::to_string);
            if out.is_truncated() != Some(true) || marker.is_none() {
                return Ok(parts);
            }
        }
    }

    async fn complete_multipart(
        &self,
        req: &CopyInPlace<'_>,
        upload_id: &str,
        parts: &[CopiedPart],
    ) -> Result<Written, ProviderError> {
        let mut sorted: Vec<&CopiedPart> = parts.iter().collect();
        sorted.sort_by_key(|p| p.number);
        let completed = sorted
            .into_iter()
            .map(|p| {
                let mut b = aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(p.number)
                    .e_tag(&p.etag);
                if let Some((alg, v)) = p.checksum.as_deref().and_then(|c| c.split_once(':')) {
                    b = match alg {
                        "CRC64NVME" => b.checksum_crc64_nvme(v),
                        "CRC32" => b.checksum_crc32(v),
                        "CRC32C" => b.checksum_crc32_c(v),
                        "SHA1" => b.checksum_sha1(v),
                        _ => b.checksum_sha256(v),
                    };
                }
                b.build()
            })
            .collect();
        let out = self
            .s3
            .complete_multipart_upload()
            .bucket(req.bucket)
            .key(req.key)
            .upload_id(upload_id)
            .if_match(req.if_match)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("s3://{}/{}", req.bucket, req.key), e))?;
        Ok(Written {
            etag: out.e_tag().unwrap_or_default().to_string(),
            version_id: out.version_id().map(str::to_string).filter(|v| v != "null"),
        })
    }

    async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ProviderError> {
        match self
            .s3
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("upload {upload_id} of s3://{bucket}/{key}"), e))
        {
            Ok(_) | Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn update_encryption(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        key_arn: &str,
        bucket_key: bool,
    ) -> Result<(), ProviderError> {
        use aws_sdk_s3::types::{ObjectEncryption, SsekmsEncryption};
        let enc = SsekmsEncryption::builder()
            .kms_key_arn(key_arn)
            .bucket_key_enabled(bucket_key)
            .build()
            .map_err(|e| ProviderError::Invalid {
                what: key.into(),
                detail: e.to_string(),
            })?;
        self.s3
            .update_object_encryption()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .object_encryption(ObjectEncryption::Ssekms(enc))
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("s3://{bucket}/{key}"), e))?;
        Ok(())
    }

    async fn key_versions(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<(String, String)>, ProviderError> {
        let mut out = Vec::new();
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .s3
                .list_object_versions()
                .bucket(bucket)
                .prefix(key)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error(format!("versions of s3://{bucket}/{key}"), e))?;
            out.extend(
                page.versions()
                    .iter()
                    .filter(|v| v.key() == Some(key))
                    .map(|v| {
                        (
                            v.version_id().unwrap_or("null").to_string(),
                            v.e_tag().unwrap_or_default().to_string(),
                        )
                    }),
            );
            // Keys after this one sort after it: once the listing moves past it, stop.
            let past = page.versions().iter().any(|v| v.key() != Some(key));
            if page.is_truncated() != Some(true) || past {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
    }

    async fn content_checksum(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<String>, ProviderError> {
        let out = self
            .s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("s3://{bucket}/{key}"), e))?;
        Ok(checksum_algorithm_of(&out).map(|a| {
            let v = match a.as_str() {
                "CRC64NVME" => out.checksum_crc64_nvme(),
                "CRC32" => out.checksum_crc32(),
                "CRC32C" => out.checksum_crc32_c(),
                "SHA1" => out.checksum_sha1(),
                _ => out.checksum_sha256(),
            };
            format!("{a}:{}", v.unwrap_or_default())
        }))
    }

    async fn object_tagging(&self, bucket: &str, key: &str) -> Result<String, ProviderError> {
        let out = self
            .s3
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("tags of s3://{bucket}/{key}"), e))?;
        let mut tags: Vec<String> = out
            .tag_set()
            .iter()
            .map(|t| format!("{}={}", url_encode(t.key()), url_encode(t.value())))
            .collect();
        tags.sort();
        Ok(tags.join("&"))
    }

    async fn bucket_owner(&self, bucket: &str) -> Result<Option<String>, ProviderError> {
        let out = self
            .s3
            .get_bucket_acl()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("ACL of s3://{bucket}"), e))?;
        Ok(out.owner().and_then(|o| o.id()).map(str::to_string))
    }

    async fn object_grants(&self, bucket: &str, key: &str) -> Result<Grants, ProviderError> {
        let out = self
            .s3
            .get_object_acl()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("ACL of s3://{bucket}/{key}"), e))?;
        let owner = out.owner().and_then(|o| o.id()).map(str::to_string);
        let mut g = Grants {
            owner: owner.clone(),
            ..Default::default()
        };
        for grant in out.grants() {
            let Some(grantee) = grant.grantee() else {
                continue;
            };
            let Some(value) = grantee_value(grantee) else {
                continue;
            };
            let perm = grant.permission().map(|p| p.as_str()).unwrap_or_default();
            // The owner's own FULL_CONTROL is what every copy gets anyway.
            if perm == "FULL_CONTROL" && grantee.id().map(str::to_string) == owner {
                continue;
            }
            let slot = match perm {
                "FULL_CONTROL" => &mut g.full_control,
                "READ" => &mut g.read,
                "READ_ACP" => &mut g.read_acp,
                "WRITE_ACP" => &mut g.write_acp,
                // WRITE is a bucket permission; on an object it grants nothing.
                _ => continue,
            };
            *slot = Some(match slot.take() {
                Some(prev) => format!("{prev}, {value}"),
                None => value,
            });
        }
        Ok(g)
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl AwsClients {
    async fn bucket_settings_encryption(
        &self,
        bucket: &str,
    ) -> Result<S3Encryption, ProviderError> {
        match self.s3.get_bucket_encryption().bucket(bucket).send().await {
            Ok(out) => {
                let rule = out
                    .server_side_encryption_configuration()
                    .and_then(|c| c.rules().first());
                let default = rule.and_then(|r| r.apply_server_side_encryption_by_default());
                Ok(S3Encryption {
                    algorithm: default
                        .map(|d| d.sse_algorithm().as_str().to_string())
                        .unwrap_or_else(|| S3Encryption::NONE.to_string()),
                    kms_key_arn: default.and_then(|d| d.kms_master_key_id().map(str::to_string)),
                    key_manager: None,
                    bucket_key: rule.and_then(|r| r.bucket_key_enabled()).unwrap_or(false),
                    blocked_types: rule
                        .and_then(|r| r.blocked_encryption_types())
                        .map(|b| {
                            b.encryption_type()
                                .iter()
                                .map(|t| t.as_str().to_string())
                                .filter(|t| t != "NONE")
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            }
            Err(e) if e.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => {
                Ok(S3Encryption {
                    algorithm: S3Encryption::NONE.to_string(),
                    ..Default::default()
                })
            }
            Err(e) => Err(map_sdk_error(format!("s3://{bucket}"), e)),
        }
    }

    async fn read_object_lock(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectLock, ProviderError> {
        let what = || format!("object lock of s3://{bucket}/{key}");
        let mut lock = ObjectLock::default();
        match self
            .s3
            .get_object_retention()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .send()
            .await
        {
            Ok(out) => {
                if let Some(r) = out.retention() {
                    lock.mode = r.mode().map(|m| m.as_str().to_string());
                    lock.retain_until = r
                        .retain_until_date()
                        .and_then(|t| t.fmt(Format::DateTime).ok());
                }
            }
            Err(e) if e.code() == Some("NoSuchObjectLockConfiguration") => {}
            Err(e) => match map_sdk_error(what(), e) {
                ProviderError::PermissionDenied { .. } => {
                    lock.unreadable = true;
                    return Ok(lock);
                }
                e => return Err(e),
            },
        }
        match self
            .s3
            .get_object_legal_hold()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .send()
            .await
        {
            Ok(out) => {
                lock.legal_hold = out.legal_hold().and_then(|h| h.status())
                    == Some(&ObjectLockLegalHoldStatus::On);
            }
            Err(e) if e.code() == Some("NoSuchObjectLockConfiguration") => {}
            Err(e) => match map_sdk_error(what(), e) {
                ProviderError::PermissionDenied { .. } => lock.unreadable = true,
                e => return Err(e),
            },
        }
        Ok(lock)
    }

    /// Whether reading the object needs a customer-provided key (SSE-C): S3 refuses a GET
    /// without it with InvalidRequest and a message naming server-side encryption.
    async fn needs_customer_key(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<bool, ProviderError> {
        match self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .range("bytes=0-0")
            .send()
            .await
        {
            Ok(_) => Ok(false),
            Err(e) => Ok(e.code() == Some("InvalidRequest")
                && e.message()
                    .is_some_and(|m| m.contains("Server Side Encryption"))),
        }
    }
}

/// The KMS writes of `rekey keys apply`: it creates keys and aliases, turns rotation on and
/// puts key policies; it never deletes, disables or schedules the deletion of a key.
impl AwsClients {
    /// Create a symmetric encryption key with its policy; returns its key id.
    pub async fn create_team_key(
        &self,
        policy: &str,
        description: &str,
        campaign: &str,
    ) -> Result<String, ProviderError> {
        use aws_sdk_kms::types::{KeySpec, KeyUsageType, Tag};
        let tag = Tag::builder()
            .tag_key("rekey:campaign")
            .tag_value(campaign)
            .build()
            .map_err(|e| ProviderError::Other {
                what: "a KMS key tag".into(),
                detail: e.to_string(),
            })?;
        let out = self
            .kms
            .create_key()
            .policy(policy)
            .description(description)
            .key_spec(KeySpec::SymmetricDefault)
            .key_usage(KeyUsageType::EncryptDecrypt)
            .tags(tag)
            .send()
            .await
            .map_err(|e| map_sdk_error("creating a KMS key", e))?;
        out.key_metadata()
            .map(|m| m.key_id().to_string())
            .ok_or_else(|| ProviderError::Other {
                what: "CreateKey".into(),
                detail: "no key id in the answer".into(),
            })
    }

    /// Whether automatic rotation is on.
    pub async fn rotation_enabled(&self, key_id: &str) -> Result<bool, ProviderError> {
        let out = self
            .kms
            .get_key_rotation_status()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("key {key_id}"), e))?;
        Ok(out.key_rotation_enabled())
    }

    /// Turn automatic rotation on, every `days` days.
    pub async fn enable_rotation(&self, key_id: &str, days: u32) -> Result<(), ProviderError> {
        self.kms
            .enable_key_rotation()
            .key_id(key_id)
            .rotation_period_in_days(days as i32)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("key {key_id}"), e))?;
        Ok(())
    }

    pub async fn create_alias(&self, alias: &str, key_id: &str) -> Result<(), ProviderError> {
        self.kms
            .create_alias()
            .alias_name(alias)
            .target_key_id(key_id)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("alias {alias}"), e))?;
        Ok(())
    }

    pub async fn put_key_policy(&self, key_id: &str, policy: &str) -> Result<(), ProviderError> {
        self.kms
            .put_key_policy()
            .key_id(key_id)
            .policy_name("default")
            .policy(policy)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("key {key_id}"), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::loopback_without_account;

    #[test]
    fn account_prefix_comes_off_only_on_loopback() {
        assert_eq!(
            loopback_without_account("http://123456789012.127.0.0.1:5000/v20180820/accesspoint")
                .as_deref(),
            Some("http://127.0.0.1:5000/v20180820/accesspoint")
        );
        assert_eq!(
            loopback_without_account("http://123456789012.localhost:5000/x").as_deref(),
            Some("http://localhost:5000/x")
        );
        assert_eq!(
            loopback_without_account("https://123456789012.s3-control.us-east-1.amazonaws.com/x"),
            None
        );
        assert_eq!(
            loopback_without_account("https://123456789012.10.0.0.5/x"),
            None
        );
        assert_eq!(loopback_without_account("http://127.0.0.1:5000/x"), None);
    }
}
