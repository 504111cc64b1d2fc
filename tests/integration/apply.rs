//! Apply, verify, rollback, resume and their failure modes against the emulator overlay.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
use futures::StreamExt;

use crate::harness::{self, overlay, unique};

pub struct Ctx {
    /// Holds the plan, manifest and journal for the test's life.
    pub _dir: tempfile::TempDir,
    pub prefix: String,
    pub endpoint: String,
    pub plan: PathBuf,
    pub s3: aws_sdk_s3::Client,
}

impl Ctx {
    pub fn rekey(&self, args: &[&str]) -> Output {
        harness::rekey(&self.endpoint).args(args).output().unwrap()
    }

    pub fn plan_str(&self) -> &str {
        self.plan.to_str().unwrap()
    }

    pub fn apply(&self, extra: &[&str]) -> Output {
        let mut args = vec!["apply", self.plan_str(), "--yes"];
        args.extend_from_slice(extra);
        self.rekey(&args)
    }

    pub fn bucket(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub async fn body(&self, bucket: &str, key: &str) -> Vec<u8> {
        let o = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        o.body.collect().await.unwrap().into_bytes().to_vec()
    }

    pub async fn kms_key(&self, bucket: &str, key: &str) -> Option<String> {
        let h = self
            .s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        h.ssekms_key_id().map(str::to_string)
    }

    pub fn status_json(&self) -> serde_json::Value {
        let out = self.rekey(&["status", self.plan_str(), "--output", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A campaign over `{prefix}ml-*` with the demo keys, mapping and stages.
pub fn campaign_yaml(prefix: &str, s3_extra: &str, limits: &str) -> String {
    harness::demo_campaign(prefix)
        .replace(
            "versions: current }",
            &format!("versions: current{s3_extra} }}"),
        )
        .replace(
            "limits: { concurrency: 16, requests_per_second: 100 }",
            limits,
        )
}

/// Seed the demo estate plus `extra` (run against the client before planning), then plan.
pub async fn planned<F, Fut>(
    tag: &str,
    shards: usize,
    s3_extra: &str,
    limits: &str,
    extra: F,
) -> (Ctx, serde_json::Value)
where
    F: FnOnce(aws_sdk_s3::Client, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let endpoint = overlay().endpoint.clone();
    let prefix = unique(tag);
    let seeded = harness::seed_estate(&endpoint, &prefix, shards);
    let s3 = harness::clients(&endpoint).await.s3;
    extra(s3.clone(), prefix.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let campaign = dir.path().join("campaign.yaml");
    std::fs::write(&campaign, campaign_yaml(&prefix, s3_extra, limits)).unwrap();
    let plan = dir.path().join("plans/demo.plan.yaml");
    let out = harness::rekey(&endpoint)
        .args(["plan", "-c"])
        .arg(&campaign)
        .arg("-o")
        .arg(&plan)
        .output()
        .unwrap();
    assert!(out.status.success(), "plan: {}", stderr(&out));
    (
        Ctx {
            _dir: dir,
            prefix,
            endpoint,
            plan,
            s3,
        },
        seeded,
    )
}

/// Every object of the planned buckets (not SSE-C ones, whose bodies need the key).
async fn snapshot(ctx: &Ctx) -> BTreeMap<(String, String), Vec<u8>> {
    let mut all = BTreeMap::new();
    for b in [
        "ml-fraud-sandbox",
        "ml-fraud-models",
        "ml-vision-data",
        "ml-vision-locked",
        "ml-scratch",
    ] {
        let bucket = ctx.bucket(b);
        let list = ctx
            .s3
            .list_objects_v2()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        for o in list.contents() {
            let key = o.key().unwrap().to_string();
            // SSE-C bodies need the customer key; archived ones a restore.
            if key.contains("sse-c") || key.starts_with("archive/") {
                continue;
            }
            all.insert((bucket.clone(), key.clone()), ctx.body(&bucket, &key).await);
        }
    }
    all
}

const SIX_MIB: usize = 6 * 1024 * 1024;

async fn add_rich_objects(s3: aws_sdk_s3::Client, prefix: String) {
    let bucket = format!("{prefix}ml-fraud-sandbox");
    s3.put_object()
        .bucket(&bucket)
        .key("meta/tagged.json")
        .body(ByteStream::from_static(b"{\"model\": \"fraud-v7\"}"))
        .content_type("application/json")
        .cache_control("max-age=60")
        .metadata("owner", "fraud-team")
        .tagging("team=fraud&tier=gold")
        .storage_class(StorageClass::StandardIa)
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();
    let big: Vec<u8> = (0..SIX_MIB).map(|i| (i * 31 % 251) as u8).collect();
    s3.put_object()
        .bucket(&bucket)
        .key("weights/large.bin")
        .body(ByteStream::from(big))
        .content_type("application/octet-stream")
        .metadata("framework", "pytorch")
        .tagging("kind=weights")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn apply_then_verify_then_rollback_every_class() {
    let (ctx, seeded) = planned(
        "apply",
        4,
        ", multipart_threshold: 5242880",
        "limits: { concurrency: 8, requests_per_second: 200 }",
        add_rich_objects,
    )
    .await;
    let before = snapshot(&ctx).await;
    let sandbox = ctx.bucket("ml-fraud-sandbox");
    let fraud = seeded["keys"]["fraud"].as_str().unwrap().to_string();
    let vision = seeded["keys"]["vision"].as_str().unwrap().to_string();
    let classes_before =
        crate::inventory::inventory_of(&ctx.endpoint, &harness::demo_campaign(&ctx.prefix))
            .await
            .0;

    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "apply: {}", stderr(&out));
    // The campaign is not done while blocked objects stay where they are: verify says so,
    // each with its reason; the planned-only view passes.
    let out = ctx.rekey(&["verify", ctx.plan_str()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(code(&out), 6, "verify after apply: {text}");
    for reason in ["archived (GLACIER)", "dsse-kms", "sse-c", "object lock"] {
        assert!(text.contains(reason), "{reason} listed: {text}");
    }
    let out = ctx.rekey(&["verify", ctx.plan_str(), "--ignore-blocked"]);
    assert_eq!(
        code(&out),
        0,
        "verify after apply, planned-only: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = ctx.rekey(&[
        "verify",
        ctx.plan_str(),
        "--stage",
        "canary",
        "--ignore-blocked",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(code(&out), 0, "verify of one stage: {text}");
    assert!(
        text.contains("verified 9 resources"),
        "the canary stage alone (6 planned, 3 blocked): {text}"
    );

    // Bodies byte-identical; every planned object on its team key.
    assert_eq!(snapshot(&ctx).await, before);
    assert_eq!(
        ctx.kms_key(&sandbox, "features/sse-s3.parquet")
            .await
            .as_deref(),
        Some(fraud.as_str())
    );
    assert_eq!(
        ctx.kms_key(&ctx.bucket("ml-vision-data"), "shards/00000.tfrecord")
            .await
            .as_deref(),
        Some(vision.as_str())
    );
    // Blocked objects untouched.
    assert_ne!(
        ctx.kms_key(&sandbox, "features/dsse.parquet")
            .await
            .as_deref(),
        Some(fraud.as_str())
    );

    // Metadata, Content-Type, Cache-Control, tags and storage class kept, multipart included.
    for key in ["meta/tagged.json", "weights/large.bin"] {
        let h = ctx
            .s3
            .head_object()
            .bucket(&sandbox)
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(h.ssekms_key_id(), Some(fraud.as_str()), "{key}");
        assert_eq!(h.bucket_key_enabled(), Some(true), "{key}");
        let tags = ctx
            .s3
            .get_object_tagging()
            .bucket(&sandbox)
            .key(key)
            .send()
            .await
            .unwrap();
        let tags: BTreeMap<_, _> = tags
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        if key == "meta/tagged.json" {
            assert_eq!(h.content_type(), Some("application/json"));
            assert_eq!(h.cache_control(), Some("max-age=60"));
            assert_eq!(
                h.metadata().unwrap().get("owner").map(String::as_str),
                Some("fraud-team")
            );
            assert_eq!(h.storage_class(), Some(&StorageClass::StandardIa));
            assert_eq!(tags.len(), 2);
        } else {
            assert_eq!(h.content_type(), Some("application/octet-stream"));
            assert_eq!(
                h.metadata().unwrap().get("framework").map(String::as_str),
                Some("pytorch")
            );
            assert_eq!(tags.get("kind").map(String::as_str), Some("weights"));
            assert!(
                h.e_tag().unwrap().contains('-'),
                "the large object went through multipart copy: {:?}",
                h.e_tag()
            );
        }
    }
    let journal = journal_rows(&ctx.plan);
    assert!(
        journal.iter().any(|(kind, _)| kind == "multipart-copy"),
        "the multipart path ran"
    );

    // Applying again changes nothing.
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0);
    assert!(stderr(&out).contains("0 of"), "{}", stderr(&out));

    // Roll everything back: each object returns to its recorded original class.
    let out = ctx.rekey(&["rollback", ctx.plan_str(), "--yes"]);
    assert_eq!(
        code(&out),
        0,
        "rollback: {} {}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout)
    );
    let classes_after =
        crate::inventory::inventory_of(&ctx.endpoint, &harness::demo_campaign(&ctx.prefix))
            .await
            .0;
    let class_map = |rs: &[rekey::inventory::Record]| -> BTreeMap<String, String> {
        rs.iter()
            .filter(|r| !r.resource.display_name().contains("unencrypted"))
            .map(|r| (r.resource.display_name(), r.class.to_string()))
            .collect()
    };
    assert_eq!(class_map(&classes_after), class_map(&classes_before));
    assert_eq!(snapshot(&ctx).await, before, "bodies survive the rollback");
    let out = ctx.rekey(&["verify", ctx.plan_str()]);
    assert_eq!(code(&out), 6, "verify after rollback");
    // Rollback of a rollback is a no-op.
    let out = ctx.rekey(&["rollback", ctx.plan_str(), "--yes"]);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 steps undone"));
}

/// 200 objects in one bucket mapped to the fraud key, planned.
pub async fn planned_bucket(tag: &str, n: usize, limits: &str) -> (Ctx, String, String) {
    let (ctx, seeded) = planned(tag, 1, "", limits, |s3, prefix| async move {
        let bucket = format!("{prefix}ml-fraud-bulk");
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        futures::stream::iter(0..n)
            .map(|i| {
                let s3 = s3.clone();
                let bucket = bucket.clone();
                async move {
                    s3.put_object()
                        .bucket(&bucket)
                        .key(format!("part-{i:04}"))
                        .body(ByteStream::from(body_of(i, 0)))
                        .server_side_encryption(ServerSideEncryption::Aes256)
                        .send()
                        .await
                        .unwrap();
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
    })
    .await;
    let bucket = ctx.bucket("ml-fraud-bulk");
    let fraud = seeded["keys"]["fraud"].as_str().unwrap().to_string();
    (ctx, bucket, fraud)
}

pub fn body_of(i: usize, generation: u8) -> Vec<u8> {
    format!("object {i} generation {generation} ")
        .repeat(20)
        .into_bytes()
}

async fn all_on_key(
    ctx: &Ctx,
    bucket: &str,
    n: usize,
    key: &str,
    generation: impl Fn(usize) -> u8,
) {
    let generation = &generation;
    futures::stream::iter(0..n)
        .map(|i| async move {
            let k = format!("part-{i:04}");
            assert_eq!(ctx.kms_key(bucket, &k).await.as_deref(), Some(key), "{k}");
            assert_eq!(
                ctx.body(bucket, &k).await,
                body_of(i, generation(i)),
                "{k} body"
            );
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
}

#[tokio::test]
async fn sigkill_at_random_moments_then_resume_loses_nothing() {
    let seed = std::env::var("REKEY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash trials seed {seed} (REKEY_CRASH_SEED={seed} replays them)");
    let mut rng = fastrand::Rng::with_seed(seed);
    for trial in 0..10 {
        let (ctx, bucket, fraud) = planned_bucket(
            &format!("crash{trial}"),
            200,
            "limits: { concurrency: 8, requests_per_second: 400 }",
        )
        .await;
        let mut child = harness::rekey(&ctx.endpoint)
            .args(["apply", ctx.plan_str(), "--yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = rng.u64(50..1500);
        tokio::time::sleep(Duration::from_millis(at)).await;
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let mut resumed = 0;
        loop {
            let out = ctx.apply(&[]);
            resumed += 1;
            if code(&out) == 0 {
                break;
            }
            assert!(
                resumed < 3,
                "trial {trial}: resume failed: {}",
                stderr(&out)
            );
        }
        all_on_key(&ctx, &bucket, 200, &fraud, |_| 0).await;
        let out = ctx.rekey(&["verify", ctx.plan_str(), "--ignore-blocked"]);
        assert_eq!(code(&out), 0, "trial {trial} (killed at {at} ms)");
    }
}

#[tokio::test]
async fn a_concurrent_writer_is_never_clobbered() {
    let (ctx, bucket, fraud) = planned_bucket(
        "writer",
        200,
        "limits: { concurrency: 4, requests_per_second: 80 }",
    )
    .await;
    let mut apply = harness::rekey(&ctx.endpoint)
        .args(["apply", ctx.plan_str(), "--yes"])
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Once the bucket default is on the CMK, overwrite the last 40 objects (the apply goes in
    // key order, so most are overwritten before it reaches them) without naming a key.
    let s3 = ctx.s3.clone();
    for _ in 0..200 {
        if let Ok(d) = s3.get_bucket_encryption().bucket(&bucket).send().await {
            let rule = &d.server_side_encryption_configuration().unwrap().rules()[0];
            if rule
                .apply_server_side_encryption_by_default()
                .unwrap()
                .kms_master_key_id()
                == Some(fraud.as_str())
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in (160..200).rev() {
        s3.put_object()
            .bucket(&bucket)
            .key(format!("part-{i:04}"))
            .body(ByteStream::from(body_of(i, 1)))
            .send()
            .await
            .unwrap();
    }
    let status = apply.wait().unwrap();
    assert!(
        matches!(status.code(), Some(0) | Some(3)),
        "apply ended with {status:?}"
    );
    // The writer's newest bytes survive, on the CMK through the bucket default.
    all_on_key(&ctx, &bucket, 200, &fraud, |i| if i >= 160 { 1 } else { 0 }).await;
    let rows = journal_steps(&ctx.plan);
    assert!(
        rows.iter()
            .all(|r| r.state == "succeeded" || r.state == "drifted" || r.state == "blocked"),
        "{rows:?}"
    );
    // The overwritten objects met the apply: its guarded copy was refused, it re-read them,
    // found the newer write already on the team key, and left it as written.
    let met = rows
        .iter()
        .filter(|r| r.reason.as_deref() == Some("already on the team key"))
        .count();
    assert!(met >= 20, "{met} steps met a newer write");
    let out = ctx.rekey(&["verify", ctx.plan_str(), "--ignore-blocked"]);
    assert_eq!(code(&out), 0);
}

#[tokio::test]
async fn throttling_slows_the_run_and_it_completes() {
    let (ctx, bucket, fraud) = planned_bucket(
        "throttle",
        120,
        "limits: { concurrency: 8, requests_per_second: 400 }",
    )
    .await;
    let client = reqwest_post(
        &ctx.endpoint,
        "/_rekey/faults",
        &format!("{{\"bucket_prefix\": \"{bucket}\", \"rate\": 0.3, \"seed\": 11}}"),
    );
    assert!(client.contains('{'));
    let out = ctx.apply(&[]);
    let counts = reqwest_post(
        &ctx.endpoint,
        "/_rekey/faults",
        &format!("{{\"bucket_prefix\": \"{bucket}\", \"rate\": 0}}"),
    );
    assert_eq!(code(&out), 0, "apply under throttling: {}", stderr(&out));
    let injected: BTreeMap<String, u64> = serde_json::from_str(&counts).unwrap();
    assert!(injected[&bucket] > 10, "faults were injected: {injected:?}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ctx.plan.with_file_name("demo.report.json")).unwrap(),
    )
    .unwrap();
    assert!(
        report["throttled_responses"].as_u64().unwrap() > 10,
        "the run reports its retries: {report}"
    );
    assert!(stderr(&out).contains("retries"), "{}", stderr(&out));
    all_on_key(&ctx, &bucket, 120, &fraud, |_| 0).await;
}

/// POST over a bare TCP connection (the overlay's test endpoints).
pub fn reqwest_post(endpoint: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_closing_window_stops_with_exit_5_and_the_next_apply_finishes() {
    let (ctx, bucket, fraud) = planned_bucket(
        "window",
        200,
        "limits: { concurrency: 4, requests_per_second: 40 }",
    )
    .await;
    let until = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let out = ctx.apply(&["--window", &format!("until={until}")]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let status = ctx.status_json();
    let bulk = status["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "fraud")
        .unwrap()
        .clone();
    assert!(
        bulk["by_state"]["pending"].as_u64().unwrap_or(0) > 0,
        "work was left for the next window: {bulk}"
    );
    // A later stage may run first, with a warning; `--window none` lifts a window.
    let out = ctx.apply(&["--stage", "rest", "--window", "none"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("runs before earlier stages are finished (fraud)"),
        "{}",
        stderr(&out)
    );
    // A window that is already closed starts nothing.
    let out = ctx.apply(&["--window", "until=2001-01-01T00:00:00Z"]);
    assert_eq!(code(&out), 5);
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    all_on_key(&ctx, &bucket, 200, &fraud, |_| 0).await;
}

#[tokio::test]
async fn a_moved_alias_makes_the_plan_stale() {
    let (ctx, _bucket, _fraud) = planned_bucket(
        "stale",
        5,
        "limits: { concurrency: 4, requests_per_second: 100 }",
    )
    .await;
    let kms = harness::clients(&ctx.endpoint).await.kms;
    let k = kms.create_key().send().await.unwrap();
    kms.update_alias()
        .alias_name(format!("alias/{}ml-fraud", ctx.prefix))
        .target_key_id(k.key_metadata().unwrap().key_id())
        .send()
        .await
        .unwrap();
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("now points at"));
    assert!(
        !ctx.plan.with_file_name("demo.journal.sqlite").exists()
            || journal_rows(&ctx.plan)
                .iter()
                .all(|(_, s)| s == "pending" || s == "blocked")
    );
}

#[test]
fn apply_refuses_without_yes_when_not_interactive() {
    let out = Command::new(env!("CARGO_BIN_EXE_rekey"))
        .current_dir(harness::repo_root())
        .args(["apply", "plans/example.plan.yaml"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // The example plan is valid and its manifest sits beside it: the refusal is about
    // confirmation, before any cloud call.
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--yes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every step in a plan's journal.
pub fn journal_steps(plan: &Path) -> Vec<rekey::journal::StepRow> {
    let j = rekey::journal::Journal::open(
        &rekey::journal::default_path(plan),
        &rekey::apply::plan_id(plan).unwrap(),
    )
    .unwrap();
    j.steps_from(0).unwrap()
}

/// (kind, state) of every step in a plan's journal.
pub fn journal_rows(plan: &Path) -> Vec<(String, String)> {
    journal_steps(plan)
        .into_iter()
        .map(|r| (r.kind, r.state))
        .collect()
}

fn interrupt(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn ctrl_c_stops_cleanly_and_twice_abandons_then_resume_finishes() {
    let (ctx, bucket, fraud) = planned_bucket(
        "sigint",
        200,
        "limits: { concurrency: 4, requests_per_second: 40 }",
    )
    .await;
    // Once: stop dispatching, finish what is in flight, exit 130 with nothing left `started`.
    let child = harness::rekey(&ctx.endpoint)
        .args(["apply", ctx.plan_str(), "--yes", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "stopping" && e["reason"] == "interrupt"),
        "JSON events name the stop"
    );
    assert!(events.iter().any(|e| e["event"] == "step-done"));
    let rows = journal_rows(&ctx.plan);
    assert!(
        rows.iter().all(|(_, s)| s != "started"),
        "in-flight steps finished and were journaled"
    );
    assert!(rows.iter().any(|(_, s)| s == "pending"), "work was left");

    // Twice: abandon in-flight work; it stays `started`, and the next apply re-checks it.
    let child = harness::rekey(&ctx.endpoint)
        .args(["apply", ctx.plan_str(), "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    interrupt(&child);
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    all_on_key(&ctx, &bucket, 200, &fraud, |_| 0).await;
}

#[tokio::test]
async fn all_versions_rekey_noncurrent_versions_in_place_and_never_add_one() {
    let extra = ", engine: auto";
    let (ctx, seeded) = planned(
        "versions",
        1,
        extra,
        "limits: { concurrency: 4, requests_per_second: 200 }",
        |s3, prefix| async move {
            let bucket = format!("{prefix}ml-fraud-history");
            s3.create_bucket().bucket(&bucket).send().await.unwrap();
            harness::enable_versioning(&s3, &bucket).await;
            for g in 0..3u8 {
                s3.put_object()
                    .bucket(&bucket)
                    .key("model.bin")
                    .body(ByteStream::from(body_of(0, g)))
                    .server_side_encryption(ServerSideEncryption::Aes256)
                    .send()
                    .await
                    .unwrap();
            }
        },
    )
    .await;
    // Re-plan the same estate with every version.
    let campaign = ctx
        .plan
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("campaign.yaml");
    let yaml = std::fs::read_to_string(&campaign)
        .unwrap()
        .replace("versions: current", "versions: all");
    std::fs::write(&campaign, yaml).unwrap();
    let out = harness::rekey(&ctx.endpoint)
        .args(["plan", "-c"])
        .arg(&campaign)
        .arg("-o")
        .arg(&ctx.plan)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let bucket = ctx.bucket("ml-fraud-history");
    let versions = |s3: aws_sdk_s3::Client, bucket: String| async move {
        let v = s3
            .list_object_versions()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        v.versions()
            .iter()
            .map(|v| v.version_id().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let before = versions(ctx.s3.clone(), bucket.clone()).await;
    assert_eq!(before.len(), 3);
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let after = versions(ctx.s3.clone(), bucket.clone()).await;
    assert_eq!(
        after, before,
        "UpdateObjectEncryption re-keys in place: no version added, none removed"
    );
    let fraud = seeded["keys"]["fraud"].as_str().unwrap();
    for v in &after {
        let h = ctx
            .s3
            .head_object()
            .bucket(&bucket)
            .key("model.bin")
            .version_id(v)
            .send()
            .await
            .unwrap();
        assert_eq!(h.ssekms_key_id(), Some(fraud), "version {v}");
    }
    // The current bytes are still the newest write.
    assert_eq!(ctx.body(&bucket, "model.bin").await, body_of(0, 2));
}

/// The run report covers every run of the journal: a per-stage table (time, throughput,
/// retries) and a chart of steps done over time whose last count is the journal's.
#[tokio::test]
async fn the_run_report_tables_every_run_and_charts_the_steps_done() {
    let (ctx, _, _) = planned_bucket(
        "runrep",
        40,
        "limits: { concurrency: 8, requests_per_second: 400 }",
    )
    .await;
    let out = ctx.apply(&["--stage", "canary"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let journal = rekey::journal::default_path(&ctx.plan);
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(rekey::apply::report_path(&journal, "json")).unwrap(),
    )
    .unwrap();
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs
        .iter()
        .all(|r| r["command"] == "apply" && r["stop"] == "completed"));
    assert_eq!(
        runs[0]["stages"].as_array().unwrap().len(),
        1,
        "canary alone"
    );
    let succeeded = journal_rows(&ctx.plan)
        .iter()
        .filter(|(_, st)| st == "succeeded")
        .count();
    let told: u64 = runs
        .iter()
        .flat_map(|r| r["stages"].as_array().unwrap())
        .map(|s| s["succeeded"].as_u64().unwrap())
        .sum();
    assert_eq!(
        told as usize, succeeded,
        "the runs account for every step done"
    );
    let md = std::fs::read_to_string(rekey::apply::report_path(&journal, "md")).unwrap();
    assert!(md.contains("## Stages across runs"), "{md}");
    assert!(
        md.contains("| canary | 2 |") && md.contains("| fraud | 1 |"),
        "{md}"
    );
    let svg_path = rekey::apply::report_path(&journal, "svg");
    let name = svg_path.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        md.contains(&format!("]({name})")),
        "the chart is linked: {md}"
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.contains(&format!("<desc>steps done: {succeeded}</desc>")),
        "the last plotted count is the journal's {succeeded}"
    );
}
