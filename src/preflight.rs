//! The key-access preflight (DESIGN §5, I5): who will use each team key, and the verdict of
//! the evaluator in `access` for each. Reads go through [`AccessRead`] and are cached for a
//! run; a plan records the verdicts, and apply evaluates them again before any write.

use std::collections::HashMap;

use crate::access::{evaluate, statement_for, Acceptance, IdentityView, KeyFacts, Usage, Verdict};
use crate::error::RekeyError;
use crate::providers::iam::AccessRead;

/// Reads of one run, each made once.
pub struct AccessCache<'a, A> {
    aws: &'a A,
    accept: Acceptance,
    keys: HashMap<String, KeyFacts>,
    identities: HashMap<String, IdentityView>,
    caller: Option<String>,
}

impl<'a, A: AccessRead> AccessCache<'a, A> {
    pub fn new(aws: &'a A, accept: Acceptance) -> Self {
        AccessCache {
            aws,
            accept,
            keys: HashMap::new(),
            identities: HashMap::new(),
            caller: None,
        }
    }

    /// rekey's own principal.
    pub async fn caller(&mut self) -> Result<String, RekeyError> {
        if let Some(c) = &self.caller {
            return Ok(c.clone());
        }
        let c = self.aws.caller().await?;
        self.caller = Some(c.clone());
        Ok(c)
    }

    /// The verdict for `usage` of `key_arn`; `role` says why the principal needs it.
    pub async fn verdict(
        &mut self,
        usage: &Usage,
        key_arn: &str,
        role: &str,
    ) -> Result<Verdict, RekeyError> {
        if !self.keys.contains_key(key_arn) {
            let facts = self.aws.key_facts(key_arn).await?;
            self.keys.insert(key_arn.to_string(), facts);
        }
        if !self.identities.contains_key(&usage.principal) {
            let view = self.aws.identity(&usage.principal).await?;
            self.identities.insert(usage.principal.clone(), view);
        }
        let mut v = evaluate(
            &self.keys[key_arn],
            &self.identities[&usage.principal],
            usage,
            &self.accept,
            role,
        );
        if v.verdict == crate::access::VerdictKind::NotAllowed && v.add.is_none() {
            let actions: Vec<&str> = usage.actions.iter().map(String::as_str).collect();
            v.add = Some(statement_for(usage, &actions));
        }
        Ok(v)
    }

    /// The same usage evaluated again (apply's re-check of a planned verdict). rekey's own
    /// identity is the one running now, whoever made the plan.
    pub async fn again(&mut self, planned: &Verdict, region: &str) -> Result<Verdict, RekeyError> {
        let mut usage = usage_of(planned, region);
        if planned.role == REKEY_ROLE {
            usage.principal = self.caller().await?;
        }
        self.verdict(&usage, &planned.key_arn, &planned.role).await
    }
}

/// The usage a verdict was made for (its principal, actions and request context).
pub fn usage_of(v: &Verdict, region: &str) -> Usage {
    let actions: Vec<&str> = v.actions.iter().map(String::as_str).collect();
    let mut u = Usage::principal(&v.principal, &actions, v.via_service.clone());
    u.grant_for_resource = v.via_service.as_deref() == Some(&sagemaker_service(region))
        && actions
            .iter()
            .any(|a| a.eq_ignore_ascii_case("kms:CreateGrant"));
    u
}

/// The role of rekey's own identity in the verdicts of an endpoint.
pub const REKEY_ROLE: &str =
    "rekey's own identity, creating the endpoint config and updating the endpoint";

/// A verdict for what rekey cannot see (artifacts in a model package, models of inference
/// components): `unverified`, so that it blocks.
pub fn unseen(principal: &str, key_arn: &str, role: &str, why: String) -> Verdict {
    Verdict {
        principal: principal.to_string(),
        key_arn: key_arn.to_string(),
        role: role.to_string(),
        actions: vec!["kms:Decrypt".into()],
        via_service: None,
        verdict: crate::access::VerdictKind::Unverified,
        rests_on: Vec::new(),
        reason: Some(format!(
            "{why}: the key it needs cannot be checked; deploy it from S3 (ModelDataUrl / ModelDataSource) or re-key it by hand"
        )),
        add: None,
        accepted: Vec::new(),
        not_evaluated: crate::access::NOT_EVALUATED.to_string(),
    }
}

pub fn s3_service(region: &str) -> String {
    format!("s3.{region}.amazonaws.com")
}

pub fn sagemaker_service(region: &str) -> String {
    format!("sagemaker.{region}.amazonaws.com")
}

/// An execution role reading model artifacts through S3.
pub fn artifact_reader(role: &str, region: &str) -> Usage {
    Usage::principal(role, &["kms:Decrypt"], Some(s3_service(region)))
}

/// An execution role writing data capture or async output through S3 (and reading it back).
pub fn output_writer(role: &str, region: &str) -> Usage {
    Usage::principal(
        role,
        &["kms:Decrypt", "kms:GenerateDataKey"],
        Some(s3_service(region)),
    )
}

/// rekey creating an endpoint config and updating the endpoint onto a volume key: SageMaker
/// describes the key and creates grants for the endpoint's instances under the caller.
pub fn endpoint_deployer(caller: &str, region: &str) -> Usage {
    let mut u = Usage::principal(
        caller,
        &[
            "kms:CreateGrant",
            "kms:DescribeKey",
            "kms:Decrypt",
            "kms:GenerateDataKey",
        ],
        Some(sagemaker_service(region)),
    );
    u.grant_for_resource = true;
    u
}

/// The blocked verdicts among `verdicts`, one line each; none: all allowed.
pub fn blocking(verdicts: &[Verdict]) -> Option<String> {
    let lines: Vec<String> = verdicts
        .iter()
        .filter(|v| !v.allowed())
        .map(Verdict::summary)
        .collect();
    (!lines.is_empty()).then(|| lines.join(" | "))
}

/// A planned verdict that is worse now, for apply's refusal.
pub fn worse(planned: &Verdict, now: &Verdict) -> Option<String> {
    (planned.allowed() && !now.allowed()).then(|| {
        format!(
            "{} may no longer use {} ({}): planned {}, now {}{}",
            now.principal,
            now.key_arn,
            now.role,
            planned.verdict.as_str(),
            now.verdict.as_str(),
            now.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )
    })
}

/// The verdicts of the campaign's `consumers:` on the team keys pinned in `account`.
pub async fn consumer_verdicts<A: AccessRead>(
    campaign: &crate::campaign::LoadedCampaign,
    account: &str,
    aws: &A,
    pinned: &crate::inventory::PinnedKeys,
) -> Result<Vec<Verdict>, RekeyError> {
    let region = campaign
        .spec
        .aws
        .as_ref()
        .map(|a| a.region.clone())
        .unwrap_or_default();
    let mut cache = AccessCache::new(aws, campaign.spec.preflight.accept_unverified.clone());
    let mut out = Vec::new();
    for c in &campaign.spec.consumers {
        let actions: Vec<&str> = if c.actions.is_empty() {
            vec!["kms:Decrypt", "kms:GenerateDataKey"]
        } else {
            c.actions.iter().map(String::as_str).collect()
        };
        let mut usage = Usage::principal(&c.principal, &actions, c.via.service(&region));
        // Grants made through SageMaker are for an AWS resource (as apply re-reads it).
        usage.grant_for_resource = c.via == crate::campaign::ConsumerVia::Sagemaker
            && actions
                .iter()
                .any(|a| a.eq_ignore_ascii_case("kms:CreateGrant"));
        for k in &c.keys {
            let Some(p) = pinned.get(&crate::inventory::pin_id(k, account)) else {
                continue;
            };
            let role = format!("consumer of team key {k} (campaign consumers:)");
            out.push(cache.verdict(&usage, &p.arn, &role).await?);
        }
    }
    Ok(out)
}

/// The Cloud KMS role the Cloud Storage service agent needs on a bucket's default key.
pub const GCS_KEY_ROLE: &str = "roles/cloudkms.cryptoKeyEncrypterDecrypter";

/// A Cloud KMS key's location (`projects/P/locations/L/...`).
pub fn gcp_key_location(name: &str) -> Option<&str> {
    name.split('/').nth(3)
}

/// Whether a bucket in `bucket_location` may use a key in `key_location`: Cloud Storage needs
/// the key in the bucket's own location (a multi- or dual-region name, lower case, for those).
pub fn gcs_location_fits(bucket_location: &str, key_location: &str) -> bool {
    bucket_location.eq_ignore_ascii_case(key_location)
}

/// The Cloud KMS preflight: each GCP team key exists, its primary version is ENABLED, and the
/// project's Cloud Storage service agent holds `roles/cloudkms.cryptoKeyEncrypterDecrypter` on
/// it (or its key ring), unconditionally. Sets each pinned key's state. A key that fails
/// gets a verdict that is not `allowed`, which blocks what would move onto it.
pub async fn gcp_key_verdicts(
    campaign: &crate::campaign::LoadedCampaign,
    gcs: &crate::providers::gcs::GcsClient,
    pinned: &mut crate::inventory::PinnedKeys,
) -> Result<Vec<Verdict>, RekeyError> {
    gcp_key_verdicts_with(&campaign.spec.preflight.accept_unverified, gcs, pinned).await
}

/// [`gcp_key_verdicts`] under an acceptance (apply re-checks with the plan's).
pub async fn gcp_key_verdicts_with(
    accept: &Acceptance,
    gcs: &crate::providers::gcs::GcsClient,
    pinned: &mut crate::inventory::PinnedKeys,
) -> Result<Vec<Verdict>, RekeyError> {
    use crate::access::VerdictKind;
    use crate::error::ProviderError;
    let mut out = Vec::new();
    let mut agent: Option<String> = None;
    for (id, key) in pinned.iter_mut() {
        if !crate::inventory::split_pin(id).1.starts_with("gcp:") {
            continue;
        }
        let name = key.arn.clone();
        if agent.is_none() {
            agent = Some(format!("serviceAccount:{}", gcs.service_agent().await?));
        }
        let member = agent.clone().unwrap_or_default();
        let parts: Vec<&str> = name.split('/').collect();
        let add = format!(
            "gcloud kms keys add-iam-policy-binding {} --keyring {} --location {} --project {} --member {member} --role {GCS_KEY_ROLE}",
            parts.get(7).unwrap_or(&""),
            parts.get(5).unwrap_or(&""),
            parts.get(3).unwrap_or(&""),
            parts.get(1).unwrap_or(&""),
        );
        let mut v = Verdict {
            principal: member.clone(),
            key_arn: name.clone(),
            role: format!(
                "Cloud Storage service agent of project {}, encrypting and decrypting objects under the key",
                gcs.project
            ),
            actions: vec![
                "cloudkms.cryptoKeyVersions.useToEncrypt".into(),
                "cloudkms.cryptoKeyVersions.useToDecrypt".into(),
            ],
            via_service: None,
            verdict: VerdictKind::NotAllowed,
            rests_on: Vec::new(),
            reason: None,
            add: None,
            accepted: Vec::new(),
            not_evaluated: "IAM grants on the project or folder, deny policies and organization policies were not evaluated".into(),
        };
        let facts = match gcs.crypto_key(&name).await {
            Ok(f) => Some(f),
            Err(ProviderError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let Some(facts) = facts else {
            key.state = "NOT_FOUND".into();
            v.reason = Some(format!("Cloud KMS key {name} does not exist"));
            out.push(v);
            continue;
        };
        let state = facts["primary"]["state"].as_str().unwrap_or("NO_PRIMARY");
        key.state = state.to_string();
        let purpose = facts["purpose"].as_str().unwrap_or("");
        if purpose != "ENCRYPT_DECRYPT" || state != "ENABLED" {
            v.reason = Some(format!(
                "Cloud KMS key {name}: purpose {purpose}, primary version {state}: Cloud Storage needs a symmetric ENCRYPT_DECRYPT key with an ENABLED primary version"
            ));
            out.push(v);
            continue;
        }
        let ring = name
            .find("/cryptoKeys/")
            .map(|i| name[..i].to_string())
            .unwrap_or_default();
        let mut conditional = Vec::new();
        for resource in [name.as_str(), ring.as_str()] {
            let policy = gcs.kms_iam_policy(resource).await?;
            for b in policy["bindings"].as_array().into_iter().flatten() {
                let role = b["role"].as_str().unwrap_or("");
                let has = b["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m.as_str() == Some(member.as_str()));
                if role != GCS_KEY_ROLE || !has {
                    continue;
                }
                let on = format!("binding {GCS_KEY_ROLE} for {member} on {resource}");
                match b.get("condition").filter(|c| !c.is_null()) {
                    None => v.rests_on.push(on),
                    Some(c) => conditional.push(format!(
                        "{on} has a condition ({}), which rekey does not evaluate",
                        c["expression"].as_str().unwrap_or("?")
                    )),
                }
            }
        }
        if !v.rests_on.is_empty() {
            v.verdict = VerdictKind::Allowed;
        } else if !conditional.is_empty() {
            if accept.principals.contains(&member) {
                v.verdict = VerdictKind::Allowed;
                v.accepted = vec![format!("principal {member} (preflight.accept_unverified)")];
                v.rests_on = conditional;
            } else {
                v.verdict = VerdictKind::Unverified;
                v.reason = Some(format!(
                    "{}; accept the principal under preflight.accept_unverified.principals, or bind the role without a condition",
                    conditional.join("; ")
                ));
                v.rests_on = conditional;
                v.add = Some(add);
            }
        } else {
            v.reason = Some(format!(
                "no binding of {GCS_KEY_ROLE} for {member} on the key or its key ring"
            ));
            v.add = Some(add);
        }
        out.push(v);
    }
    Ok(out)
}
