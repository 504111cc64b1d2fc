//! SageMaker: the artifact graph, consumer preflight, endpoint re-key, verify and rollback.

use std::process::Command;

use rekey::plan::{self, Action};

use crate::apply::{code, stderr, Ctx};
use crate::harness::{self, overlay, unique};

fn seed_sagemaker(endpoint: &str, prefix: &str) -> serde_json::Value {
    let out = Command::new(harness::ensure_venv())
        .arg(harness::repo_root().join("tests/seed_sagemaker.py"))
        .args([endpoint, prefix])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn endpoint_keys(
    sm: &aws_sdk_sagemaker::Client,
    name: &str,
) -> (String, Option<String>, Option<String>) {
    let e = sm
        .describe_endpoint()
        .endpoint_name(name)
        .send()
        .await
        .unwrap();
    let cfg = e.endpoint_config_name().unwrap().to_string();
    let c = sm
        .describe_endpoint_config()
        .endpoint_config_name(&cfg)
        .send()
        .await
        .unwrap();
    (
        cfg,
        c.kms_key_id().map(str::to_string),
        c.data_capture_config()
            .and_then(|d| d.kms_key_id())
            .map(str::to_string),
    )
}

#[tokio::test]
async fn endpoints_are_rekeyed_after_their_artifacts_and_blocked_without_key_access() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("sm");
    let seeded = harness::seed_estate(&endpoint, &p, 3);
    let keys = seed_sagemaker(&endpoint, &p);
    let fraud = seeded["keys"]["fraud"].as_str().unwrap().to_string();
    let vision = keys["vision"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let campaign = dir.path().join("campaign.yaml");
    let yaml = crate::apply::campaign_yaml(
        &p,
        "",
        "limits: { concurrency: 4, requests_per_second: 200 }",
    )
    .replace(
        "  s3: {",
        "  sagemaker: { endpoints: true, notebook_instances: true, training_jobs: true }\n  s3: {",
    );
    std::fs::write(&campaign, yaml).unwrap();

    // Inventory shows the graph: each endpoint with its models, artifacts and their keys.
    let inv = dir.path().join("inv.jsonl");
    let out = harness::rekey(&endpoint)
        .args(["inventory", "-c"])
        .arg(&campaign)
        .arg("-o")
        .arg(&inv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&inv)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |name: &str| {
        records
            .iter()
            .find(|r| r["name"] == format!("{p}{name}"))
            .unwrap_or_else(|| panic!("{name} not inventoried"))
            .clone()
    };
    let fraud_ep = find("fraud-ep");
    assert_eq!(fraud_ep["kind"], "sagemaker-endpoint");
    assert_eq!(
        fraud_ep["class"], "aws-managed-kms",
        "no KmsKeyId is service-managed"
    );
    assert_eq!(
        fraud_ep["team_key"], "fraud",
        "inherited from its artifacts"
    );
    assert_eq!(
        fraud_ep["models"][0]["artifacts"][0]["url"],
        format!("s3://{p}ml-fraud-models/xgb/v0/model.tar.gz")
    );
    assert_eq!(find("vision-ep")["class"], "foreign-cmk");
    let blocked = find("blocked-ep");
    let access = blocked["models"][0]["artifacts"][0]["key_access"]
        .as_str()
        .unwrap();
    assert!(
        access.contains(&format!("role/{p}intruder")) && access.contains("\"kms:Decrypt\""),
        "{access}"
    );
    assert_eq!(find("nb")["kind"], "sagemaker-notebook-instance");
    assert_eq!(find("train")["kind"], "sagemaker-training-job");

    // Plan: endpoints no earlier than their artifacts; the blocked one and its artifact blocked.
    let plan_path = dir.path().join("plans/demo.plan.yaml");
    let out = harness::rekey(&endpoint)
        .args(["plan", "-c"])
        .arg(&campaign)
        .arg("-o")
        .arg(&plan_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let pf = plan::load(&plan_path).unwrap();
    let stage_of = |name: &str| {
        pf.stages
            .iter()
            .position(|s| s.sagemaker.iter().any(|x| x.name == format!("{p}{name}")))
            .unwrap_or_else(|| panic!("{name} not planned"))
    };
    let artifact_stage = |bucket: &str| {
        pf.stages
            .iter()
            .position(|s| {
                s.buckets.iter().any(|b| {
                    b.bucket == format!("{p}{bucket}")
                        && b.actions
                            .iter()
                            .any(|a| matches!(a, Action::ReencryptObjects { .. }))
                })
            })
            .unwrap()
    };
    assert!(stage_of("fraud-ep") >= artifact_stage("ml-fraud-models"));
    assert!(stage_of("vision-ep") >= artifact_stage("ml-vision-data"));
    let item = |name: &str| {
        pf.stages
            .iter()
            .flat_map(|s| &s.sagemaker)
            .find(|x| x.name == format!("{p}{name}"))
            .unwrap()
            .clone()
    };
    assert_eq!(item("fraud-ep").action, "rekey-endpoint");
    assert_eq!(item("blocked-ep").action, "blocked");
    assert!(item("blocked-ep")
        .reason
        .unwrap()
        .contains("add to its key policy"));
    assert_eq!(item("nb").action, "manual");
    assert!(!item("nb").manual_steps.is_empty());
    assert_eq!(item("train").action, "report");
    let manifest =
        std::fs::read_to_string(plan_path.with_file_name("demo.manifest.jsonl")).unwrap();
    let shard1 = manifest
        .lines()
        .find(|l| l.contains("shards/00001.tfrecord"))
        .unwrap();
    assert!(
        shard1.contains("\"step\":\"blocked\"") && shard1.contains("model artifact of endpoint"),
        "{shard1}"
    );

    // A key policy that changed since planning, so that a consumer may no longer use the key,
    // makes the plan stale: nothing is applied.
    let kms = harness::clients(&endpoint).await.kms;
    let root_only = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}"#;
    let other_only = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/someone-else"},"Action":"kms:*","Resource":"*"}]}"#;
    kms.put_key_policy()
        .key_id(&fraud)
        .policy_name("default")
        .policy(other_only)
        .send()
        .await
        .unwrap();
    let out = harness::rekey(&endpoint)
        .args(["apply"])
        .arg(&plan_path)
        .arg("--yes")
        .output()
        .unwrap();
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("role/{p}fraud-exec may no longer use")),
        "{}",
        stderr(&out)
    );
    kms.put_key_policy()
        .key_id(&fraud)
        .policy_name("default")
        .policy(root_only)
        .send()
        .await
        .unwrap();

    // Apply: endpoints move to a clone of their config with the team key.
    let ctx = Ctx {
        _dir: dir,
        prefix: p.clone(),
        endpoint: endpoint.clone(),
        plan: plan_path.clone(),
        s3: harness::clients(&endpoint).await.s3,
    };
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sm = harness::clients(&endpoint).await.sagemaker;
    let (cfg, key, capture) = endpoint_keys(&sm, &format!("{p}fraud-ep")).await;
    assert_eq!(cfg, item("fraud-ep").new_config.unwrap());
    assert_eq!(key.as_deref(), Some(fraud.as_str()));
    assert_eq!(
        capture.as_deref(),
        Some(fraud.as_str()),
        "the data-capture key moves too"
    );
    assert_eq!(
        endpoint_keys(&sm, &format!("{p}vision-ep"))
            .await
            .1
            .as_deref(),
        Some(vision.as_str())
    );
    let (cfg, key, _) = endpoint_keys(&sm, &format!("{p}blocked-ep")).await;
    assert_eq!(
        (cfg.as_str(), key),
        (format!("{p}blocked-ep-cfg").as_str(), None),
        "nothing of the blocked endpoint changed"
    );
    let h = ctx
        .s3
        .head_object()
        .bucket(ctx.bucket("ml-vision-data"))
        .key("shards/00001.tfrecord")
        .send()
        .await
        .unwrap();
    assert_eq!(h.ssekms_key_id(), None, "nor its artifact");
    // Not done while the blocked endpoint and the notebook stay on service-managed keys.
    let out = ctx.rekey(&["verify", ctx.plan_str()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(code(&out), 6, "{text}");
    assert!(text.contains(&format!("endpoint/{p}blocked-ep")), "{text}");
    assert!(text.contains("notebook-instance/"), "{text}");
    let out = ctx.rekey(&["verify", ctx.plan_str(), "--ignore-blocked"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));

    // Rollback: every endpoint returns to its old config.
    let out = ctx.rekey(&["rollback", ctx.plan_str(), "--yes"]);
    assert_eq!(
        code(&out),
        0,
        "{} {}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        endpoint_keys(&sm, &format!("{p}fraud-ep")).await.0,
        format!("{p}fraud-ep-cfg")
    );
    assert_eq!(
        endpoint_keys(&sm, &format!("{p}vision-ep"))
            .await
            .1
            .as_deref(),
        Some(keys["legacy"].as_str().unwrap())
    );
    let out = ctx.rekey(&["verify", ctx.plan_str()]);
    assert_eq!(code(&out), 6);
}
