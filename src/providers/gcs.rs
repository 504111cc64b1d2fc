//! Google Cloud Storage over the JSON API (reqwest). The official `google-cloud-storage`
//! crate sends bucket and object metadata calls over gRPC, which no emulator serves; the JSON
//! API is what rekey needs and what a test server can model (docs/gcs.md).
//!
//! Endpoint: `STORAGE_EMULATOR_HOST` (or the campaign's `gcp.endpoint`) for a test server,
//! unauthenticated; otherwise `https://storage.googleapis.com` with Application Default
//! Credentials through `google-cloud-auth` (which mints, caches and refreshes tokens), or a
//! bearer token from `GOOGLE_OAUTH_ACCESS_TOKEN` when set. Tokens are never logged.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ProviderError;

/// A bucket as rekey reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsBucketInfo {
    pub name: String,
    pub location: String,
    pub default_kms_key: Option<String>,
    pub versioning: bool,
    pub labels: BTreeMap<String, String>,
    pub metageneration: i64,
    pub storage_class: String,
}

/// An object generation as rekey reads it; `kms_key` without its `/cryptoKeyVersions/N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsObjectInfo {
    pub bucket: String,
    pub name: String,
    pub generation: i64,
    pub size: u64,
    pub storage_class: String,
    pub content_type: String,
    pub kms_key: Option<String>,
    pub customer_supplied: bool,
    pub is_latest: bool,
    pub updated: String,
    /// The content's MD5 (base64, as GCS reports it), or `crc32c:…` for composite objects: a
    /// rewrite keeps it, another write of other bytes does not.
    pub content_hash: Option<String>,
    /// Why the live object cannot be replaced: a hold, or a retention period not yet over.
    pub hold: Option<String>,
}

/// Strip a Cloud KMS key version suffix: keys are compared as key names.
pub fn key_name(k: &str) -> String {
    match k.find("/cryptoKeyVersions/") {
        Some(i) => k[..i].to_string(),
        None => k.to_string(),
    }
}

#[derive(Clone)]
pub struct GcsClient {
    http: reqwest::Client,
    base: String,
    /// The Cloud KMS REST API (the same test server as Cloud Storage's under an emulator).
    kms_base: String,
    /// The storage batch operations API (the same test server under an emulator).
    batch_base: String,
    token: Option<String>,
    /// Application Default Credentials, for the real service without a token given.
    adc: Option<google_cloud_auth::credentials::Credentials>,
    pub project: String,
    /// `maxBytesRewrittenPerCall` for rewrites (none: the service's choice).
    pub max_bytes_per_call: Option<u64>,
}

/// Debug without the bearer token or the credentials (they must never reach a log).
impl std::fmt::Debug for GcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsClient")
            .field("base", &self.base)
            .field("kms_base", &self.kms_base)
            .field("batch_base", &self.batch_base)
            .field("project", &self.project)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("adc", &self.adc.as_ref().map(|_| "<redacted>"))
            .field("max_bytes_per_call", &self.max_bytes_per_call)
            .finish()
    }
}

fn enc(s: &str) -> String {
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

#[derive(Deserialize)]
struct RewriteResponse {
    done: bool,
    #[serde(rename = "rewriteToken")]
    rewrite_token: Option<String>,
    resource: Option<Value>,
}

impl GcsClient {
    pub fn new(project: &str, endpoint: Option<&str>) -> GcsClient {
        let emulator = endpoint
            .map(str::to_string)
            .or_else(|| std::env::var("STORAGE_EMULATOR_HOST").ok())
            .map(|e| {
                if e.starts_with("http") {
                    e
                } else {
                    format!("http://{e}")
                }
            });
        let token = if emulator.is_some() {
            None
        } else {
            std::env::var("GOOGLE_OAUTH_ACCESS_TOKEN").ok()
        };
        // A missing ADC file fails at the first call, with its reason, not here.
        let adc = (emulator.is_none() && token.is_none())
            .then(|| {
                google_cloud_auth::credentials::Builder::default()
                    .build()
                    .ok()
            })
            .flatten();
        GcsClient {
            adc,
            http: reqwest::Client::new(),
            kms_base: emulator
                .clone()
                .unwrap_or_else(|| "https://cloudkms.googleapis.com".into())
                .trim_end_matches('/')
                .to_string(),
            batch_base: emulator
                .clone()
                .unwrap_or_else(|| "https://storagebatchoperations.googleapis.com".into())
                .trim_end_matches('/')
                .to_string(),
            base: emulator
                .unwrap_or_else(|| "https://storage.googleapis.com".into())
                .trim_end_matches('/')
                .to_string(),
            token,
            project: project.to_string(),
            max_bytes_per_call: None,
        }
    }

    /// Add credentials to a request: the given token, or Application Default Credentials.
    async fn auth(
        &self,
        mut req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        if let Some(t) = &self.token {
            return Ok(req.bearer_auth(t));
        }
        if let Some(c) = &self.adc {
            let headers = c.headers(http::Extensions::new()).await.map_err(|e| {
                ProviderError::PermissionDenied {
                    what: what.into(),
                    detail: format!("no Google credentials: {e}"),
                }
            })?;
            if let google_cloud_auth::credentials::CacheableResource::New { data, .. } = headers {
                for (k, v) in data.iter() {
                    req = req.header(k.as_str(), v.as_bytes());
                }
            }
        }
        Ok(req)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        what: &str,
    ) -> Result<Value, ProviderError> {
        let url = format!("{}{path}", self.base);
        self.call_url(method, &url, query, body, what).await
    }

    /// The Cloud Storage service agent of the campaign's project (it encrypts and decrypts
    /// objects under a bucket's CMEK, so it needs the key).
    pub async fn service_agent(&self) -> Result<String, ProviderError> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/storage/v1/projects/{}/serviceAccount", enc(&self.project)),
                &[],
                None,
                "the Cloud Storage service agent",
            )
            .await?;
        v["email_address"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ProviderError::Other {
                what: "the Cloud Storage service agent".into(),
                detail: "the answer names no email_address".into(),
            })
    }

    /// cryptoKeys.get: a Cloud KMS key (`projects/P/locations/L/keyRings/R/cryptoKeys/K`).
    pub async fn crypto_key(&self, name: &str) -> Result<Value, ProviderError> {
        let url = format!("{}/v1/{name}", self.kms_base);
        self.call_url(
            reqwest::Method::GET,
            &url,
            &[],
            None,
            &format!("Cloud KMS key {name}"),
        )
        .await
    }

    /// getIamPolicy of a Cloud KMS key or key ring (policy version 3, so that conditional
    /// bindings are reported with their condition).
    pub async fn kms_iam_policy(&self, resource: &str) -> Result<Value, ProviderError> {
        let url = format!("{}/v1/{resource}:getIamPolicy", self.kms_base);
        self.call_url(
            reqwest::Method::GET,
            &url,
            &[("options.requestedPolicyVersion", "3".to_string())],
            None,
            &format!("IAM policy of {resource}"),
        )
        .await
    }

    async fn call_url(
        &self,
        method: reqwest::Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        what: &str,
    ) -> Result<Value, ProviderError> {
        let mut req = self.http.request(method, url).query(query);
        req = self.auth(req, "Cloud Storage").await?;
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| ProviderError::Transient {
            what: what.into(),
            detail: if e.is_timeout() {
                "timed out".into()
            } else {
                "could not reach the endpoint".into()
            },
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {status}"));
        let what = what.to_string();
        Err(match status {
            404 => ProviderError::NotFound { what },
            412 => ProviderError::Precondition { what },
            401 | 403 => ProviderError::PermissionDenied { what, detail },
            429 | 503 => ProviderError::Throttled { what, detail },
            s if s >= 500 => ProviderError::Transient { what, detail },
            _ => ProviderError::Invalid { what, detail },
        })
    }

    fn bucket_of(v: &Value) -> GcsBucketInfo {
        GcsBucketInfo {
            name: v["name"].as_str().unwrap_or_default().to_string(),
            location: v["location"].as_str().unwrap_or_default().to_lowercase(),
            default_kms_key: v["encryption"]["defaultKmsKeyName"].as_str().map(key_name),
            versioning: v["versioning"]["enabled"].as_bool().unwrap_or(false),
            labels: v["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            metageneration: v["metageneration"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            storage_class: v["storageClass"].as_str().unwrap_or("STANDARD").to_string(),
        }
    }

    fn object_of(v: &Value) -> GcsObjectInfo {
        GcsObjectInfo {
            bucket: v["bucket"].as_str().unwrap_or_default().to_string(),
            name: v["name"].as_str().unwrap_or_default().to_string(),
            generation: v["generation"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            size: v["size"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
            storage_class: v["storageClass"].as_str().unwrap_or("STANDARD").to_string(),
            content_type: v["contentType"].as_str().unwrap_or_default().to_string(),
            kms_key: v["kmsKeyName"].as_str().map(key_name),
            customer_supplied: v.get("customerEncryption").is_some_and(|c| !c.is_null()),
            is_latest: v.get("timeDeleted").is_none_or(|t| t.is_null()),
            updated: v["updated"].as_str().unwrap_or_default().to_string(),
            content_hash: v["md5Hash"]
                .as_str()
                .map(str::to_string)
                .or_else(|| v["crc32c"].as_str().map(|c| format!("crc32c:{c}"))),
            hold: if v["eventBasedHold"].as_bool() == Some(true) {
                Some("event-based hold".into())
            } else if v["temporaryHold"].as_bool() == Some(true) {
                Some("temporary hold".into())
            } else {
                v["retentionExpirationTime"]
                    .as_str()
                    .filter(|t| {
                        chrono::DateTime::parse_from_rfc3339(t)
                            .is_ok_and(|t| t > chrono::Utc::now())
                    })
                    .map(|t| format!("retention until {t}"))
            },
        }
    }

    /// Bucket names of the project, sorted.
    pub async fn list_buckets(&self) -> Result<Vec<String>, ProviderError> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![
                ("project", self.project.clone()),
                ("fields", "items(name),nextPageToken".to_string()),
            ];
            if let Some(t) = &token {
                q.push(("pageToken", t.clone()));
            }
            let v = self
                .call(
                    reqwest::Method::GET,
                    "/storage/v1/b",
                    &q,
                    None,
                    "bucket list",
                )
                .await?;
            names.extend(
                v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b["name"].as_str().map(str::to_string)),
            );
            token = v["nextPageToken"].as_str().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        names.sort();
        Ok(names)
    }

    pub async fn get_bucket(&self, bucket: &str) -> Result<GcsBucketInfo, ProviderError> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/storage/v1/b/{}", enc(bucket)),
                &[],
                None,
                &format!("gs://{bucket}"),
            )
            .await?;
        Ok(Self::bucket_of(&v))
    }

    /// Set (or, with `None`, remove) the bucket's default key with a patch of that field
    /// alone, so that labels, versioning and lifecycle stay as they are.
    /// Set (or clear) the bucket's default key: a patch of that one field (the rest of the
    /// bucket's encryption settings stay), only if the bucket's metageneration is still
    /// `if_metageneration` when given (412 otherwise).
    pub async fn set_default_key(
        &self,
        bucket: &str,
        key: Option<&str>,
        if_metageneration: Option<i64>,
    ) -> Result<(), ProviderError> {
        let body = json!({ "encryption": { "defaultKmsKeyName": key } });
        let q: Vec<(&str, String)> = if_metageneration
            .map(|m| vec![("ifMetagenerationMatch", m.to_string())])
            .unwrap_or_default();
        self.call(
            reqwest::Method::PATCH,
            &format!("/storage/v1/b/{}", enc(bucket)),
            &q,
            Some(body),
            &format!("default key of gs://{bucket}"),
        )
        .await?;
        Ok(())
    }

    /// An object generation's resource as GCS returns it.
    pub async fn raw_object(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<Value, ProviderError> {
        let q: Vec<(&str, String)> = generation
            .map(|g| vec![("generation", g.to_string())])
            .unwrap_or_default();
        self.call(
            reqwest::Method::GET,
            &format!("/storage/v1/b/{}/o/{}", enc(bucket), enc(name)),
            &q,
            None,
            &format!("gs://{bucket}/{name}"),
        )
        .await
    }

    /// The metadata a rewrite in place must write for the new generation to be the old one
    /// field for field (whether GCS merges a rewrite's body with the source's metadata or
    /// replaces it): every writable field of `source`, its storage class included, and the
    /// metageneration it was read at (the rewrite is held to it, not written).
    pub fn rewrite_metadata(source: &Value) -> Value {
        let mut out = serde_json::Map::new();
        for field in [
            "contentType",
            "contentEncoding",
            "contentDisposition",
            "contentLanguage",
            "cacheControl",
            "customTime",
            "metadata",
            "storageClass",
            // Not written: the metageneration the rewrite is held to.
            "metageneration",
        ] {
            if let Some(v) = source.get(field).filter(|v| !v.is_null()) {
                out.insert(field.to_string(), v.clone());
            }
        }
        Value::Object(out)
    }

    /// One page of objects (every generation with `versions`).
    pub async fn list_objects(
        &self,
        bucket: &str,
        versions: bool,
        page_size: u32,
        token: Option<String>,
    ) -> Result<(Vec<GcsObjectInfo>, Option<String>), ProviderError> {
        self.list_range(bucket, versions, page_size, None, token)
            .await
    }

    /// A page of the live objects (or every generation) whose names are in `range`
    /// (`startOffset` inclusive, `endOffset` exclusive).
    pub async fn list_range(
        &self,
        bucket: &str,
        versions: bool,
        page_size: u32,
        range: Option<(&str, &str)>,
        token: Option<String>,
    ) -> Result<(Vec<GcsObjectInfo>, Option<String>), ProviderError> {
        let mut q = vec![
            ("maxResults", page_size.to_string()),
            ("versions", versions.to_string()),
        ];
        if let Some((start, end)) = range {
            q.push(("startOffset", start.to_string()));
            q.push(("endOffset", end.to_string()));
        }
        if let Some(t) = token {
            q.push(("pageToken", t));
        }
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/storage/v1/b/{}/o", enc(bucket)),
                &q,
                None,
                &format!("listing of gs://{bucket}"),
            )
            .await?;
        let items = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Self::object_of)
            .collect();
        Ok((items, v["nextPageToken"].as_str().map(str::to_string)))
    }

    pub async fn get_object(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<GcsObjectInfo, ProviderError> {
        let mut q = Vec::new();
        if let Some(g) = generation {
            q.push(("generation", g.to_string()));
        }
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/storage/v1/b/{}/o/{}", enc(bucket), enc(name)),
                &q,
                None,
                &format!("gs://{bucket}/{name}"),
            )
            .await?;
        Ok(Self::object_of(&v))
    }

    /// Rewrite an object onto itself under `key` (none: the bucket default, or Google-managed
    /// when the bucket has none), only if its live generation is still `generation`; loops on
    /// the rewrite token. The new generation is written with `metadata` (see
    /// `rewrite_metadata`: the storage class is named, since a rewrite that names none takes
    /// the bucket's default class). Returns the new object and the number of calls it took.
    pub async fn rewrite_in_place(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        key: Option<&str>,
        metadata: &Value,
    ) -> Result<(GcsObjectInfo, u32), ProviderError> {
        // The metadata was read from this metageneration: a metadata change since (which keeps
        // the generation) must fail the rewrite, not be overwritten by it.
        let metageneration = metadata.get("metageneration").and_then(|m| {
            m.as_str()
                .and_then(|m| m.parse::<i64>().ok())
                .or(m.as_i64())
        });
        let metadata = &{
            let mut m = metadata.clone();
            if let Some(o) = m.as_object_mut() {
                o.remove("metageneration");
            }
            m
        };
        let path = format!(
            "/storage/v1/b/{b}/o/{n}/rewriteTo/b/{b}/o/{n}",
            b = enc(bucket),
            n = enc(name)
        );
        let what = format!("gs://{bucket}/{name}");
        let mut token: Option<String> = None;
        let mut calls = 0;
        loop {
            let mut q = vec![
                ("sourceGeneration", generation.to_string()),
                ("ifSourceGenerationMatch", generation.to_string()),
                ("ifGenerationMatch", generation.to_string()),
            ];
            if let Some(m) = metageneration {
                q.push(("ifSourceMetagenerationMatch", m.to_string()));
            }
            if let Some(k) = key {
                q.push(("destinationKmsKeyName", k.to_string()));
            }
            if let Some(m) = self.max_bytes_per_call {
                q.push(("maxBytesRewrittenPerCall", m.to_string()));
            }
            if let Some(t) = &token {
                q.push(("rewriteToken", t.clone()));
            }
            let body = Some(metadata.clone());
            let v = self
                .call(reqwest::Method::POST, &path, &q, body, &what)
                .await?;
            calls += 1;
            let r: RewriteResponse =
                serde_json::from_value(v).map_err(|e| ProviderError::Other {
                    what: what.clone(),
                    detail: e.to_string(),
                })?;
            if r.done {
                let res = r.resource.unwrap_or(Value::Null);
                return Ok((Self::object_of(&res), calls));
            }
            token = r.rewrite_token;
            if token.is_none() {
                return Err(ProviderError::Other {
                    what,
                    detail: "rewrite not done and no rewrite token".into(),
                });
            }
        }
    }

    /// Upload an object (tests and the sandbox seed estates with it).
    pub async fn upload(
        &self,
        bucket: &str,
        name: &str,
        data: Vec<u8>,
        kms_key: Option<&str>,
    ) -> Result<GcsObjectInfo, ProviderError> {
        let mut q = vec![
            ("uploadType", "media".to_string()),
            ("name", name.to_string()),
        ];
        if let Some(k) = kms_key {
            q.push(("kmsKeyName", k.to_string()));
        }
        let mut req = self
            .http
            .post(format!(
                "{}/upload/storage/v1/b/{}/o",
                self.base,
                enc(bucket)
            ))
            .query(&q)
            .body(data);
        req = self.auth(req, "Cloud Storage").await?;
        let resp = req.send().await.map_err(|e| ProviderError::Transient {
            what: name.into(),
            detail: e.to_string(),
        })?;
        let v: Value = resp.json().await.map_err(|e| ProviderError::Other {
            what: name.into(),
            detail: e.to_string(),
        })?;
        Ok(Self::object_of(&v))
    }

    /// Write a new object (`ifGenerationMatch=0`: never over one that exists; an existing one
    /// is `Precondition`), as a batch job's manifest.
    pub async fn put_new(
        &self,
        bucket: &str,
        name: &str,
        data: Vec<u8>,
    ) -> Result<GcsObjectInfo, ProviderError> {
        let url = format!("{}/upload/storage/v1/b/{}/o", self.base, enc(bucket));
        let mut req = self
            .http
            .post(url)
            .query(&[
                ("uploadType", "media"),
                ("name", name),
                ("ifGenerationMatch", "0"),
            ])
            .header("Content-Type", "text/csv")
            .body(data);
        req = self.auth(req, "Cloud Storage").await?;
        let what = format!("gs://{bucket}/{name}");
        let resp = req.send().await.map_err(|_| ProviderError::Transient {
            what: what.clone(),
            detail: "could not reach the endpoint".into(),
        })?;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        let detail = v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match status {
            200..=299 => Ok(Self::object_of(&v)),
            412 => Err(ProviderError::Precondition { what }),
            404 => Err(ProviderError::NotFound { what }),
            401 | 403 => Err(ProviderError::PermissionDenied { what, detail }),
            429 | 503 => Err(ProviderError::Throttled { what, detail }),
            s if s >= 500 => Err(ProviderError::Transient { what, detail }),
            _ => Err(ProviderError::Invalid { what, detail }),
        }
    }

    fn job_url(&self, job_id: Option<&str>) -> String {
        let mut u = format!(
            "{}/v1/projects/{}/locations/global/jobs",
            self.batch_base,
            enc(&self.project)
        );
        if let Some(id) = job_id {
            u.push('/');
            u.push_str(&enc(id));
        }
        u
    }

    /// Create a storage batch operations job named `job_id` (`Ok(false)`: a job of that id
    /// exists already, ALREADY_EXISTS).
    pub async fn create_batch_job(&self, job_id: &str, job: Value) -> Result<bool, ProviderError> {
        let what = format!("batch operations job {job_id}");
        let url = self.job_url(None);
        match self
            .call_url(
                reqwest::Method::POST,
                &url,
                &[("jobId", job_id.to_string())],
                Some(job),
                &what,
            )
            .await
        {
            Ok(_) => Ok(true),
            // 409 ALREADY_EXISTS (or another refusal): a job of this id is what matters.
            Err(e @ ProviderError::Invalid { .. }) => match self.get_batch_job(job_id).await {
                Ok(_) => Ok(false),
                Err(_) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// A storage batch operations job (`NotFound` when there is none of that id).
    pub async fn get_batch_job(&self, job_id: &str) -> Result<Value, ProviderError> {
        let url = self.job_url(Some(job_id));
        self.call_url(
            reqwest::Method::GET,
            &url,
            &[],
            None,
            &format!("batch operations job {job_id}"),
        )
        .await
    }

    /// Cancel a storage batch operations job.
    pub async fn cancel_batch_job(&self, job_id: &str) -> Result<(), ProviderError> {
        let url = format!("{}:cancel", self.job_url(Some(job_id)));
        self.call_url(
            reqwest::Method::POST,
            &url,
            &[],
            Some(json!({})),
            &format!("batch operations job {job_id}"),
        )
        .await
        .map(|_| ())
    }

    /// The project's effective Storage Intelligence edition (`NONE` when it is not
    /// configured), which storage batch operations jobs require.
    pub async fn intelligence_edition(&self) -> Result<String, ProviderError> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!(
                    "/v2/projects/{}/locations/global/storageIntelligenceConfig",
                    enc(&self.project)
                ),
                &[],
                None,
                "the Storage Intelligence configuration",
            )
            .await?;
        Ok(v["effectiveIntelligenceConfig"]["effectiveEdition"]
            .as_str()
            .unwrap_or("NONE")
            .to_string())
    }

    /// Download an object's bytes.
    pub async fn download(&self, bucket: &str, name: &str) -> Result<Vec<u8>, ProviderError> {
        let mut req = self
            .http
            .get(format!(
                "{}/storage/v1/b/{}/o/{}",
                self.base,
                enc(bucket),
                enc(name)
            ))
            .query(&[("alt", "media")]);
        req = self.auth(req, "Cloud Storage").await?;
        let resp = req.send().await.map_err(|e| ProviderError::Transient {
            what: name.into(),
            detail: e.to_string(),
        })?;
        if !resp.status().is_success() {
            return Err(ProviderError::Invalid {
                what: name.into(),
                detail: format!("HTTP {}", resp.status()),
            });
        }
        Ok(resp
            .bytes()
            .await
            .map_err(|e| ProviderError::Transient {
                what: name.into(),
                detail: e.to_string(),
            })?
            .to_vec())
    }

    /// Create a bucket (tests and the sandbox).
    pub async fn create_bucket(&self, spec: Value) -> Result<GcsBucketInfo, ProviderError> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/storage/v1/b",
                &[("project", self.project.clone())],
                Some(spec),
                "bucket",
            )
            .await?;
        Ok(Self::bucket_of(&v))
    }

    /// The raw bucket resource (tests check that a patch left other fields alone).
    pub async fn raw_bucket(&self, bucket: &str) -> Result<Value, ProviderError> {
        self.call(
            reqwest::Method::GET,
            &format!("/storage/v1/b/{}", enc(bucket)),
            &[],
            None,
            bucket,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let mut c = GcsClient::new("p", Some("http://127.0.0.1:9"));
        c.token = Some("ya29.secret-token-value".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("secret-token-value"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
