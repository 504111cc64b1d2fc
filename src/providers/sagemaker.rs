//! SageMaker (and the KMS key-policy reads its preflight needs) through the official SDK.

use std::collections::BTreeMap;
use std::future::Future;

use aws_sdk_sagemaker::error::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};

use crate::error::ProviderError;
use crate::providers::aws::{map_sdk_error, AwsClients};

/// An endpoint config's keys and the models it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub execution_role_arn: String,
    /// `s3://...` model data URLs of the primary container and every other container.
    pub artifacts: Vec<String>,
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
    fn describe_endpoint_config(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<EndpointConfigInfo, ProviderError>> + Send;
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
    /// Create `new` as a copy of `old` with every key set to `key_arn`; an existing `new` is kept.
    fn clone_endpoint_config(
        &self,
        old: &str,
        new: &str,
        key_arn: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
    fn update_endpoint(
        &self,
        name: &str,
        config: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
    /// The key policy document (JSON) of a key.
    fn key_policy(
        &self,
        key_arn: &str,
    ) -> impl Future<Output = Result<String, ProviderError>> + Send;
    /// Grants on a key: (grantee principal, operations).
    fn key_grants(
        &self,
        key_arn: &str,
    ) -> impl Future<Output = Result<Vec<(String, Vec<String>)>, ProviderError>> + Send;
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
            .map_err(|e| map_sdk_error(format!("endpoint {name}"), e))?;
        Ok((
            out.endpoint_arn().unwrap_or_default().to_string(),
            out.endpoint_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            out.endpoint_config_name().unwrap_or_default().to_string(),
        ))
    }

    async fn describe_endpoint_config(
        &self,
        name: &str,
    ) -> Result<EndpointConfigInfo, ProviderError> {
        let out = self
            .sagemaker
            .describe_endpoint_config()
            .endpoint_config_name(name)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("endpoint config {name}"), e))?;
        let dc = out.data_capture_config();
        Ok(EndpointConfigInfo {
            name: name.to_string(),
            kms_key_id: out
                .kms_key_id()
                .map(str::to_string)
                .filter(|k| !k.is_empty()),
            data_capture: dc.is_some_and(|d| d.enable_capture().unwrap_or(true)),
            data_capture_kms_key_id: dc
                .and_then(|d| d.kms_key_id())
                .map(str::to_string)
                .filter(|k| !k.is_empty()),
            async_output_kms_key_id: out
                .async_inference_config()
                .and_then(|a| a.output_config())
                .and_then(|o| o.kms_key_id())
                .map(str::to_string)
                .filter(|k| !k.is_empty()),
            model_names: out
                .production_variants()
                .iter()
                .filter_map(|v| v.model_name().map(str::to_string))
                .collect(),
        })
    }

    async fn describe_model(&self, name: &str) -> Result<ModelInfo, ProviderError> {
        let out = self
            .sagemaker
            .describe_model()
            .model_name(name)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("model {name}"), e))?;
        let mut artifacts: Vec<String> = out
            .primary_container()
            .and_then(|c| c.model_data_url())
            .map(str::to_string)
            .into_iter()
            .collect();
        artifacts.extend(
            out.containers()
                .iter()
                .filter_map(|c| c.model_data_url().map(str::to_string)),
        );
        artifacts.sort();
        artifacts.dedup();
        Ok(ModelInfo {
            name: name.to_string(),
            execution_role_arn: out.execution_role_arn().unwrap_or_default().to_string(),
            artifacts,
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

    async fn clone_endpoint_config(
        &self,
        old: &str,
        new: &str,
        key_arn: &str,
    ) -> Result<(), ProviderError> {
        let src = self
            .sagemaker
            .describe_endpoint_config()
            .endpoint_config_name(old)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("endpoint config {old}"), e))?;
        let mut req = self
            .sagemaker
            .create_endpoint_config()
            .endpoint_config_name(new)
            .set_production_variants(Some(src.production_variants().to_vec()))
            .kms_key_id(key_arn);
        if let Some(dc) = src.data_capture_config() {
            let mut dc = dc.clone();
            dc.kms_key_id = Some(key_arn.to_string());
            req = req.data_capture_config(dc);
        }
        if let Some(a) = src.async_inference_config() {
            let mut a = a.clone();
            if let Some(o) = a.output_config.as_mut() {
                o.kms_key_id = Some(key_arn.to_string());
            }
            req = req.async_inference_config(a);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.message().is_some_and(|m| m.contains("already exist")) => Ok(()),
            Err(e) => Err(map_sdk_error(format!("endpoint config {new}"), e)),
        }
    }

    async fn update_endpoint(&self, name: &str, config: &str) -> Result<(), ProviderError> {
        self.sagemaker
            .update_endpoint()
            .endpoint_name(name)
            .endpoint_config_name(config)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("endpoint {name}"), e))?;
        Ok(())
    }

    async fn key_policy(&self, key_arn: &str) -> Result<String, ProviderError> {
        let out = self
            .kms
            .get_key_policy()
            .key_id(key_arn)
            .policy_name("default")
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("policy of {key_arn}"), e))?;
        Ok(out.policy().unwrap_or_default().to_string())
    }

    async fn key_grants(&self, key_arn: &str) -> Result<Vec<(String, Vec<String>)>, ProviderError> {
        let out = self
            .kms
            .list_grants()
            .key_id(key_arn)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("grants of {key_arn}"), e))?;
        Ok(out
            .grants()
            .iter()
            .map(|g| {
                (
                    g.grantee_principal().unwrap_or_default().to_string(),
                    g.operations()
                        .iter()
                        .map(|o| o.as_str().to_string())
                        .collect(),
                )
            })
            .collect())
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

/// Whether `role_arn` may decrypt with a key, from its key policy and grants: an Allow
/// statement for the role, for its account's root (IAM policies then decide, as AWS
/// delegates), or for `*`, with `kms:Decrypt` or `kms:*`, and no Deny for it; or a grant to
/// the role with Decrypt. Conditions are not evaluated (a conditional Allow counts).
pub fn role_may_decrypt(policy: &str, grants: &[(String, Vec<String>)], role_arn: &str) -> bool {
    let account = role_arn.split(':').nth(4).unwrap_or_default();
    let root = format!("arn:aws:iam::{account}:root");
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(policy) else {
        return false;
    };
    let as_list = |v: &serde_json::Value| -> Vec<String> {
        match v {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    let statements = match &doc["Statement"] {
        serde_json::Value::Array(a) => a.clone(),
        s @ serde_json::Value::Object(_) => vec![s.clone()],
        _ => Vec::new(),
    };
    let mut allowed = false;
    for st in statements {
        let actions = as_list(&st["Action"]);
        let decrypt = actions
            .iter()
            .any(|a| a == "kms:Decrypt" || a == "kms:*" || a == "*");
        if !decrypt {
            continue;
        }
        let principals: Vec<String> = match &st["Principal"] {
            serde_json::Value::String(s) => vec![s.clone()],
            p => as_list(&p["AWS"]),
        };
        let names_role = principals.iter().any(|p| p == role_arn || p == "*");
        let names_root = principals.iter().any(|p| *p == root || p == account);
        match st["Effect"].as_str() {
            Some("Deny") if names_role || names_root => return false,
            Some("Allow") if names_role || names_root => allowed = true,
            _ => {}
        }
    }
    allowed
        || grants
            .iter()
            .any(|(who, ops)| who == role_arn && ops.iter().any(|o| o == "Decrypt"))
}

/// The key policy statement that lets `role_arn` use a key for model artifacts.
pub fn statement_for(role_arn: &str) -> String {
    serde_json::json!({
        "Sid": "AllowSageMakerExecutionRole",
        "Effect": "Allow",
        "Principal": { "AWS": role_arn },
        "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
        "Resource": "*"
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/sm-exec";

    #[test]
    fn policy_evaluation() {
        let root = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}"#;
        assert!(
            role_may_decrypt(root, &[], ROLE),
            "the account root delegates to IAM"
        );
        let other = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/other"},"Action":["kms:Decrypt"],"Resource":"*"}]}"#;
        assert!(!role_may_decrypt(other, &[], ROLE));
        assert!(
            role_may_decrypt(
                other,
                &[(ROLE.to_string(), vec!["Decrypt".to_string()])],
                ROLE
            ),
            "a grant suffices"
        );
        let denied = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::123456789012:role/sm-exec"},"Action":"kms:Decrypt","Resource":"*"}]}"#;
        assert!(!role_may_decrypt(denied, &[], ROLE));
        assert!(statement_for(ROLE).contains(ROLE));
    }
}
