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
    u.source_arn = v.source_arn.clone();
    u.source_account = v.source_account.clone();
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
        source_arn: None,
        source_account: None,
        verdict: crate::access::VerdictKind::Unverified,
        rests_on: Vec::new(),
        reason: Some(why),
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
    let mut cache = AccessCache::new(aws, campaign.spec.preflight.accept_unverified.clone());
    let mut out = Vec::new();
    for (usage, key_arn, role) in consumer_usages(campaign, account, pinned) {
        out.push(cache.verdict(&usage, &key_arn, &role).await?);
    }
    Ok(out)
}

/// What a consumer does with its keys: its actions (default `kms:Decrypt`,
/// `kms:GenerateDataKey`) through the service it names.
pub fn consumer_usage(c: &crate::campaign::Consumer, region: &str) -> Usage {
    let actions: Vec<&str> = if c.actions.is_empty() {
        vec!["kms:Decrypt", "kms:GenerateDataKey"]
    } else {
        c.actions.iter().map(String::as_str).collect()
    };
    let mut usage = Usage::principal(&c.principal, &actions, c.via.service(region));
    // Grants made through SageMaker are for an AWS resource (as apply re-reads it).
    usage.grant_for_resource = c.via == crate::campaign::ConsumerVia::Sagemaker
        && actions
            .iter()
            .any(|a| a.eq_ignore_ascii_case("kms:CreateGrant"));
    usage
}

/// What the campaign's `consumers:` do with the team keys of an account: (usage, key ARN,
/// role), one per consumer and key pinned there.
pub fn consumer_usages(
    campaign: &crate::campaign::LoadedCampaign,
    account: &str,
    pinned: &crate::inventory::PinnedKeys,
) -> Vec<(Usage, String, String)> {
    let region = campaign.region().to_string();
    let mut out = Vec::new();
    for c in &campaign.spec.consumers {
        let usage = consumer_usage(c, &region);
        for k in &c.keys {
            let Some(p) = pinned.get(&crate::inventory::pin_id(k, account)) else {
                continue;
            };
            let role = format!("consumer of team key {k} (campaign consumers:)");
            out.push((usage.clone(), p.arn.clone(), role));
        }
    }
    out
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
            source_arn: None,
            source_account: None,
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

/// Who a bucket lets read or write its objects, from its policy's Allow statements and its
/// replication role, with where each comes from. `*` and principals rekey cannot evaluate come
/// back as `unseen` (principal, source, why); CloudFront origin access identities as `oai`
/// (source). Access point policies and the account's CloudFront origins count as grants too.
#[derive(Debug, Default)]
pub struct BucketGraph {
    pub users: Vec<(Usage, String)>,
    pub unseen: Vec<(String, String, String)>,
    pub oai: Vec<String>,
    /// CloudFront origins that read the bucket anonymously (no OAC, no OAI; or its website
    /// endpoint): anonymous requests cannot read SSE-KMS objects.
    pub anonymous: Vec<String>,
}

/// Whether a principal entry is a CloudFront origin access identity (S3 reports an OAI named
/// by its canonical id in this ARN form).
pub fn is_oai(entry: &str) -> bool {
    entry.contains("CloudFront Origin Access Identity")
}

/// S3 actions that read object data (under SSE-KMS they need kms:Decrypt).
pub const READ_ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectVersionForReplication",
    "s3:GetObjectTorrent",
    "s3:GetObjectVersionTorrent",
    "s3:RestoreObject",
];

/// S3 actions that write object data (under SSE-KMS they need kms:GenerateDataKey).
pub const WRITE_ACTIONS: &[&str] = &["s3:PutObject", "s3:ReplicateObject"];

/// Whether apply and verify can evaluate a planned verdict again: principals rekey could not
/// evaluate at all (`*`, NotPrincipal, canonical users), accepted by the campaign, are not.
pub fn rechecked(v: &Verdict) -> bool {
    v.principal.starts_with("arn:") || v.principal.ends_with(".amazonaws.com")
}

pub fn bucket_graph(
    bucket: &str,
    owner_account: &str,
    region: &str,
    s: &crate::model::Surroundings,
) -> BucketGraph {
    let mut g = BucketGraph::default();
    let mut ctx = PolicyContext {
        owner_account,
        region,
        access_point_arns: s.access_points.iter().map(|a| a.arn.clone()).collect(),
        graph: &mut g,
    };
    if let Some(text) = &s.policy {
        ctx.readers_of(text, &format!("bucket policy of s3://{bucket}"), true);
    }
    for ap in &s.access_points {
        if let Some(text) = &ap.policy {
            ctx.readers_of(
                text,
                &format!("policy of access point {} ({})", ap.name, ap.arn),
                false,
            );
        }
    }
    for o in &s.origins {
        let source = format!(
            "CloudFront distribution {} (origin {:?}, {}{})",
            o.distribution, o.origin, o.domain, o.origin_path
        );
        if o.unattributed {
            g.unseen.push((
                format!("(CloudFront origin {} of {})", o.domain, o.distribution),
                source,
                "an S3 origin rekey cannot tie to one bucket (an Object Lambda access point, or a path-style endpoint without a bucket): it may read this bucket; accept it by this name once checked".into(),
            ));
            continue;
        }
        let signing = o.signing.as_deref().unwrap_or("").to_ascii_lowercase();
        let signing = signing.as_str();
        if o.oac.is_some() && !matches!(signing, "always" | "never" | "no-override") {
            g.unseen.push((
                format!("(origin access control {} of {})", o.oac.as_deref().unwrap_or(""), o.distribution),
                source,
                format!("its origin access control's SigningBehavior is {signing:?}, which rekey does not know: who reads through it cannot be told"),
            ));
            continue;
        }
        if o.oac.is_some() && signing == "no-override" {
            // Viewers that send an Authorization header reach S3 as themselves.
            g.unseen.push((
                format!("(viewers of {})", o.distribution),
                source.clone(),
                "its origin access control does not override a viewer's Authorization header (no-override): viewers signing their own requests read as principals rekey cannot list; declare them under consumers:, or accept".into(),
            ));
        }
        if o.oac.is_some() && signing == "never" {
            g.anonymous.push(format!(
                "{source} through an origin access control that never signs"
            ));
        } else if let Some(oac) = &o.oac {
            // CloudFront signs as its service principal, for this distribution.
            let account = o
                .distribution
                .split(':')
                .nth(4)
                .filter(|a| !a.is_empty())
                .unwrap_or(owner_account);
            let mut u = Usage::principal("cloudfront.amazonaws.com", &["kms:Decrypt"], None);
            u.source_arn = Some(o.distribution.clone());
            u.source_account = Some(account.to_string());
            add_user(
                &mut g,
                u,
                format!("{source} through origin access control {oac}"),
            );
        } else if let Some(oai) = &o.oai {
            g.oai.push(format!("{source} through {oai}"));
        } else {
            g.anonymous.push(format!(
                "{source}{}",
                if o.website {
                    ", the bucket's website endpoint"
                } else {
                    " without origin access control"
                }
            ));
        }
    }
    if let Some(r) = &s.replication {
        if r.rules.iter().any(|x| x.enabled) {
            add_user(
                &mut g,
                Usage::principal(&r.role, &["kms:Decrypt"], Some(s3_service(region))),
                format!("replication role of s3://{bucket}"),
            );
        }
    }
    g
}

/// A user of the bucket, once: the same usage from several grants keeps every source.
fn add_user(g: &mut BucketGraph, usage: Usage, source: String) {
    match g.users.iter_mut().find(|(u, _)| *u == usage) {
        Some((_, sources)) => {
            if !sources.split("; ").any(|x| x == source) {
                sources.push_str("; ");
                sources.push_str(&source);
            }
        }
        None => g.users.push((usage, source)),
    }
}

/// Values of a condition key of a statement under a plain equality operator (empty: the key
/// is not there); None: the key appears under another operator (negated, set, wildcard), so
/// what it admits cannot be listed.
fn plain_condition(st: &serde_json::Value, key: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for (op, b) in st["Condition"].as_object().into_iter().flatten() {
        for (k, v) in b.as_object().into_iter().flatten() {
            if !k.eq_ignore_ascii_case(key) {
                continue;
            }
            let values = crate::access::strings(v);
            // ARN operators take `*` and `?` as wildcards, ArnEquals included.
            let plain = op == "StringEquals"
                || (matches!(op.as_str(), "StringLike" | "ArnLike" | "ArnEquals")
                    && values.iter().all(|x| !x.contains(['*', '?'])));
            if !plain {
                return None;
            }
            out.extend(values);
        }
    }
    Some(out)
}

/// Reading the Allow statements of a bucket or access point policy into a graph.
struct PolicyContext<'a> {
    owner_account: &'a str,
    region: &'a str,
    /// ARNs of the access points whose policies were read.
    access_point_arns: Vec<String>,
    graph: &'a mut BucketGraph,
}

impl PolicyContext<'_> {
    /// The principals `text` (a policy document) lets read or write objects. `bucket_policy`:
    /// a `*` statement that only delegates to the owner's access points adds nobody (their
    /// policies are read for who they let in).
    fn readers_of(&mut self, text: &str, label: &str, bucket_policy: bool) {
        use crate::access::{strings, wildcard};
        let doc: serde_json::Value = match serde_json::from_str(text) {
            Ok(d) => d,
            Err(e) => {
                self.graph.unseen.push((
                    format!("({label})"),
                    label.to_string(),
                    format!("the {label} is not readable JSON ({e}): its readers cannot be listed"),
                ));
                return;
            }
        };
        for (i, st) in crate::access::statement_list(&doc).into_iter().enumerate() {
            if st["Effect"].as_str() != Some("Allow") {
                continue;
            }
            let sid = st["Sid"]
                .as_str()
                .map_or_else(|| format!("#{}", i + 1), |s| format!("{s:?}"));
            let source = format!("{label}, statement {sid}");
            let acts = if st.get("NotAction").is_some() {
                vec!["*".to_string()]
            } else {
                strings(&st["Action"])
            };
            // Every action that reads object data (SSE-KMS: kms:Decrypt) or writes it.
            let reads = acts
                .iter()
                .any(|a| READ_ACTIONS.iter().any(|r| wildcard(a, r, true)));
            let writes = acts
                .iter()
                .any(|a| WRITE_ACTIONS.iter().any(|w| wildcard(a, w, true)));
            if !reads && !writes {
                continue;
            }
            let mut actions = vec!["kms:Decrypt"];
            if writes {
                actions.push("kms:GenerateDataKey");
            }
            let mut entries: Vec<(String, bool)> = Vec::new(); // (entry, service)
            match &st["Principal"] {
                serde_json::Value::String(p) => entries.push((p.clone(), false)),
                serde_json::Value::Object(m) => {
                    for (kind, v) in m {
                        for e in strings(v) {
                            match kind.as_str() {
                                "Service" => entries.push((e, true)),
                                "CanonicalUser" => entries.push((format!("canonical:{e}"), false)),
                                _ => entries.push((e, false)),
                            }
                        }
                    }
                }
                _ => {}
            }
            if st.get("NotPrincipal").is_some() {
                self.graph.unseen.push((
                    "NotPrincipal".into(),
                    source.clone(),
                    "an Allow with NotPrincipal lets almost anyone in: rekey cannot list them"
                        .into(),
                ));
            }
            for (e, service) in entries {
                self.entry(st, &e, service, &actions, &source, bucket_policy);
            }
        }
    }

    fn entry(
        &mut self,
        st: &serde_json::Value,
        e: &str,
        service: bool,
        actions: &[&str],
        source: &str,
        bucket_policy: bool,
    ) {
        let owner_account = self.owner_account;
        let g = &mut *self.graph;
        if is_oai(e) {
            g.oai.push(source.to_string());
            return;
        }
        if let Some(id) = e.strip_prefix("canonical:") {
            g.unseen.push((
                e.to_string(),
                source.to_string(),
                format!("canonical user {id} (another account, or a CloudFront origin access identity): rekey cannot evaluate it; name it under consumers: by its role, or accept it"),
            ));
            return;
        }
        if service {
            // An OAC statement names its distributions in aws:SourceArn: each one is a reader
            // of its own (the key policy must allow each).
            let (Some(arns), Some(accounts)) = (
                plain_condition(st, "aws:SourceArn"),
                plain_condition(st, "aws:SourceAccount"),
            ) else {
                // Named for this statement (not the bare service, which apply would evaluate
                // again without a source), so that accepting it accepts only it.
                let name = format!("{e} under a negated or wildcard source condition ({source})");
                g.unseen.push((
                    name.clone(),
                    source.to_string(),
                    format!("{e} is let in under a negated or wildcard aws:SourceArn / aws:SourceAccount condition: the resources it admits cannot be listed; narrow the condition, or accept `{name}` once checked"),
                ));
                return;
            };
            if arns.is_empty() && accounts.is_empty() {
                let name = format!("{e} without a source condition ({source})");
                g.unseen.push((
                    name.clone(),
                    source.to_string(),
                    format!("{e} is let in without an aws:SourceArn or aws:SourceAccount condition: resources of any account (any distribution, for CloudFront) read through it, and rekey cannot list them; add the condition, or accept `{name}` once checked"),
                ));
                return;
            }
            // One reader per distribution (its account from its ARN), else one per source
            // account named.
            let mut readers: Vec<(Option<String>, String)> = arns
                .iter()
                .map(|arn| {
                    let account = arn
                        .split(':')
                        .nth(4)
                        .filter(|a| !a.is_empty())
                        .map(str::to_string)
                        .or_else(|| accounts.first().cloned())
                        .unwrap_or_else(|| owner_account.to_string());
                    (Some(arn.clone()), account)
                })
                .collect();
            if readers.is_empty() {
                readers = accounts.iter().map(|a| (None, a.clone())).collect();
            }
            for (arn, account) in readers {
                let mut u = Usage::principal(e, actions, None);
                u.source_arn = arn;
                u.source_account = Some(account);
                add_user(g, u, source.to_string());
            }
            return;
        }
        if e == "*" {
            if bucket_policy {
                // The usual delegation of access control to access points: `*` under
                // s3:DataAccessPointAccount / s3:DataAccessPointArn. The owner's access
                // points are read; another account's are not visible.
                // Delegated only to access points rekey read: the owner's (regional and
                // Multi-Region ones are read) by account, or named by ARN.
                let accounts = plain_condition(st, "s3:DataAccessPointAccount");
                let arns = plain_condition(st, "s3:DataAccessPointArn");
                if let (Some(accounts), Some(arns)) = (accounts, arns) {
                    if !accounts.is_empty() || !arns.is_empty() {
                        let mut unread: Vec<String> = accounts
                            .iter()
                            .filter(|a| *a != owner_account)
                            .map(|a| format!("access points of account {a}"))
                            .collect();
                        unread.extend(
                            arns.iter()
                                .filter(|a| !self.access_point_arns.contains(a))
                                .map(|a| format!("access point {a}")),
                        );
                        if unread.is_empty() {
                            return;
                        }
                        g.unseen.push((
                            "*".into(),
                            source.to_string(),
                            format!("the statement delegates to {}, whose policies rekey did not read: declare their readers under consumers:", unread.join(", ")),
                        ));
                        return;
                    }
                }
            }
            g.unseen.push((
                "*".into(),
                source.to_string(),
                "the statement lets any principal in (Principal \"*\"): rekey cannot list who reads through it; declare them under consumers:".into(),
            ));
            return;
        }
        let account = if e.len() == 12 && e.chars().all(|c| c.is_ascii_digit()) {
            e.to_string()
        } else {
            e.split(':').nth(4).unwrap_or_default().to_string()
        };
        let root = e == account || e.ends_with(":root");
        if root && account == owner_account {
            // The owner's own IAM decides for its principals: they are `consumers:`.
            return;
        }
        let principal = if root {
            format!("arn:aws:iam::{account}:root")
        } else {
            e.to_string()
        };
        add_user(
            g,
            Usage::principal(&principal, actions, Some(s3_service(self.region))),
            source.to_string(),
        );
    }
}

/// The verdicts of a bucket's graph for each of `keys` (the team keys objects may move to).
pub async fn bucket_verdicts<A: AccessRead>(
    cache: &mut AccessCache<'_, A>,
    graph: &BucketGraph,
    keys: &[String],
) -> Result<Vec<Verdict>, RekeyError> {
    let mut out = Vec::new();
    for key in keys {
        for (usage, source) in &graph.users {
            let role = format!(
                "{source} ({})",
                if usage.actions.len() > 1 {
                    "reads and writes"
                } else {
                    "reads"
                }
            );
            out.push(cache.verdict(usage, key, &role).await?);
        }
        for (principal, source, why) in &graph.unseen {
            let mut v = unseen(principal, key, source, why.clone());
            if cache.accept.principals.contains(principal) {
                v.verdict = crate::access::VerdictKind::Allowed;
                v.accepted = vec![format!(
                    "principal {principal} (preflight.accept_unverified)"
                )];
                v.reason = None;
            }
            out.push(v);
        }
    }
    Ok(out)
}

/// A hazard around a bucket: what breaks, and the exact change that avoids it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HazardFound {
    pub hazard: crate::campaign::Hazard,
    pub detail: String,
    pub fix: String,
}

/// The hazards of moving `bucket`'s objects onto `key_arn` (DESIGN §5, issue 10).
pub fn bucket_hazards(
    bucket: &str,
    s: &crate::model::Surroundings,
    key_arn: &str,
) -> Vec<HazardFound> {
    use crate::access::{eval_operator, strings, wildcard};
    use crate::campaign::Hazard;
    let mut out = Vec::new();
    if let Some(r) = &s.replication {
        for rule in r.rules.iter().filter(|x| x.enabled) {
            if rule.sse_kms_opt_in && rule.replica_kms_key.is_some() {
                continue;
            }
            let fix = serde_json::json!({
                "ID": rule.id,
                "Status": "Enabled",
                "Filter": { "Prefix": rule.prefix },
                "SourceSelectionCriteria": { "SseKmsEncryptedObjects": { "Status": "Enabled" } },
                "Destination": {
                    "Bucket": rule.destination_bucket,
                    "EncryptionConfiguration": { "ReplicaKmsKeyID": "<a key ARN in the destination bucket's region>" }
                }
            });
            out.push(HazardFound {
                hazard: Hazard::ReplicationGap,
                detail: format!(
                    "replication rule {:?} of s3://{bucket} does not replicate SSE-KMS objects ({}): once the bucket is on {key_arn}, new writes and the re-encrypted objects stop reaching {}",
                    rule.id,
                    if rule.sse_kms_opt_in { "no ReplicaKmsKeyID" } else { "SourceSelectionCriteria.SseKmsEncryptedObjects is not Enabled" },
                    rule.destination_bucket
                ),
                fix: format!(
                    "replace the rule with {fix} and let the replication role {} use kms:Decrypt on {key_arn} and kms:Encrypt on the replica key",
                    r.role
                ),
            });
        }
    }
    if let Some(text) = &s.policy {
        let doc: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        if doc.is_null() {
            out.push(HazardFound {
                hazard: Hazard::EncryptionPolicy,
                detail: format!("the bucket policy of s3://{bucket} is not readable JSON: whether it refuses SSE-KMS writes cannot be told"),
                fix: "read the policy (aws s3api get-bucket-policy) and plan again".into(),
            });
        }
        let list = crate::access::statement_list(&doc);
        let ctx = |k: &str| match k.to_ascii_lowercase().as_str() {
            "s3:x-amz-server-side-encryption" => Some("aws:kms".to_string()),
            "s3:x-amz-server-side-encryption-aws-kms-key-id" => Some(key_arn.to_string()),
            _ => None,
        };
        for (i, st) in list.into_iter().enumerate() {
            if st["Effect"].as_str() != Some("Deny") {
                continue;
            }
            let puts = if let Some(not) = st.get("NotAction") {
                !strings(not)
                    .iter()
                    .any(|a| wildcard(a, "s3:PutObject", true))
            } else {
                strings(&st["Action"])
                    .iter()
                    .any(|a| wildcard(a, "s3:PutObject", true))
            };
            let Some(cond) = st["Condition"].as_object() else {
                continue;
            };
            let pins_encryption = cond.values().filter_map(|b| b.as_object()).any(|b| {
                b.keys().any(|k| {
                    k.to_ascii_lowercase()
                        .starts_with("s3:x-amz-server-side-encryption")
                })
            });
            if !puts || !pins_encryption {
                continue;
            }
            // Does the Deny apply to an SSE-KMS write with the team key? Undecidable: yes.
            let applies = cond.iter().all(|(op, b)| {
                b.as_object().is_none_or(|b| {
                    b.iter().all(|(k, v)| {
                        // A key outside the modelled request (aws:PrincipalOrgID, ...): it may
                        // well be in the copies' context, so the Deny may apply.
                        match ctx(k) {
                            Some(value) => {
                                eval_operator(op, Some(&value), &strings(v)).unwrap_or(true)
                            }
                            None => true,
                        }
                    })
                })
            });
            if !applies {
                continue;
            }
            let sid = st["Sid"]
                .as_str()
                .map_or_else(|| format!("#{}", i + 1), |s| format!("{s:?}"));
            let mut fixed = st.clone();
            fixed["Condition"] = serde_json::json!({
                "StringNotEquals": { "s3:x-amz-server-side-encryption": "aws:kms" }
            });
            out.push(HazardFound {
                hazard: Hazard::EncryptionPolicy,
                detail: format!(
                    "bucket policy statement {sid} of s3://{bucket} denies PutObject with SSE-KMS under {key_arn}: every re-encrypting copy (and every new write once the default changes) would be refused"
                ),
                fix: format!("replace the statement with {fixed}"),
            });
        }
    }
    // Server access logs (S3 user guide, "Enabling Amazon S3 server access logging": a
    // target bucket's default encryption may be SSE-S3 only, not SSE-KMS).
    if let Some(text) = &s.policy {
        let doc: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        for (i, st) in crate::access::statement_list(&doc).into_iter().enumerate() {
            let puts = match st.get("NotAction") {
                Some(not) => !strings(not)
                    .iter()
                    .any(|a| wildcard(a, "s3:PutObject", true)),
                None => strings(&st["Action"])
                    .iter()
                    .any(|a| wildcard(a, "s3:PutObject", true)),
            };
            let logs = st["Effect"].as_str() == Some("Allow")
                && strings(&st["Principal"]["Service"])
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case("logging.s3.amazonaws.com"))
                && puts;
            if !logs {
                continue;
            }
            let sid = st["Sid"]
                .as_str()
                .map_or_else(|| format!("#{}", i + 1), |s| format!("{s:?}"));
            out.push(HazardFound {
                hazard: Hazard::LogTarget,
                detail: format!(
                    "bucket policy statement {sid} of s3://{bucket} lets S3 server access logging write: S3 delivers access logs only to a bucket whose default encryption is SSE-S3, so once its default is {key_arn}, logging into it stops"
                ),
                fix: "leave this bucket out of the campaign (its objects are logs), or point the source buckets' logging (PutBucketLogging TargetBucket) at a bucket that stays on SSE-S3 first".into(),
            });
        }
    }
    let graph = bucket_graph(bucket, "", "", s);
    // The key policy statement an OAC reader needs: for the distribution named in `source`
    // when there is one.
    let oac_statement = |source: &str| {
        let arn = s
            .origins
            .iter()
            .find(|o| source.contains(&o.distribution))
            .map_or("arn:aws:cloudfront::<account>:distribution/<id>", |o| {
                o.distribution.as_str()
            });
        serde_json::json!({
            "Sid": "AllowCloudFrontOAC",
            "Effect": "Allow",
            "Principal": { "Service": "cloudfront.amazonaws.com" },
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": { "StringEquals": { "aws:SourceArn": arn } }
        })
    };
    for source in &graph.oai {
        out.push(HazardFound {
            hazard: Hazard::OaiOrigin,
            detail: format!(
                "{source} lets a CloudFront origin access identity read s3://{bucket}: an OAI cannot read SSE-KMS objects"
            ),
            fix: format!(
                "move the distribution to origin access control (OAC), allow cloudfront.amazonaws.com in the bucket policy, and add to the key policy of {key_arn}: {}",
                oac_statement(source)
            ),
        });
    }
    for source in &graph.anonymous {
        out.push(HazardFound {
            hazard: Hazard::PublicOrigin,
            detail: format!(
                "{source} reads s3://{bucket} anonymously: anonymous requests cannot read SSE-KMS objects"
            ),
            fix: format!(
                "give the origin an origin access control (OAC) on the bucket's REST endpoint, allow cloudfront.amazonaws.com in the bucket policy for the distribution, and add to the key policy of {key_arn}: {}",
                oac_statement(source)
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests;

/// The principal S3 Batch Operations assumes a job's role as.
pub const BATCH_SERVICE: &str = "batchoperations.s3.amazonaws.com";

/// Whether a trust policy lets `service` assume the role (an Allow of `sts:AssumeRole` to
/// that service principal, not overridden by a Deny naming it).
pub fn trusts_service(trust: &serde_json::Value, service: &str) -> bool {
    use crate::access::{statement_list, strings, wildcard};
    let names = |st: &serde_json::Value| {
        let p = &st["Principal"];
        p.as_str() == Some("*")
            || strings(&p["Service"]).iter().any(|s| s == service)
            || strings(&p["AWS"]).iter().any(|s| s == "*")
    };
    let assumes = |st: &serde_json::Value| {
        strings(&st["Action"])
            .iter()
            .any(|a| wildcard(a, "sts:AssumeRole", true))
    };
    let mut allowed = false;
    for st in statement_list(trust) {
        if !names(st) || !assumes(st) {
            continue;
        }
        match st["Effect"].as_str() {
            Some("Deny") => return false,
            // A condition rekey does not evaluate here is not taken as granting.
            Some("Allow") if st.get("Condition").is_none() => allowed = true,
            _ => {}
        }
    }
    allowed
}

/// Before any batch job: the job role exists, trusts S3 Batch Operations, its IAM policies
/// allow each S3 request its jobs make (`s3_needs`: action, resource ARN), and it may use each
/// key its jobs move objects onto (the same fail-closed evaluation as endpoint roles).
pub async fn batch_role<A: AccessRead>(
    aws: &A,
    accept: Acceptance,
    role_arn: &str,
    keys: &[String],
    s3_needs: &[(&str, String)],
) -> Result<(), RekeyError> {
    use crate::providers::iam::Trust;
    let fix = |what: &str| {
        format!("{what}; or set aws.s3.batch.role_arn to a role that does (then plan again)")
    };
    match aws.role_trust(role_arn).await? {
        Trust::Missing => {
            return Err(RekeyError::usage(
                format!("the batch job role {role_arn} does not exist: no job was created"),
                fix("create it, trusting batchoperations.s3.amazonaws.com"),
            ))
        }
        Trust::Unseen(why) => {
            return Err(RekeyError::usage(
                format!("the batch job role {role_arn} could not be checked ({why}): no job was created"),
                fix("let rekey read it (iam:GetRole), or use a role in rekey's account"),
            ))
        }
        Trust::Policy(doc) if !trusts_service(&doc, BATCH_SERVICE) => {
            return Err(RekeyError::usage(
                format!("the batch job role {role_arn} does not let {BATCH_SERVICE} assume it: its jobs would fail"),
                fix(&format!("add to its trust policy: {{\"Effect\": \"Allow\", \"Principal\": {{\"Service\": \"{BATCH_SERVICE}\"}}, \"Action\": \"sts:AssumeRole\"}}")),
            ))
        }
        Trust::Policy(_) => {}
    }
    // Its S3 requests (AWS S3 user guide, "Granting permissions for Batch Operations"; the
    // S3 API reference for UpdateObjectEncryption: s3:PutObject and s3:UpdateObjectEncryption).
    let identity = match aws.identity(role_arn).await? {
        crate::access::IdentityView::Seen(i) => i,
        crate::access::IdentityView::Unseen(why) => {
            return Err(RekeyError::usage(
                format!("the batch job role {role_arn}'s IAM policies could not be read ({why}): no job was created"),
                fix("let rekey read them (iam:GetRolePolicy, iam:ListRolePolicies, iam:ListAttachedRolePolicies, iam:GetPolicyVersion)"),
            ))
        }
    };
    let mut missing = Vec::new();
    let mut statements = Vec::new();
    for (action, resource) in s3_needs {
        if let Err(why) =
            crate::access::identity_allows(&identity, role_arn, action, resource, &accept)
        {
            missing.push(format!("{action} on {resource} ({why})"));
            statements.push(format!(
                "{{\"Effect\": \"Allow\", \"Action\": \"{action}\", \"Resource\": \"{resource}\"}}"
            ));
        }
    }
    if !missing.is_empty() {
        return Err(RekeyError::usage(
            format!(
                "the batch job role {role_arn} may not make every S3 request its jobs make: {}; no job was created",
                missing.join("; ")
            ),
            fix(&format!("allow them (and remove a Deny that applies): {}", statements.join(", "))),
        ));
    }
    let mut cache = AccessCache::new(aws, accept);
    let usage = Usage::principal(role_arn, &["kms:GenerateDataKey", "kms:Decrypt"], None);
    for key in keys {
        let v = cache
            .verdict(&usage, key, "S3 Batch Operations job role")
            .await?;
        if !v.allowed() {
            return Err(RekeyError::usage(
                format!(
                    "the batch job role may not use {key}: {}; no job was created",
                    v.summary()
                ),
                fix(&format!(
                    "allow it{}",
                    v.add
                        .as_deref()
                        .map(|a| format!(": {a}"))
                        .unwrap_or_default()
                )),
            ));
        }
    }
    Ok(())
}

/// Before any Cloud Storage batch job: storage batch operations run only where Storage
/// Intelligence is configured ("Configure Storage Intelligence", Google Cloud's create and
/// manage batch operation jobs page); the project's effective edition must not be NONE.
pub async fn storage_intelligence(
    gcs: &crate::providers::gcs::GcsClient,
) -> Result<(), RekeyError> {
    let edition = gcs.intelligence_edition().await.map_err(|e| {
        RekeyError::usage(
            format!(
                "cannot read the Storage Intelligence configuration of project {}: {e}",
                gcs.project
            ),
            "grant storage.intelligenceConfigs.get on the project, or use the default engine (rewrite)",
        )
    })?;
    if edition == "NONE" || edition.is_empty() {
        return Err(RekeyError::usage(
            format!(
                "Storage Intelligence is not configured for project {} (effective edition {edition}): storage batch operations jobs cannot run there; nothing was started",
                gcs.project
            ),
            "configure Storage Intelligence for the project (gcloud storage intelligence-configs enable --project=PROJECT), or use the default engine (rewrite)",
        ));
    }
    Ok(())
}

/// Before any Cloud Storage batch job: the manifest bucket exists, and each job's bucket still
/// has the default storage class the plan gave its job (a batch rewrite names no class: a
/// changed default would move every object of the job to it).
pub async fn gcs_batch(
    gcs: &crate::providers::gcs::GcsClient,
    manifest_bucket: &str,
    jobs: &[(&str, &str)],
) -> Result<(), RekeyError> {
    use crate::error::ProviderError;
    match gcs.get_bucket(manifest_bucket).await {
        Ok(_) => {}
        Err(ProviderError::NotFound { .. }) => {
            return Err(RekeyError::usage(
                format!("gcp.gcs.batch.manifest_bucket gs://{manifest_bucket} does not exist: nothing was started"),
                "create it, or name one that exists, then plan again",
            ))
        }
        Err(e) => return Err(e.into()),
    }
    let mut seen = std::collections::BTreeSet::new();
    for (bucket, class) in jobs {
        if !seen.insert((*bucket, *class)) {
            continue;
        }
        let now = gcs.get_bucket(bucket).await?;
        if now.storage_class != *class {
            return Err(RekeyError::usage(
                format!(
                    "gs://{bucket}'s default storage class is {} now, {class} when it was planned: its batch job would move every object it rewrites to {}; nothing was started",
                    now.storage_class, now.storage_class
                ),
                "plan again (objects not in the bucket's default class are rewritten by rekey itself)",
            ));
        }
    }
    Ok(())
}
