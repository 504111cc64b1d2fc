//! S3 Inventory reports as the object source (issue 11): a bucket planned from its report is
//! planned as from LIST + HEAD; a report that cannot be trusted or lacks what the plan needs
//! is refused (exit 2) before anything is written; what changed since the report is caught.

use std::collections::BTreeSet;
use std::process::Command;

use rekey::plan::{self, PlanFile};

use crate::apply::stderr;
use crate::harness::{self, overlay, unique};

/// Configure and deliver reports of `buckets` into `dest` (tests/seed_inventory.py).
fn deliver(endpoint: &str, dest: &str, buckets: &[String], extra: &[&str]) -> serde_json::Value {
    let out = Command::new(harness::ensure_venv())
        .arg(harness::repo_root().join("tests/seed_inventory.py"))
        .args([endpoint, dest])
        .args(buckets)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Planned {
    code: i32,
    stderr: String,
    plan: Option<PlanFile>,
    manifest: BTreeSet<String>,
}

fn plan_with(
    endpoint: &str,
    dir: &std::path::Path,
    p: &str,
    s3_extra: &str,
    name: &str,
) -> Planned {
    let campaign = dir.join(format!("{name}.yaml"));
    let yaml = crate::apply::campaign_yaml(
        p,
        s3_extra,
        "limits: { concurrency: 4, requests_per_second: 200 }",
    );
    std::fs::write(&campaign, yaml).unwrap();
    let path = dir.join(format!("plans/{name}.plan.yaml"));
    let out = harness::rekey(endpoint)
        .args(["plan", "-c"])
        .arg(&campaign)
        .arg("-o")
        .arg(&path)
        .output()
        .unwrap();
    let code = crate::apply::code(&out);
    let plan = (code == 0).then(|| plan::load(&path).unwrap());
    let manifest = std::fs::read_to_string(dir.join(format!("plans/{name}.manifest.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    Planned {
        code,
        stderr: stderr(&out),
        plan,
        manifest,
    }
}

fn campaign_buckets(endpoint: &str, p: &str) -> Vec<String> {
    let out = Command::new(harness::ensure_venv())
        .args([
            "-c",
            "import boto3,sys;from botocore.config import Config;s3=boto3.client('s3',endpoint_url=sys.argv[1],region_name='us-east-1',aws_access_key_id='t',aws_secret_access_key='t',config=Config(s3={'addressing_style':'path'}));print('\\n'.join(b['Name'] for b in s3.list_buckets()['Buckets'] if b['Name'].startswith(sys.argv[2]+'ml-')))",
            endpoint,
            p,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The same estate planned from LIST + HEAD and from its reports: the same manifest entries
/// and the same objects, bytes and classes per stage; the report costs no HEAD at plan time
/// except for SSE-KMS and DSSE-KMS keys, and one HEAD per copy at apply (it does not tell an
/// object's website redirect), which the estimate counts.
#[tokio::test]
async fn a_bucket_planned_from_its_report_is_planned_as_from_list_and_head() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("rep");
    harness::seed_estate(&endpoint, &p, 3);
    let buckets = campaign_buckets(&endpoint, &p);
    assert!(buckets.len() >= 4, "{buckets:?}");
    let dest = format!("{p}inventory");
    deliver(&endpoint, &dest, &buckets, &["--rows-per-file", "2"]);
    let dir = tempfile::tempdir().unwrap();

    let listed = plan_with(&endpoint, dir.path(), &p, "", "listed");
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let reported = plan_with(&endpoint, dir.path(), &p, ", inventory: report", "reported");
    assert_eq!(reported.code, 0, "{}", reported.stderr);
    assert!(!listed.manifest.is_empty());
    assert_eq!(
        listed
            .manifest
            .symmetric_difference(&reported.manifest)
            .collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "the same manifest entries"
    );
    let (l, r) = (listed.plan.unwrap(), reported.plan.unwrap());
    let copies: u64 = r
        .stages
        .iter()
        .flat_map(|s| &s.buckets)
        .flat_map(|b| &b.actions)
        .map(|a| match a {
            plan::Action::ReencryptObjects { objects, .. } => *objects,
            _ => 0,
        })
        .sum();
    for (ls, rs) in l.stages.iter().zip(&r.stages) {
        let (a, b) = (&ls.summary, &rs.summary);
        assert_eq!(
            (
                a.buckets,
                a.objects,
                a.bytes,
                a.blocked_objects,
                a.skipped_objects
            ),
            (
                b.buckets,
                b.objects,
                b.bytes,
                b.blocked_objects,
                b.skipped_objects
            ),
            "stage {}",
            ls.name
        );
        for (k, v) in &a.requests {
            if k != "s3:HeadObject" {
                assert_eq!(b.requests.get(k), Some(v), "stage {}: {k}", ls.name);
            }
        }
        // Every bucket of the report plan says which report, and how many HEADs it took.
        for bp in rs.buckets.iter().filter(|b| !b.actions.is_empty()) {
            let rep = bp
                .report
                .as_ref()
                .unwrap_or_else(|| panic!("{}", bp.bucket));
            assert!(rep.manifest.ends_with("/manifest.json"), "{rep:?}");
            assert!(bp.recheck);
        }
    }
    // One more HEAD per copy where the list plan did not read objects first.
    let read_first: BTreeSet<&str> = l
        .stages
        .iter()
        .flat_map(|s| &s.buckets)
        .filter(|b| b.recheck)
        .map(|b| b.bucket.as_str())
        .collect();
    let extra = reported
        .manifest
        .iter()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|e| e["step"] == "copy" && !read_first.contains(e["bucket"].as_str().unwrap()))
        .count() as u64;
    let heads = |pf: &PlanFile| {
        pf.summary
            .requests
            .get("s3:HeadObject")
            .copied()
            .unwrap_or(0)
    };
    assert!(copies > 0 && extra > 0);
    assert_eq!(
        heads(&r),
        heads(&l) + extra,
        "the apply-time HEADs are estimated"
    );
    let text = rekey::summary::render(&r);
    assert!(text.contains("inventory report s3://"), "{text}");
    // SSE-KMS objects were HEADed at plan time (their key), the others were not.
    let planned_heads: u64 = r
        .stages
        .iter()
        .flat_map(|s| &s.buckets)
        .filter_map(|b| b.report.as_ref())
        .map(|x| x.heads)
        .sum();
    let kms_lines = reported
        .manifest
        .iter()
        .filter(|l| l.contains("\"from_key_arn\""))
        .count() as u64;
    assert!(planned_heads >= kms_lines, "{planned_heads} < {kms_lines}");
}

/// Put `body` at `url` (s3://bucket/key) through boto3.
fn put_raw(endpoint: &str, url: &str, body: &str) {
    let (bucket, key) = url.strip_prefix("s3://").unwrap().split_once('/').unwrap();
    let out = Command::new(harness::ensure_venv())
        .args([
            "-c",
            "import boto3,sys;from botocore.config import Config;s3=boto3.client('s3',endpoint_url=sys.argv[1],region_name='us-east-1',aws_access_key_id='t',aws_secret_access_key='t',config=Config(s3={'addressing_style':'path'}));s3.put_object(Bucket=sys.argv[2],Key=sys.argv[3],Body=sys.argv[4].encode())",
            endpoint,
            bucket,
            key,
            body,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A report without a column the plan needs, a manifest that does not match its checksum, and
/// a data file that does not match the manifest's MD5 are each refused with exit 2, naming
/// the change to make; no plan is written.
#[tokio::test]
async fn a_report_that_lacks_columns_or_fails_its_checksums_is_refused() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("repbad");
    harness::seed_estate(&endpoint, &p, 2);
    let buckets = campaign_buckets(&endpoint, &p);
    let dest = format!("{p}inventory");
    let dir = tempfile::tempdir().unwrap();
    let report = ", inventory: report";

    // Without EncryptionStatus the report cannot classify objects.
    deliver(
        &endpoint,
        &dest,
        &buckets,
        &["--without", "EncryptionStatus"],
    );
    let out = plan_with(&endpoint, dir.path(), &p, report, "lacking");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("EncryptionStatus")
            && out.stderr.contains("put-bucket-inventory-configuration"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("plans/lacking.plan.yaml").exists());

    // A complete configuration, newer report: it plans.
    let manifests = deliver(&endpoint, &dest, &buckets, &["--at", "2026-11-27T00-00Z"]);
    let ok = plan_with(&endpoint, dir.path(), &p, report, "complete");
    assert_eq!(ok.code, 0, "{}", ok.stderr);

    // The newest manifest damaged: refused, not skipped for an older one.
    let sandbox = format!("{p}ml-fraud-sandbox");
    let manifest = manifests[&sandbox].as_str().unwrap().to_string();
    put_raw(
        &endpoint,
        &manifest.replace("manifest.json", "manifest.checksum"),
        "00000000000000000000000000000000",
    );
    let out = plan_with(&endpoint, dir.path(), &p, report, "damaged");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("manifest.checksum"), "{}", out.stderr);

    // A data file that is not what the manifest says.
    let manifests = deliver(
        &endpoint,
        &dest,
        &buckets,
        &["--at", "2026-11-28T00-00Z", "--deliver-only"],
    );
    let url = manifests[&sandbox].as_str().unwrap();
    let (_, key) = url.strip_prefix("s3://").unwrap().split_once('/').unwrap();
    let aws = harness::clients(&endpoint).await;
    let body = aws
        .s3
        .get_object()
        .bucket(&dest)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let data = m["files"][0]["key"].as_str().unwrap();
    put_raw(&endpoint, &format!("s3://{dest}/{data}"), "not gzip");
    let out = plan_with(&endpoint, dir.path(), &p, report, "tampered");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("MD5"), "{}", out.stderr);
}

/// Objects written over since the report are drift at apply (the ETag guard), and nothing
/// newer is overwritten; objects deleted since are `vanished` (counted, not failures);
/// objects written since are not planned.
#[tokio::test]
async fn what_changed_since_the_report_is_caught() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("repdrift");
    harness::seed_estate(&endpoint, &p, 3);
    let buckets = campaign_buckets(&endpoint, &p);
    let dest = format!("{p}inventory");
    deliver(&endpoint, &dest, &buckets, &[]);
    let data = format!("{p}ml-vision-data");
    // After the report: one object written over, one new.
    put_raw(
        &endpoint,
        &format!("s3://{data}/shards/00000.tfrecord"),
        "newer",
    );
    put_raw(
        &endpoint,
        &format!("s3://{data}/shards/new.tfrecord"),
        "after the report",
    );
    let aws = harness::clients(&endpoint).await;
    aws.s3
        .delete_object()
        .bucket(&data)
        .key("shards/00001.tfrecord")
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let planned = plan_with(&endpoint, dir.path(), &p, ", inventory: report", "drift");
    assert_eq!(planned.code, 0, "{}", planned.stderr);
    assert!(
        !planned
            .manifest
            .iter()
            .any(|l| l.contains("shards/new.tfrecord")),
        "written after the report: not planned"
    );
    let plan_path = dir.path().join("plans/drift.plan.yaml");
    let out = harness::rekey(&endpoint)
        .arg("apply")
        .arg(&plan_path)
        .args(["--stage", "rest", "--yes"])
        .output()
        .unwrap();
    assert_eq!(crate::apply::code(&out), 3, "{}", stderr(&out));
    let steps = crate::apply::journal_steps(&plan_path);
    let state_of = |k: &str| {
        steps
            .iter()
            .find(|s| s.key == k)
            .map(|s| s.state.clone())
            .unwrap_or_default()
    };
    assert_eq!(state_of("shards/00000.tfrecord"), "drifted");
    assert_eq!(state_of("shards/00001.tfrecord"), "vanished");
    assert_eq!(state_of("shards/00002.tfrecord"), "succeeded");
    let steps = crate::apply::journal_steps(&plan_path);
    let state_of = |k: &str| {
        steps
            .iter()
            .find(|s| s.key == k)
            .map(|s| s.state.clone())
            .unwrap_or_default()
    };
    assert_eq!(state_of("shards/00000.tfrecord"), "drifted");
    assert_eq!(state_of("shards/00001.tfrecord"), "vanished");
    assert_eq!(state_of("shards/00002.tfrecord"), "succeeded");
    // The newer write is untouched.
    let got = aws
        .s3
        .get_object()
        .bucket(&data)
        .key("shards/00000.tfrecord")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(&got[..], b"newer");
}

/// An object deleted after planning is `vanished`: the run finishes without failure.
#[tokio::test]
async fn a_deleted_object_is_vanished_not_a_failure() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("vanish");
    harness::seed_estate(&endpoint, &p, 3);
    let dir = tempfile::tempdir().unwrap();
    let planned = plan_with(&endpoint, dir.path(), &p, "", "vanish");
    assert_eq!(planned.code, 0, "{}", planned.stderr);
    let data = format!("{p}ml-vision-data");
    let aws = harness::clients(&endpoint).await;
    aws.s3
        .delete_object()
        .bucket(&data)
        .key("shards/00001.tfrecord")
        .send()
        .await
        .unwrap();
    let plan_path = dir.path().join("plans/vanish.plan.yaml");
    let out = harness::rekey(&endpoint)
        .arg("apply")
        .arg(&plan_path)
        .args(["--stage", "rest", "--yes"])
        .output()
        .unwrap();
    assert_eq!(crate::apply::code(&out), 0, "{}", stderr(&out));
    let steps = crate::apply::journal_steps(&plan_path);
    assert!(steps
        .iter()
        .any(|s| s.key == "shards/00001.tfrecord" && s.state == "vanished"));
    let report = std::fs::read_to_string(rekey::apply::report_path(
        &rekey::journal::default_path(&plan_path),
        "md",
    ))
    .unwrap_or_default();
    assert!(report.contains("vanished"), "{report}");
    // The JSON report groups by reason (bounded by reasons); every step is in the list beside.
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(rekey::apply::report_path(
            &rekey::journal::default_path(&plan_path),
            "json",
        ))
        .unwrap(),
    )
    .unwrap();
    let vanished: Vec<&serde_json::Value> = json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["section"] == "vanished")
        .collect();
    assert_eq!(vanished.len(), 1, "{json}");
    assert_eq!(vanished[0]["steps"], 1);
    assert!(vanished[0]["examples"][0]["target"]
        .as_str()
        .unwrap()
        .ends_with("shards/00001.tfrecord"));
    let list = std::fs::read_to_string(rekey::apply::report_path(
        &rekey::journal::default_path(&plan_path),
        "steps.jsonl",
    ))
    .unwrap();
    assert_eq!(
        list.lines().filter(|l| l.contains("\"vanished\"")).count(),
        1,
        "{list}"
    );
    // Nothing to undo for it: rollback leaves it out and succeeds.
    let out = harness::rekey(&endpoint)
        .arg("rollback")
        .arg(&plan_path)
        .args(["--yes"])
        .output()
        .unwrap();
    assert_eq!(crate::apply::code(&out), 0, "{}", stderr(&out));
}

/// Review (offline plans): an inventory that fails part-way (here: a report data file that is
/// not what its manifest says, which the online plan refuses with exit 2) still leaves a file
/// with a valid header and the records read so far — the header is written first and nothing
/// marks the file complete. `plan --from-inventory` must refuse it (exit 2) like the online
/// plan of the same campaign, not plan a part of the estate (a bucket's default rule without
/// its objects, later buckets left out) and exit 0.
#[tokio::test]
async fn review_offline_an_inventory_that_failed_part_way_is_refused() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("offpart");
    harness::seed_estate(&endpoint, &p, 2);
    let buckets = campaign_buckets(&endpoint, &p);
    let dest = format!("{p}inventory");
    let manifests = deliver(&endpoint, &dest, &buckets, &[]);
    // The data file of ml-vision-data (read after the fraud buckets and ml-scratch) replaced.
    let vision = format!("{p}ml-vision-data");
    let url = manifests[&vision].as_str().unwrap();
    let (_, key) = url.strip_prefix("s3://").unwrap().split_once('/').unwrap();
    let aws = harness::clients(&endpoint).await;
    let body = aws
        .s3
        .get_object()
        .bucket(&dest)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let data = m["files"][0]["key"].as_str().unwrap();
    put_raw(&endpoint, &format!("s3://{dest}/{data}"), "not gzip");

    let dir = tempfile::tempdir().unwrap();
    // Online: refused.
    let online = plan_with(&endpoint, dir.path(), &p, ", inventory: report", "online");
    assert_eq!(online.code, 2, "{}", online.stderr);
    assert!(online.stderr.contains("MD5"), "{}", online.stderr);
    let campaign = dir.path().join("online.yaml");
    // The inventory fails the same way, but leaves its file behind.
    let inv = dir.path().join("inv.jsonl");
    let out = harness::inventory_file(&endpoint, &campaign, &inv);
    assert_ne!(crate::apply::code(&out), 0, "{}", stderr(&out));
    // No FILE: what it wrote stays in FILE.partial, without the end line.
    assert!(
        !inv.exists(),
        "a failed inventory leaves no file under its name"
    );
    let inv = dir.path().join("inv.jsonl.partial");
    let text = std::fs::read_to_string(&inv).unwrap_or_default();
    assert!(
        text.starts_with("{\"format\":\"rekey-inventory\""),
        "{text}"
    );
    // Offline from what it left: must be refused as the online plan is.
    let plan_path = dir.path().join("plans/offline.plan.yaml");
    let out = harness::rekey("http://127.0.0.1:9")
        .args(["plan", "-c"])
        .arg(&campaign)
        .arg("-o")
        .arg(&plan_path)
        .arg("--from-inventory")
        .arg(&inv)
        .output()
        .unwrap();
    assert_eq!(
        crate::apply::code(&out),
        2,
        "a partial inventory ({} records) was planned: {}",
        text.lines().count() - 1,
        stderr(&out)
    );
    assert!(!plan_path.exists(), "no plan from a partial inventory");
}
