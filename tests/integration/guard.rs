//! `rekey guard` on Terraform JSON plans and CloudFormation templates (tests/guard/): findings
//! by rule, text / JSON / SARIF output (SARIF validated against the SARIF 2.1.0 schema), exit
//! codes. AWS keys are resolved on the emulator.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::apply::{code, stderr};
use crate::harness::{self, overlay, repo_root, unique};

struct Setup {
    dir: tempfile::TempDir,
    campaign: PathBuf,
    endpoint: String,
}

fn setup() -> Setup {
    let endpoint = overlay().endpoint.clone();
    let p = unique("guard");
    let seeded = harness::seed_estate(&endpoint, &p, 1);
    let keys = &seeded["keys"];
    let dir = tempfile::tempdir().unwrap();
    let campaign = dir.path().join("campaign.yaml");
    std::fs::write(
        &campaign,
        format!(
            r#"version: 1
campaign: guard
aws:
  region: us-east-1
  s3: {{ buckets: ["{p}ml-*"] }}
gcp:
  project: demo-project
keys:
  fraud:  {{ aws: alias/{p}ml-fraud }}
  vision: {{ aws: alias/{p}ml-vision, gcp: projects/demo-project/locations/us/keyRings/ml/cryptoKeys/ml-vision }}
  nlp:    {{ aws: alias/{p}ml-nlp }}
mapping:
  - {{ match: {{ bucket: "{p}ml-fraud-*" }}, key: fraud }}
  - {{ match: {{ tag: {{ team: fraud }} }}, key: fraud }}
  - {{ match: {{ tag: {{ team: nlp }} }}, key: nlp }}
  - {{ match: {{ tag: {{ team: vision }} }}, key: vision }}
stages:
  - {{ name: all }}
"#
        ),
    )
    .unwrap();
    for f in std::fs::read_dir(repo_root().join("tests/guard")).unwrap() {
        let f = f.unwrap().path();
        let text = std::fs::read_to_string(&f)
            .unwrap()
            .replace("__P__", &p)
            .replace("__FRAUD_ARN__", keys["fraud"].as_str().unwrap())
            .replace(
                "__FRAUD_ID__",
                keys["fraud"].as_str().unwrap().rsplit('/').next().unwrap(),
            )
            .replace("__VISION_ARN__", keys["vision"].as_str().unwrap())
            .replace("__FOREIGN_ARN__", keys["legacy"].as_str().unwrap());
        std::fs::write(dir.path().join(f.file_name().unwrap()), text).unwrap();
    }
    Setup {
        dir,
        campaign,
        endpoint,
    }
}

fn guard(s: &Setup, files: &[&str], output: &str) -> std::process::Output {
    let mut cmd = harness::rekey(&s.endpoint);
    cmd.args(["guard", "-c"]).arg(&s.campaign);
    for f in files {
        cmd.arg(s.dir.path().join(f));
    }
    cmd.args(["--output", output]).output().unwrap()
}

fn findings(out: &std::process::Output) -> (serde_json::Value, BTreeSet<(String, String)>) {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let set = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["address"].as_str().unwrap().to_string(),
                f["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (report, set)
}

fn pairs(v: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    v.iter()
        .map(|(a, r)| (a.to_string(), r.to_string()))
        .collect()
}

/// The SARIF 2.1.0 schema as the serde-sarif crate ships it (the OASIS schema its types are
/// generated from), found through cargo's metadata: rekey does not copy it.
fn sarif_schema() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .unwrap();
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .unwrap();
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "serde-sarif")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("serde-sarif is a dev-dependency");
    let path = Path::new(manifest)
        .parent()
        .unwrap()
        .join("src/schema.json");
    let mut schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // The `language` patterns (of a run and a tool component) end in a bare `]`, a literal in
    // ECMA-262 regular expressions that Rust's regex engines refuse: escaped, the same language.
    fn escape(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match x {
                        serde_json::Value::String(p) if k == "pattern" && p.ends_with("}]?$") => {
                            *p = format!("{}\\]?$", &p[..p.len() - 3]);
                        }
                        _ => escape(x),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(escape),
            _ => {}
        }
    }
    escape(&mut schema);
    schema
}

fn check_sarif(out: &std::process::Output, results: usize) {
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema = sarif_schema();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{doc}");
    let typed: serde_sarif::sarif::Sarif = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(typed.runs.len(), 1);
    assert_eq!(typed.runs[0].results.as_ref().map(Vec::len), Some(results));
    for r in doc["runs"][0]["results"].as_array().unwrap() {
        let loc = &r["locations"][0]["physicalLocation"];
        assert!(loc["region"]["startLine"].as_u64().unwrap() > 0, "{r}");
        let rule = r["ruleId"].as_str().unwrap();
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(doc["runs"][0]["tool"]["driver"]["rules"][index]["id"], rule);
    }
}

#[test]
fn guard_passes_code_on_the_team_keys() {
    let s = setup();
    for file in ["tf-compliant.json", "cfn-compliant.yaml"] {
        let out = guard(&s, &[file], "json");
        assert_eq!(
            code(&out),
            0,
            "{file}: {}{}",
            stderr(&out),
            String::from_utf8_lossy(&out.stdout)
        );
        let (report, set) = findings(&out);
        assert!(set.is_empty(), "{file}: {report}");
        assert_eq!(report["checked"], report["compliant"], "{report}");
        let want = if file.ends_with(".json") { 4 } else { 3 };
        assert_eq!(report["checked"], want, "{file}: {report}");
        let ignored = if file.ends_with(".json") {
            serde_json::json!({ "aws_iam_role": 1 })
        } else {
            serde_json::json!({ "AWS::SQS::Queue": 1 })
        };
        assert_eq!(report["ignored"], ignored, "{report}");
    }
    let out = guard(&s, &["tf-compliant.json", "cfn-compliant.yaml"], "text");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 files, 7 resources checked, 7 on their team key, 0 findings"),
        "{text}"
    );
    let out = guard(&s, &["tf-compliant.json"], "sarif");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    check_sarif(&out, 0);
}

#[test]
fn guard_reports_every_resource_off_its_team_key() {
    let s = setup();
    let out = guard(&s, &["tf-findings.json"], "json");
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    let (report, set) = findings(&out);
    assert_eq!(
        set,
        pairs(&[
            ("aws_s3_bucket.raw", "missing-key"),
            ("aws_s3_bucket.scratch", "service-managed-key"),
            ("aws_s3_bucket.managed", "service-managed-key"),
            (
                "aws_sagemaker_endpoint_configuration.swapped",
                "other-team-key"
            ),
            (
                "aws_sagemaker_endpoint_configuration.swapped",
                "missing-key"
            ),
            ("aws_sagemaker_notebook_instance.typo", "alias-mismatch"),
            (
                "aws_sagemaker_notebook_instance.default",
                "service-managed-key"
            ),
            ("aws_sagemaker_domain.studio", "new-key-not-team"),
            ("aws_sagemaker_feature_group.txns", "unresolved-key"),
            ("aws_sagemaker_notebook_instance.foreign", "wrong-key"),
            ("google_bigquery_dataset.events", "wrong-key"),
            ("google_vertex_ai_dataset.images", "missing-key"),
        ]),
        "{report}"
    );
    assert_eq!(report["checked"], 11, "{report}");
    assert_eq!(report["compliant"], 0, "{report}");
    assert_eq!(
        report["not_mapped"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert_eq!(
        report["ignored"],
        serde_json::json!({ "aws_iam_role": 2, "aws_lambda_function": 1 })
    );
    // Each finding names what it found and what it expected.
    let swapped = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "other-team-key")
        .unwrap();
    assert_eq!(swapped["team_key"], "fraud");
    assert!(
        swapped["message"]
            .as_str()
            .unwrap()
            .contains("team key vision"),
        "{swapped}"
    );
    assert_eq!(swapped["attribute"], "kms_key_arn");

    let out = guard(&s, &["cfn-findings.json"], "json");
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    let (report, set) = findings(&out);
    assert_eq!(
        set,
        pairs(&[
            ("NoKeyBucket", "missing-key"),
            ("ManagedBucket", "service-managed-key"),
            ("OtherTeamNotebook", "other-team-key"),
            ("AliasConfig", "alias-mismatch"),
            ("AliasConfig", "missing-key"),
            ("Features", "unresolved-key"),
        ]),
        "{report}"
    );
    assert_eq!(
        report["ignored"],
        serde_json::json!({ "AWS::SNS::Topic": 1 })
    );

    // Text names file and line; SARIF validates and keeps every finding.
    let out = guard(&s, &["tf-findings.json", "cfn-findings.json"], "text");
    assert_eq!(code(&out), 6);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.contains("tf-findings.json:")
            && l.contains("error[missing-key]")
            && l.contains("aws_s3_bucket.raw")),
        "{text}"
    );
    assert!(text.contains("warning[unresolved-key]"), "{text}");
    assert!(text.contains("18 findings"), "{text}");
    let out = guard(&s, &["tf-findings.json", "cfn-findings.json"], "sarif");
    assert_eq!(code(&out), 6);
    check_sarif(&out, 18);
}

#[test]
fn guard_refuses_unreadable_input_before_any_cloud_call() {
    let dir = tempfile::tempdir().unwrap();
    let campaign = dir.path().join("c.yaml");
    std::fs::write(
        &campaign,
        std::fs::read_to_string(repo_root().join("plans/demo.campaign.yaml")).unwrap(),
    )
    .unwrap();
    let cases = [
        ("missing.json", None, "missing.json"),
        ("garbage.yaml", Some(": : :\n\t- ["), "not YAML"),
        (
            "other.json",
            Some("{\"hello\": 1}"),
            "neither a Terraform JSON plan",
        ),
        (
            "future.json",
            Some("{\"format_version\": \"2.0\", \"planned_values\": {}}"),
            "is not supported",
        ),
    ];
    for (name, text, says) in cases {
        let path = dir.path().join(name);
        if let Some(t) = text {
            std::fs::write(&path, t).unwrap();
        }
        // Nothing listens there: a cloud call would fail differently.
        let out = harness::rekey("http://127.0.0.1:9")
            .args(["guard", "-c"])
            .arg(&campaign)
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(code(&out), 2, "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{name}: {}", stderr(&out));
    }
}

// ---- break-it review: resources off their team key that the guard lets through ----

/// The guard's verdicts on one file: (exit code, report, {(address, rule)}).
fn run_review(s: &Setup, file: &str) -> (i32, serde_json::Value, BTreeSet<(String, String)>) {
    let out = guard(s, &[file], "json");
    assert!(
        matches!(code(&out), 0 | 6),
        "{file}: exit {} {}",
        code(&out),
        stderr(&out)
    );
    let (report, set) = findings(&out);
    (code(&out), report, set)
}

fn flagged(set: &BTreeSet<(String, String)>, address: &str) -> bool {
    set.iter().any(|(a, _)| a == address)
}

/// Provider `default_tags` (AWS) and `default_labels` (Google) put the team tag in `tags_all`
/// / `effective_labels`, which the plan knows; `tags` / `labels` are null. A bucket and a
/// notebook with no key and a Cloud Storage bucket with no CMEK pass the gate as "not mapped".
#[test]
fn review_guard_maps_by_provider_default_tags_and_labels() {
    let s = setup();
    let (exit, report, set) = run_review(&s, "review-default-tags.json");
    let missed: Vec<&str> = [
        "aws_s3_bucket.lake",
        "aws_sagemaker_notebook_instance.explore",
        "google_storage_bucket.frames",
    ]
    .into_iter()
    .filter(|a| !set.contains(&(a.to_string(), "missing-key".to_string())))
    .collect();
    assert!(
        missed.is_empty(),
        "no key, team tag from default_tags/default_labels, not reported: {missed:?} {report}"
    );
    assert_eq!(exit, 6, "{report}");
}

/// `bucket_prefix`: the bucket name is known only after apply, but every name it can take
/// matches the fraud bucket glob. A bucket with no default encryption passes as "not mapped".
#[test]
fn review_guard_maps_a_bucket_prefix_by_the_bucket_glob() {
    let s = setup();
    let (exit, report, set) = run_review(&s, "review-bucket-prefix.json");
    assert!(
        set.contains(&("aws_s3_bucket.tmp".to_string(), "missing-key".to_string())),
        "{report}"
    );
    assert_eq!(exit, 6, "{report}");
}

/// The plan updates the (imported) team alias to point at another key, and a new notebook
/// names the alias. The guard resolves the alias as it is now (the team key) and passes; after
/// apply the notebook is on the legacy key.
#[test]
fn review_guard_sees_the_team_alias_moved_by_the_plan() {
    let s = setup();
    let (exit, report, set) = run_review(&s, "review-alias-retarget.json");
    assert!(
        flagged(&set, "aws_sagemaker_notebook_instance.retarget"),
        "the notebook ends on __FOREIGN_ARN__ (the alias's planned target_key_id): {report}"
    );
    assert_eq!(exit, 6, "{report}");
}

/// A key created in the plan takes the team key's alias, which already exists in the account
/// (the guard itself resolved it to pin the team key). `terraform apply` fails on CreateAlias
/// (AlreadyExistsException) but creates the domain, which depends only on the new key: the
/// domain lands on a key that is not the team key, and the guard passed it.
#[test]
fn review_guard_refuses_a_new_key_taking_an_existing_team_alias() {
    let s = setup();
    let (exit, report, set) = run_review(&s, "review-new-key-taken-alias.json");
    assert!(
        flagged(&set, "aws_sagemaker_domain.studio"),
        "alias/…ml-fraud exists already; the new key can never take it: {report}"
    );
    assert_eq!(exit, 6, "{report}");
}

/// `kms_key_id = var.shared_key ? aws_kms_key.fraud.arn : aws_kms_key.dedicated[0].arn` with
/// shared_key = false (known after apply: the dedicated key's ARN). The guard takes the first
/// key the expression names (the team key) and passes; the same for a Cloud Storage bucket.
#[test]
fn review_guard_does_not_take_the_first_key_of_a_conditional() {
    let s = setup();
    let (exit, report, set) = run_review(&s, "review-conditional-key.json");
    let missed: Vec<&str> = [
        "aws_sagemaker_notebook_instance.dedicated",
        "google_storage_bucket.dedicated",
    ]
    .into_iter()
    .filter(|a| !flagged(&set, a))
    .collect();
    assert!(
        missed.is_empty(),
        "on the dedicated key (or at least unknown), not reported: {missed:?} {report}"
    );
    assert_eq!(exit, 6, "{report}");
}

/// CloudFormation: a team tag whose value is a parameter, a `!Sub` bucket name that matches
/// the fraud glob whatever the account, and an alias ARN of another account (`!Sub` with a
/// literal account id). Each passes the gate.
#[test]
fn review_guard_cloudformation_names_tags_and_foreign_alias_arns() {
    let s = setup();
    let (exit, report, set) = run_review(&s, "review-cfn.yaml");
    let missed: Vec<&str> = ["ParamTagNotebook", "SubNameBucket", "CentralKeyNotebook"]
        .into_iter()
        .filter(|a| !flagged(&set, a))
        .collect();
    assert!(missed.is_empty(), "not reported: {missed:?} {report}");
    assert_eq!(exit, 6, "{report}");
}

/// A multi-account campaign: the code deploys to an account where the team alias does not
/// exist (yet). `plan`/`inventory` skip such a team key per account; the guard then lists every
/// resource of that team as "not mapped" and exits 0, an unencrypted bucket included — whereas
/// the same missing alias in a single-account campaign is an error (exit 2).
#[test]
fn review_guard_fails_when_the_team_key_is_missing_in_the_account() {
    let s = setup();
    let p = unique("gacct");
    let campaign = s.dir.path().join("accounts.yaml");
    std::fs::write(
        &campaign,
        format!(
            r#"version: 1
campaign: guard-accounts
aws:
  region: us-east-1
  accounts:
    - {{ name: ml-prod, role_arn: "arn:aws:iam::444455556666:role/{p}rekey" }}
  s3: {{ buckets: ["{p}ml-*"] }}
keys:
  fraud: {{ aws: alias/{p}ml-fraud }}
mapping:
  - {{ match: {{ bucket: "{p}ml-fraud-*" }}, key: fraud }}
stages:
  - {{ name: all }}
"#
        ),
    )
    .unwrap();
    let plan = s.dir.path().join("acct-plan.json");
    let text = std::fs::read_to_string(s.dir.path().join("tf-findings.json")).unwrap();
    // tf-findings.json's aws_s3_bucket.raw: `<prefix>ml-fraud-raw`, no encryption at all.
    let prefix = text
        .split("\"bucket\": \"")
        .nth(1)
        .and_then(|t| t.split("ml-fraud-raw").next())
        .unwrap()
        .to_string();
    std::fs::write(&plan, text.replace(&prefix, &p)).unwrap();
    let out = harness::rekey(&s.endpoint)
        .args(["guard", "-c"])
        .arg(&campaign)
        .arg(&plan)
        .args(["--account", "ml-prod", "--output", "json"])
        .output()
        .unwrap();
    assert_ne!(
        code(&out),
        0,
        "alias/{p}ml-fraud does not exist in ml-prod, yet the unencrypted bucket passes: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

/// Wrong finding on compliant code: the plan creates a second alias for the team key
/// (`target_key_id` = the team key's ARN, known at plan time) and a notebook names it. The
/// guard describes the alias by name, finds nothing yet, and reports alias-mismatch.
#[test]
fn review_guard_accepts_a_new_alias_of_the_team_key() {
    let s = setup();
    let (exit, report, set) = run_review(&s, "review-new-alias-of-team-key.json");
    assert!(set.is_empty(), "{report}");
    assert_eq!(exit, 0, "{report}");
}
