//! The SageMaker endpoint step: move an endpoint to a clone of its config with the team key
//! (endpoint configs are immutable), wait until it is InService; undo moves it back, only if
//! it still runs the config rekey deployed (a redeploy since is left alone).

use super::{json, S3Steps, StepOutcome, UndoCtx, UndoOutcome};
use crate::error::ProviderError;
use crate::providers::sagemaker::{check_clone, clone_request, Coverage, SageMakerApi, VolumeKey};
use crate::providers::{KeyRead, S3Write};
use crate::retry::retried;

/// How long an endpoint may take to come back InService.
const ENDPOINT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// One endpoint step's move, as the plan says it.
pub(super) struct EndpointMove<'a> {
    pub name: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub key_arn: &'a str,
    pub volume_key: &'a VolumeKey,
    pub deployment: Option<&'a serde_json::Value>,
    pub source_sha256: Option<&'a str>,
}

impl<S: S3Write + KeyRead + SageMakerApi> S3Steps<'_, S> {
    pub(super) async fn prepare_endpoint(
        &self,
        name: &str,
    ) -> Result<Option<String>, ProviderError> {
        let (_, _, current) = retried(&self.policy, self.pacer, || self.s3.describe_endpoint(name))
            .await
            .0?;
        Ok(json(&serde_json::json!({ "previous_config": current })))
    }

    /// Wait until the endpoint is InService on `config`, polling with backoff.
    async fn wait_in_service(&self, name: &str, config: &str) -> Result<(), String> {
        let start = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(250);
        loop {
            let (_, status, current) =
                retried(&self.policy, self.pacer, || self.s3.describe_endpoint(name))
                    .await
                    .0
                    .map_err(|e| e.to_string())?;
            match status.as_str() {
                "InService" if current == config => return Ok(()),
                "InService" => {
                    return Err(format!(
                        "endpoint {name} is InService on config {current}, not {config}: someone else redeployed it"
                    ))
                }
                "Failed" | "OutOfService" => {
                    return Err(format!("endpoint {name} is {status} (config {current})"))
                }
                _ => {}
            }
            if start.elapsed() > ENDPOINT_TIMEOUT {
                return Err(format!(
                    "endpoint {name} still {status} after {} minutes",
                    ENDPOINT_TIMEOUT.as_secs() / 60
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(10));
        }
    }

    /// The config an endpoint runs once no update is in progress (while one is, DescribeEndpoint
    /// still names the old config: deciding then would misread the endpoint).
    async fn settled(&self, name: &str) -> Result<String, ProviderError> {
        let start = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(250);
        loop {
            let (_, status, current) =
                retried(&self.policy, self.pacer, || self.s3.describe_endpoint(name))
                    .await
                    .0?;
            let moving = matches!(
                status.as_str(),
                "Updating" | "Creating" | "SystemUpdating" | "RollingBack" | "UpdateRollbackFailed"
            );
            if !moving {
                return Ok(current);
            }
            if start.elapsed() > ENDPOINT_TIMEOUT {
                // Still moving: its config cannot be known; deciding now could misread it.
                return Err(ProviderError::Transient {
                    what: format!("endpoint {name}"),
                    detail: format!(
                        "still {status} after {} minutes: run this again once it settles",
                        ENDPOINT_TIMEOUT.as_secs() / 60
                    ),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(10));
        }
    }

    /// Point an endpoint at `config` (already existing) and wait for it, if it is on
    /// `expected` or already on `config`; otherwise leave it (returns the config it is on).
    /// The fleet is kept (RetainAllVariantProperties) and so is the deployment config unless
    /// the plan names one.
    async fn move_endpoint(
        &self,
        name: &str,
        expected: &str,
        config: &str,
        deployment: Option<&serde_json::Value>,
    ) -> Result<Result<(), String>, String> {
        let (_, status, mut current) =
            retried(&self.policy, self.pacer, || self.s3.describe_endpoint(name))
                .await
                .0
                .map_err(|e| e.to_string())?;
        if current != config {
            if status == "Updating" || status == "Creating" {
                self.wait_in_service(name, &current).await?;
                current = retried(&self.policy, self.pacer, || self.s3.describe_endpoint(name))
                    .await
                    .0
                    .map_err(|e| e.to_string())?
                    .2;
            }
            if current != expected && current != config {
                return Ok(Err(current));
            }
            if current != config {
                retried(&self.policy, self.pacer, || {
                    self.s3.update_endpoint(name, config, deployment)
                })
                .await
                .0
                .map_err(|e| e.to_string())?;
            }
        }
        self.wait_in_service(name, config).await.map(Ok)
    }

    /// Make sure config `to` exists and is `from` re-keyed onto `key_arn`, field for field:
    /// create it if absent; an existing one (an earlier attempt, or someone else's) is used only
    /// if it compares equal beyond names, ARNs, times and keys. Err: why not, with the diff.
    async fn ensure_config(
        &self,
        source: &serde_json::Value,
        from: &str,
        to: &str,
        key_arn: &str,
        volume_key: &VolumeKey,
    ) -> Result<(), String> {
        let source_had_key = source["KmsKeyId"].as_str().is_some_and(|k| !k.is_empty());
        // The volume key may be missing only where the plan says it covers not everything and
        // the source had none: a key the source had is never dropped (I2).
        let optional = !volume_key.is_covered() && !source_had_key;
        let check = |candidate: &serde_json::Value| {
            check_clone(source, candidate, key_arn, optional).map_err(|diff| {
                format!(
                    "endpoint config {to} exists but is not {from} re-keyed (left alone; delete or rename it, then apply again): {}",
                    diff.join("; ")
                )
            })
        };
        let tags_of = |config: &serde_json::Value| {
            let arn = config["EndpointConfigArn"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            async move {
                if arn.is_empty() {
                    return Ok(std::collections::BTreeMap::new());
                }
                retried(&self.policy, self.pacer, || self.s3.tags(&arn))
                    .await
                    .0
                    .map(|t| {
                        t.into_iter()
                            .filter(|(k, _)| !k.starts_with("aws:"))
                            .collect::<std::collections::BTreeMap<_, _>>()
                    })
                    .map_err(|e| e.to_string())
            }
        };
        let tags = tags_of(source).await?;
        // An existing config is rekey's only if it is the source re-keyed, tags included.
        let check_tags = |found: std::collections::BTreeMap<String, String>| {
            if found == tags {
                Ok(())
            } else {
                Err(format!(
                    "endpoint config {to} exists but its tags {found:?} are not {from}'s {tags:?} (left alone; delete or rename it, then apply again)"
                ))
            }
        };
        match retried(&self.policy, self.pacer, || {
            self.s3.endpoint_config_json(to)
        })
        .await
        .0
        {
            Ok(existing) => {
                check(&existing)?;
                return check_tags(tags_of(&existing).await?);
            }
            Err(ProviderError::NotFound { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
        // The volume key is sent wherever it may cover something, and wherever the source
        // already had one (the service took a key for these instance types then).
        let with_key = volume_key.coverage != Coverage::NotCovered || source_had_key;
        let uncovered: Vec<String> = source["ProductionVariants"]
            .as_array()
            .into_iter()
            .chain(source["ShadowProductionVariants"].as_array())
            .flatten()
            .filter_map(|v| v["InstanceType"].as_str())
            .filter(|t| crate::providers::sagemaker::has_nvme(t))
            .map(str::to_string)
            .collect();
        let request = clone_request(source, to, key_arn, with_key, &tags);
        let sent = retried(&self.policy, self.pacer, || {
            self.s3.create_endpoint_config_json(&request)
        })
        .await
        .0;
        match sent {
            Ok(_) => {}
            // Some instance types refuse a KmsKeyId (local NVMe storage): the plan said the
            // key does not cover them, so the config goes without it. Not when the source had
            // a key (the refusal is then about the key, not the instance type).
            Err(ProviderError::Invalid { detail, .. })
                if with_key
                    && optional
                    && !source_had_key
                    && refuses_volume_key(&detail, &uncovered) =>
            {
                let request = clone_request(source, to, key_arn, false, &tags);
                retried(&self.policy, self.pacer, || {
                    self.s3.create_endpoint_config_json(&request)
                })
                .await
                .0
                .map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
        let created = retried(&self.policy, self.pacer, || {
            self.s3.endpoint_config_json(to)
        })
        .await
        .0
        .map_err(|e| e.to_string())?;
        check(&created)?;
        check_tags(tags_of(&created).await?)
    }

    /// The source config as DescribeEndpointConfig answers now, if it (and its models) is what
    /// the plan checked; Ok(Err): it changed since (drift, left alone).
    async fn source_as_planned(
        &self,
        from: &str,
        planned: Option<&str>,
    ) -> Result<Result<serde_json::Value, String>, String> {
        let source = match retried(&self.policy, self.pacer, || {
            self.s3.endpoint_config_json(from)
        })
        .await
        .0
        {
            Ok(s) => s,
            Err(ProviderError::NotFound { .. }) => {
                return Ok(Err(format!(
                    "endpoint config {from} no longer exists: nothing checked to clone; plan again"
                )))
            }
            Err(e) => return Err(e.to_string()),
        };
        let Some(planned) = planned else {
            return Ok(Ok(source));
        };
        let info = crate::providers::sagemaker::EndpointConfigInfo::from_json(from, &source);
        let mut models = Vec::new();
        for m in &info.model_names {
            match retried(&self.policy, self.pacer, || self.s3.describe_model(m))
                .await
                .0
            {
                Ok(info) => models.push(info),
                Err(ProviderError::NotFound { .. }) => {
                    return Ok(Err(format!(
                        "model {m} of endpoint config {from} no longer exists; plan again"
                    )))
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        let now = crate::providers::sagemaker::source_fingerprint(&source, &models);
        if now != planned {
            return Ok(Err(format!(
                "endpoint config {from} or its models changed since the plan (fingerprint {now}, planned {planned}): left as is; plan again to check what it is now"
            )));
        }
        Ok(Ok(source))
    }

    pub(super) async fn run_endpoint(&self, m: EndpointMove<'_>) -> StepOutcome {
        let EndpointMove {
            name,
            from,
            to,
            key_arn,
            volume_key,
            deployment,
            source_sha256,
        } = m;
        let current = match self.settled(name).await {
            Ok(c) => c,
            Err(ProviderError::NotFound { .. }) => {
                return StepOutcome::Drifted {
                    reason: format!("endpoint {name} no longer exists"),
                }
            }
            Err(e) => {
                return StepOutcome::Failed {
                    reason: e.to_string(),
                }
            }
        };
        if current != from && current != to {
            return StepOutcome::Drifted {
                reason: format!(
                    "endpoint {name} now uses config {current}, not the planned {from}; left as is"
                ),
            };
        }
        if current != to {
            let source = match self.source_as_planned(from, source_sha256).await {
                Ok(Ok(s)) => s,
                Ok(Err(reason)) => return StepOutcome::Drifted { reason },
                Err(reason) => return StepOutcome::Failed { reason },
            };
            if let Err(reason) = self
                .ensure_config(&source, from, to, key_arn, volume_key)
                .await
            {
                return StepOutcome::Failed { reason };
            }
        }
        match self.move_endpoint(name, from, to, deployment).await {
            Ok(Ok(())) => StepOutcome::Succeeded {
                result: json(&serde_json::json!({ "config": to })),
                note: None,
            },
            Ok(Err(now)) => StepOutcome::Drifted {
                reason: format!(
                    "endpoint {name} now uses config {now}, not the planned {from}; left as is"
                ),
            },
            Err(reason) => StepOutcome::Failed { reason },
        }
    }

    pub(super) async fn undo_endpoint(
        &self,
        name: &str,
        from: &str,
        to: &str,
        deployment: Option<&serde_json::Value>,
        ctx: UndoCtx<'_>,
    ) -> UndoOutcome {
        let current = match self.settled(name).await {
            Ok(c) => c,
            Err(ProviderError::NotFound { .. }) => {
                return UndoOutcome::Conflict {
                    reason: format!("endpoint {name} no longer exists"),
                }
            }
            Err(e) => {
                return UndoOutcome::Failed {
                    reason: e.to_string(),
                }
            }
        };
        if current == from {
            return UndoOutcome::Undone {
                note: Some(
                    if ctx.succeeded {
                        "already on its previous config"
                    } else {
                        "the step had not taken effect"
                    }
                    .into(),
                ),
            };
        }
        if current != to {
            return UndoOutcome::Conflict {
                reason: format!(
                    "endpoint {name} was redeployed since apply (config {current}, apply deployed {to}): left alone"
                ),
            };
        }
        match self.move_endpoint(name, to, from, deployment).await {
            Ok(Ok(())) => UndoOutcome::Undone { note: None },
            Ok(Err(now)) => UndoOutcome::Conflict {
                reason: format!(
                    "endpoint {name} was redeployed since apply (config {now}): left alone"
                ),
            },
            Err(reason) => UndoOutcome::Failed { reason },
        }
    }
}

/// Whether a refused CreateEndpointConfig refused the volume key because of an instance type
/// with local storage: the message names one of those types, or local/instance storage. A
/// refusal of the key itself (disabled, another region, not accessible) is not one.
fn refuses_volume_key(detail: &str, uncovered: &[String]) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("local storage")
        || d.contains("instance storage")
        || uncovered
            .iter()
            .any(|t| d.contains(&t.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::refuses_volume_key;

    /// Only a refusal because of the instance type's local storage may drop the volume key; a
    /// refusal of the key itself (disabled, wrong region, not accessible) must fail the step,
    /// not create a config without KmsKeyId for the variants the key covers.
    #[test]
    fn a_refused_key_is_not_a_refused_instance_type() {
        let uncovered = vec!["ml.m5d.xlarge".to_string()];
        assert!(refuses_volume_key(
            "ValidationException: KmsKeyId is not supported for instance type ml.m5d.xlarge, which has local instance storage.",
            &uncovered
        ));
        for detail in [
            "ValidationException: KmsKeyId arn:aws:kms:us-east-1:111122223333:key/x is disabled",
            "ValidationException: Could not access KmsKeyId arn:aws:kms:us-east-1:111122223333:key/x",
            "ValidationException: The KmsKeyId must be in region us-east-1",
        ] {
            assert!(!refuses_volume_key(detail, &uncovered), "{detail}");
        }
    }
}
