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
