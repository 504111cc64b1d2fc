//! Golden files for user-facing text: campaign error messages and the plan summary.
//! Set REKEY_BLESS=1 to rewrite the golden files after a deliberate change, then review the diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rekey::campaign;
use rekey::inventory::{PinnedKey, PinnedKeys, Record};
use rekey::model::{EncryptionClass, ObjectLock, Resource, S3Bucket, S3Encryption, S3Object};
use rekey::plan::{self, Planner};

use crate::harness::repo_root;

pub fn check_golden(path: &Path, actual: &str) {
    if std::env::var_os("REKEY_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run with REKEY_BLESS=1 to create it",
            path.display()
        )
    });
    assert!(
        want == actual,
        "{} differs.\n--- golden\n{want}\n--- actual\n{actual}\n(REKEY_BLESS=1 rewrites it)",
        path.display()
    );
}

/// Every bad campaign fails with exit code 2 and its golden message, before any cloud call:
/// the endpoint is a closed port, so a call would fail differently.
#[test]
fn bad_campaigns_fail_with_their_golden_messages() {
    let root = repo_root();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root.join("tests/campaigns/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 15,
        "the corpus holds at least 15 bad campaigns"
    );
    cases.push(PathBuf::from("tests/campaigns/bad/99-no-such-file.yaml"));
    for case in cases {
        let rel = case.strip_prefix(&root).unwrap_or(&case).to_path_buf();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rekey"))
            .current_dir(&root)
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .args(["plan", "-c"])
            .arg(&rel)
            .args(["-o", "/nonexistent/never-written.plan.yaml"])
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", rel.display());
        assert!(
            stderr.contains("fix: "),
            "{}: every message says what to do: {stderr}",
            rel.display()
        );
        assert!(
            !stderr.contains("127.0.0.1:9"),
            "{}: no cloud call is made",
            rel.display()
        );
        let name = rel.file_stem().unwrap().to_string_lossy().to_string();
        check_golden(
            &root.join(format!("tests/golden/campaign-errors/{name}.txt")),
            &stderr,
        );
    }
}

/// The good campaign of the corpus parses: the bad ones differ from it in one thing each.
#[test]
fn the_corpus_base_campaign_is_valid() {
    campaign::load(&repo_root().join("tests/campaigns/good.yaml")).unwrap();
}

const FRAUD: &str = "arn:aws:kms:us-east-1:111111111111:key/11111111-1111-1111-1111-111111111111";
const VISION: &str = "arn:aws:kms:us-east-1:111111111111:key/22222222-2222-2222-2222-222222222222";
const LEGACY: &str = "arn:aws:kms:us-east-1:111111111111:key/33333333-3333-3333-3333-333333333333";
const AWS_S3: &str = "arn:aws:kms:us-east-1:111111111111:key/44444444-4444-4444-4444-444444444444";

fn enc(algorithm: &str, key: Option<&str>, manager: Option<&str>) -> S3Encryption {
    S3Encryption {
        algorithm: algorithm.into(),
        kms_key_arn: key.map(str::to_string),
        key_manager: manager.map(str::to_string),
        ..Default::default()
    }
}

fn bucket(name: &str, default: S3Encryption, versioning: &str, tags: &[(&str, &str)]) -> S3Bucket {
    S3Bucket {
        account: "default".into(),
        region: "us-east-1".into(),
        bucket: name.into(),
        default_encryption: default,
        versioning: versioning.into(),
        object_lock: false,
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        acls: false,
        changes_in_place: false,
        report: None,
        surroundings: Default::default(),
        access: Vec::new(),
    }
}

fn object(b: &str, key: &str, size: u64, storage: &str, e: S3Encryption) -> S3Object {
    S3Object {
        account: "default".into(),
        region: "us-east-1".into(),
        bucket: b.into(),
        key: key.into(),
        version_id: None,
        is_latest: true,
        size,
        etag: format!("\"{:032x}\"", size),
        storage_class: storage.into(),
        archive_status: None,
        last_modified: "2026-01-01T00:00:00Z".into(),
        encryption: e,
        lock: ObjectLock::default(),
        website_redirect: None,
        content_hash: None,
    }
}

/// A synthetic estate with fixed key ARNs, classified as the inventory would.
fn synthetic_records(c: &campaign::LoadedCampaign, keys: &PinnedKeys) -> Vec<Record> {
    let sse_s3 = enc("AES256", None, None);
    let managed = enc("aws:kms", Some(AWS_S3), Some("AWS"));
    let legacy = enc("aws:kms", Some(LEGACY), Some("CUSTOMER"));
    let fraud = enc("aws:kms", Some(FRAUD), Some("CUSTOMER"));
    // SageMaker first, as the inventory yields it: an endpoint serving a model whose artifact
    // sits in ml-fraud-models, and a notebook instance tagged for the vision team.
    let sm = |name: &str, key: Option<&str>, tags: &[(&str, &str)]| rekey::model::SmOther {
        account: "default".into(),
        region: "us-east-1".into(),
        name: name.into(),
        arn: format!("arn:aws:sagemaker:us-east-1:111111111111:notebook-instance/{name}"),
        kms_key_arn: key.map(str::to_string),
        key_manager: key.map(|_| "CUSTOMER".to_string()),
        volume_kms_key_arn: None,
        output_path: None,
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let mut resources = vec![
        Resource::SagemakerEndpoint(rekey::model::SmEndpoint {
            account: "default".into(),
            region: "us-east-1".into(),
            name: "fraud-scoring".into(),
            arn: "arn:aws:sagemaker:us-east-1:111111111111:endpoint/fraud-scoring".into(),
            status: "InService".into(),
            config: "fraud-scoring-cfg".into(),
            kms_key_arn: None,
            key_manager: None,
            data_capture: false,
            data_capture_kms_key_arn: None,
            async_output: false,
            async_output_kms_key_arn: None,
            variants: vec![rekey::providers::sagemaker::VariantInfo {
                name: "main".into(),
                model: Some("fraud-xgb".into()),
                instance_type: Some("ml.m5.large".into()),
                serverless: false,
                shadow: false,
            }],
            // As the preflight found it: the serving role may read its artifact's key.
            access: vec![rekey::access::Verdict {
                principal: "arn:aws:iam::111111111111:role/fraud-serving".into(),
                key_arn: "arn:aws:kms:us-east-1:111111111111:key/11111111-1111-1111-1111-111111111111".into(),
                role: "execution role of model fraud-xgb, reading s3://ml-fraud-models/xgb/v0/model.tar.gz".into(),
                actions: vec!["kms:Decrypt".into()],
                via_service: Some("s3.us-east-1.amazonaws.com".into()),
                source_arn: None,
                source_account: None,
                verdict: rekey::access::VerdictKind::Allowed,
                rests_on: vec!["key policy of arn:aws:kms:us-east-1:111111111111:key/11111111-1111-1111-1111-111111111111 statement \"FraudServing\"".into()],
                reason: None,
                add: None,
                accepted: Vec::new(),
                not_evaluated: rekey::access::NOT_EVALUATED.into(),
            }],
            source_sha256: String::new(),
            models: vec![rekey::model::SmModel {
                name: "fraud-xgb".into(),
                execution_role_arn: "arn:aws:iam::111111111111:role/fraud-serving".into(),
                artifacts: vec![rekey::model::SmArtifact {
                    url: "s3://ml-fraud-models/xgb/v0/model.tar.gz".into(),
                    team_key: Some("fraud".into()),
                    key_access: None,
                    bucket_tags: BTreeMap::new(),
                }],
            }],
            tags: BTreeMap::new(),
        }),
        Resource::SagemakerNotebookInstance(sm("vision-explore", None, &[("team", "vision")])),
    ];
    resources.push(Resource::S3Bucket(bucket(
        "ml-fraud-models",
        managed.clone(),
        "Enabled",
        &[],
    )));
    for i in 0..4 {
        resources.push(Resource::S3Object(object(
            "ml-fraud-models",
            &format!("xgb/v{i}/model.tar.gz"),
            300 << 20,
            "STANDARD",
            managed.clone(),
        )));
    }
    resources.push(Resource::S3Object(object(
        "ml-fraud-models",
        "xgb/huge/model.tar.gz",
        7 << 30,
        "STANDARD_IA",
        legacy.clone(),
    )));
    resources.push(Resource::S3Bucket(bucket(
        "ml-fraud-sandbox",
        sse_s3.clone(),
        "Unversioned",
        &[],
    )));
    resources.push(Resource::S3Object(object(
        "ml-fraud-sandbox",
        "a.parquet",
        1000,
        "STANDARD",
        sse_s3.clone(),
    )));
    resources.push(Resource::S3Object(object(
        "ml-fraud-sandbox",
        "b.parquet",
        2000,
        "STANDARD",
        fraud.clone(),
    )));
    resources.push(Resource::S3Object(object(
        "ml-fraud-sandbox",
        "c.parquet",
        3000,
        "STANDARD",
        enc("sse-c", None, None),
    )));
    resources.push(Resource::S3Object(object(
        "ml-fraud-sandbox",
        "old.tar",
        4000,
        "DEEP_ARCHIVE",
        sse_s3.clone(),
    )));
    resources.push(Resource::S3Bucket(bucket(
        "ml-scratch",
        enc("none", None, None),
        "Unversioned",
        &[],
    )));
    resources.push(Resource::S3Object(object(
        "ml-scratch",
        "tmp",
        10,
        "STANDARD",
        sse_s3.clone(),
    )));
    resources.push(Resource::S3Bucket(bucket(
        "ml-vision-data",
        enc("none", None, None),
        "Unversioned",
        &[("team", "vision")],
    )));
    for i in 0..3 {
        resources.push(Resource::S3Object(object(
            "ml-vision-data",
            &format!("shards/{i}.tfrecord"),
            64 << 20,
            "STANDARD",
            sse_s3.clone(),
        )));
    }
    resources.push(Resource::S3Object(object(
        "ml-vision-data",
        "legacy.csv",
        50,
        "STANDARD",
        enc("none", None, None),
    )));
    // Cloud Storage: a labelled bucket on Google-managed keys, with a NEARLINE object (planned,
    // flagged with its cost) and one under a customer-supplied key (blocked).
    let gcs_object = |name: &str, class: &str, customer_supplied: bool| {
        Resource::GcsObject(rekey::model::GcsObject {
            account: "gcp:demo-project".into(),
            bucket: "ml-vision-gcs".into(),
            name: name.into(),
            generation: 1700000000000000 + name.len() as i64,
            size: 2 << 20,
            storage_class: class.into(),
            content_type: "application/octet-stream".into(),
            kms_key: None,
            customer_supplied,
            content_hash: None,
            hold: None,
        })
    };
    resources.push(Resource::GcsBucket(rekey::model::GcsBucket {
        account: "gcp:demo-project".into(),
        project: "demo-project".into(),
        bucket: "ml-vision-gcs".into(),
        location: "us".into(),
        default_kms_key: None,
        versioning: false,
        labels: [("team".to_string(), "vision".to_string())].into(),
        storage_class: None,
    }));
    resources.push(gcs_object("embeddings/a.npy", "STANDARD", false));
    resources.push(gcs_object("embeddings/cold.npy", "NEARLINE", false));
    resources.push(gcs_object("embeddings/secret.npy", "STANDARD", true));
    resources
        .into_iter()
        .map(|r| {
            let tags = match &r {
                Resource::S3Bucket(b) => b.tags.clone(),
                Resource::S3Object(o) if o.bucket == "ml-vision-data" => {
                    [("team".to_string(), "vision".to_string())].into()
                }
                Resource::SagemakerNotebookInstance(n) => n.tags.clone(),
                Resource::GcsBucket(_) | Resource::GcsObject(_) => {
                    [("team".to_string(), "vision".to_string())].into()
                }
                _ => BTreeMap::new(),
            };
            rekey::inventory::classify(c, keys, r, &tags)
        })
        .collect()
}

fn pinned() -> PinnedKeys {
    let key = |alias: &str, arn: &str| PinnedKey {
        alias: alias.into(),
        arn: arn.into(),
        key_id: arn.rsplit('/').next().unwrap().into(),
        region: "us-east-1".into(),
        state: "Enabled".into(),
    };
    [
        ("fraud".to_string(), key("alias/ml-fraud", FRAUD)),
        ("vision".to_string(), key("alias/ml-vision", VISION)),
    ]
    .into()
}

#[test]
fn plan_summary_and_plan_file_match_their_golden_files() {
    let root = repo_root();
    let c = campaign::load(&root.join("plans/example.campaign.yaml")).unwrap();
    let mut keys = pinned();
    keys.extend(rekey::inventory::pin_gcp_keys(&c));
    let records = synthetic_records(&c, &keys);
    assert_eq!(
        records
            .iter()
            .filter(|r| r.class == EncryptionClass::TargetCmk)
            .count(),
        1
    );
    let mut planner = Planner::new(&c, keys).unwrap();
    for r in &records {
        planner.add(r).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("example.plan.yaml");
    let p = planner
        .finish(
            &plan_path,
            "2026-11-25T00:00:00Z".into(),
            "sha256:campaign".into(),
        )
        .unwrap();
    plan::write(&plan_path, &p).unwrap();
    check_golden(
        &root.join("tests/golden/plan-summary.txt"),
        &rekey::summary::render(&p),
    );
    // The committed example plan (plans/) and its runbook (runbooks/) are golden files too.
    check_golden(
        &root.join("plans/example.plan.yaml"),
        &std::fs::read_to_string(&plan_path).unwrap(),
    );
    check_golden(
        &root.join("plans/example.manifest.jsonl"),
        &std::fs::read_to_string(dir.path().join("example.manifest.jsonl")).unwrap(),
    );
    check_golden(
        &root.join("runbooks/example.md"),
        &rekey::runbook::render(&p, Path::new("plans/example.plan.yaml")),
    );
    // The plan reads back as written, manifest hash included.
    assert_eq!(plan::load(&plan_path).unwrap(), p);
    // A window in a named zone is restated in UTC, both offsets when the zone has DST.
    let mut zoned = p.clone();
    zoned.settings.window = Some(rekey::campaign::Window {
        days: vec![rekey::campaign::Weekday::Sat],
        start: "02:00".into(),
        end: "06:00".into(),
        timezone: "Europe/Berlin".into(),
    });
    let runbook = rekey::runbook::render(&zoned, Path::new("plans/example.plan.yaml"));
    assert!(
        runbook.contains(
            "Window: sat 02:00–06:00 Europe/Berlin (= 01:00–05:00 UTC at +01:00, 00:00–04:00 UTC at +02:00)"
        ),
        "{runbook}"
    );
}

/// `rekey completions SHELL` and `rekey man` write what the shells and man(1) read, naming
/// every command.
#[test]
fn completions_and_the_man_page_are_generated() {
    let run = |args: &[&str]| {
        let out = crate::harness::rekey("http://127.0.0.1:9")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let commands = [
        "inventory",
        "plan",
        "show",
        "apply",
        "status",
        "rollback",
        "runbook",
        "verify",
        "completions",
        "man",
    ];
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("_rekey()") && bash.contains("complete -F _rekey"),
        "{bash}"
    );
    for c in commands {
        assert!(bash.contains(c), "bash completion lacks {c}");
    }
    // The script is valid bash.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("rekey.bash");
    std::fs::write(&script, &bash).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let zsh = run(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef rekey"), "{zsh}");
    let fish = run(&["completions", "fish"]);
    assert!(fish.contains("complete -c rekey"), "{fish}");
    for c in commands {
        assert!(fish.contains(c), "fish completion lacks {c}");
    }
    let man = run(&["man"]);
    assert!(man.contains(".TH rekey 1"), "{man}");
    assert!(
        man.contains(".SH NAME") && man.contains(".SH SUBCOMMANDS"),
        "{man}"
    );
    assert!(
        man.contains("stale plan"),
        "the exit codes are in the page: {man}"
    );
    // An unknown shell is bad usage (exit 2), naming the choices.
    let out = crate::harness::rekey("http://127.0.0.1:9")
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"));
}
