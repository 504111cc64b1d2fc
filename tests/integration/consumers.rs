//! No consumer broken (issue 10): what surrounds a bucket — replication, event notifications,
//! bucket policies, cross-account readers, CloudFront origins — is read at inventory, judged
//! in the plan, and blocks a bucket until it is fixed or accepted.

use std::process::Command;

use rekey::plan::{self, Action, PlanFile};

use crate::apply::stderr;
use crate::harness::{self, overlay, unique};

fn seed(endpoint: &str, p: &str, mode: &str) -> serde_json::Value {
    let out = Command::new(harness::ensure_venv())
        .arg(harness::repo_root().join("tests/seed_bucket_consumers.py"))
        .args([endpoint, p, mode])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn plan_of(endpoint: &str, dir: &std::path::Path, p: &str, extra: &str, name: &str) -> PlanFile {
    let campaign = dir.join(format!("{name}.yaml"));
    let yaml = crate::apply::campaign_yaml(
        p,
        "",
        "limits: { concurrency: 4, requests_per_second: 200 }",
    );
    std::fs::write(&campaign, format!("{yaml}{extra}")).unwrap();
    let path = dir.join(format!("plans/{name}.plan.yaml"));
    let out = harness::rekey(endpoint)
        .args(["plan", "-c"])
        .arg(&campaign)
        .arg("-o")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    plan::load(&path).unwrap()
}

/// Every bucket plan of `bucket` across stages.
fn buckets<'a>(pf: &'a PlanFile, bucket: &str) -> Vec<&'a plan::BucketPlan> {
    pf.stages
        .iter()
        .flat_map(|s| &s.buckets)
        .filter(|b| b.bucket == bucket)
        .collect()
}

fn moves(pf: &PlanFile, bucket: &str) -> bool {
    buckets(pf, bucket).iter().any(|b| !b.actions.is_empty())
}

fn blocked_for(pf: &PlanFile, bucket: &str, what: &str) -> Option<String> {
    buckets(pf, bucket)
        .iter()
        .flat_map(|b| &b.blocked)
        .map(|x| x.reason.clone())
        .find(|r| r.contains(what))
}

fn objects_moved(pf: &PlanFile, bucket: &str) -> u64 {
    buckets(pf, bucket)
        .iter()
        .flat_map(|b| &b.actions)
        .map(|a| match a {
            Action::ReencryptObjects { objects, .. } => *objects,
            Action::SetBucketDefault { .. } => 0,
        })
        .sum()
}

#[tokio::test]
async fn hazards_and_readers_block_their_buckets_until_fixed() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("cons");
    harness::seed_estate(&endpoint, &p, 3);
    let seeded = seed(&endpoint, &p, "");
    let dir = tempfile::tempdir().unwrap();
    let b = |n: &str| format!("{p}{n}");

    let pf = plan_of(&endpoint, dir.path(), &p, "", "before");
    // Replication without the SSE-KMS opt-in: blocked, with the rule to put instead.
    let r = blocked_for(&pf, &b("ml-fraud-models"), "hazard replication-gap")
        .unwrap_or_else(|| panic!("{:?}", buckets(&pf, &b("ml-fraud-models"))));
    assert!(
        r.contains("SseKmsEncryptedObjects") && r.contains("ReplicaKmsKeyID"),
        "{r}"
    );
    assert!(!moves(&pf, &b("ml-fraud-models")));
    // A policy that pins SSE-S3: blocked, with the statement rewritten.
    let r = blocked_for(&pf, &b("ml-fraud-sandbox"), "hazard encryption-policy").unwrap();
    assert!(
        r.contains("\"OnlySseS3\"") && r.contains("\"aws:kms\""),
        "{r}"
    );
    assert!(!moves(&pf, &b("ml-fraud-sandbox")));
    // A cross-account reader the key policy does not name: blocked; the same-account reader
    // the key policy names is allowed (it alone would not block).
    let r = blocked_for(&pf, &b("ml-vision-data"), "consumer graph").unwrap();
    assert!(
        r.contains(seeded["cross"].as_str().unwrap()) && r.contains("not-allowed"),
        "{r}"
    );
    assert!(!r.contains(seeded["reader_ok"].as_str().unwrap()), "{r}");
    assert!(!moves(&pf, &b("ml-vision-data")));
    // An origin access identity: blocked, with the OAC statement for the key policy.
    let r = blocked_for(&pf, &b("ml-vision-locked"), "hazard oai-origin").unwrap();
    assert!(
        r.contains("cloudfront.amazonaws.com") && r.contains("aws:SourceArn"),
        "{r}"
    );
    // Nothing of these buckets is in the manifest as a step.
    let manifest = std::fs::read_to_string(dir.path().join("plans/before.manifest.jsonl")).unwrap();
    for line in manifest
        .lines()
        .filter(|l| l.contains(&b("ml-fraud-models")))
    {
        assert!(line.contains("\"step\":\"blocked\""), "{line}");
    }

    // Accepting the replication gap for that bucket plans it; the side effects are counted.
    let accept = "preflight: { accept_hazards: [ { bucket: \"*ml-fraud-models\", accept: [replication-gap] } ] }\n";
    let pf = plan_of(&endpoint, dir.path(), &p, accept, "accepted");
    assert!(moves(&pf, &b("ml-fraud-models")));
    let bp = buckets(&pf, &b("ml-fraud-models"));
    assert!(bp.iter().any(|x| x
        .hazards
        .iter()
        .any(|h| h.contains("(accepted by the campaign)"))));
    let moved = objects_moved(&pf, &b("ml-fraud-models"));
    assert!(moved > 0);
    let effects =
        |f: fn(&plan::SideEffects) -> u64| bp.iter().map(|x| f(&x.side_effects)).sum::<u64>();
    assert_eq!(
        effects(|e| e.notification_events),
        moved,
        "one SQS delivery per object"
    );
    assert_eq!(
        effects(|e| e.eventbridge_events),
        moved,
        "one EventBridge event per object"
    );
    assert_eq!(
        effects(|e| e.replicated_copies),
        moved,
        "every copy replicates again"
    );

    // Fixed: each bucket goes through, and the allowed readers are in the plan for apply to
    // check again.
    seed(&endpoint, &p, "fix");
    let pf = plan_of(&endpoint, dir.path(), &p, "", "fixed");
    for n in [
        "ml-fraud-models",
        "ml-fraud-sandbox",
        "ml-vision-data",
        "ml-vision-locked",
    ] {
        assert!(
            blocked_for(&pf, &b(n), "hazard").is_none()
                && blocked_for(&pf, &b(n), "consumer graph").is_none(),
            "{n}: {:?}",
            buckets(&pf, &b(n))
        );
    }
    assert!(moves(&pf, &b("ml-fraud-models")) && moves(&pf, &b("ml-vision-data")));
    assert!(
        pf.access
            .iter()
            .any(|v| v.principal == seeded["reader_ok"].as_str().unwrap() && v.allowed()),
        "{:?}",
        pf.access
    );
    assert!(
        pf.access
            .iter()
            .any(|v| v.principal == "cloudfront.amazonaws.com" && v.allowed()),
        "the OAC distribution may decrypt: {:?}",
        pf.access
    );

    // Apply evaluates the graph again: as planned, it goes through (the fraud stage; moto
    // denies every PutObject under a Deny with an SSE condition, whatever the header) ...
    let plan_path = dir.path().join("plans/fixed.plan.yaml");
    let apply = |stage: &str| {
        harness::rekey(&endpoint)
            .args(["apply"])
            .arg(&plan_path)
            .args(["--stage", stage, "--yes"])
            .output()
            .unwrap()
    };
    let out = apply("fraud");
    assert_eq!(crate::apply::code(&out), 0, "{}", stderr(&out));
    // ... and once the key policy no longer names the reader, it refuses the stale plan.
    let kms = harness::clients(&endpoint).await.kms;
    let vision = kms
        .describe_key()
        .key_id(format!("alias/{p}ml-vision"))
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    kms.put_key_policy()
        .key_id(&vision)
        .policy_name("default")
        .policy(r#"{"Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    let out = apply("rest");
    assert_eq!(crate::apply::code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(seeded["reader_ok"].as_str().unwrap()),
        "{}",
        stderr(&out)
    );

    // Verify checks the same graph after apply: the reader that lost its key access, and a
    // replication rule that no longer replicates SSE-KMS objects, are findings.
    let script = "import boto3, sys\nfrom botocore.config import Config\ns3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing', config=Config(s3={'addressing_style': 'path'}))\np = sys.argv[2]\ns3.put_bucket_replication(Bucket=p + 'ml-fraud-models', ReplicationConfiguration={'Role': f'arn:aws:iam::123456789012:role/{p}replication', 'Rules': [{'ID': 'to-dr', 'Status': 'Enabled', 'Priority': 1, 'Filter': {'Prefix': ''}, 'DeleteMarkerReplication': {'Status': 'Disabled'}, 'Destination': {'Bucket': f'arn:aws:s3:::{p}dr-fraud'}}]})";
    let out = Command::new(harness::ensure_venv())
        .args(["-c", script, &endpoint, &p])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = harness::rekey(&endpoint)
        .args(["verify"])
        .arg(&plan_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(crate::apply::code(&out), 6, "{text}");
    assert!(
        text.contains(&format!(
            "key access of {}",
            seeded["reader_ok"].as_str().unwrap()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("s3://{p}ml-fraud-models (replication)")),
        "{text}"
    );
}

const CROSS: &str = "arn:aws:iam::210987654321:role/analytics";

fn plan_at(
    endpoint: &str,
    dir: &std::path::Path,
    p: &str,
    name: &str,
) -> (std::path::PathBuf, plan::PlanFile) {
    let pf = plan_of(endpoint, dir, p, "", name);
    (dir.join(format!("plans/{name}.plan.yaml")), pf)
}

fn reader_policy(bucket: &str, action: &str) -> String {
    serde_json::json!({"Version":"2012-10-17","Statement":[{
        "Sid":"Analytics","Effect":"Allow","Principal":{"AWS":CROSS},
        "Action":[action,"s3:ListBucket"],
        "Resource":[format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]}]})
    .to_string()
}

/// A cross-account reader granted s3:GetObjectVersion (not s3:GetObject): the vision key
/// policy does not name it, yet the plan moves every object of the bucket onto the key.
#[tokio::test]
async fn a_get_object_version_reader_blocks_like_any_reader() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("cgov");
    harness::seed_estate(&endpoint, &p, 3);
    let data = format!("{p}ml-vision-data");
    let s3 = harness::clients(&endpoint).await.s3;
    s3.put_bucket_policy()
        .bucket(&data)
        .policy(reader_policy(&data, "s3:GetObjectVersion"))
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, pf) = plan_at(&endpoint, dir.path(), &p, "rv1");
    let moved = objects_moved(&pf, &data);
    assert_eq!(moved, 0, "{moved} objects of {data} move onto the vision key although {CROSS} reads them (s3:GetObjectVersion) and the key policy does not name it");
}

/// Plan with no bucket policy, then a cross-account reader is added before apply: apply does
/// not read the bucket policy again and moves the objects.
#[tokio::test]
async fn a_reader_added_after_the_plan_makes_it_stale() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("cadd");
    harness::seed_estate(&endpoint, &p, 3);
    let data = format!("{p}ml-vision-data");
    let dir = tempfile::tempdir().unwrap();
    let (path, pf) = plan_at(&endpoint, dir.path(), &p, "rv2");
    assert!(objects_moved(&pf, &data) > 0);
    // Control: the same policy present at plan time blocks the bucket.
    let s3 = harness::clients(&endpoint).await.s3;
    s3.put_bucket_policy()
        .bucket(&data)
        .policy(reader_policy(&data, "s3:GetObject"))
        .send()
        .await
        .unwrap();
    let (_, control) = plan_at(&endpoint, dir.path(), &p, "rv2-control");
    assert_eq!(
        objects_moved(&control, &data),
        0,
        "control: the reader blocks at plan time"
    );
    let out = harness::rekey(&endpoint)
        .arg("apply")
        .arg(&path)
        .args(["--stage", "rest", "--yes"])
        .output()
        .unwrap();
    // Apply reads the bucket's surroundings again: changed since the plan, it refuses.
    assert_eq!(crate::apply::code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("changed since planning"),
        "{}",
        stderr(&out)
    );
    let head = s3
        .head_object()
        .bucket(&data)
        .key("shards/00000.tfrecord")
        .send()
        .await
        .unwrap();
    assert_ne!(
        head.server_side_encryption()
            .map(|s| s.as_str().to_string()),
        Some("aws:kms".to_string())
    );
    // Verify names the bucket whose surroundings changed.
    let v = harness::rekey(&endpoint)
        .arg("verify")
        .arg(&path)
        .args(["--ignore-blocked"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout).to_string();
    assert_eq!(crate::apply::code(&v), 6, "{text}");
    assert!(
        text.contains(&format!(
            "s3://{data} (policy, replication or notifications)"
        )),
        "{text}"
    );
}

/// A plan without `surroundings_sha256` (written by the rekey before issue 10,
/// same format_version 1) is accepted; apply then skips the surroundings check for every S3
/// bucket and moves a bucket whose cross-account reader cannot use the key.
#[tokio::test]
async fn a_plan_without_the_fingerprint_is_not_applied_unchecked() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("cold");
    harness::seed_estate(&endpoint, &p, 3);
    let data = format!("{p}ml-vision-data");
    let dir = tempfile::tempdir().unwrap();
    let (path, pf) = plan_at(&endpoint, dir.path(), &p, "old1");
    assert!(objects_moved(&pf, &data) > 0);
    // The plan as the earlier rekey wrote it: no fingerprint.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("surroundings_sha256"));
    let old: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("surroundings_sha256:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, old).unwrap();
    let s3 = harness::clients(&endpoint).await.s3;
    s3.put_bucket_policy()
        .bucket(&data)
        .policy(reader_policy(&data, "s3:GetObject"))
        .send()
        .await
        .unwrap();
    let out = harness::rekey(&endpoint)
        .arg("apply")
        .arg(&path)
        .args(["--stage", "rest", "--yes"])
        .output()
        .unwrap();
    assert_eq!(
        crate::apply::code(&out),
        4,
        "a plan with no fingerprint was applied although {CROSS} now reads s3://{data}: {}",
        stderr(&out)
    );
}

/// Access points and CloudFront distributions are read, not only declared: an access point
/// policy's cross-account reader, a distribution's OAC (judged against the key policy with its
/// own ARN), an OAI behind an access point alias and a website-endpoint origin each block;
/// the bucket policy's delegation to the owner's access points adds no unseen principal.
#[tokio::test]
async fn access_points_and_distributions_are_in_the_graph() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("cdn");
    harness::seed_estate(&endpoint, &p, 2);
    let seeded = origins(&endpoint, &p, "");
    let dir = tempfile::tempdir().unwrap();
    let b = |n: &str| format!("{p}{n}");
    let arn = |k: &str| seeded[k].as_str().unwrap().to_string();

    let pf = plan_of(&endpoint, dir.path(), &p, "", "before");
    // The access point's reader of another account: the key policy does not name it.
    let r = blocked_for(&pf, &b("ml-vision-data"), "consumer graph")
        .unwrap_or_else(|| panic!("{:?}", buckets(&pf, &b("ml-vision-data"))));
    assert!(
        r.contains(&arn("ap_reader")) && r.contains("not-allowed") && r.contains("analytics"),
        "{r}"
    );
    assert!(
        !r.contains("Principal \"*\""),
        "the delegation to the owner's access points is not an unseen reader: {r}"
    );
    // The Multi-Region Access Point's reader is read from its policy.
    assert!(
        r.contains(&arn("mrap_reader")) && r.contains("mrap/"),
        "{r}"
    );
    // Its website endpoint is a CloudFront origin: anonymous reads.
    let r = blocked_for(&pf, &b("ml-vision-data"), "hazard public-origin").unwrap();
    assert!(r.contains(&arn("website")), "{r}");
    // The OAC distribution, judged with its own ARN against the vision key policy.
    let r = blocked_for(&pf, &b("ml-vision-locked"), "consumer graph")
        .unwrap_or_else(|| panic!("{:?}", buckets(&pf, &b("ml-vision-locked"))));
    assert!(
        r.contains("cloudfront.amazonaws.com") && r.contains(&arn("oac")),
        "{r}"
    );
    // An origin access control that never signs reads anonymously.
    let r = blocked_for(&pf, &b("ml-vision-locked"), "hazard public-origin").unwrap();
    assert!(
        r.contains(&arn("never")) && r.contains("never signs"),
        "{r}"
    );
    // The OAI distribution reaches the sandbox through its access point's alias.
    let r = blocked_for(&pf, &b("ml-fraud-sandbox"), "hazard oai-origin")
        .unwrap_or_else(|| panic!("{:?}", buckets(&pf, &b("ml-fraud-sandbox"))));
    assert!(
        r.contains(&arn("oai")) && r.contains("aws:SourceArn"),
        "{r}"
    );
    for n in ["ml-vision-data", "ml-vision-locked", "ml-fraud-sandbox"] {
        assert!(!moves(&pf, &b(n)), "{n}");
    }

    // Fixed (key policies name the readers, the OAI distribution moved to OAC) and what
    // cannot be fixed from here accepted by name: every bucket goes through.
    origins(&endpoint, &p, "fix");
    let accept = format!(
        "preflight:\n  accept_unverified: {{ principals: [\"{}\", \"{}\"] }}\n  accept_hazards: [ {{ bucket: \"*ml-vision-data\", accept: [public-origin] }}, {{ bucket: \"*ml-vision-locked\", accept: [public-origin] }} ]\n",
        arn("ap_reader"),
        arn("mrap_reader")
    );
    let pf = plan_of(&endpoint, dir.path(), &p, &accept, "fixed");
    for n in ["ml-vision-data", "ml-vision-locked", "ml-fraud-sandbox"] {
        assert!(
            blocked_for(&pf, &b(n), "hazard").is_none()
                && blocked_for(&pf, &b(n), "consumer graph").is_none(),
            "{n}: {:?}",
            buckets(&pf, &b(n))
        );
        assert!(moves(&pf, &b(n)), "{n}");
    }
    for d in ["oac", "oai"] {
        assert!(
            pf.access
                .iter()
                .any(|v| v.principal == "cloudfront.amazonaws.com"
                    && v.source_arn.as_deref() == Some(arn(d).as_str())
                    && v.allowed()),
            "{d}: {:?}",
            pf.access
        );
    }

    // A distribution added after planning makes the plan stale for its bucket: verify says
    // so, and apply refuses before any write.
    let plan_path = dir.path().join("plans/fixed.plan.yaml");
    let verify = || {
        let out = harness::rekey(&endpoint)
            .args(["verify"])
            .arg(&plan_path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let locked = format!(
        "s3://{} (policy, replication or notifications)",
        b("ml-vision-locked")
    );
    let text = verify();
    assert!(!text.contains(&locked), "{text}");
    let out = Command::new(harness::ensure_venv())
        .arg(harness::repo_root().join("tests/seed_origins.py"))
        .args([
            &endpoint,
            &format!("{p}late"),
            "bare",
            &b("ml-vision-locked"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = verify();
    assert!(text.contains(&locked), "{text}");
    let out = harness::rekey(&endpoint)
        .args(["apply"])
        .arg(&plan_path)
        .args(["--stage", "rest", "--yes"])
        .output()
        .unwrap();
    assert_eq!(crate::apply::code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&b("ml-vision-locked")),
        "{}",
        stderr(&out)
    );
}

fn origins(endpoint: &str, p: &str, mode: &str) -> serde_json::Value {
    let out = Command::new(harness::ensure_venv())
        .arg(harness::repo_root().join("tests/seed_origins.py"))
        .args([endpoint, p, mode])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Review (offline plans): a bucket record carries its readers' verdicts for the keys the
/// inventory's campaign pinned, and the planner reads "no verdict for this key" as "no reader
/// blocked" (fail open, I5). Online both come from one run; offline nothing ties a file's
/// records to its header, so a file whose header and records come from two inventories
/// (spliced, or a header regenerated after the campaign gained a key) plans ml-vision-data
/// onto the vision key that its cross-account reader may not use, which the online plan
/// blocks. It must be blocked or refused (exit 2).
#[tokio::test]
async fn review_offline_a_bucket_without_verdicts_for_its_key_is_not_planned() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("offsplice");
    harness::seed_estate(&endpoint, &p, 2);
    seed(&endpoint, &p, "");
    let dir = tempfile::tempdir().unwrap();
    let b = |n: &str| format!("{p}{n}");
    // Online: the cross-account reader blocks ml-vision-data.
    let pf = plan_of(&endpoint, dir.path(), &p, "", "online");
    assert!(blocked_for(&pf, &b("ml-vision-data"), "consumer graph").is_some());
    let full = dir.path().join("online.yaml");
    let full_text = std::fs::read_to_string(&full).unwrap();
    // The same selection without the vision key: its records carry no verdict for it.
    let fraud_only = full_text
        .replace(&format!("  vision: {{ aws: alias/{p}ml-vision }}\n"), "")
        .replace(
            "  - { match: { tag: { team: vision } }, key: vision }\n",
            "",
        );
    assert!(!fraud_only.contains("key: vision"), "{fraud_only}");
    let narrow = dir.path().join("narrow.yaml");
    std::fs::write(&narrow, fraud_only).unwrap();
    let inventory = |campaign: &std::path::Path, name: &str| {
        let inv = dir.path().join(name);
        let out = harness::inventory_file(&endpoint, campaign, &inv);
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read_to_string(inv).unwrap()
    };
    let a = inventory(&narrow, "narrow.jsonl");
    let bb = inventory(&full, "full.jsonl");
    let spliced = format!(
        "{}\n{}",
        bb.lines().next().unwrap(),
        a.split_once('\n').unwrap().1
    );
    let file = dir.path().join("spliced.jsonl");
    std::fs::write(&file, spliced).unwrap();
    let path = dir.path().join("plans/offline.plan.yaml");
    let out = harness::rekey("http://127.0.0.1:9")
        .args(["plan", "-c"])
        .arg(&full)
        .arg("-o")
        .arg(&path)
        .arg("--from-inventory")
        .arg(&file)
        .output()
        .unwrap();
    if out.status.code() == Some(2) {
        return; // refused: fine
    }
    assert!(out.status.success(), "{}", stderr(&out));
    let pf = plan::load(&path).unwrap();
    assert!(
        blocked_for(&pf, &b("ml-vision-data"), "consumer graph").is_some()
            || !moves(&pf, &b("ml-vision-data")),
        "ml-vision-data moves to the vision key offline ({} objects), its cross-account reader unchecked",
        objects_moved(&pf, &b("ml-vision-data"))
    );
}
