//! The SageMaker endpoint step: move an endpoint to a clone of its config with the team key
//! (endpoint configs are immutable), wait until it is InService; undo moves it back, only if
//! it still runs the config rekey deployed (a redeploy since is left alone).

use super::{json, S3Steps, StepOutcome, UndoCtx, UndoOutcome};
use crate::error::ProviderError;
use crate::providers::sagemaker::SageMakerApi;
use crate::providers::{KeyRead, S3Write};
use crate::retry::retried;

/// How long an endpoint may take to come back InService.
const ENDPOINT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

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
    async fn move_endpoint(
        &self,
        name: &str,
        expected: &str,
        config: &str,
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
                    self.s3.update_endpoint(name, config)
                })
                .await
                .0
                .map_err(|e| e.to_string())?;
            }
        }
        self.wait_in_service(name, config).await.map(Ok)
    }

    pub(super) async fn run_endpoint(
        &self,
        name: &str,
        from: &str,
        to: &str,
        key_arn: &str,
    ) -> StepOutcome {
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
            if let Err(e) = retried(&self.policy, self.pacer, || {
                self.s3.clone_endpoint_config(from, to, key_arn)
            })
            .await
            .0
            {
                return StepOutcome::Failed {
                    reason: e.to_string(),
                };
            }
        }
        match self.move_endpoint(name, from, to).await {
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
        match self.move_endpoint(name, to, from).await {
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
