//! SageMaker: the artifact graph, consumer preflight, endpoint re-key, verify and rollback.

use std::process::Command;

use rekey::plan::{self, Action};

use crate::apply::{code, stderr, Ctx};
use crate::harness::{self, overlay, unique};

fn seed_sagemaker(endpoint: &str, prefix: &str) -> serde_json::Value {
    seed_with("tests/seed_sagemaker.py", &[endpoint, prefix])
}

fn seed_with(script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(harness::ensure_venv())
        .arg(harness::repo_root().join(script))
        .args(args)
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
    let out = harness::inventory_file(&endpoint, &campaign, &inv);
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
        .contains("add to the key policy"));
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

/// DescribeEndpointConfig as SageMaker answers it (boto3, every field), and the endpoint.
fn describe_raw(endpoint: &str, what: &str, name: &str) -> serde_json::Value {
    let script = format!(
        "import boto3, json, sys\n\
         sm = boto3.client('sagemaker', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         r = sm.{what}(**json.loads(sys.argv[2])); r.pop('ResponseMetadata', None)\n\
         print(json.dumps(r, default=str))"
    );
    let field = if what == "describe_endpoint" {
        "EndpointName"
    } else {
        "EndpointConfigName"
    };
    let out = Command::new(harness::ensure_venv())
        .args(["-c", &script, endpoint])
        .arg(serde_json::json!({ field: name }).to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A config with what a re-key may change taken out: name, ARN, creation time, the keys.
fn beyond_keys(mut c: serde_json::Value) -> serde_json::Value {
    let m = c.as_object_mut().unwrap();
    for f in [
        "EndpointConfigName",
        "EndpointConfigArn",
        "CreationTime",
        "KmsKeyId",
    ] {
        m.remove(f);
    }
    if let Some(d) = m
        .get_mut("DataCaptureConfig")
        .and_then(|d| d.as_object_mut())
    {
        d.remove("KmsKeyId");
    }
    if let Some(o) = m
        .get_mut("AsyncInferenceConfig")
        .and_then(|a| a.get_mut("OutputConfig"))
        .and_then(|o| o.as_object_mut())
    {
        o.remove("KmsKeyId");
    }
    c
}

fn sagemaker_campaign(
    dir: &std::path::Path,
    p: &str,
    sagemaker: &str,
    top: &str,
) -> std::path::PathBuf {
    let campaign = dir.join("campaign.yaml");
    let yaml = crate::apply::campaign_yaml(
        p,
        "",
        "limits: { concurrency: 4, requests_per_second: 200 }",
    )
    .replace("  s3: {", &format!("  sagemaker: {sagemaker}\n  s3: {{"));
    std::fs::write(&campaign, format!("{yaml}{top}")).unwrap();
    campaign
}

fn plan_with(
    endpoint: &str,
    campaign: &std::path::Path,
    plan_path: &std::path::Path,
) -> plan::PlanFile {
    let out = harness::rekey(endpoint)
        .args(["plan", "-c"])
        .arg(campaign)
        .arg("-o")
        .arg(plan_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    plan::load(plan_path).unwrap()
}

fn planned_item(pf: &plan::PlanFile, name: &str) -> plan::SmPlan {
    pf.stages
        .iter()
        .flat_map(|s| &s.sagemaker)
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("{name} not planned"))
        .clone()
}

#[tokio::test]
async fn a_rekeyed_endpoint_keeps_every_field_its_fleet_and_what_its_key_does_not_cover() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("smfull");
    let seeded = harness::seed_estate(&endpoint, &p, 1);
    seed_with("tests/seed_sagemaker.py", &[&endpoint, &p, "full"]);
    let fraud = seeded["keys"]["fraud"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let deployment = r#"{ BlueGreenUpdatePolicy: { TrafficRoutingConfiguration: { Type: ALL_AT_ONCE, WaitIntervalInSeconds: 300 }, TerminationWaitInSeconds: 600 }, AutoRollbackConfiguration: { Alarms: [ { AlarmName: fraud-5xx } ] } }"#;
    let campaign = sagemaker_campaign(
        dir.path(),
        &p,
        &format!("{{ endpoints: true, deployment_config: {deployment} }}"),
        "",
    );
    let plan_path = dir.path().join("plans/demo.plan.yaml");
    let pf = plan_with(&endpoint, &campaign, &plan_path);

    // An NVMe-only endpoint with nothing else to re-key is not applicable, with reason and
    // source; one with data capture is re-keyed without a volume key being required.
    let nvme = planned_item(&pf, &format!("{p}nvme-ep"));
    assert_eq!(nvme.action, "not-applicable", "{nvme:?}");
    assert_eq!(
        nvme.volume_key.coverage,
        rekey::providers::sagemaker::Coverage::NotCovered
    );
    assert!(nvme
        .volume_key
        .reason
        .as_deref()
        .unwrap()
        .contains("ml.g4dn.xlarge"));
    assert!(nvme
        .volume_key
        .source
        .as_deref()
        .unwrap()
        .contains("Instance store volumes"));
    let capture = planned_item(&pf, &format!("{p}nvme-capture-ep"));
    assert_eq!(capture.action, "rekey-endpoint");
    assert_eq!(
        capture.volume_key.coverage,
        rekey::providers::sagemaker::Coverage::NotCovered
    );
    let partial = planned_item(&pf, &format!("{p}partial-ep"));
    assert_eq!(
        partial.volume_key.coverage,
        rekey::providers::sagemaker::Coverage::Partial
    );
    let full = planned_item(&pf, &format!("{p}full-ep"));
    assert_eq!(full.action, "rekey-endpoint", "{full:?}");
    assert!(full.access.iter().all(|v| v.allowed()), "{:?}", full.access);
    assert!(
        full.access
            .iter()
            .any(|v| v.principal.ends_with(":user/moto")
                && v.actions.iter().any(|a| a == "kms:CreateGrant")),
        "rekey's own identity is checked: {:?}",
        full.access
    );
    // The runbook shows how the endpoint is updated.
    let out = harness::rekey(&endpoint)
        .args(["runbook"])
        .arg(&plan_path)
        .output()
        .unwrap();
    let runbook = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        runbook.contains("RetainAllVariantProperties") && runbook.contains("BlueGreenUpdatePolicy"),
        "{runbook}"
    );

    // The fleet as autoscaling left it: blue at weight 0.2 with 3 instances.
    let sm = harness::clients(&endpoint).await.sagemaker;
    sm.update_endpoint_weights_and_capacities()
        .endpoint_name(format!("{p}full-ep"))
        .desired_weights_and_capacities(
            aws_sdk_sagemaker::types::DesiredWeightAndCapacity::builder()
                .variant_name("blue")
                .desired_weight(0.2)
                .desired_instance_count(3)
                .build(),
        )
        .send()
        .await
        .unwrap();
    // Someone already made a config under the deterministic name of nvme-capture-ep, with
    // other content: it must not be deployed.
    let squatter = capture.new_config.clone().unwrap();
    let mut other = describe_raw(
        &endpoint,
        "describe_endpoint_config",
        &format!("{p}nvme-capture-ep-cfg"),
    );
    other["DataCaptureConfig"]["InitialSamplingPercentage"] = serde_json::json!(100);
    other["DataCaptureConfig"]["KmsKeyId"] = serde_json::json!(fraud);
    other["EndpointConfigName"] = serde_json::json!(squatter);
    let script = "import boto3, json, sys\nsm = boto3.client('sagemaker', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\nc = json.loads(sys.argv[2])\nfor f in ['EndpointConfigArn', 'CreationTime']: c.pop(f, None)\nsm.create_endpoint_config(**c)";
    let out = Command::new(harness::ensure_venv())
        .args(["-c", script, &endpoint, &other.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // This emulator refuses a KmsKeyId for ml.m5d, as older SageMaker did.
    let http = reqwest::Client::new();
    http.post(format!("{endpoint}/_rekey/sagemaker"))
        .body(r#"{"refuse_kms_for": ["ml.m5d"]}"#)
        .send()
        .await
        .unwrap();

    let ctx = Ctx {
        _dir: dir,
        prefix: p.clone(),
        endpoint: endpoint.clone(),
        plan: plan_path.clone(),
        s3: harness::clients(&endpoint).await.s3,
    };
    let out = ctx.apply(&[]);
    http.post(format!("{endpoint}/_rekey/sagemaker"))
        .body(r#"{"refuse_kms_for": []}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(&out),
        3,
        "the squatted config fails its step: {}",
        stderr(&out)
    );

    // The clone equals its source except the keys, which are all on the team key.
    let now = describe_raw(&endpoint, "describe_endpoint", &format!("{p}full-ep"));
    assert_eq!(
        now["EndpointConfigName"],
        full.new_config.clone().unwrap().as_str()
    );
    let old = describe_raw(
        &endpoint,
        "describe_endpoint_config",
        &format!("{p}full-ep-cfg"),
    );
    let new = describe_raw(
        &endpoint,
        "describe_endpoint_config",
        full.new_config.as_deref().unwrap(),
    );
    assert_eq!(beyond_keys(new.clone()), beyond_keys(old.clone()));
    assert_eq!(new["EnableNetworkIsolation"], true);
    assert_eq!(new["VpcConfig"], old["VpcConfig"]);
    assert_eq!(new["KmsKeyId"], fraud.as_str());
    assert_eq!(new["DataCaptureConfig"]["KmsKeyId"], fraud.as_str());
    assert_eq!(
        new["AsyncInferenceConfig"]["OutputConfig"]["KmsKeyId"],
        fraud.as_str()
    );
    let tags = sm
        .list_tags()
        .resource_arn(new["EndpointConfigArn"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let mut tags: Vec<(String, String)> = tags
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        vec![
            ("cost-center".to_string(), "cc-42".to_string()),
            ("team".to_string(), "fraud".to_string())
        ]
    );
    // The fleet is kept and the deployment config passed through.
    let blue = now["ProductionVariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["VariantName"] == "blue")
        .unwrap()
        .clone();
    assert_eq!(
        (
            blue["CurrentWeight"].as_f64(),
            blue["CurrentInstanceCount"].as_i64()
        ),
        (Some(0.2), Some(3)),
        "{blue}"
    );
    let updates: serde_json::Value = http
        .get(format!("{endpoint}/_rekey/sagemaker"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sent = updates["updates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["EndpointName"] == format!("{p}full-ep"))
        .unwrap()
        .clone();
    assert_eq!(sent["RetainAllVariantProperties"], true);
    assert_eq!(
        sent["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"],
        "ALL_AT_ONCE"
    );
    assert_eq!(
        sent["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"][0]["AlarmName"],
        "fraud-5xx"
    );
    // The partial endpoint: the service refused the volume key, so its config goes without,
    // its source's fields all kept.
    let partial_now = describe_raw(&endpoint, "describe_endpoint", &format!("{p}partial-ep"));
    assert_eq!(
        partial_now["EndpointConfigName"],
        partial.new_config.clone().unwrap().as_str()
    );
    let pnew = describe_raw(
        &endpoint,
        "describe_endpoint_config",
        partial.new_config.as_deref().unwrap(),
    );
    assert!(pnew.get("KmsKeyId").is_none(), "{pnew}");
    // The squatted name: the endpoint stays on its config, the failure names the difference.
    let cap_now = describe_raw(
        &endpoint,
        "describe_endpoint",
        &format!("{p}nvme-capture-ep"),
    );
    assert_eq!(
        cap_now["EndpointConfigName"],
        format!("{p}nvme-capture-ep-cfg").as_str()
    );
    let report = std::fs::read_to_string(plan_path.with_file_name("demo.report.md")).unwrap();
    assert!(
        report.contains("InitialSamplingPercentage"),
        "the failure names the difference: {report}"
    );
    // The NVMe-only endpoint was left alone.
    let nvme_now = describe_raw(&endpoint, "describe_endpoint", &format!("{p}nvme-ep"));
    assert_eq!(
        nvme_now["EndpointConfigName"],
        format!("{p}nvme-ep-cfg").as_str()
    );
}

#[tokio::test]
async fn key_access_verdicts_name_their_statements_and_block_what_they_must() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("roles");
    harness::seed_estate(&endpoint, &p, 1);
    let seeded = seed_with("tests/seed_key_roles.py", &[&endpoint, &p]);
    let key = seeded["key"].as_str().unwrap().to_string();
    let role = |case: &str| seeded["roles"][case].as_str().unwrap().to_string();
    let consumers: String = ["named", "iam", "noiam", "deny", "via", "cond"]
        .iter()
        .map(|c| {
            format!(
                "  - {{ principal: \"{}\", keys: [fraud], via: s3 }}\n",
                role(c)
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let campaign = sagemaker_campaign(
        dir.path(),
        &p,
        "{ endpoints: false }",
        &format!("consumers:\n{consumers}"),
    );
    let plan_path = dir.path().join("plans/demo.plan.yaml");
    let pf = plan_with(&endpoint, &campaign, &plan_path);
    let verdict = |case: &str| {
        pf.access
            .iter()
            .find(|v| v.principal == role(case) && v.key_arn == key)
            .unwrap_or_else(|| panic!("no verdict for {case}: {:?}", pf.access))
            .clone()
    };
    use rekey::access::VerdictKind::*;
    let rests = |case: &str, what: &str| verdict(case).rests_on.iter().any(|r| r.contains(what));
    assert_eq!(verdict("named").verdict, Allowed);
    assert!(rests("named", "\"NamedRole\""), "{:?}", verdict("named"));
    assert_eq!(verdict("iam").verdict, Allowed);
    assert!(
        rests("iam", "\"RootDelegation\"") && rests("iam", "inline policy use-fraud"),
        "{:?}",
        verdict("iam")
    );
    assert_eq!(
        verdict("noiam").verdict,
        NotAllowed,
        "{:?}",
        verdict("noiam")
    );
    assert!(verdict("noiam")
        .add
        .as_deref()
        .unwrap()
        .contains(&role("noiam")));
    assert_eq!(verdict("deny").verdict, Denied, "{:?}", verdict("deny"));
    assert!(
        rests("deny", "\"DenyAllButEncrypt\""),
        "{:?}",
        verdict("deny")
    );
    assert_eq!(verdict("via").verdict, Allowed, "{:?}", verdict("via"));
    assert!(rests("via", "\"ViaS3\""));
    assert_eq!(verdict("cond").verdict, Unverified, "{:?}", verdict("cond"));
    assert!(
        verdict("cond")
            .reason
            .as_deref()
            .unwrap()
            .contains("aws:SourceIp"),
        "{:?}",
        verdict("cond")
    );
    assert!(pf
        .access
        .iter()
        .all(|v| v.not_evaluated.contains("service control policies")));
    // What would move onto the fraud key is blocked: its buckets' defaults and objects.
    let fraud_buckets: Vec<&plan::BucketPlan> = pf
        .stages
        .iter()
        .flat_map(|s| &s.buckets)
        .filter(|b| b.key.as_deref() == Some("fraud"))
        .collect();
    assert!(!fraud_buckets.is_empty());
    for b in &fraud_buckets {
        assert!(
            !b.actions.iter().any(|a| match a {
                Action::SetBucketDefault { .. } => true,
                Action::ReencryptObjects { key, .. } => key == "fraud",
            }),
            "{}: {:?}",
            b.bucket,
            b.actions
        );
        assert!(
            b.blocked
                .iter()
                .any(|x| x.reason.contains("key-access preflight")),
            "{}: {:?}",
            b.bucket,
            b.blocked
        );
    }

    // Accepting the undecidable statement by name, and fixing the others, unblocks the key;
    // a Deny is never accepted away.
    let accept = "preflight: { accept_unverified: { statements: [SourceIpOnly] } }\n";
    let campaign = sagemaker_campaign(
        dir.path(),
        &p,
        "{ endpoints: false }",
        &format!("consumers:\n{consumers}{accept}"),
    );
    let pf = plan_with(
        &endpoint,
        &campaign,
        &dir.path().join("plans/again.plan.yaml"),
    );
    let cond = pf
        .access
        .iter()
        .find(|v| v.principal == role("cond"))
        .unwrap();
    assert_eq!(cond.verdict, Allowed, "{cond:?}");
    assert!(
        cond.accepted.iter().any(|a| a.contains("SourceIpOnly")),
        "{cond:?}"
    );
    let deny = pf
        .access
        .iter()
        .find(|v| v.principal == role("deny"))
        .unwrap();
    assert_eq!(deny.verdict, Denied);
}

/// An endpoint planned `not-applicable` (NVMe only, nothing else to re-key) still has
/// its execution role's verdict on the artifact key recorded as allowed in the plan, and its
/// artifact is re-keyed. If the role loses access between plan and apply, apply must refuse
/// (exit 4, stale plan) before re-keying the artifact.
#[tokio::test]
async fn a_not_applicable_endpoints_verdicts_are_evaluated_again_at_apply() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("smna");
    harness::seed_estate(&endpoint, &p, 1);
    let script = r#"
import boto3, json, sys
ep, p = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=ep, region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')
sm = boto3.client('sagemaker', **kw); iam = boto3.client('iam', **kw); kms = boto3.client('kms', **kw)
trust = json.dumps({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"sagemaker.amazonaws.com"},"Action":"sts:AssumeRole"}]})
iam.create_role(RoleName=p+'solo-exec', AssumeRolePolicyDocument=trust)
fraud = kms.describe_key(KeyId=f'alias/{p}ml-fraud')['KeyMetadata']['Arn']
iam.put_role_policy(RoleName=p+'solo-exec', PolicyName='fraud-key', PolicyDocument=json.dumps({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:Decrypt","kms:GenerateDataKey"],"Resource":fraud}]}))
role = f'arn:aws:iam::123456789012:role/{p}solo-exec'
sm.create_model(ModelName=p+'solo-model', ExecutionRoleArn=role, PrimaryContainer={"Image":"123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1","ModelDataUrl":f"s3://{p}ml-fraud-models/xgb/v0/model.tar.gz"})
sm.create_endpoint_config(EndpointConfigName=p+'solo-ep-cfg', ProductionVariants=[{"VariantName":"main","ModelName":p+'solo-model',"InitialInstanceCount":1,"InstanceType":"ml.g4dn.xlarge"}])
sm.create_endpoint(EndpointName=p+'solo-ep', EndpointConfigName=p+'solo-ep-cfg')
print(json.dumps({"fraud": fraud}))
"#;
    let out = Command::new(harness::ensure_venv())
        .args(["-c", script, &endpoint, &p])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let campaign = sagemaker_campaign(dir.path(), &p, "{ endpoints: true }", "");
    let plan_path = dir.path().join("plans/demo.plan.yaml");
    let pf = plan_with(&endpoint, &campaign, &plan_path);
    let solo = planned_item(&pf, &format!("{p}solo-ep"));
    assert_eq!(solo.action, "not-applicable", "{solo:?}");
    assert!(
        solo.access
            .iter()
            .any(|v| v.allowed() && v.principal.ends_with(&format!("role/{p}solo-exec"))),
        "the plan records the role's allowed verdict: {:?}",
        solo.access
    );
    // The role loses its IAM permission on the key after planning.
    let out = Command::new(harness::ensure_venv())
        .args([
            "-c",
            "import boto3, sys\nboto3.client('iam', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing').delete_role_policy(RoleName=sys.argv[2]+'solo-exec', PolicyName='fraud-key')",
            &endpoint,
            &p,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = harness::rekey(&endpoint)
        .args(["apply"])
        .arg(&plan_path)
        .arg("--yes")
        .output()
        .unwrap();
    let s3 = harness::clients(&endpoint).await.s3;
    let h = s3
        .head_object()
        .bucket(format!("{p}ml-fraud-models"))
        .key("xgb/v0/model.tar.gz")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(&out),
        4,
        "apply must refuse: solo-exec may no longer use the fraud key; artifact now on {:?}; {}",
        h.ssekms_key_id(),
        stderr(&out)
    );
}

/// The plan checks rekey's own identity (the planner's) for CreateGrant on the team
/// key; apply re-checks that same recorded principal, not the identity apply runs as. An apply
/// under credentials that may not use the key must be refused before any endpoint moves.
#[tokio::test]
async fn apply_evaluates_the_identity_it_runs_as() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("smid");
    harness::seed_estate(&endpoint, &p, 1);
    seed_sagemaker(&endpoint, &p);
    let dir = tempfile::tempdir().unwrap();
    let campaign = sagemaker_campaign(dir.path(), &p, "{ endpoints: true }", "");
    let plan_path = dir.path().join("plans/demo.plan.yaml");
    let pf = plan_with(&endpoint, &campaign, &plan_path);
    let fraud = planned_item(&pf, &format!("{p}fraud-ep"));
    assert_eq!(fraud.action, "rekey-endpoint");
    assert!(
        fraud.access.iter().any(|v| v.allowed()
            && v.principal.ends_with(":user/moto")
            && v.actions.iter().any(|a| a == "kms:CreateGrant")),
        "{:?}",
        fraud.access
    );
    // Another identity, with no KMS permission at all, runs the apply.
    let script = "import boto3, sys, json\niam = boto3.client('iam', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\niam.create_user(UserName=sys.argv[2]+'ci')\nk = iam.create_access_key(UserName=sys.argv[2]+'ci')['AccessKey']\nsts = boto3.client('sts', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id=k['AccessKeyId'], aws_secret_access_key=k['SecretAccessKey'])\nprint(json.dumps({'id': k['AccessKeyId'], 'secret': k['SecretAccessKey'], 'arn': sts.get_caller_identity()['Arn']}))";
    let out = Command::new(harness::ensure_venv())
        .args(["-c", script, &endpoint, &p])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let who: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        who["arn"]
            .as_str()
            .unwrap()
            .ends_with(&format!("user/{p}ci")),
        "{who}"
    );
    let out = harness::rekey(&endpoint)
        .env("AWS_ACCESS_KEY_ID", who["id"].as_str().unwrap())
        .env("AWS_SECRET_ACCESS_KEY", who["secret"].as_str().unwrap())
        .args(["apply"])
        .arg(&plan_path)
        .arg("--yes")
        .output()
        .unwrap();
    let now = describe_raw(&endpoint, "describe_endpoint", &format!("{p}fraud-ep"));
    assert_eq!(
        code(&out),
        4,
        "apply ran as {} (no KMS permission) and moved fraud-ep to {}: {}",
        who["arn"],
        now["EndpointConfigName"],
        stderr(&out)
    );
}

/// A model whose artifacts are given as ModelDataSource (uncompressed S3 prefix, the
/// current SageMaker way) rather than ModelDataUrl: its execution role will read them under
/// the team key, so the preflight must evaluate it, and block the artifacts when it may not.
#[tokio::test]
async fn model_data_source_artifacts_are_checked() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("smmds");
    harness::seed_estate(&endpoint, &p, 1);
    let script = r#"
import boto3, json, sys
ep, p = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=ep, region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')
sm = boto3.client('sagemaker', **kw); iam = boto3.client('iam', **kw)
trust = json.dumps({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"sagemaker.amazonaws.com"},"Action":"sts:AssumeRole"}]})
iam.create_role(RoleName=p+'nokey-exec', AssumeRolePolicyDocument=trust)
role = f'arn:aws:iam::123456789012:role/{p}nokey-exec'
sm.create_model(ModelName=p+'mds-model', ExecutionRoleArn=role, PrimaryContainer={"Image":"123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1","ModelDataSource":{"S3DataSource":{"S3Uri":f"s3://{p}ml-fraud-models/xgb/v0/","S3DataType":"S3Prefix","CompressionType":"None"}}})
sm.create_endpoint_config(EndpointConfigName=p+'mds-ep-cfg', ProductionVariants=[{"VariantName":"main","ModelName":p+'mds-model',"InitialInstanceCount":1,"InstanceType":"ml.m5.large"}])
sm.create_endpoint(EndpointName=p+'mds-ep', EndpointConfigName=p+'mds-ep-cfg')
"#;
    let out = Command::new(harness::ensure_venv())
        .args(["-c", script, &endpoint, &p])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let campaign = sagemaker_campaign(dir.path(), &p, "{ endpoints: true }", "");
    let plan_path = dir.path().join("plans/demo.plan.yaml");
    let _pf = plan_with(&endpoint, &campaign, &plan_path);
    let manifest =
        std::fs::read_to_string(plan_path.with_file_name("demo.manifest.jsonl")).unwrap();
    let artifact = manifest
        .lines()
        .find(|l| l.contains("xgb/v0/model.tar.gz"))
        .unwrap();
    assert!(
        artifact.contains("\"step\":\"blocked\""),
        "the artifact of {p}mds-ep moves onto a key its role {p}nokey-exec may not use: {artifact}"
    );
}

/// The artifact verdict is made for the key the *prefix URL* maps to, not
/// for the keys its objects map to. A ModelDataSource S3Prefix whose objects are mapped by a
/// narrower prefix rule (or a name/tag rule) than the prefix string itself gets no verdict at
/// all, and the objects move onto a key the execution role may not use.
#[tokio::test]
async fn prefix_artifact_objects_mapped_to_another_key_are_checked() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("smpfx");
    harness::seed_estate(&endpoint, &p, 1);
    let script = r#"
import boto3, json, sys
ep, p = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=ep, region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')
sm = boto3.client('sagemaker', **kw); iam = boto3.client('iam', **kw); s3 = boto3.client('s3', **kw)
s3.create_bucket(Bucket=p+'ml-shared-models')
s3.put_object(Bucket=p+'ml-shared-models', Key='llm/adapters/fraud.safetensors', Body=b'w')
s3.put_object(Bucket=p+'ml-shared-models', Key='llm/base/config.json', Body=b'c')
trust = json.dumps({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"sagemaker.amazonaws.com"},"Action":"sts:AssumeRole"}]})
iam.create_role(RoleName=p+'nokey-exec', AssumeRolePolicyDocument=trust)
role = f'arn:aws:iam::123456789012:role/{p}nokey-exec'
sm.create_model(ModelName=p+'llm-model', ExecutionRoleArn=role, PrimaryContainer={"Image":"123456789012.dkr.ecr.us-east-1.amazonaws.com/llm:1","ModelDataSource":{"S3DataSource":{"S3Uri":f"s3://{p}ml-shared-models/llm/","S3DataType":"S3Prefix","CompressionType":"None"}}})
sm.create_endpoint_config(EndpointConfigName=p+'llm-ep-cfg', ProductionVariants=[{"VariantName":"main","ModelName":p+'llm-model',"InitialInstanceCount":1,"InstanceType":"ml.m5.large"}])
sm.create_endpoint(EndpointName=p+'llm-ep', EndpointConfigName=p+'llm-ep-cfg')
"#;
    let out = Command::new(harness::ensure_venv())
        .args(["-c", script, &endpoint, &p])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let campaign = sagemaker_campaign(dir.path(), &p, "{ endpoints: true }", "");
    // The adapters under the model's prefix belong to the fraud team.
    let text = std::fs::read_to_string(&campaign).unwrap().replacen(
        "mapping:\n",
        &format!(
            "mapping:\n  - {{ match: {{ bucket: \"{p}ml-shared-models\", prefix: \"llm/adapters/\" }}, key: fraud }}\n"
        ),
        1,
    );
    std::fs::write(&campaign, text).unwrap();
    let plan_path = dir.path().join("plans/demo.plan.yaml");
    let _pf = plan_with(&endpoint, &campaign, &plan_path);
    let manifest =
        std::fs::read_to_string(plan_path.with_file_name("demo.manifest.jsonl")).unwrap();
    let adapter = manifest
        .lines()
        .find(|l| l.contains("llm/adapters/fraud.safetensors"))
        .expect("the adapter is planned");
    assert!(
        adapter.contains("\"step\":\"blocked\""),
        "an artifact object of {p}llm-ep moves onto the fraud key, which its role {p}nokey-exec may not use: {adapter}"
    );
}

/// Apply reads the source endpoint config by name at apply time. If it
/// was deleted and created again under the same name since the plan (SageMaker allows deleting
/// a config an endpoint uses), apply clones and deploys content that was never checked (here a
/// model whose role may not use the key), and a rollback "restores" the new content.
#[tokio::test]
async fn a_source_config_replaced_since_the_plan_is_not_deployed() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("smcfg");
    harness::seed_estate(&endpoint, &p, 1);
    seed_sagemaker(&endpoint, &p);
    let dir = tempfile::tempdir().unwrap();
    let campaign = sagemaker_campaign(dir.path(), &p, "{ endpoints: true }", "");
    let plan_path = dir.path().join("plans/demo.plan.yaml");
    let pf = plan_with(&endpoint, &campaign, &plan_path);
    let fraud = planned_item(&pf, &format!("{p}fraud-ep"));
    assert_eq!(fraud.action, "rekey-endpoint", "{fraud:?}");
    // After the plan: the config fraud-ep runs is replaced under the same name, now serving the
    // model whose role (intruder) may not use the fraud key.
    let script = r#"
import boto3, sys
ep, p = sys.argv[1], sys.argv[2]
sm = boto3.client('sagemaker', endpoint_url=ep, region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')
c = sm.describe_endpoint_config(EndpointConfigName=p+'fraud-ep-cfg')
sm.delete_endpoint_config(EndpointConfigName=p+'fraud-ep-cfg')
v = c['ProductionVariants'][0]; v['ModelName'] = p+'blocked-ep-model'
kw = dict(EndpointConfigName=p+'fraud-ep-cfg', ProductionVariants=[v])
if 'DataCaptureConfig' in c: kw['DataCaptureConfig'] = c['DataCaptureConfig']
sm.create_endpoint_config(**kw)
"#;
    let out = Command::new(harness::ensure_venv())
        .args(["-c", script, &endpoint, &p])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = harness::rekey(&endpoint)
        .args(["apply"])
        .arg(&plan_path)
        .arg("--yes")
        .output()
        .unwrap();
    // The endpoint stays on its own config (whatever it now holds is not rekey's doing); the
    // step is drift, named as such.
    let now = describe_raw(&endpoint, "describe_endpoint", &format!("{p}fraud-ep"));
    let cfg_name = now["EndpointConfigName"].as_str().unwrap().to_string();
    assert_eq!(
        cfg_name,
        format!("{p}fraud-ep-cfg"),
        "apply (exit {}) moved the endpoint onto a clone of content never checked: {}",
        code(&out),
        stderr(&out)
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("changed since the plan"),
        "{}",
        stderr(&out)
    );
}

/// A config that already exists under the clone's name is taken as
/// rekey's when it has *no* KmsKeyId although the source had one, whenever coverage is only
/// partial. Deployed, the endpoint's covered variant ends on neither its original key nor the
/// team key (I2), though creating it fresh rekey would never drop a key the source had.
#[tokio::test]
async fn an_existing_clone_without_the_volume_key_the_source_had_is_not_used() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("smvk");
    harness::seed_estate(&endpoint, &p, 1);
    seed_sagemaker(&endpoint, &p);
    let script = r#"
import boto3, json, sys
ep, p = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=ep, region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')
sm = boto3.client('sagemaker', **kw); kms = boto3.client('kms', **kw)
legacy = kms.describe_key(KeyId=f'alias/{p}legacy')['KeyMetadata']['Arn']
sm.create_endpoint_config(EndpointConfigName=p+'mix-ep-cfg', KmsKeyId=legacy, ProductionVariants=[
  {"VariantName":"a","ModelName":p+'fraud-ep-model',"InitialInstanceCount":1,"InstanceType":"ml.m5.large"},
  {"VariantName":"b","ModelName":p+'fraud-ep-model',"InitialInstanceCount":1,"InstanceType":"ml.m5d.xlarge"}])
sm.create_endpoint(EndpointName=p+'mix-ep', EndpointConfigName=p+'mix-ep-cfg')
"#;
    let out = Command::new(harness::ensure_venv())
        .args(["-c", script, &endpoint, &p])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let campaign = sagemaker_campaign(dir.path(), &p, "{ endpoints: true }", "");
    let text = std::fs::read_to_string(&campaign).unwrap().replacen(
        "mapping:\n",
        &format!("mapping:\n  - {{ match: {{ kind: sagemaker-endpoint, name: \"{p}mix-ep\" }}, key: fraud }}\n"),
        1,
    );
    std::fs::write(&campaign, text).unwrap();
    let plan_path = dir.path().join("plans/demo.plan.yaml");
    let pf = plan_with(&endpoint, &campaign, &plan_path);
    let mix = planned_item(&pf, &format!("{p}mix-ep"));
    assert_eq!(mix.action, "rekey-endpoint", "{mix:?}");
    let to = mix.new_config.clone().unwrap();
    // A config under the clone's name, the source field for field but without a KmsKeyId.
    let script = r#"
import boto3, sys
ep, p, to = sys.argv[1], sys.argv[2], sys.argv[3]
sm = boto3.client('sagemaker', endpoint_url=ep, region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')
c = sm.describe_endpoint_config(EndpointConfigName=p+'mix-ep-cfg')
sm.create_endpoint_config(EndpointConfigName=to, ProductionVariants=c['ProductionVariants'])
"#;
    let out = Command::new(harness::ensure_venv())
        .args(["-c", script, &endpoint, &p, &to])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = harness::rekey(&endpoint)
        .args(["apply"])
        .arg(&plan_path)
        .arg("--yes")
        .output()
        .unwrap();
    let now = describe_raw(&endpoint, "describe_endpoint", &format!("{p}mix-ep"));
    let cfg = describe_raw(
        &endpoint,
        "describe_endpoint_config",
        now["EndpointConfigName"].as_str().unwrap(),
    );
    assert!(
        cfg.get("KmsKeyId").is_some(),
        "apply (exit {}) moved {p}mix-ep (source KmsKeyId: the legacy key) to {} with no KmsKeyId: {}",
        code(&out),
        now["EndpointConfigName"],
        stderr(&out)
    );
}

/// `rekey plan --from-inventory` plans from a saved inventory without reading the cloud: with
/// the campaign the inventory was taken with it writes the online plan byte for byte; with
/// other rules it plans like the online plan, except that an endpoint moved to another key
/// than the inventory checked access for is blocked (plan online for it).
#[tokio::test]
async fn a_plan_from_a_saved_inventory_equals_the_online_plan() {
    // Its own emulator: SageMaker lists every endpoint of the account, and other tests add
    // theirs between this test's inventory and its online plans.
    let aws = harness::private_overlay(&[]);
    let endpoint = aws.endpoint.clone();
    let p = unique("offline");
    harness::seed_estate(&endpoint, &p, 1);
    seed_sagemaker(&endpoint, &p);
    let roles = seed_with("tests/seed_key_roles.py", &[&endpoint, &p]);
    let consumer = roles["roles"]["named"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let campaign = sagemaker_campaign(
        dir.path(),
        &p,
        "{ endpoints: true, notebook_instances: true, training_jobs: true }",
        &format!("consumers:\n  - {{ principal: \"{consumer}\", keys: [fraud], via: s3 }}\n"),
    );
    let plan =
        |endpoint: &str, campaign: &std::path::Path, sub: &str, from: Option<&std::path::Path>| {
            let path = dir.path().join(sub).join("plans/demo.plan.yaml");
            let mut cmd = harness::rekey(endpoint);
            cmd.env("SOURCE_DATE_EPOCH", "1790000000")
                .args(["plan", "-c"])
                .arg(campaign)
                .arg("-o")
                .arg(&path);
            if let Some(f) = from {
                cmd.arg("--from-inventory").arg(f);
            }
            let out = cmd.output().unwrap();
            (out, path)
        };
    let read = |path: &std::path::Path| {
        (
            std::fs::read_to_string(path).unwrap(),
            std::fs::read_to_string(path.with_file_name("demo.manifest.jsonl")).unwrap(),
        )
    };
    let (out, online) = plan(&endpoint, &campaign, "online", None);
    assert!(out.status.success(), "{}", stderr(&out));
    let inv = dir.path().join("inv.jsonl");
    let out = harness::inventory_file(&endpoint, &campaign, &inv);
    assert!(out.status.success(), "{}", stderr(&out));
    let header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&inv)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["format"], "rekey-inventory");
    assert_eq!(header["version"], 2);
    assert!(
        header["consumers"].as_array().is_some_and(|v| v.len() == 1),
        "{header}"
    );
    assert!(
        header["key_policies"]
            .as_object()
            .is_some_and(|m| !m.is_empty()),
        "{header}"
    );
    // Nothing answers at this address: a cloud call would fail the plan.
    let dead = "http://127.0.0.1:9";
    let (out, offline) = plan(dead, &campaign, "offline", Some(&inv));
    assert!(out.status.success(), "{}", stderr(&out));
    let (a, b) = (read(&online), read(&offline));
    assert_eq!(a.0, b.0, "the plan files differ");
    assert_eq!(a.1, b.1, "the manifests differ");
    assert!(
        plan::load(&offline)
            .unwrap()
            .stages
            .iter()
            .any(|s| !s.sagemaker.is_empty()),
        "the estate has endpoints"
    );

    // Other rules: the fraud buckets go to the vision key.
    let text = std::fs::read_to_string(&campaign).unwrap();
    let moved = text.replace(
        &format!("{{ match: {{ bucket: \"{p}ml-fraud-*\" }},   key: fraud }}"),
        &format!("{{ match: {{ bucket: \"{p}ml-fraud-*\" }},   key: vision }}"),
    );
    assert_ne!(moved, text, "the rule was rewritten");
    let campaign2 = dir.path().join("campaign2.yaml");
    std::fs::write(&campaign2, moved).unwrap();
    let (out, online2) = plan(&endpoint, &campaign2, "online2", None);
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, offline2) = plan(dead, &campaign2, "offline2", Some(&inv));
    assert!(out.status.success(), "{}", stderr(&out));
    let (a, b) = (read(&online2), read(&offline2));
    let (ma, mb): (Vec<&str>, Vec<&str>) = (a.1.lines().collect(), b.1.lines().collect());
    assert_eq!(ma.len(), mb.len());
    let mut artifacts_held = 0;
    for (la, lb) in ma.iter().zip(&mb) {
        if la == lb {
            continue;
        }
        // Only an artifact of an endpoint the new rules moved differs: held offline, saying
        // why, and otherwise the same entry.
        let (mut ea, mut eb): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(la).unwrap(),
            serde_json::from_str(lb).unwrap(),
        );
        assert_eq!(eb["step"], "blocked", "{lb}");
        assert!(
            eb["reason"].as_str().unwrap().contains("plan online"),
            "{lb}"
        );
        for e in [&mut ea, &mut eb] {
            e.as_object_mut().unwrap().remove("reason");
            e.as_object_mut().unwrap().remove("step");
        }
        assert_eq!(ea, eb);
        artifacts_held += 1;
    }
    assert!(artifacts_held <= 1, "{artifacts_held}");
    let (pa, pb) = (
        plan::load(&online2).unwrap(),
        plan::load(&offline2).unwrap(),
    );
    assert_eq!(pa.keys, pb.keys);
    assert_eq!(pa.access, pb.access);
    let mut blocked_offline = 0;
    for (sa, sb) in pa.stages.iter().zip(&pb.stages) {
        assert_eq!(sa.name, sb.name);
        // A bucket's blocked objects are the same, an artifact's reason aside (as above).
        let (mut ba, mut bb) = (sa.buckets.clone(), sb.buckets.clone());
        for (x, y) in ba.iter_mut().zip(bb.iter_mut()) {
            for (u, v) in x.blocked.iter_mut().zip(y.blocked.iter_mut()) {
                if v.reason.contains("plan online") {
                    (u.reason, v.reason) = (String::new(), String::new());
                }
            }
        }
        assert_eq!(ba, bb, "stage {}", sa.name);
        assert_eq!(sa.sagemaker.len(), sb.sagemaker.len(), "stage {}", sa.name);
        for (ea, eb) in sa.sagemaker.iter().zip(&sb.sagemaker) {
            assert_eq!((&ea.name, &ea.key), (&eb.name, &eb.key));
            if ea == eb {
                continue;
            }
            // Only an endpoint the new rules moved differs: blocked, saying why.
            assert_eq!(eb.action, "blocked", "{eb:?}");
            assert!(
                eb.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("plan online")),
                "{eb:?}"
            );
            blocked_offline += 1;
        }
    }
    assert!(
        blocked_offline > 0,
        "the fraud endpoints moved to the vision key are blocked offline"
    );
}

/// Review (offline plans): the planner relies on the inventory's order — every endpoint before
/// the S3 objects, so that an object that is a model artifact is checked against the
/// endpoint's execution role. A saved inventory whose endpoint records come after the objects
/// (edited, merged, reordered) must be refused (exit 2) or planned as safely as online: the
/// artifact of `blocked-ep` (whose role may not use the vision key) stays blocked. Today the
/// file is accepted and the artifact is planned to move to a key its endpoint cannot read.
#[tokio::test]
async fn review_offline_endpoints_after_their_artifacts_do_not_unblock_the_artifact() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("offorder");
    harness::seed_estate(&endpoint, &p, 2);
    seed_sagemaker(&endpoint, &p);
    let dir = tempfile::tempdir().unwrap();
    let campaign = sagemaker_campaign(
        dir.path(),
        &p,
        "{ endpoints: true, notebook_instances: false, training_jobs: false }",
        "",
    );
    let shard1 = |plan_path: &std::path::Path| {
        std::fs::read_to_string(plan_path.with_file_name("demo.manifest.jsonl"))
            .unwrap()
            .lines()
            .find(|l| l.contains("shards/00001.tfrecord"))
            .map(str::to_string)
            .unwrap_or_default()
    };
    // Online: the artifact of blocked-ep is blocked.
    let online = dir.path().join("online/plans/demo.plan.yaml");
    plan_with(&endpoint, &campaign, &online);
    let line = shard1(&online);
    assert!(
        line.contains("\"step\":\"blocked\"") && line.contains("model artifact of endpoint"),
        "{line}"
    );
    // The saved inventory, its endpoint records moved after everything else.
    let inv = dir.path().join("inv.jsonl");
    let out = harness::inventory_file(&endpoint, &campaign, &inv);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&inv).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let (endpoints, rest): (Vec<&str>, Vec<&str>) = lines.partition(|l| {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"] == "sagemaker-endpoint"
    });
    assert!(!endpoints.is_empty());
    let reordered = dir.path().join("reordered.jsonl");
    let mut body = vec![header];
    body.extend(rest);
    body.extend(endpoints);
    std::fs::write(&reordered, body.join("\n") + "\n").unwrap();
    let offline = dir.path().join("offline/plans/demo.plan.yaml");
    let out = harness::rekey("http://127.0.0.1:9")
        .args(["plan", "-c"])
        .arg(&campaign)
        .arg("-o")
        .arg(&offline)
        .arg("--from-inventory")
        .arg(&reordered)
        .output()
        .unwrap();
    if out.status.code() == Some(2) {
        return; // refused: fine
    }
    assert!(out.status.success(), "{}", stderr(&out));
    let line = shard1(&offline);
    assert!(
        line.contains("\"step\":\"blocked\""),
        "the online plan blocks this model artifact (its endpoint's role may not use the new key); the offline plan moves it: {line}"
    );
}
