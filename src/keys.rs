//! `rekey keys`: the team keys a campaign needs, as code. From the campaign and what the
//! inventory reads (the SageMaker artifact graph's execution roles, the campaign's
//! `consumers:`, the Batch Operations job role, rekey's own operators) it derives, per team key
//! and account, a symmetric key with rotation on, its alias and a key policy whose statements
//! are the ones rekey's preflight asks for (`access::statements_for`), so that the keys pass
//! the preflight by construction; and per Cloud KMS key its key ring, rotation period and the
//! `roles/cloudkms.cryptoKeyEncrypterDecrypter` members. Written as Terraform (hcl-rs) or JSON.
//! docs/keys.md.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::access::Usage;
use crate::campaign::{ConsumerVia, LoadedCampaign};
use crate::error::RekeyError;
use crate::inventory::Record;
use crate::model::{KmsKey, Resource};

/// The key administrators' actions (manage, never use).
pub const ADMIN_ACTIONS: &[&str] = &[
    "kms:CancelKeyDeletion",
    "kms:Create*",
    "kms:Delete*",
    "kms:Describe*",
    "kms:Disable*",
    "kms:Enable*",
    "kms:Get*",
    "kms:List*",
    "kms:Put*",
    "kms:Revoke*",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:Update*",
];

/// Sids of the statements rekey writes start with this; others are someone else's.
pub const SID_PREFIX: &str = "Rekey";

/// Everything `rekey keys` writes.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub campaign: String,
    pub aws: Vec<AwsKey>,
    pub gcp: Vec<GcpKey>,
}

/// A team key in an AWS account.
#[derive(Debug, Clone, Serialize)]
pub struct AwsKey {
    pub account: String,
    pub account_id: String,
    pub region: String,
    pub team: String,
    pub alias: String,
    pub rotation_days: u32,
    /// The key the alias names today: Terraform imports it instead of creating one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing: Option<Existing>,
    /// Who uses the key, for what, and why.
    pub users: Vec<KeyUser>,
    /// The key policy: the existing key's own statements kept, then rekey's.
    pub policy: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Existing {
    pub arn: String,
    pub key_id: String,
    /// What the imported key is, which Terraform must not change (a change replaces or
    /// re-enables it): its state, spec and usage.
    pub state: String,
    pub spec: String,
    pub usage: String,
    /// Statements of its current policy that are not rekey's, kept in the emitted policy.
    pub kept_statements: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyUser {
    pub principal: String,
    pub actions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_service: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub grant_for_resource: bool,
    pub why: Vec<String>,
}

impl KeyUser {
    pub fn usage(&self) -> Usage {
        let actions: Vec<&str> = self.actions.iter().map(String::as_str).collect();
        let mut u = Usage::principal(&self.principal, &actions, self.via_service.clone());
        u.grant_for_resource = self.grant_for_resource;
        u
    }
}

/// A team key in Cloud KMS.
#[derive(Debug, Clone, Serialize)]
pub struct GcpKey {
    pub team: String,
    pub name: String,
    pub project: String,
    pub location: String,
    pub key_ring: String,
    pub key: String,
    /// e.g. `31536000s`.
    pub rotation_period: String,
    /// The key exists: Terraform imports it and its key ring.
    pub exists: bool,
    pub members: Vec<GcpMember>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GcpMember {
    pub member: String,
    pub role: String,
    pub why: String,
}

/// What `rekey keys` read in one AWS account.
pub struct AccountFacts {
    pub name: String,
    pub id: String,
    /// rekey's operators (the campaign's, or the caller).
    pub operators: Vec<String>,
    /// Team key → the key its alias names today and that key's policy.
    pub existing: BTreeMap<String, (KmsKey, Value)>,
    /// The account's SageMaker records (endpoints with their models and artifacts).
    pub sagemaker: Vec<Record>,
}

/// What `rekey keys` read of Cloud KMS.
pub struct GcpFacts {
    pub service_agent: String,
    /// Key names that exist.
    pub existing: BTreeSet<String>,
}

/// Derive the model.
pub fn derive(
    c: &LoadedCampaign,
    accounts: &[AccountFacts],
    gcp: Option<&GcpFacts>,
) -> Result<Model, RekeyError> {
    let kp = c.spec.key_policy.clone().ok_or_else(|| {
        RekeyError::usage(
            format!("{} has no key_policy section", c.path.display()),
            "add `key_policy: { admins: [ARN...] }` naming who administers the team keys (docs/keys.md)",
        )
    })?;
    let has_aws_keys = c.spec.keys.values().any(|k| k.aws.is_some());
    if kp.admins.is_empty() && has_aws_keys {
        return Err(RekeyError::usage(
            "key_policy.admins is empty: a key policy without administrators cannot be changed by anyone",
            "name the role or roles that administer the team keys in key_policy.admins",
        ));
    }
    let region = c.region().to_string();
    let mut aws = Vec::new();
    for a in accounts {
        for (team, k) in &c.spec.keys {
            let Some(alias) = &k.aws else { continue };
            let users = users_of(c, a, team, &region, kp.via_service);
            let existing = a.existing.get(team);
            let (kept, ours) = (
                existing
                    .map(|(_, p)| foreign_statements(p))
                    .unwrap_or_default(),
                statements(&kp.admins, &users),
            );
            let policy = serde_json::json!({
                "Version": "2012-10-17",
                "Id": format!("rekey-{team}"),
                "Statement": kept.iter().cloned().chain(ours).collect::<Vec<_>>(),
            });
            aws.push(AwsKey {
                account: a.name.clone(),
                account_id: a.id.clone(),
                region: region.clone(),
                team: team.clone(),
                alias: alias.clone(),
                rotation_days: kp.rotation_days,
                existing: existing.map(|(key, _)| Existing {
                    arn: key.arn.clone(),
                    key_id: key.key_id.clone(),
                    state: key.state.clone(),
                    spec: key.spec.clone(),
                    usage: key.usage.clone(),
                    kept_statements: kept.len(),
                }),
                users,
                policy,
            });
        }
    }
    let mut gcp_keys = Vec::new();
    for (team, k) in &c.spec.keys {
        let Some(name) = &k.gcp else { continue };
        let name = crate::providers::gcs::key_name(name);
        let parts: Vec<&str> = name.split('/').collect();
        if parts.len() != 8 || parts[0] != "projects" || parts[6] != "cryptoKeys" {
            return Err(RekeyError::usage(
                format!("team key {team}: {name} is not a Cloud KMS key name"),
                "use projects/P/locations/L/keyRings/R/cryptoKeys/K",
            ));
        }
        let mut members = Vec::new();
        if let Some(g) = gcp {
            members.push(GcpMember {
                member: format!("serviceAccount:{}", g.service_agent),
                role: crate::preflight::GCS_KEY_ROLE.into(),
                why: format!(
                    "Cloud Storage service agent of project {}: encrypts and decrypts objects",
                    c.spec
                        .gcp
                        .as_ref()
                        .map(|g| g.project.as_str())
                        .unwrap_or("")
                ),
            });
        }
        for m in &kp.gcp_members {
            members.push(GcpMember {
                member: m.clone(),
                role: crate::preflight::GCS_KEY_ROLE.into(),
                why: "key_policy.gcp_members".into(),
            });
        }
        gcp_keys.push(GcpKey {
            team: team.clone(),
            project: parts[1].into(),
            location: parts[3].into(),
            key_ring: parts[5].into(),
            key: parts[7].into(),
            exists: gcp.is_some_and(|g| g.existing.contains(&name)),
            rotation_period: format!("{}s", u64::from(kp.rotation_days) * 86_400),
            name,
            members,
        });
    }
    Ok(Model {
        campaign: c.spec.campaign.clone(),
        aws,
        gcp: gcp_keys,
    })
}

/// Who uses a team key in an account, merged per principal and request context.
fn users_of(
    c: &LoadedCampaign,
    a: &AccountFacts,
    team: &str,
    region: &str,
    via_service: bool,
) -> Vec<KeyUser> {
    use crate::preflight::{artifact_reader, endpoint_deployer, output_writer, s3_service};
    let mut raw: Vec<(Usage, String)> = Vec::new();
    let endpoints = c
        .spec
        .aws
        .as_ref()
        .and_then(|a| a.sagemaker.as_ref())
        .is_some_and(|s| s.endpoints);
    // An endpoint of this account on this key that SageMaker deploys onto it (a volume key
    // that covers storage, or outputs): rekey's operators create grants there, nowhere else.
    let deploys = endpoints
        && a.sagemaker.iter().any(|r| match &r.resource {
            Resource::SagemakerEndpoint(e) if r.team_key.as_deref() == Some(team) => {
                crate::providers::sagemaker::volume_key(&e.variants).coverage
                    != crate::providers::sagemaker::Coverage::NotCovered
                    || e.data_capture
                    || e.async_output
            }
            _ => false,
        });
    // Operators of this account when some are named in it (a multi-account campaign names one
    // per account), else all.
    let own: Vec<&String> = a
        .operators
        .iter()
        .filter(|o| o.split(':').nth(4) == Some(a.id.as_str()))
        .collect();
    let operators: Vec<&String> = if own.is_empty() {
        a.operators.iter().collect()
    } else {
        own
    };
    for op in operators {
        raw.push((
            Usage::principal(
                op,
                &[
                    "kms:DescribeKey",
                    "kms:GetKeyPolicy",
                    "kms:GetKeyRotationStatus",
                    "kms:ListGrants",
                ],
                None,
            ),
            "rekey operator: resolves the key, reads its policy, grants and rotation".into(),
        ));
        raw.push((
            Usage::principal(
                op,
                &["kms:Decrypt", "kms:GenerateDataKey"],
                Some(s3_service(region)),
            ),
            "rekey operator: re-encrypts objects through S3".into(),
        ));
        if deploys {
            raw.push((
                endpoint_deployer(op, region),
                "rekey operator: puts endpoints on the key through SageMaker".into(),
            ));
        }
    }
    for con in c
        .spec
        .consumers
        .iter()
        .filter(|x| x.keys.iter().any(|k| k == team))
    {
        let mut u = crate::preflight::consumer_usage(con, region);
        if con.via != ConsumerVia::S3 && !u.actions.iter().any(|x| x == "kms:DescribeKey") {
            u.actions.push("kms:DescribeKey".into());
        }
        raw.push((u, "consumer (campaign consumers:)".into()));
    }
    for r in &a.sagemaker {
        let Resource::SagemakerEndpoint(e) = &r.resource else {
            continue;
        };
        for m in &e.models {
            for art in m
                .artifacts
                .iter()
                .filter(|x| x.team_key.as_deref() == Some(team))
            {
                raw.push((
                    artifact_reader(&m.execution_role_arn, region),
                    format!("execution role of model {}, reading {}", m.name, art.url),
                ));
            }
        }
        if r.team_key.as_deref() == Some(team) && (e.data_capture || e.async_output) {
            for m in &e.models {
                raw.push((
                    output_writer(&m.execution_role_arn, region),
                    format!(
                        "execution role of endpoint {}, writing data capture / async output",
                        e.name
                    ),
                ));
            }
        }
    }
    if let Some(b) = c
        .s3()
        .and_then(|s| s.batch.as_ref())
        .filter(|_| c.uses_s3_batch())
    {
        // Without kms:ViaService, as rekey's batch preflight evaluates the role.
        raw.push((
            Usage::principal(&b.role_arn, &["kms:Decrypt", "kms:GenerateDataKey"], None),
            "S3 Batch Operations job role: re-encrypts objects".into(),
        ));
    }
    // One user per principal and request context, its actions and reasons merged.
    let mut merged: BTreeMap<(String, Option<String>, bool), KeyUser> = BTreeMap::new();
    for (mut u, why) in raw {
        if !via_service {
            u.via_service = None;
        }
        let e = merged
            .entry((
                u.principal.clone(),
                u.via_service.clone(),
                u.grant_for_resource,
            ))
            .or_insert_with(|| KeyUser {
                principal: u.principal.clone(),
                actions: Vec::new(),
                via_service: u.via_service.clone(),
                grant_for_resource: u.grant_for_resource,
                why: Vec::new(),
            });
        for act in u.actions {
            if !e.actions.contains(&act) {
                e.actions.push(act);
            }
        }
        if !e.why.contains(&why) {
            e.why.push(why);
        }
    }
    let mut users: Vec<KeyUser> = merged.into_values().collect();
    for u in &mut users {
        u.actions.sort();
    }
    users
}

/// The statements of a policy that are not rekey's.
fn foreign_statements(policy: &Value) -> Vec<Value> {
    let all = match &policy["Statement"] {
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![policy["Statement"].clone()],
        _ => Vec::new(),
    };
    all.into_iter()
        .filter(|s| {
            !s["Sid"]
                .as_str()
                .is_some_and(|sid| sid.starts_with(SID_PREFIX))
        })
        .collect()
}

/// rekey's statements: the administrators, then the users grouped by what they may do and
/// under which condition (principals sorted), each from the preflight's own statement form.
pub fn statements(admins: &[String], users: &[KeyUser]) -> Vec<Value> {
    let mut out = Vec::new();
    if !admins.is_empty() {
        let mut admins = admins.to_vec();
        admins.sort();
        admins.dedup();
        out.push(serde_json::json!({
            "Sid": format!("{SID_PREFIX}KeyAdministrators"),
            "Effect": "Allow",
            "Principal": { "AWS": principals(admins) },
            "Action": ADMIN_ACTIONS,
            "Resource": "*",
        }));
    }
    // (actions, via, grant) → principals.
    let mut groups: BTreeMap<(Vec<String>, Option<String>, bool), Vec<String>> = BTreeMap::new();
    for u in users {
        groups
            .entry((
                u.actions.clone(),
                u.via_service.clone(),
                u.grant_for_resource,
            ))
            .or_default()
            .push(u.principal.clone());
    }
    for (n, ((actions, via, grant), mut who)) in groups.into_iter().enumerate() {
        who.sort();
        let acts: Vec<&str> = actions.iter().map(String::as_str).collect();
        let mut usage = Usage::principal("", &acts, via);
        usage.grant_for_resource = grant;
        for (i, mut st) in crate::access::statements_for(&usage, &acts)
            .into_iter()
            .enumerate()
        {
            st["Sid"] = Value::String(format!(
                "{SID_PREFIX}KeyUsers{}{}",
                n + 1,
                ["", "Grants"][i.min(1)]
            ));
            st["Principal"] = serde_json::json!({ "AWS": principals(who.clone()) });
            out.push(st);
        }
    }
    out
}

fn principals(mut p: Vec<String>) -> Value {
    if p.len() == 1 {
        Value::String(p.remove(0))
    } else {
        Value::Array(p.into_iter().map(Value::String).collect())
    }
}

/// A Terraform name for each of `names`, unique: names that would collide once made
/// identifiers (`ml-fraud`, `ml_fraud`) get a suffix from their own text.
fn unique_names<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, String> {
    let names: BTreeSet<&str> = names.collect();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for n in &names {
        *count.entry(tf_name(n)).or_default() += 1;
    }
    names
        .into_iter()
        .map(|n| {
            let base = tf_name(n);
            let name = if count[&base] > 1 {
                use sha2::Digest;
                format!(
                    "{base}_{}",
                    &hex::encode(sha2::Sha256::digest(n.as_bytes()))[..6]
                )
            } else {
                base
            };
            (n, name)
        })
        .collect()
}

/// A Terraform name for a team key (`ml-fraud` → `ml_fraud`; a leading digit gets `k_`).
pub fn tf_name(team: &str) -> String {
    let mut s: String = team
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        s = format!("k_{s}");
    }
    s
}

fn traversal(parts: &[&str]) -> hcl::Expression {
    let mut t = hcl::expr::Traversal::builder(
        hcl::expr::Variable::new(parts[0])
            .unwrap_or_else(|_| hcl::expr::Variable::unchecked(parts[0])),
    );
    for p in &parts[1..] {
        t = t.attr(*p);
    }
    hcl::Expression::from(t.build())
}

/// A policy as a `data "aws_iam_policy_document"` block, a `statement` block per statement;
/// a statement with an element the data source cannot say is refused.
fn policy_document(name: &str, policy: &Value) -> Result<hcl::Block, RekeyError> {
    // Policy values as the strings IAM compares (`true`, `5` as written).
    let scalar = |x: &Value| match x {
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(x.to_string()),
        _ => None,
    };
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::Array(a) => a.iter().filter_map(scalar).collect(),
            v => scalar(v).into_iter().collect(),
        }
    };
    let principals = |kind: &str, v: &Value| -> Vec<hcl::Block> {
        match v {
            Value::String(s) if s == "*" => vec![hcl::Block::builder(kind)
                .add_attribute(("type", "*"))
                .add_attribute(("identifiers", vec!["*"]))
                .build()],
            Value::Object(m) => m
                .iter()
                .map(|(t, ids)| {
                    hcl::Block::builder(kind)
                        .add_attribute(("type", t.as_str()))
                        .add_attribute(("identifiers", list(ids)))
                        .build()
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut doc = hcl::Block::builder("data")
        .add_label("aws_iam_policy_document")
        .add_label(name)
        .add_attribute(("policy_id", policy["Id"].as_str().unwrap_or_default()));
    let statements = match &policy["Statement"] {
        Value::Array(a) => a.clone(),
        v @ Value::Object(_) => vec![v.clone()],
        _ => Vec::new(),
    };
    for st in &statements {
        let Some(obj) = st.as_object() else { continue };
        if let Some(k) = obj.keys().find(|k| {
            ![
                "Sid",
                "Effect",
                "Action",
                "NotAction",
                "Resource",
                "NotResource",
                "Principal",
                "NotPrincipal",
                "Condition",
            ]
            .contains(&k.as_str())
        }) {
            return Err(RekeyError::usage(
                format!("a statement of the key policy has {k:?}, which an aws_iam_policy_document cannot hold: {st}"),
                "edit the key's policy by hand, or leave the key out of the campaign's keys",
            ));
        }
        let mut b = hcl::Block::builder("statement");
        if let Some(sid) = obj.get("Sid").and_then(Value::as_str) {
            b = b.add_attribute(("sid", sid));
        }
        b = b.add_attribute((
            "effect",
            obj.get("Effect").and_then(Value::as_str).unwrap_or("Allow"),
        ));
        for (json, attr) in [
            ("Action", "actions"),
            ("NotAction", "not_actions"),
            ("Resource", "resources"),
            ("NotResource", "not_resources"),
        ] {
            if let Some(v) = obj.get(json) {
                b = b.add_attribute((attr, list(v)));
            }
        }
        for (json, kind) in [
            ("Principal", "principals"),
            ("NotPrincipal", "not_principals"),
        ] {
            if let Some(v) = obj.get(json) {
                for p in principals(kind, v) {
                    b = b.add_block(p);
                }
            }
        }
        if let Some(Value::Object(conds)) = obj.get("Condition") {
            for (test, vars) in conds {
                for (variable, values) in vars.as_object().into_iter().flatten() {
                    b = b.add_block(
                        hcl::Block::builder("condition")
                            .add_attribute(("test", test.as_str()))
                            .add_attribute(("variable", variable.as_str()))
                            .add_attribute(("values", list(values)))
                            .build(),
                    );
                }
            }
        }
        doc = doc.add_block(b.build());
    }
    Ok(doc.build())
}

fn import(to: &[&str], id: &str) -> hcl::Block {
    hcl::Block::builder("import")
        .add_attribute(("to", traversal(to)))
        .add_attribute(("id", id))
        .build()
}

/// The Terraform files: `aws-ACCOUNT.tf` per account, `gcp-PROJECT.tf` per project.
pub fn terraform(model: &Model) -> Result<BTreeMap<String, String>, RekeyError> {
    let team_names = unique_names(
        model
            .aws
            .iter()
            .map(|k| k.team.as_str())
            .chain(model.gcp.iter().map(|k| k.team.as_str())),
    );
    let ring_keys: Vec<String> = model
        .gcp
        .iter()
        .map(|k| format!("{}_{}", k.location, k.key_ring))
        .collect();
    let ring_names = unique_names(ring_keys.iter().map(String::as_str));
    // A key ring exists if any of its keys does.
    let ring_exists: BTreeSet<(String, String, String)> = model
        .gcp
        .iter()
        .filter(|k| k.exists)
        .map(|k| (k.project.clone(), k.location.clone(), k.key_ring.clone()))
        .collect();
    let mut bodies: BTreeMap<String, (String, hcl::BodyBuilder)> = BTreeMap::new();
    for k in &model.aws {
        let file = format!("aws-{}.tf", k.account);
        let entry = bodies.entry(file).or_insert_with(|| {
            (
                format!(
                    "# Team keys of campaign {} in AWS account {} ({}), {}: written by `rekey keys`.\n# Review, then `terraform plan`; keys that exist are imported, never replaced.\n",
                    model.campaign, k.account, k.account_id, k.region
                ),
                hcl::Body::builder(),
            )
        });
        let name = team_names[k.team.as_str()].clone();
        let mut b = std::mem::take(&mut entry.1);
        if let Some(e) = &k.existing {
            b = b
                .add_block(import(&["aws_kms_key", &name], &e.key_id))
                .add_block(import(&["aws_kms_alias", &name], &k.alias))
                .add_block(import(&["aws_kms_key_policy", &name], &e.key_id));
        }
        // An imported key keeps what would replace it (spec, usage, multi-Region) or change
        // what its owner chose (disabled).
        let (usage, spec) = match &k.existing {
            Some(e) => (e.usage.as_str(), e.spec.as_str()),
            None => ("ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT"),
        };
        let mut key = hcl::Block::builder("resource")
            .add_label("aws_kms_key")
            .add_label(name.as_str())
            .add_attribute((
                "description",
                format!("Team key {} of campaign {}", k.team, model.campaign),
            ))
            .add_attribute(("key_usage", usage))
            .add_attribute(("customer_master_key_spec", spec));
        if let Some(e) = &k.existing {
            if e.key_id.starts_with("mrk-") {
                key = key.add_attribute(("multi_region", true));
            }
            if e.state != "Enabled" {
                key = key.add_attribute(("is_enabled", false));
            }
        }
        b = b
            .add_block(
                key.add_attribute(("enable_key_rotation", true))
                    .add_attribute(("rotation_period_in_days", i64::from(k.rotation_days)))
                    .add_attribute(("deletion_window_in_days", 30))
                    .build(),
            )
            .add_block(
                hcl::Block::builder("resource")
                    .add_label("aws_kms_alias")
                    .add_label(name.as_str())
                    .add_attribute(("name", k.alias.as_str()))
                    .add_attribute((
                        "target_key_id",
                        traversal(&["aws_kms_key", &name, "key_id"]),
                    ))
                    .build(),
            )
            .add_block(policy_document(&name, &k.policy)?)
            .add_block(
                hcl::Block::builder("resource")
                    .add_label("aws_kms_key_policy")
                    .add_label(name.as_str())
                    .add_attribute(("key_id", traversal(&["aws_kms_key", &name, "id"])))
                    .add_attribute((
                        "policy",
                        traversal(&["data", "aws_iam_policy_document", &name, "json"]),
                    ))
                    .build(),
            );
        entry.1 = b;
    }
    let mut rings: BTreeSet<(String, String)> = BTreeSet::new();
    for k in &model.gcp {
        let file = format!("gcp-{}.tf", k.project);
        let entry = bodies.entry(file).or_insert_with(|| {
            (
                format!(
                    "# Team keys of campaign {} in Google Cloud project {}: written by `rekey keys`.\n# Review, then `terraform plan`; keys that exist are imported, never replaced.\n",
                    model.campaign, k.project
                ),
                hcl::Body::builder(),
            )
        });
        let ring = ring_names[format!("{}_{}", k.location, k.key_ring).as_str()].clone();
        let name = team_names[k.team.as_str()].clone();
        let mut b = std::mem::take(&mut entry.1);
        let ring_id = format!(
            "projects/{}/locations/{}/keyRings/{}",
            k.project, k.location, k.key_ring
        );
        if rings.insert((k.project.clone(), ring.clone())) {
            if ring_exists.contains(&(k.project.clone(), k.location.clone(), k.key_ring.clone())) {
                b = b.add_block(import(&["google_kms_key_ring", &ring], &ring_id));
            }
            b = b.add_block(
                hcl::Block::builder("resource")
                    .add_label("google_kms_key_ring")
                    .add_label(ring.as_str())
                    .add_attribute(("project", k.project.as_str()))
                    .add_attribute(("location", k.location.as_str()))
                    .add_attribute(("name", k.key_ring.as_str()))
                    .build(),
            );
        }
        if k.exists {
            b = b.add_block(import(&["google_kms_crypto_key", &name], &k.name));
        }
        b = b.add_block(
            hcl::Block::builder("resource")
                .add_label("google_kms_crypto_key")
                .add_label(name.as_str())
                .add_attribute(("name", k.key.as_str()))
                .add_attribute(("key_ring", traversal(&["google_kms_key_ring", &ring, "id"])))
                .add_attribute(("purpose", "ENCRYPT_DECRYPT"))
                .add_attribute(("rotation_period", k.rotation_period.as_str()))
                .build(),
        );
        for (i, m) in k.members.iter().enumerate() {
            b = b.add_block(
                hcl::Block::builder("resource")
                    .add_label("google_kms_crypto_key_iam_member")
                    .add_label(format!("{name}_{}", i + 1))
                    .add_attribute((
                        "crypto_key_id",
                        traversal(&["google_kms_crypto_key", &name, "id"]),
                    ))
                    .add_attribute(("role", m.role.as_str()))
                    .add_attribute(("member", m.member.as_str()))
                    .build(),
            );
        }
        entry.1 = b;
    }
    let mut out = BTreeMap::new();
    for (file, (header, body)) in bodies {
        let text = hcl::format::to_string(&body.build())
            .map_err(|e| RekeyError::Internal(format!("formatting {file}: {e}")))?;
        out.insert(file, format!("{header}\n{}", canonical(&text)));
    }
    Ok(out)
}

/// Terraform's canonical layout over hcl-rs's output: the `=` of consecutive one-line
/// attributes at one indentation are aligned (as `terraform fmt` does), and top-level blocks
/// are separated by one blank line.
pub fn canonical(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    // (indent, key) of an attribute line: `  key = value` (key an identifier or a string).
    let attr = |l: &str| -> Option<(usize, usize)> {
        let indent = l.len() - l.trim_start().len();
        let rest = &l[indent..];
        let key_len = if let Some(r) = rest.strip_prefix('"') {
            let mut escaped = false;
            let end = r.char_indices().find(|(_, c)| {
                let hit = *c == '"' && !escaped;
                escaped = *c == '\\' && !escaped;
                hit
            })?;
            end.0 + 2
        } else {
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))?
        };
        rest[key_len..]
            .starts_with(" = ")
            .then_some((indent, key_len))
    };
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some((indent, _)) = attr(lines[i]) else {
            let l = lines[i];
            // A top-level block that follows another gets a blank line before it.
            if !l.starts_with(' ')
                && !l.starts_with('}')
                && !l.is_empty()
                && out.last().is_some_and(|p| !p.is_empty())
            {
                out.push(String::new());
            }
            out.push(l.to_string());
            i += 1;
            continue;
        };
        let mut j = i;
        while j < lines.len() && attr(lines[j]).is_some_and(|(n, _)| n == indent) {
            j += 1;
        }
        let width = lines[i..j]
            .iter()
            .filter_map(|l| attr(l).map(|a| a.1))
            .max()
            .unwrap_or(0);
        for l in &lines[i..j] {
            let (n, k) = attr(l).unwrap_or((indent, 0));
            let (key, value) = l[n..].split_at(k);
            out.push(format!(
                "{}{key}{} = {}",
                " ".repeat(n),
                " ".repeat(width - k),
                &value[3..]
            ));
        }
        i = j;
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// The policy `rekey keys apply` puts on a key: rekey's statements alone (the Terraform
/// output keeps an existing key's other statements instead; `apply` refuses to drop them
/// unless told to).
pub fn applied_policy(admins: &[String], k: &AwsKey) -> Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": format!("rekey-{}", k.team),
        "Statement": statements(admins, &k.users),
    })
}

/// The statements of `current` that are not rekey's and that `desired` does not hold.
pub fn dropped(current: &Value, desired: &Value) -> Vec<Value> {
    let keep = foreign_statements(desired);
    foreign_statements(current)
        .into_iter()
        .filter(|s| !keep.contains(s))
        .collect()
}

/// A statement's name in a message: its Sid, or its JSON.
pub fn statement_name(s: &Value) -> String {
    s["Sid"]
        .as_str()
        .map(|x| format!("{x:?}"))
        .unwrap_or_else(|| s.to_string())
}

/// The keys a journal says were created (`create-key` done) but never given their alias
/// (`create-alias` not done): (account, alias) → key id. A run cut between the two names that
/// key instead of creating another.
pub fn created_unnamed(
    journal: &std::path::Path,
) -> Result<BTreeMap<(String, String), String>, RekeyError> {
    let text = match std::fs::read_to_string(journal) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(RekeyError::io(format!("reading {}", journal.display()), e)),
    };
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let key = (
            v["account"].as_str().unwrap_or_default().to_string(),
            v["alias"].as_str().unwrap_or_default().to_string(),
        );
        match (v["state"].as_str(), v["action"].as_str()) {
            (Some("done"), Some("create-key")) => {
                if let Some(id) = v["detail"]["key_id"].as_str() {
                    out.insert(key, id.to_string());
                }
            }
            (Some("done"), Some("create-alias")) => {
                out.remove(&key);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Whether putting rekey's policy as `caller` would lock the caller out: KMS refuses a policy
/// that does not let its caller put the policy again (the lockout safety check), and only the
/// administrators may (`kms:Put*`). `keys apply` refuses such a run before any write.
pub fn locks_out(admins: &[String], caller: &str) -> bool {
    !admins.iter().any(|a| a == caller)
}
