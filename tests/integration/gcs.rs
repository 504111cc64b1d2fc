//! Cloud Storage: the test server's semantics through rekey's client, and inventory, plan,
//! apply, resume, rollback and verify of GCS buckets and objects.

use std::process::Stdio;
use std::time::Duration;

use rekey::providers::gcs::GcsClient;
use serde_json::json;

use crate::apply::{code, stderr};
use crate::harness::{self, gcs_server, unique};

const PROJECT: &str = "demo-project";

fn key(name: &str) -> String {
    format!("projects/{PROJECT}/locations/us/keyRings/ml/cryptoKeys/{name}")
}

fn client() -> GcsClient {
    GcsClient::new(PROJECT, Some(&gcs_server().endpoint))
}

#[tokio::test]
async fn a_default_key_patch_leaves_labels_versioning_and_lifecycle_alone() {
    let gcs = client();
    let b = format!("{}bucket", unique("patch"));
    let lifecycle =
        json!({ "rule": [{ "action": { "type": "Delete" }, "condition": { "age": 30 } }] });
    gcs.create_bucket(json!({ "name": b, "labels": { "team": "vision", "cost": "ml" }, "versioning": { "enabled": true }, "lifecycle": lifecycle }))
        .await
        .unwrap();
    let before = gcs.raw_bucket(&b).await.unwrap();
    gcs.set_default_key(&b, Some(&key("vision")), None)
        .await
        .unwrap();
    let after = gcs.raw_bucket(&b).await.unwrap();
    for field in [
        "labels",
        "versioning",
        "lifecycle",
        "location",
        "storageClass",
    ] {
        assert_eq!(after[field], before[field], "{field} survives the patch");
    }
    assert_eq!(after["encryption"]["defaultKmsKeyName"], key("vision"));
    gcs.set_default_key(&b, None, None).await.unwrap();
    let cleared = gcs.raw_bucket(&b).await.unwrap();
    assert!(cleared.get("encryption").is_none());
    assert_eq!(cleared["labels"], before["labels"]);
}

#[tokio::test]
async fn the_test_server_keeps_gcs_semantics() {
    let gcs = client();
    let b = format!("{}bucket", unique("sem"));
    gcs.create_bucket(json!({ "name": b, "encryption": { "defaultKmsKeyName": key("team") } }))
        .await
        .unwrap();
    // An object that names no key takes the bucket default; the version suffix is reported,
    // and the client strips it.
    let o = gcs.upload(&b, "a", b"alpha".to_vec(), None).await.unwrap();
    assert_eq!(o.kms_key.as_deref(), Some(key("team").as_str()));
    let raw: serde_json::Value =
        reqwest::get(format!("{}/storage/v1/b/{b}/o/a", gcs_server().endpoint))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        raw["kmsKeyName"],
        format!("{}/cryptoKeyVersions/1", key("team"))
    );
    // Paging.
    for i in 0..4 {
        gcs.upload(&b, &format!("p/{i}"), vec![b'x'; 10], Some(&key("other")))
            .await
            .unwrap();
    }
    let (mut n, mut pages, mut token) = (0, 0, None);
    loop {
        let (items, next) = gcs.list_objects(&b, false, 2, token).await.unwrap();
        n += items.len();
        pages += 1;
        token = next;
        if token.is_none() {
            break;
        }
    }
    assert_eq!((n, pages), (5, 3));
    // Generation preconditions: in a versioned bucket the planned generation still exists as
    // a noncurrent one, and the rewrite is refused because the live generation moved on.
    let v = format!("{}versioned", unique("sem"));
    gcs.create_bucket(json!({ "name": v, "versioning": { "enabled": true } }))
        .await
        .unwrap();
    let first = gcs.upload(&v, "m", b"one".to_vec(), None).await.unwrap();
    gcs.upload(&v, "m", b"two".to_vec(), None).await.unwrap();
    let err = gcs
        .rewrite_in_place(&v, "m", first.generation, Some(&key("x")), &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, rekey::error::ProviderError::Precondition { .. }),
        "{err:?}"
    );
    assert_eq!(gcs.download(&v, "m").await.unwrap(), b"two");
    let (items, _) = gcs.list_objects(&v, true, 10, None).await.unwrap();
    assert_eq!(
        items.len(),
        2,
        "versions=true lists the noncurrent generation too"
    );
    assert_eq!(items.iter().filter(|i| i.is_latest).count(), 1);
    // In an unversioned bucket the replaced generation is gone: 404.
    let gone = gcs
        .rewrite_in_place(&b, "a", o.generation + 1, Some(&key("x")), &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(gone, rekey::error::ProviderError::NotFound { .. }),
        "{gone:?}"
    );
    // Rewrite-token continuation under maxBytesRewrittenPerCall.
    let big = vec![7u8; 3 * 1024 * 1024 + 5];
    let o = gcs.upload(&b, "big", big.clone(), None).await.unwrap();
    let mut stepped = client();
    stepped.max_bytes_per_call = Some(1024 * 1024);
    let (rewritten, calls) = stepped
        .rewrite_in_place(&b, "big", o.generation, Some(&key("new")), &json!({}))
        .await
        .unwrap();
    assert_eq!(calls, 4);
    assert_eq!(rewritten.kms_key.as_deref(), Some(key("new").as_str()));
    assert_eq!(gcs.download(&b, "big").await.unwrap(), big);
    // Customer-supplied keys are reported as such.
    let csek = base64_of(&[9u8; 32]);
    let http = reqwest::Client::new();
    http.post(format!(
        "{}/upload/storage/v1/b/{b}/o?uploadType=media&name=secret",
        gcs_server().endpoint
    ))
    .header("x-goog-encryption-algorithm", "AES256")
    .header("x-goog-encryption-key", &csek)
    .body("s")
    .send()
    .await
    .unwrap();
    let s = gcs.get_object(&b, "secret", None).await.unwrap();
    assert!(s.customer_supplied);
}

fn base64_of(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn campaign(p: &str) -> String {
    harness::gcp_key(&gcs_server().endpoint, &key(&format!("{p}vision")), "");
    format!(
        "version: 1\ncampaign: gcs\ngcp:\n  project: {PROJECT}\n  endpoint: {}\n  gcs: {{ buckets: [\"{p}ml-*\"], max_bytes_rewritten_per_call: 1048576 }}\nkeys:\n  vision: {{ gcp: {} }}\nmapping:\n  - {{ match: {{ bucket: \"{p}ml-*\" }}, key: vision }}\nstages:\n  - {{ name: canary, match: {{ bucket: \"{p}ml-models\" }} }}\n  - {{ name: rest }}\nlimits: {{ concurrency: 4, requests_per_second: 500 }}\n",
        gcs_server().endpoint,
        key(&format!("{p}vision"))
    )
}

/// The GCS estate: a versioned, labelled training bucket (Google-managed) and a models bucket
/// whose default is a foreign key, with objects of every class.
async fn seed(p: &str, shards: usize) -> GcsClient {
    let gcs = client();
    let train = format!("{p}ml-train");
    let models = format!("{p}ml-models");
    gcs.create_bucket(
        json!({ "name": train, "labels": { "team": "vision" }, "versioning": { "enabled": true } }),
    )
    .await
    .unwrap();
    gcs.create_bucket(
        json!({ "name": models, "encryption": { "defaultKmsKeyName": key("legacy") } }),
    )
    .await
    .unwrap();
    for i in 0..shards {
        gcs.upload(
            &train,
            &format!("shards/{i:04}"),
            crate::apply::body_of(i, 0),
            None,
        )
        .await
        .unwrap();
    }
    gcs.upload(&models, "resnet/model.pt", vec![3u8; 3 * 1024 * 1024], None)
        .await
        .unwrap(); // foreign CMEK by default
    gcs.upload(
        &models,
        "resnet/on-target.pt",
        b"done".to_vec(),
        Some(&key(&format!("{p}vision"))),
    )
    .await
    .unwrap();
    reqwest::Client::new()
        .post(format!(
            "{}/upload/storage/v1/b/{models}/o?uploadType=media&name=resnet/card.json",
            gcs_server().endpoint
        ))
        .header("content-type", "application/json")
        .body("{\"model\": \"resnet\"}")
        .send()
        .await
        .unwrap();
    reqwest::Client::new()
        .post(format!(
            "{}/upload/storage/v1/b/{models}/o?uploadType=media&name=resnet/secret.pt",
            gcs_server().endpoint
        ))
        .header("x-goog-encryption-algorithm", "AES256")
        .header("x-goog-encryption-key", base64_of(&[5u8; 32]))
        .body("secret")
        .send()
        .await
        .unwrap();
    gcs
}

fn rekey() -> std::process::Command {
    let mut c = harness::rekey("http://127.0.0.1:9");
    c.env_remove("AWS_ENDPOINT_URL");
    c
}

#[tokio::test]
async fn gcs_apply_verify_drift_and_rollback() {
    let p = unique("gcs");
    let gcs = seed(&p, 6).await;
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("gcs.yaml");
    std::fs::write(&c, campaign(&p)).unwrap();
    let plan = dir.path().join("gcs.plan.yaml");
    let out = rekey()
        .args(["plan", "-c"])
        .arg(&c)
        .arg("-o")
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        summary.contains("blocked  gs://") && summary.contains("customer-supplied"),
        "{summary}"
    );
    // A Cloud Storage plan is priced as Cloud Storage and Cloud KMS, and ends in a verdict.
    assert!(
        summary.contains("Cloud Storage $0.005/1k Class A operations")
            && summary.contains("Cloud KMS $0.03/10k")
            && !summary.contains("S3 $"),
        "{summary}"
    );
    assert!(
        summary.contains("Verdict: changes ") && summary.contains("1 object blocked"),
        "{summary}"
    );
    // The inventory table groups by provider, names Cloud Storage kinds, and counts bytes.
    let out = rekey().args(["inventory", "-c"]).arg(&c).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let summary_at = table.find("\nInventory ").expect("a summary");
    let tail = &table[summary_at..];
    assert!(tail.contains("\n  Cloud Storage\n"), "{tail}");
    assert!(!tail.contains("\n  S3\n"), "{tail}");
    assert!(
        tail.lines()
            .any(|l| l.trim_start().starts_with("object ") && l.contains(" B")),
        "{tail}"
    );
    assert!(
        tail.lines().any(|l| l.trim_start().starts_with("total")),
        "{tail}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("object ") && l.contains(&format!("gs://{p}ml-"))),
        "each object named with its scheme: {table}"
    );
    // Planned again offline from a saved inventory: the same plan (the Cloud KMS verdicts
    // and key states come from the inventory's header).
    let inv = dir.path().join("inv.jsonl");
    let out = rekey()
        .args(["inventory", "-c"])
        .arg(&c)
        .arg("-o")
        .arg(&inv)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let offline = dir.path().join("offline/gcs.plan.yaml");
    let out = rekey()
        .args(["plan", "-c"])
        .arg(&c)
        .arg("-o")
        .arg(&offline)
        .arg("--from-inventory")
        .arg(&inv)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let undated = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("created_at:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(undated(&plan), undated(&offline));
    assert_eq!(
        std::fs::read_to_string(plan.with_file_name("gcs.manifest.jsonl")).unwrap(),
        std::fs::read_to_string(offline.with_file_name("gcs.manifest.jsonl")).unwrap()
    );
    assert!(
        rekey::plan::load(&offline)
            .unwrap()
            .access
            .iter()
            .any(|v| v.key_arn.starts_with("projects/") && v.allowed()),
        "the Cloud KMS verdicts are in the plan"
    );

    let pf = rekey::plan::load(&plan).unwrap();
    assert_eq!(pf.stages[0].buckets[0].bucket, format!("{p}ml-models"));
    assert_eq!(pf.stages[0].buckets[0].skipped_on_target, 1);

    // A writer replaces one shard after the plan: its generation no longer matches.
    let train = format!("{p}ml-train");
    gcs.upload(&train, "shards/0005", b"newest".to_vec(), None)
        .await
        .unwrap();

    let out = rekey()
        .args(["apply"])
        .arg(&plan)
        .arg("--yes")
        .output()
        .unwrap();
    assert_eq!(
        code(&out),
        3,
        "a drifted step ends the run with exit 3: {}",
        stderr(&out)
    );
    let vision = key(&format!("{p}vision"));
    for i in 0..5 {
        let name = format!("shards/{i:04}");
        assert_eq!(
            gcs.get_object(&train, &name, None)
                .await
                .unwrap()
                .kms_key
                .as_deref(),
            Some(vision.as_str())
        );
        assert_eq!(
            gcs.download(&train, &name).await.unwrap(),
            crate::apply::body_of(i, 0)
        );
    }
    assert_eq!(
        gcs.download(&train, "shards/0005").await.unwrap(),
        b"newest",
        "the newer write is never overwritten"
    );
    let models = format!("{p}ml-models");
    assert_eq!(
        gcs.get_object(&models, "resnet/model.pt", None)
            .await
            .unwrap()
            .kms_key
            .as_deref(),
        Some(vision.as_str())
    );
    assert!(
        gcs.get_object(&models, "resnet/secret.pt", None)
            .await
            .unwrap()
            .customer_supplied,
        "customer-supplied left alone"
    );
    let card = gcs
        .get_object(&models, "resnet/card.json", None)
        .await
        .unwrap();
    assert_eq!(card.kms_key.as_deref(), Some(vision.as_str()));
    assert_eq!(
        card.content_type, "application/json",
        "metadata survives the rewrite"
    );
    assert_eq!(
        gcs.download(&models, "resnet/card.json").await.unwrap(),
        b"{\"model\": \"resnet\"}"
    );
    let raw = gcs.raw_bucket(&train).await.unwrap();
    assert_eq!(raw["labels"]["team"], "vision");
    assert_eq!(raw["versioning"]["enabled"], true);
    assert_eq!(raw["encryption"]["defaultKmsKeyName"], vision);
    let steps = crate::apply::journal_steps(&plan);
    assert!(steps
        .iter()
        .any(|s| s.key == "shards/0005" && s.state == "drifted"));
    assert!(
        steps
            .iter()
            .any(|s| s.key == "resnet/model.pt"
                && s.reason.as_deref() == Some("rewritten in 3 calls")),
        "{steps:?}"
    );
    let out = rekey().args(["verify"]).arg(&plan).output().unwrap();
    // shards/0005 was rewritten by its writer without a key after... it is google-managed:
    // verify reports it until the next campaign picks it up.
    assert_eq!(code(&out), 6, "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("shards/0005"));

    // Rollback: bucket defaults first (GCS cannot go back to Google-managed under a default
    // key), then every object to its original key.
    let out = rekey()
        .args(["rollback"])
        .arg(&plan)
        .arg("--yes")
        .output()
        .unwrap();
    assert_eq!(
        code(&out),
        0,
        "{} {}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(gcs
        .raw_bucket(&train)
        .await
        .unwrap()
        .get("encryption")
        .is_none());
    assert_eq!(
        gcs.get_bucket(&models).await.unwrap().default_kms_key,
        Some(key("legacy"))
    );
    assert_eq!(
        gcs.get_object(&train, "shards/0000", None)
            .await
            .unwrap()
            .kms_key,
        None,
        "back to Google-managed"
    );
    assert_eq!(
        gcs.get_object(&models, "resnet/model.pt", None)
            .await
            .unwrap()
            .kms_key,
        Some(key("legacy")),
        "back to the foreign key"
    );
    assert_eq!(
        gcs.download(&train, "shards/0001").await.unwrap(),
        crate::apply::body_of(1, 0)
    );
}

#[tokio::test]
async fn gcs_sigkill_then_resume_loses_nothing() {
    let seed_value = fastrand::u64(..);
    eprintln!("gcs crash trials seed {seed_value}");
    let mut rng = fastrand::Rng::with_seed(seed_value);
    for trial in 0..10 {
        let p = unique(&format!("gk{trial}"));
        let gcs = seed(&p, 60).await;
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("gcs.yaml");
        std::fs::write(
            &c,
            campaign(&p).replace("requests_per_second: 500", "requests_per_second: 300"),
        )
        .unwrap();
        let plan = dir.path().join("gcs.plan.yaml");
        let out = rekey()
            .args(["plan", "-c"])
            .arg(&c)
            .arg("-o")
            .arg(&plan)
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let mut child = rekey()
            .args(["apply"])
            .arg(&plan)
            .arg("--yes")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = rng.u64(20..400);
        tokio::time::sleep(Duration::from_millis(at)).await;
        let _ = child.kill();
        let _ = child.wait();
        let out = rekey()
            .args(["apply"])
            .arg(&plan)
            .arg("--yes")
            .output()
            .unwrap();
        assert_eq!(
            code(&out),
            0,
            "trial {trial} (killed at {at} ms): {}",
            stderr(&out)
        );
        let vision = key(&format!("{p}vision"));
        let train = format!("{p}ml-train");
        for i in 0..60 {
            let name = format!("shards/{i:04}");
            let o = gcs.get_object(&train, &name, None).await.unwrap();
            assert_eq!(
                o.kms_key.as_deref(),
                Some(vision.as_str()),
                "trial {trial}: {name}"
            );
        }
        for i in [0, 31, 59] {
            assert_eq!(
                gcs.download(&train, &format!("shards/{i:04}"))
                    .await
                    .unwrap(),
                crate::apply::body_of(i, 0)
            );
        }
        let out = rekey()
            .args(["verify", "--ignore-blocked"])
            .arg(&plan)
            .output()
            .unwrap();
        assert_eq!(
            code(&out),
            0,
            "trial {trial}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[tokio::test]
async fn one_campaign_holds_aws_and_gcp_one_plan_one_journal() {
    let aws_endpoint = crate::harness::overlay().endpoint.clone();
    let p = unique("both");
    let seeded = harness::seed_estate(&aws_endpoint, &p, 2);
    let gcs = seed(&p, 4).await;
    harness::gcp_key(&gcs_server().endpoint, &key(&format!("{p}vision")), "");
    let gcp = format!(
        "gcp:\n  project: {PROJECT}\n  endpoint: {}\n  gcs: {{ buckets: [\"{p}ml-train\"] }}\n",
        gcs_server().endpoint
    );
    let yaml = harness::demo_campaign(&p)
        .replace("keys:\n", &format!("{gcp}keys:\n"))
        .replace(
            &format!("vision: {{ aws: alias/{p}ml-vision }}"),
            &format!(
                "vision: {{ aws: alias/{p}ml-vision, gcp: {} }}",
                key(&format!("{p}vision"))
            ),
        );
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("both.yaml");
    std::fs::write(&c, &yaml).unwrap();
    let plan = dir.path().join("both.plan.yaml");
    let out = harness::rekey(&aws_endpoint)
        .args(["plan", "-c"])
        .arg(&c)
        .arg("-o")
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}\n{yaml}", stderr(&out));
    let pf = rekey::plan::load(&plan).unwrap();
    let providers: std::collections::BTreeSet<_> = pf
        .stages
        .iter()
        .flat_map(|s| &s.buckets)
        .map(|b| b.provider)
        .collect();
    assert_eq!(providers.len(), 2, "S3 and GCS buckets in one plan");
    let out = harness::rekey(&aws_endpoint)
        .args(["apply"])
        .arg(&plan)
        .arg("--yes")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = harness::rekey(&aws_endpoint)
        .args(["verify", "--ignore-blocked"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let o = gcs
        .get_object(&format!("{p}ml-train"), "shards/0000", None)
        .await
        .unwrap();
    assert_eq!(o.kms_key, Some(key(&format!("{p}vision"))));
    let s3 = harness::clients(&aws_endpoint).await.s3;
    let h = s3
        .head_object()
        .bucket(format!("{p}ml-vision-data"))
        .key("shards/00000.tfrecord")
        .send()
        .await
        .unwrap();
    assert_eq!(h.ssekms_key_id(), seeded["keys"]["vision"].as_str());
    let kinds: std::collections::BTreeSet<String> = crate::apply::journal_steps(&plan)
        .into_iter()
        .map(|s| s.kind)
        .collect();
    assert!(
        kinds.contains("gcs-rewrite") && kinds.contains("copy"),
        "one journal: {kinds:?}"
    );
    assert!(plan.with_file_name("both.report.md").exists(), "one report");
}

/// Issue 8, defect 12: a rewrite names the object's storage class (a Coldline object in a
/// Standard bucket stays Coldline, with no early-deletion charge from a silent class change);
/// objects under a hold or an unexpired retention period are blocked with the reason.
#[tokio::test]
async fn gcs_rewrites_keep_the_storage_class_and_held_objects_are_blocked() {
    let p = unique("gcscls");
    let gcs = client();
    let b = format!("{p}ml-cold");
    gcs.create_bucket(json!({ "name": b, "storageClass": "COLDLINE" }))
        .await
        .unwrap();
    gcs.upload(&b, "cold.bin", b"cold".to_vec(), None)
        .await
        .unwrap();
    gcs.upload(&b, "held.bin", b"held".to_vec(), None)
        .await
        .unwrap();
    // The bucket's default class is Standard from now on; the objects stay Coldline.
    let http = reqwest::Client::new();
    let patch = |path: String, body: serde_json::Value| {
        let http = http.clone();
        async move {
            http.patch(format!("{}{path}", gcs_server().endpoint))
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    patch(
        format!("/storage/v1/b/{b}"),
        json!({ "storageClass": "STANDARD" }),
    )
    .await;
    patch(
        format!("/storage/v1/b/{b}/o/held.bin"),
        json!({ "eventBasedHold": true }),
    )
    .await;
    patch(
        format!("/storage/v1/b/{b}/o/cold.bin"),
        json!({ "cacheControl": "max-age=60", "contentLanguage": "en", "metadata": { "owner": "vision" } }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("cls.yaml");
    std::fs::write(&c, campaign(&p)).unwrap();
    let plan = dir.path().join("cls.plan.yaml");
    let out = rekey()
        .args(["plan", "-c"])
        .arg(&c)
        .arg("-o")
        .arg(&plan)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest = std::fs::read_to_string(dir.path().join("cls.manifest.jsonl")).unwrap();
    let held = manifest
        .lines()
        .find(|l| l.contains("held.bin"))
        .unwrap()
        .to_string();
    assert!(
        held.contains("\"step\":\"blocked\"") && held.contains("event-based hold"),
        "{held}"
    );
    let out = rekey()
        .args(["apply"])
        .arg(&plan)
        .arg("--yes")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let cold = gcs.get_object(&b, "cold.bin", None).await.unwrap();
    assert_eq!(cold.kms_key, Some(key(&format!("{p}vision"))));
    assert_eq!(cold.storage_class, "COLDLINE", "named in the rewrite");
    let raw = gcs.raw_object(&b, "cold.bin", None).await.unwrap();
    assert_eq!(raw["cacheControl"], "max-age=60", "{raw}");
    assert_eq!(raw["contentLanguage"], "en");
    assert_eq!(raw["metadata"]["owner"], "vision");
    let held = gcs.get_object(&b, "held.bin", None).await.unwrap();
    assert_eq!(held.kms_key, None, "held: left alone");
    // verify lists the held object with its reason.
    let out = rekey().args(["verify"]).arg(&plan).output().unwrap();
    assert_eq!(code(&out), 6);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("event-based hold"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The Cloud KMS preflight: a key the project's Cloud Storage service agent may not use (no
/// binding, a conditional one, a disabled primary version, no key at all) blocks every bucket
/// and object that would move onto it, with the binding to add; a proper binding plans them.
#[tokio::test]
async fn a_cloud_kms_key_without_the_service_agent_binding_blocks_its_buckets() {
    let p = unique("ckms");
    seed(&p, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("gcs.yaml");
    let team = key(&format!("{p}vision"));
    let plan_of = |mode: Option<&str>, name: &str| {
        std::fs::write(&c, campaign(&p)).unwrap(); // binds the key properly
        if let Some(mode) = mode {
            // Start again from a key in the state under test.
            harness::gcp_key(&gcs_server().endpoint, &team, "--clear");
            harness::gcp_key(&gcs_server().endpoint, &team, mode);
        }
        let plan = dir.path().join(format!("{name}.plan.yaml"));
        let out = rekey()
            .args(["plan", "-c"])
            .arg(&c)
            .arg("-o")
            .arg(&plan)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        rekey::plan::load(&plan).unwrap()
    };
    let buckets_blocked = |pf: &rekey::plan::PlanFile| {
        let ours: Vec<_> = pf
            .stages
            .iter()
            .flat_map(|s| &s.buckets)
            .filter(|b| b.bucket.starts_with(&p))
            .collect();
        assert!(!ours.is_empty());
        ours.iter().all(|b| {
            b.actions.is_empty()
                && b.blocked
                    .iter()
                    .any(|x| x.reason.contains("key-access preflight"))
        })
    };
    use rekey::access::VerdictKind;
    // Bound: allowed, resting on the binding; the buckets are planned.
    let pf = plan_of(None, "bound");
    let v = pf.access.iter().find(|v| v.key_arn == team).unwrap();
    assert_eq!(v.verdict, VerdictKind::Allowed, "{v:?}");
    assert!(
        v.principal.starts_with("serviceAccount:service-")
            && v.principal
                .ends_with("@gs-project-accounts.iam.gserviceaccount.com")
    );
    assert!(
        v.rests_on[0].contains("roles/cloudkms.cryptoKeyEncrypterDecrypter"),
        "{v:?}"
    );
    assert!(!buckets_blocked(&pf));
    // No binding: not allowed, with the gcloud command that adds it; every bucket blocked.
    let pf = plan_of(Some("--no-binding"), "unbound");
    let v = pf.access.iter().find(|v| v.key_arn == team).unwrap();
    assert_eq!(v.verdict, VerdictKind::NotAllowed, "{v:?}");
    let add = v.add.as_deref().unwrap();
    assert!(
        add.starts_with("gcloud kms keys add-iam-policy-binding") && add.contains(&v.principal),
        "{add}"
    );
    assert!(buckets_blocked(&pf), "{:?}", pf.stages);
    // A conditional binding: unverified, blocked.
    let pf = plan_of(Some("--conditional-binding"), "conditional");
    let v = pf.access.iter().find(|v| v.key_arn == team).unwrap();
    assert_eq!(v.verdict, VerdictKind::Unverified, "{v:?}");
    assert!(buckets_blocked(&pf));
    // A disabled primary version: blocked, the pinned state says so.
    let pf = plan_of(Some("--disabled"), "disabled");
    let v = pf.access.iter().find(|v| v.key_arn == team).unwrap();
    assert_eq!(v.verdict, VerdictKind::NotAllowed, "{v:?}");
    assert!(v.reason.as_deref().unwrap().contains("DISABLED"), "{v:?}");
    assert_eq!(
        pf.keys.values().find(|k| k.arn == team).unwrap().state,
        "DISABLED"
    );
    assert!(buckets_blocked(&pf));
    // Planned while bound, then the binding removed: apply refuses the stale plan (exit 4).
    harness::gcp_key(&gcs_server().endpoint, &team, "--enable");
    plan_of(None, "fresh");
    harness::gcp_key(&gcs_server().endpoint, &team, "--clear");
    let out = rekey()
        .args(["apply"])
        .arg(dir.path().join("fresh.plan.yaml"))
        .arg("--yes")
        .output()
        .unwrap();
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("may no longer use"),
        "{}",
        stderr(&out)
    );
}
