//! Planning against the emulator through the CLI: stages, ordering, blocked reasons,
//! unmatched reporting, determinism, and `show`.

use std::path::Path;

use rekey::plan::{self, Action, ManifestEntry, PlanFile};

use crate::harness::{self, overlay, unique};

struct Planned {
    dir: tempfile::TempDir,
    prefix: String,
    seeded: serde_json::Value,
}

fn write_campaign(dir: &Path, yaml: &str) -> std::path::PathBuf {
    let p = dir.join("campaign.yaml");
    std::fs::write(&p, yaml).unwrap();
    p
}

fn run_plan(endpoint: &str, campaign: &Path, out: &Path) -> std::process::Output {
    harness::rekey(endpoint)
        .env("SOURCE_DATE_EPOCH", "1790000000")
        .args(["plan", "-c"])
        .arg(campaign)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

fn seeded_plan(tag: &str) -> Planned {
    let m = overlay();
    let prefix = unique(tag);
    let seeded = harness::seed_estate(&m.endpoint, &prefix, 5);
    let dir = tempfile::tempdir().unwrap();
    let c = write_campaign(dir.path(), &harness::demo_campaign(&prefix));
    let out = run_plan(&m.endpoint, &c, &dir.path().join("plans/demo.plan.yaml"));
    assert!(
        out.status.success(),
        "plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Planned {
        dir,
        prefix,
        seeded,
    }
}

fn manifest(dir: &Path) -> Vec<ManifestEntry> {
    std::fs::read_to_string(dir.join("plans/demo.manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn plan_stages_orders_and_blocks_the_demo_estate() {
    let p = seeded_plan("plan");
    let plan: PlanFile = plan::load(&p.dir.path().join("plans/demo.plan.yaml")).unwrap();
    let strip = |b: &str| b.trim_start_matches(&p.prefix).to_string();
    let names: Vec<_> = plan.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["canary", "fraud", "rest"]);
    let buckets = |i: usize| {
        plan.stages[i]
            .buckets
            .iter()
            .map(|b| strip(&b.bucket))
            .collect::<Vec<_>>()
    };
    assert_eq!(buckets(0), ["ml-fraud-sandbox"]);
    assert_eq!(buckets(1), ["ml-fraud-models"]);
    assert_eq!(buckets(2), ["ml-vision-data", "ml-vision-locked"]);

    // The bucket default comes first in every bucket that has one.
    for st in &plan.stages {
        for b in &st.buckets {
            assert!(
                matches!(b.actions.first(), Some(Action::SetBucketDefault { .. })),
                "{}: {:?}",
                b.bucket,
                b.actions
            );
            assert!(b
                .actions
                .iter()
                .skip(1)
                .all(|a| matches!(a, Action::ReencryptObjects { .. })));
        }
    }
    let sandbox = &plan.stages[0].buckets[0];
    let reasons: Vec<_> = sandbox
        .blocked
        .iter()
        .map(|b| b.reason.split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(reasons, ["archived (GLACIER)", "dsse-kms", "sse-c"]);
    assert_eq!(sandbox.skipped_on_target, 1);
    match &sandbox.actions[1] {
        Action::ReencryptObjects {
            objects,
            from,
            kms_key_arn,
            ..
        } => {
            assert_eq!(*objects, 3);
            assert_eq!(
                from.len(),
                3,
                "sse-s3, aws-managed-kms and foreign-cmk: {from:?}"
            );
            assert_eq!(kms_key_arn, p.seeded["keys"]["fraud"].as_str().unwrap());
        }
        other => panic!("{other:?}"),
    }
    let locked = &plan.stages[2].buckets[1];
    assert!(locked.blocked[0].reason.starts_with("object lock"));

    // Unmatched: the scratch bucket and its object, reported, not planned.
    assert_eq!(plan.unmatched.len(), 1);
    assert_eq!(strip(&plan.unmatched[0].bucket), "ml-scratch");
    assert!(plan.unmatched[0].bucket_itself);
    assert_eq!(plan.unmatched[0].objects, 1);

    // The manifest: tag-mapped vision objects go to the vision key; hash pinned in the plan.
    let entries = manifest(p.dir.path());
    assert_eq!(entries.len() as u64, plan.manifest.entries);
    let vision = p.seeded["keys"]["vision"].as_str().unwrap();
    let vdata: Vec<_> = entries
        .iter()
        .filter(|e| strip(&e.bucket) == "ml-vision-data")
        .collect();
    assert_eq!(vdata.len(), 6);
    assert!(vdata
        .iter()
        .all(|e| e.to_key_arn == vision && e.team_key == "vision"));
    assert!(
        entries
            .iter()
            .all(|e| !e.key.ends_with("on-target.parquet")),
        "objects on target are skipped"
    );
    assert_eq!(
        plan.summary.objects,
        entries.iter().filter(|e| e.step != "blocked").count() as u64
    );
    // manifest_lines point at each bucket's own lines.
    for st in &plan.stages {
        for b in &st.buckets {
            if let Some([first, last]) = b.manifest_lines {
                for e in &entries[(first - 1) as usize..last as usize] {
                    assert_eq!(e.bucket, b.bucket);
                    assert_eq!(e.stage, st.name);
                }
            }
        }
    }
}

#[test]
fn planning_twice_is_byte_identical() {
    let p = seeded_plan("determinism");
    let again = p.dir.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    let c = p.dir.path().join("campaign.yaml");
    let out = run_plan(&overlay().endpoint, &c, &again.join("demo.plan.yaml"));
    assert!(out.status.success());
    for f in ["demo.plan.yaml", "demo.manifest.jsonl"] {
        let a = std::fs::read(p.dir.path().join("plans").join(f)).unwrap();
        let b = std::fs::read(again.join(f)).unwrap();
        assert!(a == b, "{f} differs between two plans of the same estate");
    }
}

#[test]
fn show_prints_the_summary_and_refuses_a_changed_manifest() {
    let p = seeded_plan("show");
    let plan_path = p.dir.path().join("plans/demo.plan.yaml");
    let out = harness::rekey(&overlay().endpoint)
        .arg("show")
        .arg(&plan_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Stage 1/3 canary (checkpoint canary)"),
        "{text}"
    );
    assert!(text.contains("Not planned (unmatched)"));

    let json = harness::rekey(&overlay().endpoint)
        .arg("show")
        .arg(&plan_path)
        .args(["--output", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["format_version"], 1);

    let mpath = p.dir.path().join("plans/demo.manifest.jsonl");
    let mut m = std::fs::read_to_string(&mpath).unwrap();
    m = m.replacen("\"size\":", "\"size\":1", 1);
    std::fs::write(&mpath, m).unwrap();
    let out = harness::rekey(&overlay().endpoint)
        .arg("show")
        .arg(&plan_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match the plan"));
}

#[test]
fn plan_refuses_an_alias_that_does_not_exist() {
    let m = overlay();
    let prefix = unique("noalias");
    harness::seed_estate(&m.endpoint, &prefix, 1);
    let dir = tempfile::tempdir().unwrap();
    let yaml = harness::demo_campaign(&prefix).replace(
        &format!("alias/{prefix}ml-vision"),
        "alias/nobody-made-this",
    );
    let c = write_campaign(dir.path(), &yaml);
    let out = run_plan(&m.endpoint, &c, &dir.path().join("x.plan.yaml"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alias/nobody-made-this does not exist"),
        "{err}"
    );
    assert!(
        !dir.path().join("x.plan.yaml").exists(),
        "no plan is written"
    );
}

#[test]
fn inventory_cli_writes_json_lines() {
    let m = overlay();
    let prefix = unique("invcli");
    harness::seed_estate(&m.endpoint, &prefix, 2);
    let dir = tempfile::tempdir().unwrap();
    let c = write_campaign(dir.path(), &harness::demo_campaign(&prefix));
    let out_file = dir.path().join("inv.jsonl");
    let out = harness::inventory_file(&m.endpoint, &c, &out_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.iter().filter(|l| l["kind"] == "s3-bucket").count(), 5);
    assert_eq!(
        lines.iter().filter(|l| l["kind"] == "s3-object").count(),
        15
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("5 buckets, 15 objects"), "{stdout}");
}

/// `plan --from-inventory` refuses (exit 2, before writing a plan) what the saved inventory
/// cannot answer: a file without the versioned header, a campaign that selects other
/// buckets, a team key alias the inventory never resolved, a consumer it never evaluated.
#[test]
fn a_plan_from_a_saved_inventory_refuses_what_it_cannot_answer() {
    let m = overlay();
    let prefix = unique("offref");
    harness::seed_estate(&m.endpoint, &prefix, 1);
    let dir = tempfile::tempdir().unwrap();
    let yaml = harness::demo_campaign(&prefix);
    let c = write_campaign(dir.path(), &yaml);
    let inv = dir.path().join("inv.jsonl");
    let out = harness::inventory_file(&m.endpoint, &c, &inv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&inv).unwrap();
    let plan_out = dir.path().join("plans/x.plan.yaml");
    let offline = |campaign: &Path, file: &Path| {
        let out = harness::rekey("http://127.0.0.1:9")
            .args(["plan", "-c"])
            .arg(campaign)
            .arg("-o")
            .arg(&plan_out)
            .arg("--from-inventory")
            .arg(file)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!plan_out.exists(), "no plan is written");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let check = |campaign_text: String, file: &Path, says: &[&str]| {
        let other = dir.path().join("other.yaml");
        std::fs::write(&other, campaign_text).unwrap();
        let err = offline(&other, file);
        for s in says {
            assert!(err.contains(s), "{s:?} in {err}");
        }
        assert!(err.contains("rekey inventory -c"), "says how to fix: {err}");
    };
    // An inventory of an older rekey: records only.
    let old = dir.path().join("old.jsonl");
    std::fs::write(&old, text.split_once('\n').unwrap().1).unwrap();
    check(yaml.clone(), &old, &["is not a rekey inventory file"]);
    // Another version.
    let v9 = dir.path().join("v9.jsonl");
    std::fs::write(&v9, text.replacen("\"version\":2", "\"version\":9", 1)).unwrap();
    check(yaml.clone(), &v9, &["format 9", "reads format 2"]);
    // Other buckets selected.
    check(
        yaml.replace(
            &format!("buckets: [\"{prefix}ml-*\"]"),
            &format!("buckets: [\"{prefix}ml-*\", \"{prefix}data-*\"]"),
        ),
        &inv,
        &["selects other resources", "differs in: aws"],
    );
    // A team key under an alias the inventory never looked up.
    check(
        yaml.replace(
            &format!("alias/{prefix}ml-fraud }}"),
            &format!("alias/{prefix}ml-fraud-2 }}"),
        ),
        &inv,
        &[&format!("did not resolve alias/{prefix}ml-fraud-2")],
    );
    // A consumer the inventory never evaluated.
    check(
        format!("{yaml}consumers:\n  - {{ principal: \"arn:aws:iam::123456789012:role/{prefix}reader\", keys: [fraud] }}\n"),
        &inv,
        &["no key-access verdict for consumer", "reader"],
    );
}

/// Review (offline plans): an inventory of the demo estate, and `plan --from-inventory` of
/// `file` (a dead endpoint: any cloud call fails).
fn review_inventory(tag: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let m = overlay();
    let prefix = unique(tag);
    harness::seed_estate(&m.endpoint, &prefix, 2);
    let dir = tempfile::tempdir().unwrap();
    let c = write_campaign(dir.path(), &harness::demo_campaign(&prefix));
    let inv = dir.path().join("inv.jsonl");
    let out = harness::inventory_file(&m.endpoint, &c, &inv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&inv).unwrap();
    (dir, c, text)
}

fn review_offline(dir: &Path, campaign: &Path, text: &str, name: &str) -> (i32, String, bool) {
    let file = dir.join(format!("{name}.jsonl"));
    std::fs::write(&file, text).unwrap();
    let plan_out = dir.join(format!("plans/{name}.plan.yaml"));
    let out = harness::rekey("http://127.0.0.1:9")
        .args(["plan", "-c"])
        .arg(campaign)
        .arg("-o")
        .arg(&plan_out)
        .arg("--from-inventory")
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        plan_out.exists(),
    )
}

/// Review (offline plans): a saved inventory cut at a line boundary (a copy that stopped, a
/// disk that filled, an inventory that failed part-way) reads as a complete one: nothing in
/// the header says how many records follow or what they hash to. The offline plan must be
/// refused (exit 2), not plan a part of the estate with exit 0.
#[test]
fn review_offline_a_truncated_inventory_is_refused() {
    let (dir, c, text) = review_inventory("offtrunc");
    let lines: Vec<&str> = text.lines().collect();
    // Keep the header, the first bucket and one of its objects.
    let first_object = lines
        .iter()
        .position(|l| l.contains("\"kind\":\"s3-object\""))
        .expect("an object record");
    let cut = lines[..=first_object].join("\n") + "\n";
    assert!(lines.len() > first_object + 3, "records were cut off");
    let (code, err, written) = review_offline(dir.path(), &c, &cut, "truncated");
    assert_eq!(
        code,
        2,
        "a truncated inventory ({} of {} records) was planned: {err}",
        first_object,
        lines.len() - 1
    );
    assert!(!written, "no plan is written");
}

/// Review (offline plans): records out of the order the planner relies on (an object before
/// its bucket) are a bad input file, which the contract refuses with exit 2 and a fix
/// ("take the inventory again"); today they end as an internal error (exit 1).
#[test]
fn review_offline_an_object_before_its_bucket_is_refused_as_a_bad_file() {
    let (dir, c, text) = review_inventory("offobj");
    let mut lines: Vec<&str> = text.lines().collect();
    let bucket = lines
        .iter()
        .position(|l| l.contains("\"kind\":\"s3-bucket\""))
        .unwrap();
    assert!(lines[bucket + 1].contains("\"kind\":\"s3-object\""));
    lines.swap(bucket, bucket + 1);
    let (code, err, written) =
        review_offline(dir.path(), &c, &(lines.join("\n") + "\n"), "object-first");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("rekey inventory -c"), "says how to fix: {err}");
    assert!(!written);
}

/// Review (offline plans): a campaign with a `gcp` section but no `gcp.gcs` (no Cloud Storage
/// bucket read yet) and a Cloud KMS team key plans online (no Cloud KMS check is made: there
/// is nothing to move onto it), but the offline plan of the same campaign and its inventory is
/// refused: "has no Cloud KMS check". The same campaign should give the same plan.
#[test]
fn review_offline_a_gcp_key_without_gcs_buckets_plans_as_online() {
    let m = overlay();
    let prefix = unique("offgcpk");
    harness::seed_estate(&m.endpoint, &prefix, 1);
    let dir = tempfile::tempdir().unwrap();
    let yaml = harness::demo_campaign(&prefix)
        .replace(
            &format!("vision: {{ aws: alias/{prefix}ml-vision }}"),
            &format!("vision: {{ aws: alias/{prefix}ml-vision, gcp: projects/demo-project/locations/us/keyRings/ml/cryptoKeys/ml-vision }}"),
        )
        .replace("keys:\n", "gcp:\n  project: demo-project\nkeys:\n");
    assert!(
        yaml.contains("cryptoKeys/ml-vision") && yaml.contains("project: demo-project"),
        "{yaml}"
    );
    let c = write_campaign(dir.path(), &yaml);
    let online = dir.path().join("plans/online.plan.yaml");
    let out = run_plan(&m.endpoint, &c, &online);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inv = dir.path().join("inv.jsonl");
    let out = harness::inventory_file(&m.endpoint, &c, &inv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&inv).unwrap();
    let (code, err, _) = review_offline(dir.path(), &c, &text, "offline");
    assert_eq!(code, 0, "the online plan of this campaign succeeds: {err}");
}
