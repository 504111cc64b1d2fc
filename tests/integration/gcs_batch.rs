//! The Cloud Storage batch engine (`gcp.gcs.engine: batch-rewrite`, issue 12) through the CLI
//! on the project's GCS test server, whose storage batch operations jobs really rewrite the
//! objects (scripts/gcs_batch.py): planned, refused when unguarded or without Storage
//! Intelligence, run, verified, rolled back, failed tasks retried locally, a killed apply
//! re-attached to its job.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rekey::providers::gcs::GcsClient;
use serde_json::json;

use crate::apply::{code, journal_steps, stderr};
use crate::harness::{self, gcs_server, unique};
use crate::interleave::http;

/// One test's project (Storage Intelligence is configured per project), buckets and keys.
struct G {
    _dir: tempfile::TempDir,
    project: String,
    p: String,
    bucket: String,
    ops: String,
    team: String,
    legacy: String,
    campaign: std::path::PathBuf,
    plan: std::path::PathBuf,
    gcs: GcsClient,
}

impl G {
    /// `n` objects on the legacy CMEK (the bucket default) in a STANDARD bucket, plus one
    /// NEARLINE object; Storage Intelligence on unless `intelligence` is false.
    async fn new(tag: &str, n: usize, intelligence: bool) -> G {
        let p = unique(tag);
        let project = format!("{p}proj");
        let key = |k: &str| format!("projects/{project}/locations/us/keyRings/ml/cryptoKeys/{k}");
        let (team, legacy) = (key("team"), key("legacy"));
        let endpoint = &gcs_server().endpoint;
        harness::gcp_key(endpoint, &team, "");
        harness::gcp_key(endpoint, &legacy, "");
        let gcs = GcsClient::new(&project, Some(endpoint));
        let bucket = format!("{p}ml-data");
        let ops = format!("{p}ops");
        gcs.create_bucket(json!({ "name": bucket, "storageClass": "STANDARD",
            "encryption": { "defaultKmsKeyName": legacy } }))
            .await
            .unwrap();
        gcs.create_bucket(json!({ "name": ops })).await.unwrap();
        for i in 0..n {
            gcs.upload(
                &bucket,
                &format!("shard, {i:03}"),
                crate::apply::body_of(i, 0),
                None,
            )
            .await
            .unwrap();
        }
        // A NEARLINE object: a batch rewrite names no class, so rekey rewrites it itself.
        http(
            endpoint,
            "PATCH",
            &format!("/storage/v1/b/{bucket}"),
            "{\"storageClass\": \"NEARLINE\"}",
        );
        gcs.upload(&bucket, "cold.bin", b"cold bytes".to_vec(), None)
            .await
            .unwrap();
        http(
            endpoint,
            "PATCH",
            &format!("/storage/v1/b/{bucket}"),
            "{\"storageClass\": \"STANDARD\"}",
        );
        if intelligence {
            http(
                endpoint,
                "PATCH",
                &format!("/v2/projects/{project}/locations/global/storageIntelligenceConfig"),
                "{\"editionConfig\": \"STANDARD\"}",
            );
        }
        let dir = tempfile::tempdir().unwrap();
        G {
            campaign: dir.path().join("c.yaml"),
            plan: dir.path().join("g.plan.yaml"),
            _dir: dir,
            project,
            p,
            bucket,
            ops,
            team,
            legacy,
            gcs,
        }
    }

    fn write_campaign(&self, batch_extra: &str) {
        let (p, ops) = (&self.p, &self.ops);
        std::fs::write(
            &self.campaign,
            format!(
                "version: 1\ncampaign: gb\ngcp:\n  project: {}\n  endpoint: {}\n  gcs: {{ buckets: [\"{p}ml-*\"], engine: batch-rewrite, batch: {{ manifest_bucket: {ops}{batch_extra} }} }}\nkeys:\n  team: {{ gcp: {} }}\nmapping:\n  - {{ match: {{ bucket: \"{p}ml-*\" }}, key: team }}\nstages:\n  - {{ name: only }}\nlimits: {{ concurrency: 4, requests_per_second: 500 }}\n",
                self.project,
                gcs_server().endpoint,
                self.team
            ),
        )
        .unwrap();
    }

    fn rekey(&self, args: &[&str]) -> std::process::Output {
        let mut c = harness::rekey("http://127.0.0.1:9");
        c.env_remove("AWS_ENDPOINT_URL");
        c.args(args).output().unwrap()
    }

    /// Plan; the summary.
    fn plan(&self) -> String {
        let out = self.rekey(&[
            "plan",
            "-c",
            self.campaign.to_str().unwrap(),
            "-o",
            self.plan.to_str().unwrap(),
        ]);
        assert_eq!(code(&out), 0, "plan: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn apply(&self, extra: &[&str]) -> std::process::Output {
        let mut a = vec!["apply", self.plan.to_str().unwrap(), "--yes"];
        a.extend_from_slice(extra);
        self.rekey(&a)
    }

    /// Every job of the test's project on the server.
    fn jobs(&self) -> Vec<serde_json::Value> {
        let doc: serde_json::Value = serde_json::from_str(&http(
            &gcs_server().endpoint,
            "GET",
            &format!("/v1/projects/{}/locations/global/jobs", self.project),
            "",
        ))
        .unwrap();
        doc["jobs"].as_array().cloned().unwrap_or_default()
    }

    async fn objects(&self) -> Vec<(String, Option<String>, String, Vec<u8>)> {
        let mut out = Vec::new();
        for o in self
            .gcs
            .list_objects(&self.bucket, false, 1000, None)
            .await
            .unwrap()
            .0
        {
            let body = self.gcs.download(&self.bucket, &o.name).await.unwrap();
            out.push((o.name, o.kms_key, o.storage_class, body));
        }
        out
    }
}

fn pace(task_seconds: f64) {
    http(
        &gcs_server().endpoint,
        "POST",
        "/_rekey/batch",
        &json!({ "task_seconds": task_seconds }).to_string(),
    );
}

#[tokio::test]
async fn a_batch_rewrite_stage_ends_like_the_local_engine_and_rolls_back() {
    let g = G::new("gbe2e", 12, true).await;
    let before = g.objects().await;
    g.write_campaign(", accept_unguarded: true");
    let summary = g.plan();
    assert!(
        summary.contains("Cloud Storage batch operations rewriteObject")
            && summary.contains("UNGUARDED: a batch rewrite takes no generation condition")
            && summary.contains("1 unguarded batch job (freeze its writers)"),
        "{summary}"
    );
    let pf = rekey::plan::load(&g.plan).unwrap();
    let b = pf.stages[0]
        .buckets
        .iter()
        .find(|b| b.bucket == g.bucket)
        .unwrap();
    assert_eq!(b.jobs.len(), 1, "{:?}", b.jobs);
    let job = &b.jobs[0];
    assert_eq!(
        (job.operation.as_str(), job.objects, job.unguarded),
        ("gcs-rewrite", 12, true)
    );
    assert!(
        b.flagged
            .iter()
            .any(|f| f.reason.contains("NEARLINE") && f.objects == 1),
        "{:?}",
        b.flagged
    );
    let out = g.apply(&[]);
    assert_eq!(code(&out), 0, "apply: {}", stderr(&out));
    let after = g.objects().await;
    assert_eq!(after.len(), before.len());
    for ((name, _, class, body), (n2, key, class2, body2)) in before.iter().zip(&after) {
        assert_eq!((name, class, body), (n2, class2, body2), "kept as it was");
        assert_eq!(
            key.as_deref(),
            Some(g.team.as_str()),
            "{name} on the team key"
        );
    }
    assert_eq!(g.jobs().len(), 1, "one job");
    let steps = journal_steps(&g.plan);
    let members: Vec<_> = steps.iter().filter(|r| r.is_job_member()).collect();
    assert_eq!(members.len(), 12);
    assert!(
        members.iter().all(|r| r.state == "succeeded"),
        "{members:?}"
    );
    assert!(members.iter().all(|r| r
        .result
        .as_deref()
        .is_some_and(|x| !x.contains("by_rekey\":false"))));
    let local = steps.iter().find(|r| r.key == "cold.bin").unwrap();
    assert_eq!((local.job, local.state.as_str()), (None, "succeeded"));
    let out = g.rekey(&["verify", g.plan.to_str().unwrap()]);
    assert_eq!(
        code(&out),
        0,
        "verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = g.rekey(&["rollback", g.plan.to_str().unwrap(), "--yes"]);
    assert_eq!(code(&out), 0, "rollback: {}", stderr(&out));
    let back = g.objects().await;
    for ((name, key, class, body), (_, key2, class2, body2)) in before.iter().zip(&back) {
        assert_eq!(
            (key, class, body),
            (key2, class2, body2),
            "{name} back as it was"
        );
        assert_eq!(key.as_deref(), Some(g.legacy.as_str()));
    }
}

#[tokio::test]
async fn unguarded_or_without_storage_intelligence_nothing_starts() {
    let g = G::new("gbref", 3, false).await;
    g.write_campaign("");
    let _ = g.plan();
    let out = g.apply(&[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unguarded Cloud Storage batch jobs")
            && stderr(&out).contains("gcp.gcs.batch.accept_unguarded"),
        "{}",
        stderr(&out)
    );
    g.write_campaign(", accept_unguarded: true");
    let _ = g.plan();
    let out = g.apply(&[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Storage Intelligence is not configured"),
        "{}",
        stderr(&out)
    );
    assert!(g.jobs().is_empty());
    let legacy = Some(g.legacy.clone());
    assert!(
        g.objects().await.iter().all(|o| o.1 == legacy),
        "nothing was rewritten"
    );
    assert_eq!(
        g.gcs.get_bucket(&g.bucket).await.unwrap().default_kms_key,
        legacy,
        "not even the bucket default"
    );
}

#[tokio::test]
async fn failed_tasks_fail_their_steps_and_retry_locally() {
    let g = G::new("gbfail", 4, true).await;
    g.write_campaign(", accept_unguarded: true");
    let _ = g.plan();
    // Held after the plan: the job's rewrite of it fails (FAILED_PRECONDITION).
    http(
        &gcs_server().endpoint,
        "PATCH",
        &format!("/storage/v1/b/{}/o/shard%2C%20002", g.bucket),
        "{\"eventBasedHold\": true}",
    );
    let out = g.apply(&[]);
    assert_eq!(code(&out), 3, "apply: {}", stderr(&out));
    let steps = journal_steps(&g.plan);
    let failed: Vec<_> = steps
        .iter()
        .filter(|r| r.is_job_member() && r.state == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{steps:?}");
    assert_eq!(failed[0].key, "shard, 002");
    let why = failed[0].reason.clone().unwrap_or_default();
    assert!(
        why.contains("FAILED_PRECONDITION") && why.contains("--retry-failed-locally"),
        "{why}"
    );
    http(
        &gcs_server().endpoint,
        "PATCH",
        &format!("/storage/v1/b/{}/o/shard%2C%20002", g.bucket),
        "{\"eventBasedHold\": false}",
    );
    let out = g.apply(&["--retry-failed-locally"]);
    assert_eq!(code(&out), 0, "retry: {}", stderr(&out));
    assert_eq!(g.jobs().len(), 1, "no second job");
    let team = Some(g.team.clone());
    assert!(g.objects().await.iter().all(|o| o.1 == team));
}

#[tokio::test]
async fn a_killed_apply_reattaches_to_its_job_and_a_foreign_write_is_kept() {
    let g = G::new("gbkill", 10, true).await;
    g.write_campaign(", accept_unguarded: true");
    let _ = g.plan();
    // Another writer replaces one object after the plan (on the bucket default, other bytes).
    g.gcs
        .upload(&g.bucket, "shard, 001", b"foreign bytes".to_vec(), None)
        .await
        .unwrap();
    pace(0.2);
    let mut child = harness::rekey("http://127.0.0.1:9")
        .env_remove("AWS_ENDPOINT_URL")
        .args(["apply", g.plan.to_str().unwrap(), "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while g.jobs().is_empty() {
        assert!(Instant::now() < deadline, "a job was created");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL, the job running
    child.wait().unwrap();
    pace(0.002);
    let out = g.apply(&[]);
    assert_eq!(code(&out), 0, "apply again: {}", stderr(&out));
    assert_eq!(g.jobs().len(), 1, "re-attached, no second job");
    let steps = journal_steps(&g.plan);
    let foreign = steps.iter().find(|r| r.key == "shard, 001").unwrap();
    assert!(
        foreign
            .result
            .as_deref()
            .is_some_and(|r| r.contains("\"by_rekey\":false")),
        "another writer's object, not rekey's: {foreign:?}"
    );
    let out = g.rekey(&["rollback", g.plan.to_str().unwrap(), "--yes"]);
    assert_eq!(
        code(&out),
        3,
        "rollback reports the conflict: {}",
        stderr(&out)
    );
    assert_eq!(
        g.gcs.download(&g.bucket, "shard, 001").await.unwrap(),
        b"foreign bytes",
        "the foreign write's bytes are kept"
    );
    let objs = g.objects().await;
    let legacy = Some(g.legacy.clone());
    assert!(
        objs.iter()
            .filter(|o| o.0 != "shard, 001")
            .all(|o| o.1 == legacy),
        "every other object back on its key: {:?}",
        objs.iter().map(|o| (&o.0, &o.1)).collect::<Vec<_>>()
    );
}
