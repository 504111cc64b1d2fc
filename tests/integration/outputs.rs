//! `--output json` of every command: the schemas in docs/schemas/ are the ones the types
//! generate (pinned), and what each command prints on a real run validates against its schema.

use std::path::Path;

use rekey::schema::{self, Command};

use crate::apply::{code, stderr};
use crate::harness::{self, overlay, repo_root, unique};

const ALL: [Command; 7] = [
    Command::Inventory,
    Command::Plan,
    Command::Show,
    Command::Apply,
    Command::Status,
    Command::Verify,
    Command::Rollback,
];

fn checked_in(c: Command) -> serde_json::Value {
    let path = repo_root().join("docs/schemas").join(c.file_name());
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The checked-in schemas are what the output types generate: a change to an output shows in
/// docs/schemas/ (REKEY_BLESS=1 rewrites them), and each is a valid JSON Schema.
#[test]
fn the_documented_schemas_are_the_generated_ones() {
    for c in ALL {
        let path = repo_root().join("docs/schemas").join(c.file_name());
        crate::golden::check_golden(&path, &schema::text(c));
        jsonschema::meta::validate(&checked_in(c))
            .unwrap_or_else(|e| panic!("{}: not a valid JSON Schema: {e}", c.file_name()));
    }
    // `rekey schema` prints the same.
    let out = harness::rekey("http://127.0.0.1:9")
        .args(["schema", "status"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        schema::text(Command::Status)
    );
}

fn validate(c: Command, doc: &serde_json::Value) {
    let schema = checked_in(c);
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{} output does not match its schema: {errors:?}\n{doc}",
        c.file_name()
    );
}

fn json_lines(c: Command, text: &str) -> Vec<serde_json::Value> {
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for l in &lines {
        validate(c, l);
    }
    lines
}

/// Inventory, plan, show, apply, status, verify (plan and campaign) and rollback, each with
/// `--output json` on the demo estate: stdout validates against the command's schema.
#[test]
fn every_json_output_validates_against_its_schema() {
    let m = overlay();
    let prefix = unique("jsonout");
    harness::seed_estate(&m.endpoint, &prefix, 1);
    let dir = tempfile::tempdir().unwrap();
    let campaign = dir.path().join("campaign.yaml");
    std::fs::write(&campaign, harness::demo_campaign(&prefix)).unwrap();
    let plan = dir.path().join("plans/demo.plan.yaml");
    let run = |args: &[&str], paths: &[&Path], ok: &[i32]| {
        let mut cmd = harness::rekey(&m.endpoint);
        cmd.args(args);
        for p in paths {
            cmd.arg(p);
        }
        cmd.args(["--output", "json"]);
        let out = cmd.output().unwrap();
        assert!(
            ok.contains(&code(&out)),
            "{args:?} exit {}: {}",
            code(&out),
            stderr(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    let lines = json_lines(
        Command::Inventory,
        &run(&["inventory", "-c"], &[&campaign], &[0]),
    );
    assert_eq!(lines[0]["format"], "rekey-inventory");
    assert!(lines.iter().any(|l| l["kind"] == "s3-object"));

    let totals: serde_json::Value = serde_json::from_str(&run(
        &["plan", "-o"],
        &[&plan, Path::new("-c"), &campaign],
        &[0],
    ))
    .unwrap();
    validate(Command::Plan, &totals);
    assert!(totals["objects"].as_u64().unwrap() > 0, "{totals}");

    let shown: serde_json::Value = serde_json::from_str(&run(&["show"], &[&plan], &[0])).unwrap();
    validate(Command::Show, &shown);

    // Blocked objects end apply with exit 3 (steps not done) or 0.
    let events = json_lines(Command::Apply, &run(&["apply", "--yes"], &[&plan], &[0, 3]));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "step-done" || e["event"] == "stage-done"),
        "{events:?}"
    );

    let status: serde_json::Value =
        serde_json::from_str(&run(&["status"], &[&plan], &[0])).unwrap();
    validate(Command::Status, &status);

    for args in [vec![&plan as &Path], vec![Path::new("-c"), &campaign]] {
        let v: serde_json::Value = serde_json::from_str(&run(&["verify"], &args, &[0, 6])).unwrap();
        validate(Command::Verify, &v);
    }

    let r: serde_json::Value =
        serde_json::from_str(&run(&["rollback", "--yes"], &[&plan], &[0, 3])).unwrap();
    validate(Command::Rollback, &r);
    assert!(r["undone"].as_u64().unwrap() > 0, "{r}");
}
