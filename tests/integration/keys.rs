//! `rekey keys`: the team keys as Terraform (golden files for a two-account AWS and GCP
//! campaign, stable through a parse-and-format round trip), their policies passing rekey's
//! own key-access evaluation by construction, and import blocks only for what exists (on the
//! emulators).

use std::collections::{BTreeMap, BTreeSet};

use rekey::access::{evaluate, Acceptance, Doc, Identity, IdentityView, KeyFacts};
use rekey::keys::{self, AccountFacts, GcpFacts};
use rekey::model::{KmsKey, Resource, SmArtifact, SmEndpoint, SmModel};

use crate::apply::{code, stderr};
use crate::harness::{self, gcs_server, overlay, repo_root, unique};

const EXAMPLE: &str = r#"version: 1
campaign: keys-example
aws:
  region: us-east-1
  accounts:
    - { name: fraud-bu, role_arn: "arn:aws:iam::111111111111:role/rekey" }
    - { name: vision-bu, role_arn: "arn:aws:iam::222222222222:role/rekey" }
  s3: { buckets: ["ml-*"] }
  sagemaker: { endpoints: true }
gcp:
  project: demo-project
  gcs: { buckets: ["ml-gcs-*"] }
keys:
  fraud:  { aws: alias/ml-fraud }
  vision: { aws: alias/ml-vision, gcp: projects/demo-project/locations/us/keyRings/ml/cryptoKeys/ml-vision }
mapping:
  - { match: { bucket: "ml-fraud-*" }, key: fraud }
  - { match: { tag: { team: vision } }, key: vision }
stages:
  - { name: all }
consumers:
  - { principal: "arn:aws:iam::111111111111:role/fraud-scoring-app", keys: [fraud], via: s3 }
  - { principal: "arn:aws:iam::222222222222:role/vision-batch", keys: [vision], via: sagemaker, actions: ["kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant"] }
key_policy:
  admins: ["arn:aws:iam::111111111111:role/KeyAdmins", "arn:aws:iam::222222222222:role/KeyAdmins"]
  operators: ["arn:aws:iam::111111111111:role/rekey", "arn:aws:iam::222222222222:role/rekey"]
  gcp_members: ["serviceAccount:trainer@demo-project.iam.gserviceaccount.com"]
  rotation_days: 180
"#;

fn endpoint(account: &str, id: &str, team: &str) -> rekey::inventory::Record {
    rekey::inventory::Record {
        resource: Resource::SagemakerEndpoint(SmEndpoint {
            account: account.into(),
            region: "us-east-1".into(),
            name: format!("{team}-ep"),
            arn: format!("arn:aws:sagemaker:us-east-1:{id}:endpoint/{team}-ep"),
            status: "InService".into(),
            config: format!("{team}-ep-cfg"),
            kms_key_arn: None,
            key_manager: None,
            data_capture: true,
            data_capture_kms_key_arn: None,
            async_output: false,
            async_output_kms_key_arn: None,
            variants: Vec::new(),
            models: vec![SmModel {
                name: format!("{team}-model"),
                execution_role_arn: format!("arn:aws:iam::{id}:role/{team}-exec"),
                artifacts: vec![SmArtifact {
                    url: format!("s3://ml-{team}-models/model.tar.gz"),
                    team_key: Some(team.into()),
                    key_access: None,
                    bucket_tags: BTreeMap::new(),
                }],
            }],
            tags: BTreeMap::new(),
            access: Vec::new(),
            source_sha256: String::new(),
        }),
        team_key: Some(team.into()),
        class: rekey::model::EncryptionClass::AwsManagedKms,
    }
}

fn example() -> keys::Model {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.campaign.yaml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let c = rekey::campaign::load(&path).unwrap();
    let fraud_key = KmsKey {
        arn: "arn:aws:kms:us-east-1:111111111111:key/1111aaaa-0000-4000-8000-000000000001".into(),
        key_id: "1111aaaa-0000-4000-8000-000000000001".into(),
        manager: "CUSTOMER".into(),
        state: "Enabled".into(),
        spec: "SYMMETRIC_DEFAULT".into(),
        usage: "ENCRYPT_DECRYPT".into(),
    };
    // The existing key's policy: the account's default root statement and an old rekey one.
    let fraud_policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Sid": "Enable IAM User Permissions", "Effect": "Allow",
              "Principal": { "AWS": "arn:aws:iam::111111111111:root" }, "Action": "kms:*", "Resource": "*" },
            { "Sid": "RekeyKeyUsers9", "Effect": "Allow",
              "Principal": { "AWS": "arn:aws:iam::111111111111:role/gone" }, "Action": "kms:Decrypt", "Resource": "*" }
        ]
    });
    let accounts = vec![
        AccountFacts {
            name: "fraud-bu".into(),
            id: "111111111111".into(),
            operators: vec!["arn:aws:iam::111111111111:role/rekey".into()],
            existing: [("fraud".to_string(), (fraud_key, fraud_policy))].into(),
            sagemaker: vec![endpoint("fraud-bu", "111111111111", "fraud")],
        },
        AccountFacts {
            name: "vision-bu".into(),
            id: "222222222222".into(),
            operators: vec!["arn:aws:iam::222222222222:role/rekey".into()],
            existing: BTreeMap::new(),
            sagemaker: vec![endpoint("vision-bu", "222222222222", "vision")],
        },
    ];
    let gcp = GcpFacts {
        service_agent: "service-123456789@gs-project-accounts.iam.gserviceaccount.com".into(),
        existing: BTreeSet::from([
            "projects/demo-project/locations/us/keyRings/ml/cryptoKeys/ml-vision".to_string(),
        ]),
    };
    // Operators of the campaign are checked to be IAM ARNs; the example names both.
    keys::derive(&c, &accounts, Some(&gcp)).unwrap()
}

/// Golden Terraform and JSON for the example; each file parses back with hcl-rs and formats
/// to the same text; two derivations give the same bytes.
#[test]
fn keys_terraform_is_golden_and_stable() {
    let model = example();
    let files = keys::terraform(&model).unwrap();
    assert_eq!(
        files.keys().cloned().collect::<Vec<_>>(),
        ["aws-fraud-bu.tf", "aws-vision-bu.tf", "gcp-demo-project.tf"]
    );
    let golden = repo_root().join("tests/golden/keys");
    for (name, text) in &files {
        crate::golden::check_golden(&golden.join(name), text);
        // Round trip: the body (after the header comment) parses and formats to itself.
        let body: String = text
            .lines()
            .skip_while(|l| l.starts_with('#') || l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        let parsed = hcl::parse(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again = keys::canonical(&hcl::format::to_string(&parsed).unwrap());
        assert_eq!(again, body, "{name} is not stable through parse and format");
    }
    let json = serde_json::to_string_pretty(&model).unwrap() + "\n";
    crate::golden::check_golden(&golden.join("keys.json"), &json);
    assert_eq!(keys::terraform(&example()).unwrap(), files, "deterministic");

    // Imports only for what exists: the fraud key in fraud-bu, the vision Cloud KMS key.
    let fraud = &files["aws-fraud-bu.tf"];
    assert!(fraud.contains("to = aws_kms_key.fraud") && fraud.contains("id = \"1111aaaa-"));
    assert!(!fraud.contains("to = aws_kms_key.vision"));
    assert!(!files["aws-vision-bu.tf"].contains("import {"));
    assert!(files["gcp-demo-project.tf"].contains("to = google_kms_crypto_key.vision"));
    // The existing key's own statement is kept, its old rekey statement replaced.
    assert!(fraud.contains("Enable IAM User Permissions"));
    assert!(!fraud.contains("role/gone"));
}

fn facts(k: &keys::AwsKey) -> KeyFacts {
    KeyFacts {
        key_arn: format!("arn:aws:kms:us-east-1:{}:key/test", k.account_id),
        policy: Doc {
            source: "key policy".into(),
            value: k.policy.clone(),
        },
        grants: Vec::new(),
    }
}

/// Every user of every emitted key passes the preflight's evaluation on the emitted policy;
/// with the statements that name it removed, the same user is refused.
#[test]
fn keys_policies_pass_the_preflight_and_a_removed_statement_blocks() {
    let model = example();
    let nobody = IdentityView::Seen(Identity {
        policies: Vec::new(),
        boundary: None,
    });
    let mut checked = 0;
    for k in &model.aws {
        assert!(!k.users.is_empty(), "{} in {} has users", k.team, k.account);
        for u in &k.users {
            // A principal of another account also needs its own IAM policy (its account's
            // business, not the key's): given one that allows the key, the key policy decides.
            let own = IdentityView::Seen(Identity {
                policies: vec![Doc {
                    source: "its own policy".into(),
                    value: serde_json::json!({ "Version": "2012-10-17", "Statement": [
                        { "Effect": "Allow", "Action": "kms:*", "Resource": "*" } ] }),
                }],
                boundary: None,
            });
            let identity = if u.principal.contains(&format!(":{}:", k.account_id)) {
                &nobody
            } else {
                &own
            };
            let v = evaluate(&facts(k), identity, &u.usage(), &Acceptance::default(), "t");
            assert!(
                v.allowed(),
                "{} on {}/{}: {v:?}",
                u.principal,
                k.account,
                k.team
            );
            let mut stripped = k.clone();
            let statements = stripped.policy["Statement"].as_array_mut().unwrap();
            statements.retain(|s| !s["Principal"].to_string().contains(&u.principal));
            let v = evaluate(
                &facts(&stripped),
                identity,
                &u.usage(),
                &Acceptance::default(),
                "t",
            );
            assert!(
                !v.allowed(),
                "{} still allowed without its statements",
                u.principal
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
    // The grant statement carries kms:GrantIsForAWSResource.
    let vision = model
        .aws
        .iter()
        .find(|k| k.account == "vision-bu" && k.team == "vision")
        .unwrap();
    assert!(vision
        .policy
        .to_string()
        .contains("kms:GrantIsForAWSResource"));
}

/// On the emulators: imports for the keys whose aliases exist (AWS) and the Cloud KMS key that
/// exists, none for the others; the existing key's statements are kept.
#[test]
fn keys_import_only_what_exists_on_the_emulators() {
    let m = overlay();
    let p = unique("keys");
    harness::seed_estate(&m.endpoint, &p, 1);
    let gcs = &gcs_server().endpoint;
    let existing = format!("projects/demo-project/locations/us/keyRings/ml/cryptoKeys/{p}vision");
    harness::gcp_key(gcs, &existing, "");
    let dir = tempfile::tempdir().unwrap();
    let campaign = dir.path().join("c.yaml");
    std::fs::write(
        &campaign,
        format!(
            r#"version: 1
campaign: keys
aws:
  region: us-east-1
  s3: {{ buckets: ["{p}ml-*"] }}
gcp:
  project: demo-project
  endpoint: {gcs}
  gcs: {{ buckets: ["{p}ml-gcs-*"] }}
keys:
  fraud:  {{ aws: alias/{p}ml-fraud }}
  vision: {{ aws: alias/{p}ml-vision, gcp: {existing} }}
  nlp:    {{ aws: alias/{p}ml-nlp, gcp: projects/demo-project/locations/us/keyRings/ml/cryptoKeys/{p}nlp }}
mapping:
  - {{ match: {{ bucket: "{p}ml-fraud-*" }}, key: fraud }}
stages:
  - {{ name: all }}
key_policy:
  admins: ["arn:aws:iam::123456789012:role/KeyAdmins", "arn:aws:iam::123456789012:user/moto"]
"#
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("keys");
    let out = harness::rekey(&m.endpoint)
        .args(["keys", "-c"])
        .arg(&campaign)
        .arg("-o")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let aws = std::fs::read_to_string(out_dir.join("aws-default.tf")).unwrap();
    assert!(
        aws.contains("to = aws_kms_key.fraud") && aws.contains("to = aws_kms_key.vision"),
        "{aws}"
    );
    assert!(!aws.contains("to = aws_kms_key.nlp"), "{aws}");
    assert!(aws.contains(&format!("\"alias/{p}ml-nlp\"")), "{aws}");
    let gcp = std::fs::read_to_string(out_dir.join("gcp-demo-project.tf")).unwrap();
    assert!(gcp.contains("to = google_kms_crypto_key.vision"), "{gcp}");
    assert!(!gcp.contains("to = google_kms_crypto_key.nlp"), "{gcp}");
    assert!(
        gcp.contains("serviceAccount:service-"),
        "the service agent is a member: {gcp}"
    );

    let out = harness::rekey(&m.endpoint)
        .args(["keys", "-c"])
        .arg(&campaign)
        .args(["--emit", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let model: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fraud = model["aws"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["team"] == "fraud")
        .unwrap();
    // moto's default key policy statement is kept beside rekey's.
    assert!(
        fraud["existing"]["kept_statements"].as_u64().unwrap() >= 1,
        "{fraud}"
    );
    // The caller is the operator.
    assert!(
        fraud["users"].to_string().contains("rekey operator"),
        "{fraud}"
    );
}

/// `keys apply` on moto: refuses to drop an existing policy's own statements (nothing
/// written), then with --replace-policy creates the missing key (alias, rotation, policy) and
/// replaces the existing key's policy; a second run writes nothing.
#[tokio::test]
async fn keys_apply_creates_then_is_a_no_op_and_keeps_foreign_statements_unless_told() {
    let m = overlay();
    let p = unique("kapply");
    harness::seed_estate(&m.endpoint, &p, 1);
    let dir = tempfile::tempdir().unwrap();
    let campaign = dir.path().join("c.yaml");
    std::fs::write(
        &campaign,
        format!(
            r#"version: 1
campaign: kapply
aws:
  region: us-east-1
  s3: {{ buckets: ["{p}ml-*"] }}
keys:
  fraud: {{ aws: alias/{p}ml-fraud }}
  nlp:   {{ aws: alias/{p}ml-nlp }}
mapping:
  - {{ match: {{ bucket: "{p}ml-fraud-*" }}, key: fraud }}
stages:
  - {{ name: all }}
consumers:
  - {{ principal: "arn:aws:iam::123456789012:role/{p}app", keys: [nlp], via: s3 }}
key_policy:
  admins: ["arn:aws:iam::123456789012:role/KeyAdmins", "arn:aws:iam::123456789012:user/moto"]
  rotation_days: 180
"#
        ),
    )
    .unwrap();
    let journal = dir.path().join("kapply.keys.journal.jsonl");
    let apply = |extra: &[&str]| {
        harness::rekey(&m.endpoint)
            .args(["keys", "apply", "-c"])
            .arg(&campaign)
            .arg("--yes")
            .args(extra)
            .output()
            .unwrap()
    };
    let kms = harness::clients(&m.endpoint).await;
    let nlp_alias = format!("alias/{p}ml-nlp");
    use rekey::providers::KeyRead;

    // moto's default policy on the seeded key has a root statement rekey did not write.
    let out = apply(&[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("would drop") && stderr(&out).contains(&format!("alias/{p}ml-fraud")),
        "{}",
        stderr(&out)
    );
    assert!(
        kms.describe_key(&nlp_alias).await.unwrap().is_none(),
        "nothing is created"
    );
    assert!(!journal.exists() || std::fs::read_to_string(&journal).unwrap().is_empty());

    let out = apply(&["--replace-policy"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let nlp = kms
        .describe_key(&nlp_alias)
        .await
        .unwrap()
        .expect("created");
    assert_eq!(nlp.manager, "CUSTOMER");
    let rotation = kms
        .kms
        .get_key_rotation_status()
        .key_id(&nlp.key_id)
        .send()
        .await
        .unwrap();
    assert!(rotation.key_rotation_enabled());
    let policy: serde_json::Value = serde_json::from_str(
        kms.kms
            .get_key_policy()
            .key_id(&nlp.key_id)
            .policy_name("default")
            .send()
            .await
            .unwrap()
            .policy()
            .unwrap(),
    )
    .unwrap();
    let text = policy.to_string();
    assert!(
        text.contains("RekeyKeyAdministrators") && text.contains(&format!("role/{p}app")),
        "{text}"
    );
    let lines = std::fs::read_to_string(&journal).unwrap();
    assert!(
        lines.contains("\"create-key\"") && lines.contains("\"put-key-policy\""),
        "{lines}"
    );
    assert!(
        lines.contains("\"before\""),
        "the replaced policy is journaled: {lines}"
    );

    // Again: nothing to write.
    let before = lines.lines().count();
    let out = apply(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 KMS writes"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap().lines().count(),
        before
    );
}

/// A run cut between CreateKey and CreateAlias: the next run names the key its journal says
/// it created, and creates no other.
#[tokio::test]
async fn keys_apply_names_the_key_a_cut_run_created() {
    let m = overlay();
    let p = unique("kcut");
    let dir = tempfile::tempdir().unwrap();
    let campaign = dir.path().join("c.yaml");
    std::fs::write(
        &campaign,
        format!(
            "version: 1\ncampaign: kcut\naws:\n  region: us-east-1\n  s3: {{ buckets: [\"{p}ml-*\"] }}\nkeys:\n  nlp: {{ aws: alias/{p}ml-nlp }}\nstages:\n  - {{ name: all }}\nkey_policy:\n  admins: [\"arn:aws:iam::123456789012:role/KeyAdmins\", \"arn:aws:iam::123456789012:user/moto\"]\n"
        ),
    )
    .unwrap();
    let kms = harness::clients(&m.endpoint).await;
    let orphan = kms
        .create_team_key(
            "{\"Version\":\"2012-10-17\",\"Statement\":[]}",
            "cut",
            "kcut",
        )
        .await
        .unwrap();
    let journal = dir.path().join("kcut.keys.journal.jsonl");
    std::fs::write(
        &journal,
        format!(
            "{}\n",
            serde_json::json!({ "state": "done", "account": "default", "team": "nlp",
                "alias": format!("alias/{p}ml-nlp"), "action": "create-key",
                "detail": { "key_id": orphan } })
        ),
    )
    .unwrap();
    let out = harness::rekey(&m.endpoint)
        .args(["keys", "apply", "-c"])
        .arg(&campaign)
        .arg("--yes")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    use rekey::providers::KeyRead;
    let named = kms
        .describe_key(&format!("alias/{p}ml-nlp"))
        .await
        .unwrap()
        .expect("the alias exists");
    assert_eq!(named.key_id, orphan, "the key the cut run created is named");
    assert!(!std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .skip(1)
        .any(|l| l.contains("\"create-key\"")));
}

// ---------------------------------------------------------------------------------------
// Break-it review: failing tests for problems found.

fn load_campaign(text: &str) -> (tempfile::TempDir, rekey::campaign::LoadedCampaign) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.campaign.yaml");
    std::fs::write(&path, text).unwrap();
    let c = rekey::campaign::load(&path).unwrap();
    (dir, c)
}

fn nobody() -> IdentityView {
    IdentityView::Seen(Identity {
        policies: Vec::new(),
        boundary: None,
    })
}

fn tf_body(text: &str) -> hcl::Body {
    let body: String = text
        .lines()
        .skip_while(|l| l.starts_with('#') || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    hcl::parse(&body).unwrap()
}

/// (block type, labels) of every top-level block, duplicates kept.
fn tf_blocks(text: &str) -> Vec<(String, Vec<String>)> {
    tf_body(text)
        .blocks()
        .map(|b| {
            (
                b.identifier().to_string(),
                b.labels().iter().map(|l| l.as_str().to_string()).collect(),
            )
        })
        .collect()
}

/// rekey's preflight reads every team key's policy and grants (`key_facts`: GetKeyPolicy,
/// ListGrants; docs/preflight.md "What rekey needs to read"). A key created from the emitted
/// policy has no account-root statement, so only the key policy can let the operator read
/// them: it does not, and the next `rekey plan` (or `keys apply` run) cannot read the key.
#[test]
fn keys_review_operator_may_read_the_policy_and_grants_the_preflight_reads() {
    let model = example();
    let k = model
        .aws
        .iter()
        .find(|k| k.account == "vision-bu" && k.team == "vision")
        .unwrap();
    assert!(k.existing.is_none(), "a new key: no root statement");
    let mut usage = rekey::access::Usage::principal(
        "arn:aws:iam::222222222222:role/rekey",
        &[
            "kms:GetKeyPolicy",
            "kms:ListGrants",
            "kms:GetKeyRotationStatus",
        ],
        None,
    );
    usage.grant_for_resource = false;
    let v = evaluate(
        &facts(k),
        &nobody(),
        &usage,
        &Acceptance::default(),
        "rekey operator",
    );
    assert!(
        v.allowed(),
        "the operator cannot read the key it checks: {v:?}"
    );
}

/// `keys apply` calls CreateKey / PutKeyPolicy without BypassPolicyLockoutSafetyCheck: KMS
/// refuses a policy that does not let its caller put the policy again. rekey's policy lets
/// only the administrators (`kms:Put*`), so `keys apply` refuses a caller that is not one
/// before any write (`keys::locks_out`); for an administrator the applied policy allows it.
#[test]
fn keys_review_applied_policy_does_not_lock_out_the_caller() {
    let model = example();
    let admins = vec![
        "arn:aws:iam::111111111111:role/KeyAdmins".to_string(),
        "arn:aws:iam::222222222222:role/KeyAdmins".to_string(),
    ];
    for k in &model.aws {
        let mut applied = k.clone();
        applied.policy = keys::applied_policy(&admins, k);
        let operator = format!("arn:aws:iam::{}:role/rekey", k.account_id);
        assert!(
            keys::locks_out(&admins, &operator),
            "a non-administrator is refused"
        );
        let admin = format!("arn:aws:iam::{}:role/KeyAdmins", k.account_id);
        assert!(!keys::locks_out(&admins, &admin));
        let usage = rekey::access::Usage::principal(&admin, &["kms:PutKeyPolicy"], None);
        let v = evaluate(
            &facts(&applied),
            &nobody(),
            &usage,
            &Acceptance::default(),
            "caller",
        );
        assert!(
            v.allowed(),
            "{}/{}: KMS's lockout safety check refuses this policy for caller {admin}: {v:?}",
            k.account,
            k.team
        );
    }
}

const BATCH: &str = r#"version: 1
campaign: kb
aws:
  region: us-east-1
  s3:
    buckets: ["ml-*"]
    engine: batch-update-encryption
    batch: { manifest_bucket: ml-manifests, report_bucket: ml-reports, role_arn: "arn:aws:iam::111111111111:role/batch-job" }
keys:
  fraud: { aws: alias/ml-fraud }
stages:
  - { name: all }
key_policy:
  admins: ["arn:aws:iam::111111111111:role/KeyAdmins"]
  via_service: true
"#;

/// The Batch Operations role is written with `kms:ViaService = s3.REGION` (via_service: true),
/// but rekey's own batch preflight (`preflight::batch_role`, run by apply before any job)
/// evaluates it without a ViaService (`Usage::principal(role, [GenerateDataKey, Decrypt],
/// None)`): on the emitted policy it is refused, and apply stops ("the batch job role may not
/// use ...; no job was created").
#[test]
fn keys_review_batch_role_passes_rekeys_batch_preflight() {
    let (_d, c) = load_campaign(BATCH);
    assert!(c.uses_s3_batch());
    let accounts = vec![AccountFacts {
        name: "default".into(),
        id: "111111111111".into(),
        operators: vec!["arn:aws:iam::111111111111:role/rekey".into()],
        existing: BTreeMap::new(),
        sagemaker: Vec::new(),
    }];
    let model = keys::derive(&c, &accounts, None).unwrap();
    let k = &model.aws[0];
    assert!(
        k.users
            .iter()
            .any(|u| u.principal.ends_with("role/batch-job")),
        "{:?}",
        k.users
    );
    // Exactly what preflight::batch_role evaluates.
    let usage = rekey::access::Usage::principal(
        "arn:aws:iam::111111111111:role/batch-job",
        &["kms:GenerateDataKey", "kms:Decrypt"],
        None,
    );
    let v = evaluate(
        &facts(k),
        &nobody(),
        &usage,
        &Acceptance::default(),
        "S3 Batch Operations job role",
    );
    assert!(
        v.allowed(),
        "rekey's batch preflight blocks the role keys wrote: {v:?}"
    );
}

fn single_account(
    c: &rekey::campaign::LoadedCampaign,
    existing: BTreeMap<String, (KmsKey, serde_json::Value)>,
) -> keys::Model {
    let accounts = vec![AccountFacts {
        name: "default".into(),
        id: "111111111111".into(),
        operators: vec!["arn:aws:iam::111111111111:role/rekey".into()],
        existing,
        sagemaker: Vec::new(),
    }];
    keys::derive(c, &accounts, None).unwrap()
}

/// Team names that differ only by '-' vs '_' get the same Terraform name: the file declares
/// `aws_kms_key.ml_fraud` twice and Terraform refuses it ("Duplicate resource").
#[test]
fn keys_review_terraform_names_are_unique_per_file() {
    let (_d, c) = load_campaign(
        r#"version: 1
campaign: dup
aws:
  region: us-east-1
  s3: { buckets: ["ml-*"] }
keys:
  ml-fraud: { aws: alias/ml-fraud-a }
  ml_fraud: { aws: alias/ml-fraud-b }
stages:
  - { name: all }
key_policy:
  admins: ["arn:aws:iam::111111111111:role/KeyAdmins"]
"#,
    );
    let files = keys::terraform(&single_account(&c, BTreeMap::new())).unwrap();
    for (name, text) in &files {
        let blocks: Vec<_> = tf_blocks(text)
            .into_iter()
            .filter(|(t, _)| t == "resource" || t == "data")
            .collect();
        let unique: BTreeSet<_> = blocks.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            blocks.len(),
            "{name} declares a resource twice:\n{text}"
        );
    }
}

fn gcp_campaign(keys_yaml: &str) -> String {
    format!(
        r#"version: 1
campaign: g
gcp:
  project: demo-project
  gcs: {{ buckets: ["ml-gcs-*"] }}
keys:
{keys_yaml}
stages:
  - {{ name: all }}
key_policy:
  admins: []
"#
    )
}

/// Two team keys in one key ring, the first (in team order) new, the second existing: the
/// ring exists (the existing key is in it), yet its `import` is written only when the first
/// key of the ring exists. Terraform then tries to create a key ring that exists (409
/// "already exists") and the apply fails.
#[test]
fn keys_review_gcp_key_ring_imported_when_any_of_its_keys_exists() {
    let (_d, c) = load_campaign(&gcp_campaign(
        "  a-new: { gcp: projects/demo-project/locations/us/keyRings/ml/cryptoKeys/new }\n  b-old: { gcp: projects/demo-project/locations/us/keyRings/ml/cryptoKeys/old }",
    ));
    let gcp = GcpFacts {
        service_agent: "service-1@gs-project-accounts.iam.gserviceaccount.com".into(),
        existing: BTreeSet::from([
            "projects/demo-project/locations/us/keyRings/ml/cryptoKeys/old".to_string(),
        ]),
    };
    let model = keys::derive(&c, &[], Some(&gcp)).unwrap();
    let text = &keys::terraform(&model).unwrap()["gcp-demo-project.tf"];
    assert!(text.contains("to = google_kms_crypto_key.b_old"), "{text}");
    assert!(
        text.contains("to = google_kms_key_ring.us_ml"),
        "the existing key ring is created instead of imported:\n{text}"
    );
}

/// Key rings `ml-a` and `ml_a` (both valid Cloud KMS names) get the same Terraform name: the
/// second ring is never declared and its key is written into the first ring.
#[test]
fn keys_review_gcp_key_rings_differing_by_dash_are_distinct() {
    let (_d, c) = load_campaign(&gcp_campaign(
        "  a: { gcp: projects/demo-project/locations/us/keyRings/ml-a/cryptoKeys/ka }\n  b: { gcp: projects/demo-project/locations/us/keyRings/ml_a/cryptoKeys/kb }",
    ));
    let model = keys::derive(&c, &[], None).unwrap();
    let text = &keys::terraform(&model).unwrap()["gcp-demo-project.tf"];
    let rings = tf_blocks(text)
        .into_iter()
        .filter(|(t, l)| t == "resource" && l[0] == "google_kms_key_ring")
        .count();
    assert_eq!(
        rings, 2,
        "key ring ml_a is lost; key kb lands in ring ml-a:\n{text}"
    );
}

fn existing_key(key_id: &str, state: &str) -> KmsKey {
    KmsKey {
        arn: format!("arn:aws:kms:us-east-1:111111111111:key/{key_id}"),
        key_id: key_id.into(),
        manager: "CUSTOMER".into(),
        state: state.into(),
        spec: "SYMMETRIC_DEFAULT".into(),
        usage: "ENCRYPT_DECRYPT".into(),
    }
}

const ONE_KEY: &str = r#"version: 1
campaign: one
aws:
  region: us-east-1
  s3: { buckets: ["ml-*"] }
keys:
  fraud: { aws: alias/ml-fraud }
stages:
  - { name: all }
key_policy:
  admins: ["arn:aws:iam::111111111111:role/KeyAdmins"]
"#;

/// An existing policy's statement whose condition values are JSON booleans or numbers (valid
/// in a key policy, e.g. the common Deny on `aws:SecureTransport: false`) is written with
/// `values = []`: the kept statement is not the key owner's statement any more.
#[test]
fn keys_review_kept_statement_conditions_keep_non_string_values() {
    let (_d, c) = load_campaign(ONE_KEY);
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Sid": "DenyInsecure", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
              "Condition": { "Bool": { "aws:SecureTransport": false } } },
            { "Sid": "OwnerGrants", "Effect": "Allow",
              "Principal": { "AWS": "arn:aws:iam::111111111111:role/owner" },
              "Action": "kms:CreateGrant", "Resource": "*",
              "Condition": { "Bool": { "kms:GrantIsForAWSResource": true } } }
        ]
    });
    let model = single_account(
        &c,
        [("fraud".to_string(), (existing_key("k1", "Enabled"), policy))].into(),
    );
    let text = &keys::terraform(&model).unwrap()["aws-default.tf"];
    assert!(
        !text.contains("values   = []") && !text.contains("values = []"),
        "a kept statement lost its condition values:\n{text}"
    );
}

/// An imported key must not be replaced or changed in ways its owner did not ask for:
/// a Multi-Region key (`mrk-` id) imported into `aws_kms_key` without `multi_region = true`
/// plans a replacement (multi_region forces a new resource); a key disabled on purpose is
/// re-enabled (`is_enabled` defaults to true).
#[test]
fn keys_review_import_never_replaces_or_reenables_an_existing_key() {
    let (_d, c) = load_campaign(ONE_KEY);
    let policy = serde_json::json!({ "Version": "2012-10-17", "Statement": [] });
    let model = single_account(
        &c,
        [(
            "fraud".to_string(),
            (
                existing_key("mrk-0123456789abcdef0123456789abcdef", "Enabled"),
                policy.clone(),
            ),
        )]
        .into(),
    );
    let text = &keys::terraform(&model).unwrap()["aws-default.tf"];
    assert!(
        text.contains("multi_region"),
        "importing a Multi-Region key without multi_region = true replaces it:\n{text}"
    );

    let model = single_account(
        &c,
        [(
            "fraud".to_string(),
            (existing_key("k2", "Disabled"), policy),
        )]
        .into(),
    );
    let text = &keys::terraform(&model).unwrap()["aws-default.tf"];
    assert!(
        text.contains("is_enabled") && text.contains("false"),
        "a disabled key is re-enabled by terraform apply:\n{text}"
    );
}

/// The operator's endpoint-deployer statement (CreateGrant / Decrypt / GenerateDataKey through
/// SageMaker) is written on every key of every account when `sagemaker.endpoints` is on, even
/// a key no endpoint of the account maps to: more than the preflight asks for (it asks for
/// it only on an endpoint's own team key).
#[test]
fn keys_review_no_sagemaker_grants_on_keys_without_endpoints() {
    let model = example();
    let k = model
        .aws
        .iter()
        .find(|k| k.account == "fraud-bu" && k.team == "vision")
        .unwrap();
    // No endpoint of fraud-bu is on the vision key.
    let rekey_grant = k.users.iter().any(|u| {
        u.principal == "arn:aws:iam::111111111111:role/rekey"
            && u.actions.iter().any(|a| a == "kms:CreateGrant")
    });
    assert!(
        !rekey_grant,
        "operator may create grants on a key it never deploys an endpoint on: {:?}",
        k.users
    );
}
