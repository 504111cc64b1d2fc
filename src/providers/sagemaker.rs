//! SageMaker (and the KMS key-policy reads its preflight needs) through the official SDK.

use std::collections::BTreeMap;
use std::future::Future;

use std::sync::{Arc, Mutex};

use aws_sdk_sagemaker::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_sagemaker::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sagemaker::error::{BoxError, ProvideErrorMetadata};
use aws_smithy_types::body::SdkBody;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ProviderError;
use crate::providers::aws::{map_sdk_error, AwsClients};

/// An endpoint config's keys and the models it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct EndpointConfigInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data_capture: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_capture_kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_output_kms_key_id: Option<String>,
    pub model_names: Vec<String>,
    /// Production and shadow variants: what storage a KmsKeyId would cover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantInfo>,
    /// The config's own ExecutionRoleArn (inference components), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// An AsyncInferenceConfig with an OutputConfig (its KmsKeyId is re-keyed too).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub async_output: bool,
}

/// One production or shadow variant of an endpoint config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VariantInfo {
    pub name: String,
    /// The model it serves; none: inference components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub serverless: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

impl EndpointConfigInfo {
    /// Read a DescribeEndpointConfig answer (JSON as the service sent it).
    pub fn from_json(name: &str, c: &Value) -> EndpointConfigInfo {
        let text = |v: &Value| v.as_str().map(str::to_string).filter(|k| !k.is_empty());
        let dc = c.get("DataCaptureConfig").filter(|d| d.is_object());
        let mut variants = Vec::new();
        let mut model_names = Vec::new();
        for (field, shadow) in [
            ("ProductionVariants", false),
            ("ShadowProductionVariants", true),
        ] {
            for v in c[field].as_array().into_iter().flatten() {
                let model = text(&v["ModelName"]);
                model_names.extend(model.clone());
                variants.push(VariantInfo {
                    model,
                    name: text(&v["VariantName"]).unwrap_or_default(),
                    instance_type: text(&v["InstanceType"]),
                    serverless: v.get("ServerlessConfig").is_some_and(Value::is_object),
                    shadow,
                });
            }
        }
        model_names.sort();
        model_names.dedup();
        let output = c["AsyncInferenceConfig"]
            .get("OutputConfig")
            .filter(|o| o.is_object());
        EndpointConfigInfo {
            name: name.to_string(),
            kms_key_id: text(&c["KmsKeyId"]),
            data_capture: dc.is_some_and(|d| d["EnableCapture"].as_bool().unwrap_or(true)),
            data_capture_kms_key_id: dc.and_then(|d| text(&d["KmsKeyId"])),
            async_output_kms_key_id: output.and_then(|o| text(&o["KmsKeyId"])),
            async_output: output.is_some(),
            model_names,
            variants,
            execution_role_arn: text(&c["ExecutionRoleArn"]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelInfo {
    pub name: String,
    pub execution_role_arn: String,
    /// `s3://...` model data URLs and data sources (objects or prefixes) of the primary
    /// container and every other container.
    pub artifacts: Vec<String>,
    /// Artifacts rekey cannot locate (model packages), with why.
    pub unseen: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotebookInfo {
    pub name: String,
    pub arn: String,
    pub kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingJobInfo {
    pub name: String,
    pub arn: String,
    pub output_kms_key_id: Option<String>,
    pub volume_kms_key_id: Option<String>,
    pub output_path: Option<String>,
}

/// SageMaker calls rekey makes. Writes: only creating an endpoint config and UpdateEndpoint.
pub trait SageMakerApi: Send + Sync {
    fn list_endpoints(&self) -> impl Future<Output = Result<Vec<String>, ProviderError>> + Send;
    /// (arn, status, config name)
    fn describe_endpoint(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<(String, String, String), ProviderError>> + Send;
    /// DescribeEndpointConfig's whole answer, as the service sent it: every field, including
    /// ones this build's SDK does not model.
    fn endpoint_config_json(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Value, ProviderError>> + Send;
    fn describe_endpoint_config(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<EndpointConfigInfo, ProviderError>> + Send {
        async move {
            let c = self.endpoint_config_json(name).await?;
            Ok(EndpointConfigInfo::from_json(name, &c))
        }
    }
    fn describe_model(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<ModelInfo, ProviderError>> + Send;
    fn tags(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, String>, ProviderError>> + Send;
    fn list_notebooks(
        &self,
    ) -> impl Future<Output = Result<Vec<NotebookInfo>, ProviderError>> + Send;
    fn list_training_jobs(
        &self,
    ) -> impl Future<Output = Result<Vec<TrainingJobInfo>, ProviderError>> + Send;
    /// CreateEndpointConfig with this JSON request, sent as is. `Ok(false)`: a config of that
    /// name already exists (the caller compares it).
    fn create_endpoint_config_json(
        &self,
        request: &Value,
    ) -> impl Future<Output = Result<bool, ProviderError>> + Send;
    /// UpdateEndpoint onto `config`, keeping the fleet (RetainAllVariantProperties) and either
    /// the last deployment config or the given one.
    fn update_endpoint(
        &self,
        name: &str,
        config: &str,
        deployment: Option<&Value>,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
}

impl SageMakerApi for AwsClients {
    async fn list_endpoints(&self) -> Result<Vec<String>, ProviderError> {
        all_names(|token| async move {
            let out = self
                .sagemaker
                .list_endpoints()
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| map_sdk_error("SageMaker endpoints", e))?;
            let names = out
                .endpoints()
                .iter()
                .map(|e| e.endpoint_name().unwrap_or_default().to_string())
                .collect();
            Ok((names, out.next_token().map(str::to_string)))
        })
        .await
    }

    async fn describe_endpoint(
        &self,
        name: &str,
    ) -> Result<(String, String, String), ProviderError> {
        let out = self
            .sagemaker
            .describe_endpoint()
            .endpoint_name(name)
            .send()
            .await
            .map_err(|e| sm_error(format!("endpoint {name}"), e))?;
        Ok((
            out.endpoint_arn().unwrap_or_default().to_string(),
            out.endpoint_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            out.endpoint_config_name().unwrap_or_default().to_string(),
        ))
    }

    async fn endpoint_config_json(&self, name: &str) -> Result<Value, ProviderError> {
        let raw = RawBody::default();
        self.sagemaker
            .describe_endpoint_config()
            .endpoint_config_name(name)
            .customize()
            .interceptor(raw.clone())
            .send()
            .await
            .map_err(|e| sm_error(format!("endpoint config {name}"), e))?;
        raw.json(&format!("endpoint config {name}"))
    }

    async fn describe_model(&self, name: &str) -> Result<ModelInfo, ProviderError> {
        let out = self
            .sagemaker
            .describe_model()
            .model_name(name)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("model {name}"), e))?;
        // Every S3 location the execution role reads: ModelDataUrl, ModelDataSource (an object
        // or an uncompressed prefix) and AdditionalModelDataSources, of the primary container
        // and of every container. A container whose artifacts come from elsewhere (a model
        // package) cannot be followed: said, so that the preflight fails closed.
        let mut artifacts = Vec::new();
        let mut unseen = Vec::new();
        for c in out.primary_container().into_iter().chain(out.containers()) {
            let before = artifacts.len();
            artifacts.extend(c.model_data_url().map(str::to_string));
            artifacts.extend(
                c.model_data_source()
                    .and_then(|d| d.s3_data_source())
                    .and_then(|s| s.s3_uri().map(str::to_string)),
            );
            artifacts.extend(c.additional_model_data_sources().iter().filter_map(|a| {
                a.s3_data_source()
                    .and_then(|s| s.s3_uri().map(str::to_string))
            }));
            if artifacts.len() == before {
                if let Some(pkg) = c.model_package_name() {
                    unseen.push(format!(
                        "a container of model {name} takes its artifacts from model package {pkg}, which rekey does not follow"
                    ));
                }
            }
        }
        artifacts.sort();
        artifacts.dedup();
        Ok(ModelInfo {
            name: name.to_string(),
            execution_role_arn: out.execution_role_arn().unwrap_or_default().to_string(),
            artifacts,
            unseen,
        })
    }

    async fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, ProviderError> {
        let mut tags = BTreeMap::new();
        let mut token = None;
        loop {
            let out = self
                .sagemaker
                .list_tags()
                .resource_arn(arn)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| map_sdk_error(format!("tags of {arn}"), e))?;
            for t in out.tags() {
                tags.insert(
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                );
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(tags);
            }
        }
    }

    async fn list_notebooks(&self) -> Result<Vec<NotebookInfo>, ProviderError> {
        let names = all_names(|token| async move {
            let out = self
                .sagemaker
                .list_notebook_instances()
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| map_sdk_error("notebook instances", e))?;
            let names = out
                .notebook_instances()
                .iter()
                .map(|n| n.notebook_instance_name().unwrap_or_default().to_string())
                .collect();
            Ok((names, out.next_token().map(str::to_string)))
        })
        .await?;
        let mut out = Vec::new();
        for name in names {
            let d = self
                .sagemaker
                .describe_notebook_instance()
                .notebook_instance_name(&name)
                .send()
                .await
                .map_err(|e| map_sdk_error(format!("notebook {name}"), e))?;
            out.push(NotebookInfo {
                arn: d.notebook_instance_arn().unwrap_or_default().to_string(),
                kms_key_id: d.kms_key_id().map(str::to_string).filter(|k| !k.is_empty()),
                name,
            });
        }
        Ok(out)
    }

    async fn list_training_jobs(&self) -> Result<Vec<TrainingJobInfo>, ProviderError> {
        let names = all_names(|token| async move {
            let out = self
                .sagemaker
                .list_training_jobs()
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| map_sdk_error("training jobs", e))?;
            let names = out
                .training_job_summaries()
                .iter()
                .map(|t| t.training_job_name().unwrap_or_default().to_string())
                .collect();
            Ok((names, out.next_token().map(str::to_string)))
        })
        .await?;
        let mut out = Vec::new();
        for name in names {
            let d = self
                .sagemaker
                .describe_training_job()
                .training_job_name(&name)
                .send()
                .await
                .map_err(|e| map_sdk_error(format!("training job {name}"), e))?;
            out.push(TrainingJobInfo {
                arn: d.training_job_arn().unwrap_or_default().to_string(),
                output_kms_key_id: d
                    .output_data_config()
                    .and_then(|o| o.kms_key_id())
                    .map(str::to_string)
                    .filter(|k| !k.is_empty()),
                volume_kms_key_id: d
                    .resource_config()
                    .and_then(|r| r.volume_kms_key_id())
                    .map(str::to_string)
                    .filter(|k| !k.is_empty()),
                output_path: d
                    .output_data_config()
                    .and_then(|o| o.s3_output_path())
                    .map(str::to_string),
                name,
            });
        }
        Ok(out)
    }

    async fn create_endpoint_config_json(&self, request: &Value) -> Result<bool, ProviderError> {
        let name = request["EndpointConfigName"].as_str().unwrap_or_default();
        let body = serde_json::to_vec(request).map_err(|e| ProviderError::Other {
            what: format!("endpoint config {name}"),
            detail: e.to_string(),
        })?;
        let sent = self
            .sagemaker
            .create_endpoint_config()
            .endpoint_config_name(name)
            .customize()
            .mutate_request(move |req| replace_body(req, &body))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e) if e.message().is_some_and(|m| m.contains("already exist")) => Ok(false),
            Err(e) => Err(map_sdk_error(format!("endpoint config {name}"), e)),
        }
    }

    async fn update_endpoint(
        &self,
        name: &str,
        config: &str,
        deployment: Option<&Value>,
    ) -> Result<(), ProviderError> {
        let body = serde_json::to_vec(&update_request(name, config, deployment)).map_err(|e| {
            ProviderError::Other {
                what: format!("endpoint {name}"),
                detail: e.to_string(),
            }
        })?;
        self.sagemaker
            .update_endpoint()
            .endpoint_name(name)
            .endpoint_config_name(config)
            .customize()
            .mutate_request(move |req| replace_body(req, &body))
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("endpoint {name}"), e))?;
        Ok(())
    }
}

/// SageMaker answers a describe of something that does not exist with a ValidationException
/// "Could not find ...": that is NotFound.
fn sm_error<E>(
    what: String,
    e: aws_sdk_sagemaker::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if e.code() == Some("ValidationException")
        && e.message().is_some_and(|m| m.contains("Could not find"))
    {
        return ProviderError::NotFound { what };
    }
    map_sdk_error(what, e)
}

/// The UpdateEndpoint request rekey sends: the fleet is kept (instance counts, weights and
/// autoscaling stay as they are, not reset to the config's initial values) and so is the
/// last deployment config, unless the campaign names one (blue/green with alarms).
pub fn update_request(name: &str, config: &str, deployment: Option<&Value>) -> Value {
    let mut r = serde_json::json!({
        "EndpointName": name,
        "EndpointConfigName": config,
        "RetainAllVariantProperties": true,
    });
    match deployment {
        Some(d) => r["DeploymentConfig"] = d.clone(),
        None => r["RetainDeploymentConfig"] = Value::Bool(true),
    }
    r
}

/// Send `body` (JSON) instead of what the SDK serialised; this runs before signing, so the
/// signature covers it.
fn replace_body(req: &mut aws_smithy_runtime_api::client::orchestrator::HttpRequest, body: &[u8]) {
    *req.body_mut() = SdkBody::from(body.to_vec());
    req.headers_mut()
        .insert("content-length", body.len().to_string());
}

/// Keeps the raw body of a response, so that fields the SDK does not model are not lost.
#[derive(Debug, Clone, Default)]
struct RawBody(Arc<Mutex<Option<Vec<u8>>>>);

impl RawBody {
    fn json(&self, what: &str) -> Result<Value, ProviderError> {
        let bytes = self.0.lock().expect("raw body lock").take();
        let bytes = bytes.ok_or_else(|| ProviderError::Other {
            what: what.to_string(),
            detail: "the response body was not kept".into(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ProviderError::Other {
            what: what.to_string(),
            detail: format!("unreadable JSON answer: {e}"),
        })
    }
}

impl Intercept for RawBody {
    fn name(&self) -> &'static str {
        "RawBody"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(bytes) = context.response().body().bytes() {
            *self.0.lock().expect("raw body lock") = Some(bytes.to_vec());
        }
        Ok(())
    }
}

/// Every name of a paginated SageMaker listing, sorted. `page(token)` returns one page's
/// names and the next token.
async fn all_names<F, Fut>(mut page: F) -> Result<Vec<String>, ProviderError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<String>, Option<String>), ProviderError>>,
{
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let (mut page_names, next) = page(token).await?;
        names.append(&mut page_names);
        token = next;
        if token.is_none() {
            break;
        }
    }
    names.sort();
    Ok(names)
}

/// Instance families whose hosts carry local NVMe instance storage, encrypted by a hardware
/// module and not by the config's KmsKeyId. Source: Amazon SageMaker AI developer guide,
/// "Instance store volumes" (host-instance-storage), and the CreateEndpointConfig reference
/// for KmsKeyId (older revisions: "the call to CreateEndpointConfig fails" when a KmsKeyId is
/// given with such a type; current: the key "does not encrypt instance local storage"). The
/// one list rekey keeps; extend it here.
pub const NVME_FAMILIES: &[&str] = &[
    "ml.c5d", "ml.m5d", "ml.r5d", "ml.c6id", "ml.m6id", "ml.r6id", "ml.g4dn", "ml.g5", "ml.g6",
    "ml.g6e", "ml.gr6", "ml.p3dn", "ml.p4d", "ml.p4de", "ml.p5", "ml.p5e", "ml.p5en", "ml.trn1",
    "ml.trn1n", "ml.trn2",
];

/// Where [`NVME_FAMILIES`] and the serverless rule come from (shown in plans).
pub const VOLUME_KEY_SOURCE: &str = "AWS SageMaker API reference, CreateEndpointConfig KmsKeyId; SageMaker developer guide, Instance store volumes; Serverless Inference (no ML storage volume)";

/// Whether an instance type has local NVMe storage.
pub fn has_nvme(instance_type: &str) -> bool {
    let family = instance_type
        .rsplit_once('.')
        .map_or(instance_type, |(f, _)| f);
    NVME_FAMILIES.contains(&family)
}

/// How much of an endpoint's storage its KmsKeyId covers.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Coverage {
    /// Every variant has an ML storage volume the key encrypts.
    #[default]
    Covered,
    /// Some variants have local NVMe storage or are serverless: the key covers the others.
    Partial,
    /// No variant has a volume the key encrypts.
    NotCovered,
}

/// The plan's word on the volume key of an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeKey {
    pub coverage: Coverage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl VolumeKey {
    pub fn is_covered(&self) -> bool {
        self.coverage == Coverage::Covered
    }
}

/// What the KmsKeyId of a config with these variants covers.
pub fn volume_key(variants: &[VariantInfo]) -> VolumeKey {
    let uncovered: Vec<String> = variants
        .iter()
        .filter_map(|v| {
            if v.serverless {
                Some(format!("{} is serverless (no ML storage volume)", v.name))
            } else {
                v.instance_type.as_deref().filter(|t| has_nvme(t)).map(|t| {
                    format!(
                        "{} runs on {t} (local NVMe storage, hardware-encrypted)",
                        v.name
                    )
                })
            }
        })
        .collect();
    if uncovered.is_empty() {
        return VolumeKey::default();
    }
    let coverage = if uncovered.len() == variants.len() {
        Coverage::NotCovered
    } else {
        Coverage::Partial
    };
    VolumeKey {
        coverage,
        reason: Some(format!(
            "the config's KmsKeyId does not cover the local storage of: {}",
            uncovered.join("; ")
        )),
        source: Some(VOLUME_KEY_SOURCE.to_string()),
    }
}

/// What the plan checked of an endpoint's source: its config (output-only fields left out,
/// keys kept) and each model's execution role and artifacts. Apply refuses to clone a source
/// whose fingerprint changed (a config or model deleted and created again under its name).
pub fn source_fingerprint(config: &Value, models: &[ModelInfo]) -> String {
    use sha2::{Digest, Sha256};
    let mut c = config.clone();
    if let Some(m) = c.as_object_mut() {
        for f in OUTPUT_ONLY {
            m.remove(*f);
        }
    }
    let mut models: Vec<Value> = models
        .iter()
        .map(|m| {
            serde_json::json!({
                "name": m.name,
                "role": m.execution_role_arn,
                "artifacts": m.artifacts,
                "unseen": m.unseen,
            })
        })
        .collect();
    models.sort_by_key(|m| m["name"].as_str().unwrap_or_default().to_string());
    let doc = serde_json::json!({ "config": canonical(&c), "models": models });
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(doc.to_string().as_bytes()))
    )
}

/// A JSON value with object keys sorted and numbers as f64 (1 and 1.0 alike).
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| v.clone(), Value::Number),
        other => other.clone(),
    }
}

/// Fields DescribeEndpointConfig reports that CreateEndpointConfig does not take (output only).
pub const OUTPUT_ONLY: &[&str] = &["EndpointConfigArn", "CreationTime"];

/// The fields a clone changes: the name and the keys (JSON pointers).
const KEY_FIELDS: &[&str] = &[
    "/KmsKeyId",
    "/DataCaptureConfig/KmsKeyId",
    "/AsyncInferenceConfig/OutputConfig/KmsKeyId",
];

/// The CreateEndpointConfig request for a copy of `source` (a DescribeEndpointConfig answer)
/// named `new`: every field as it is — including fields this build does not know, so that
/// nothing SageMaker adds later is dropped — except the name, the output-only fields, and the
/// keys: `KmsKeyId` (unless `volume_key` is false), the data-capture key and the async-output
/// key set to `key_arn`. `tags` are the source config's (AWS-reserved `aws:` tags left out).
pub fn clone_request(
    source: &Value,
    new: &str,
    key_arn: &str,
    volume_key: bool,
    tags: &BTreeMap<String, String>,
) -> Value {
    let mut r = source.clone();
    let Some(m) = r.as_object_mut() else {
        return r;
    };
    for f in OUTPUT_ONLY {
        m.remove(*f);
    }
    m.insert("EndpointConfigName".into(), Value::String(new.into()));
    if volume_key {
        m.insert("KmsKeyId".into(), Value::String(key_arn.into()));
    } else {
        m.remove("KmsKeyId");
    }
    if let Some(dc) = m
        .get_mut("DataCaptureConfig")
        .and_then(Value::as_object_mut)
    {
        dc.insert("KmsKeyId".into(), Value::String(key_arn.into()));
    }
    if let Some(out) = m
        .get_mut("AsyncInferenceConfig")
        .and_then(|a| a.get_mut("OutputConfig"))
        .and_then(Value::as_object_mut)
    {
        out.insert("KmsKeyId".into(), Value::String(key_arn.into()));
    }
    let tags: Vec<Value> = tags
        .iter()
        .filter(|(k, _)| !k.starts_with("aws:"))
        .map(|(k, v)| serde_json::json!({ "Key": k, "Value": v }))
        .collect();
    if tags.is_empty() {
        m.remove("Tags");
    } else {
        m.insert("Tags".into(), Value::Array(tags));
    }
    r
}

/// A config with what a clone may change taken out (name, ARN, creation time, the three
/// keys): a faithful clone compares equal to its source.
pub fn comparable(config: &Value) -> Value {
    let mut c = config.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("EndpointConfigName");
        m.remove("Tags");
        for f in OUTPUT_ONLY {
            m.remove(*f);
        }
    }
    for p in KEY_FIELDS {
        let (parent, leaf) = p.rsplit_once('/').expect("a pointer");
        if let Some(o) = c.pointer_mut(parent).and_then(Value::as_object_mut) {
            o.remove(leaf);
        }
    }
    c
}

/// The differences between two JSON values, one `path: a != b` line each (numbers compared
/// by value, so that 1 and 1.0 are the same weight).
pub fn json_diff(a: &Value, b: &Value) -> Vec<String> {
    fn walk(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<String>) {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    walk(&format!("{path}/{k}"), x.get(k), y.get(k), out);
                }
            }
            (Some(Value::Array(x)), Some(Value::Array(y))) => {
                for i in 0..x.len().max(y.len()) {
                    walk(&format!("{path}/{i}"), x.get(i), y.get(i), out);
                }
            }
            (Some(Value::Number(x)), Some(Value::Number(y))) if x.as_f64() == y.as_f64() => {}
            (x, y) if x == y => {}
            (x, y) => {
                let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), |v| v.to_string());
                out.push(format!(
                    "{}: {} != {}",
                    if path.is_empty() { "/" } else { path },
                    show(x),
                    show(y)
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk("", Some(a), Some(b), &mut out);
    out
}

/// Whether `candidate` (a DescribeEndpointConfig answer) is `source` re-keyed onto `key_arn`:
/// equal beyond name, ARN, time and keys, with every key that the source has a place for on
/// `key_arn` (the volume key may be absent when `volume_key_optional`). Err: the differences.
pub fn check_clone(
    source: &Value,
    candidate: &Value,
    key_arn: &str,
    volume_key_optional: bool,
) -> Result<(), Vec<String>> {
    let mut diff = json_diff(&comparable(source), &comparable(candidate));
    let key_at = |p: &str| candidate.pointer(p).and_then(Value::as_str);
    match key_at("/KmsKeyId") {
        Some(k) if k == key_arn => {}
        None if volume_key_optional => {}
        other => diff.push(format!("/KmsKeyId: {other:?}, not {key_arn}")),
    }
    for (parent, p) in [
        ("/DataCaptureConfig", "/DataCaptureConfig/KmsKeyId"),
        (
            "/AsyncInferenceConfig/OutputConfig",
            "/AsyncInferenceConfig/OutputConfig/KmsKeyId",
        ),
    ] {
        if source.pointer(parent).is_some_and(Value::is_object) && key_at(p) != Some(key_arn) {
            diff.push(format!("{p}: {:?}, not {key_arn}", key_at(p)));
        }
    }
    if diff.is_empty() {
        Ok(())
    } else {
        Err(diff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/team";

    fn source() -> Value {
        json!({
            "EndpointConfigName": "old",
            "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/old",
            "CreationTime": 1.7e9,
            "ProductionVariants": [
                { "VariantName": "a", "ModelName": "m", "InitialInstanceCount": 2,
                  "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0 },
                { "VariantName": "b", "ModelName": "m", "InitialInstanceCount": 1,
                  "InstanceType": "ml.m5.large", "InitialVariantWeight": 0.5 }
            ],
            "DataCaptureConfig": { "EnableCapture": true, "InitialSamplingPercentage": 5,
                                   "DestinationS3Uri": "s3://b/capture",
                                   "CaptureOptions": [{ "CaptureMode": "Input" }] },
            "AsyncInferenceConfig": { "OutputConfig": { "S3OutputPath": "s3://b/out" } },
            "VpcConfig": { "SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"] },
            "EnableNetworkIsolation": true,
            "ExecutionRoleArn": "arn:aws:iam::123456789012:role/exec",
            "SomeFieldFromTheFuture": { "x": 1 }
        })
    }

    #[test]
    fn a_clone_keeps_every_field_and_changes_only_keys() {
        let tags = BTreeMap::from([
            ("team".to_string(), "fraud".to_string()),
            ("aws:cloudformation:stack-name".to_string(), "s".to_string()),
        ]);
        let r = clone_request(&source(), "new", KEY, true, &tags);
        assert_eq!(r["EndpointConfigName"], "new");
        assert!(r.get("EndpointConfigArn").is_none() && r.get("CreationTime").is_none());
        assert_eq!(r["KmsKeyId"], KEY);
        assert_eq!(r["DataCaptureConfig"]["KmsKeyId"], KEY);
        assert_eq!(r["AsyncInferenceConfig"]["OutputConfig"]["KmsKeyId"], KEY);
        assert_eq!(
            r["SomeFieldFromTheFuture"],
            json!({ "x": 1 }),
            "unknown fields kept"
        );
        assert_eq!(r["Tags"], json!([{ "Key": "team", "Value": "fraud" }]));
        assert_eq!(check_clone(&source(), &r, KEY, false), Ok(()));
        let without = clone_request(&source(), "new", KEY, false, &tags);
        assert!(without.get("KmsKeyId").is_none());
        assert!(check_clone(&source(), &without, KEY, false).is_err());
        assert_eq!(check_clone(&source(), &without, KEY, true), Ok(()));
    }

    #[test]
    fn a_config_that_differs_beyond_keys_is_not_a_clone() {
        let mut other = clone_request(&source(), "new", KEY, true, &BTreeMap::new());
        other["ProductionVariants"][1]["InitialVariantWeight"] = json!(1);
        other["EnableNetworkIsolation"] = json!(false);
        let diff = check_clone(&source(), &other, KEY, false).unwrap_err();
        assert_eq!(diff.len(), 2, "{diff:?}");
        assert!(diff[0].starts_with("/EnableNetworkIsolation"), "{diff:?}");
        assert!(
            diff[1].starts_with("/ProductionVariants/1/InitialVariantWeight"),
            "{diff:?}"
        );
        let mut foreign = clone_request(&source(), "new", KEY, true, &BTreeMap::new());
        foreign["DataCaptureConfig"]["KmsKeyId"] =
            json!("arn:aws:kms:us-east-1:123456789012:key/other");
        assert!(check_clone(&source(), &foreign, KEY, false).is_err());
        // 1 and 1.0 are the same number.
        let mut same = clone_request(&source(), "new", KEY, true, &BTreeMap::new());
        same["ProductionVariants"][0]["InitialVariantWeight"] = json!(1);
        assert_eq!(check_clone(&source(), &same, KEY, false), Ok(()));
    }

    #[test]
    fn the_update_keeps_the_fleet() {
        let r = update_request("e", "c", None);
        assert_eq!(r["RetainAllVariantProperties"], true);
        assert_eq!(r["RetainDeploymentConfig"], true);
        let d = json!({ "BlueGreenUpdatePolicy": { "TrafficRoutingConfiguration": { "Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 60 } } });
        let r = update_request("e", "c", Some(&d));
        assert_eq!(r["DeploymentConfig"], d);
        assert!(r.get("RetainDeploymentConfig").is_none());
    }

    #[test]
    fn nvme_and_serverless_variants_are_not_covered() {
        let v = |name: &str, t: Option<&str>, serverless: bool| VariantInfo {
            name: name.into(),
            model: Some("m".into()),
            instance_type: t.map(str::to_string),
            serverless,
            shadow: false,
        };
        assert!(has_nvme("ml.g4dn.xlarge") && has_nvme("ml.p4d.24xlarge"));
        assert!(!has_nvme("ml.m5.large") && !has_nvme("ml.g4.xlarge"));
        assert!(volume_key(&[v("a", Some("ml.m5.large"), false)]).is_covered());
        let p = volume_key(&[
            v("a", Some("ml.m5.large"), false),
            v("b", Some("ml.g5.xlarge"), false),
        ]);
        assert_eq!(p.coverage, Coverage::Partial);
        assert!(p.reason.unwrap().contains("b runs on ml.g5.xlarge"));
        let n = volume_key(&[v("a", None, true), v("b", Some("ml.p5.48xlarge"), false)]);
        assert_eq!(n.coverage, Coverage::NotCovered);
        assert!(n.source.is_some());
    }

    #[test]
    fn config_info_reads_variants() {
        let mut c = source();
        c["ShadowProductionVariants"] = json!([{ "VariantName": "s", "ModelName": "m2",
            "ServerlessConfig": { "MemorySizeInMB": 2048, "MaxConcurrency": 1 } }]);
        let i = EndpointConfigInfo::from_json("old", &c);
        assert_eq!(i.model_names, vec!["m", "m2"]);
        assert_eq!(i.variants.len(), 3);
        assert!(i.variants[2].serverless && i.variants[2].shadow);
        assert!(i.async_output && i.data_capture);
        assert_eq!(
            i.execution_role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/exec")
        );
    }
}
