//! One named test per defect of issue 8, each against the emulators through the CLI: what must
//! never happen, shown not to. The interleaving sweep (interleave.rs) explores the rest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{EncryptionType, ServerSideEncryption, StorageClass};

use crate::apply::{code, journal_steps, stderr};
use crate::harness::{self, overlay, unique};
use crate::interleave::{arm, hook_state, kms_key, release};

/// One test's estate on the shared overlay: its own prefix, key, campaign and plan, and an
/// access key of its own that scopes its hooks.
struct T {
    _dir: tempfile::TempDir,
    endpoint: String,
    p: String,
    scope: String,
    campaign: PathBuf,
    plan: PathBuf,
    s3: aws_sdk_s3::Client,
    kms: aws_sdk_kms::Client,
    team: String,
}

impl T {
    async fn new(tag: &str) -> T {
        let endpoint = overlay().endpoint.clone();
        let conf = harness::sdk_config(&endpoint).await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        );
        let kms = aws_sdk_kms::Client::new(&conf);
        let p = unique(tag);
        let team = kms_key(&kms, &format!("alias/{p}team")).await;
        let dir = tempfile::tempdir().unwrap();
        T {
            campaign: dir.path().join("campaign.yaml"),
            plan: dir.path().join("t.plan.yaml"),
            _dir: dir,
            scope: format!("safety{}", p.trim_end_matches('-')),
            endpoint,
            p,
            s3,
            kms,
            team,
        }
    }

    fn bucket(&self, name: &str) -> String {
        format!("{}{name}", self.p)
    }

    /// A campaign over `{p}ml-*` mapped to the team key; `s3` goes inside `s3: { … }`.
    fn campaign(&self, s3: &str, stages: &str) {
        let p = &self.p;
        std::fs::write(
            &self.campaign,
            format!(
                "version: 1\ncampaign: t\naws:\n  region: us-east-1\n  s3: {{ buckets: [\"{p}ml-*\"]{s3} }}\nkeys:\n  team: {{ aws: alias/{p}team }}\nmapping:\n  - {{ match: {{ bucket: \"{p}ml-*\" }}, key: team }}\nstages:\n{stages}limits: {{ concurrency: 2, requests_per_second: 500 }}\n"
            ),
        )
        .unwrap();
    }

    fn rekey(&self, args: &[&str]) -> Output {
        let mut c = harness::rekey(&self.endpoint);
        c.env("AWS_ACCESS_KEY_ID", &self.scope);
        c.args(args).output().unwrap()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        let mut c = harness::rekey(&self.endpoint);
        c.env("AWS_ACCESS_KEY_ID", &self.scope)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    }

    fn plan(&self) {
        let out = harness::rekey(&self.endpoint)
            .args(["plan", "-c"])
            .arg(&self.campaign)
            .arg("-o")
            .arg(&self.plan)
            .output()
            .unwrap();
        assert!(out.status.success(), "plan: {}", stderr(&out));
    }

    fn plan_str(&self) -> &str {
        self.plan.to_str().unwrap()
    }

    fn apply(&self, extra: &[&str]) -> Output {
        let mut a = vec!["apply", self.plan_str(), "--yes"];
        a.extend_from_slice(extra);
        self.rekey(&a)
    }

    fn rollback(&self) -> Output {
        self.rekey(&["rollback", self.plan_str(), "--yes"])
    }

    /// For a batch engine: the job role and the bucket `{p}ops` for manifests and reports.
    async fn batch_setup(&self) {
        crate::batch_engine::job_role(
            &self.endpoint,
            "rekey-batch",
            "batchoperations.s3.amazonaws.com",
        )
        .await;
        let ops = format!("{}ops", self.p);
        self.s3.create_bucket().bucket(&ops).send().await.unwrap();
    }

    /// `batch_setup`, and the versioned bucket `{p}NAME` with an SSE-S3 default.
    async fn batch_bucket(&self, name: &str) -> String {
        self.batch_setup().await;
        let b = self.bucket(name);
        self.s3.create_bucket().bucket(&b).send().await.unwrap();
        harness::enable_versioning(&self.s3, &b).await;
        harness::set_sse_s3_default(&self.s3, &b, false).await;
        b
    }

    /// A one-stage campaign with a batch `engine`; `extra` goes inside `batch: { … }`.
    fn batch_campaign(&self, engine: &str, extra: &str) {
        let ops = format!("{}ops", self.p);
        self.campaign(
            &format!(", engine: {engine}, batch: {{ manifest_bucket: {ops}, report_bucket: {ops}, role_arn: \"arn:aws:iam::123456789012:role/rekey-batch\"{extra} }}"),
            "  - { name: only }\n",
        );
    }

    async fn put(&self, bucket: &str, key: &str, body: &[u8]) -> (String, Option<String>) {
        let o = self
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .server_side_encryption(ServerSideEncryption::Aes256)
            .send()
            .await
            .unwrap();
        (
            o.e_tag().unwrap().to_string(),
            o.version_id().map(str::to_string),
        )
    }

    async fn versions(&self, bucket: &str) -> Vec<String> {
        self.s3
            .list_object_versions()
            .bucket(bucket)
            .send()
            .await
            .unwrap()
            .versions()
            .iter()
            .map(|v| v.version_id().unwrap().to_string())
            .collect()
    }

    async fn body(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes()
            .to_vec()
    }

    async fn key_of(&self, bucket: &str, key: &str, version: Option<&str>) -> String {
        let h = self
            .s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .unwrap();
        match (h.server_side_encryption(), h.ssekms_key_id()) {
            (Some(s), Some(k)) => format!("{} {k}", s.as_str()),
            (Some(s), None) => s.as_str().to_string(),
            _ => "none".into(),
        }
    }

    /// Run `args` with the hook armed; at the pause, run `act` (a foreign write, or a kill
    /// with `kill`), then release. Returns the exit code.
    async fn hooked<F, Fut>(
        &self,
        args: &[&str],
        spec: serde_json::Value,
        kill: bool,
        act: F,
    ) -> Option<i32>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        arm(&self.endpoint, &self.scope, spec);
        let mut child = self.spawn(args);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut act = Some(act);
        let code = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s.code();
            }
            assert!(Instant::now() < deadline, "rekey {args:?} did not finish");
            if act.is_some() && !hook_state(&self.endpoint, &self.scope)["paused"].is_null() {
                if kill {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                (act.take().unwrap())().await;
                release(&self.endpoint, &self.scope, false);
                continue;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            hook_state(&self.endpoint, &self.scope)["fired"].as_bool() == Some(true),
            "the hook fired"
        );
        arm(
            &self.endpoint,
            &self.scope,
            serde_json::json!({ "action": "off" }),
        );
        code
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Defect 1: with `versions: all` and the copy engine, the latest version was copied from its
/// pinned version id, so a write made after the plan was buried under the old bytes.
#[tokio::test]
async fn defect_01_a_write_after_the_plan_is_never_buried_under_old_bytes() {
    let t = T::new("d1").await;
    let b = t.bucket("ml-hist");
    t.s3.create_bucket().bucket(&b).send().await.unwrap();
    harness::set_sse_s3_default(&t.s3, &b, false).await;
    harness::enable_versioning(&t.s3, &b).await;
    t.put(&b, "model.bin", b"generation one").await;
    t.put(&b, "model.bin", b"generation two").await;
    t.campaign(", versions: all, engine: copy", "  - { name: only }\n");
    t.plan();
    // Another writer writes after the plan.
    let (_, newest) = t.put(&b, "model.bin", b"written after the plan").await;
    let before = t.versions(&b).await;
    let out = t.apply(&[]);
    assert_eq!(code(&out), 3, "the write is drift: {}", stderr(&out));
    assert_eq!(t.body(&b, "model.bin").await, b"written after the plan");
    assert_eq!(
        t.versions(&b).await,
        before,
        "no version added on top of the new write"
    );
    assert_eq!(
        t.versions(&b).await[0],
        newest.unwrap(),
        "the new write is current"
    );
    // Resuming changes nothing either.
    t.apply(&[]);
    assert_eq!(t.versions(&b).await, before);
}

/// Defect 2: CompleteMultipartUpload was unguarded: a write landing during the part copies
/// was overwritten.
#[tokio::test]
async fn defect_02_a_write_during_a_multipart_copy_is_never_overwritten() {
    let t = T::new("d2").await;
    let b = t.bucket("ml-big");
    t.s3.create_bucket().bucket(&b).send().await.unwrap();
    harness::set_sse_s3_default(&t.s3, &b, false).await;
    let big: Vec<u8> = (0..6 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    t.put(&b, "weights.bin", &big).await;
    t.campaign(
        ", engine: copy, multipart_threshold: 5242880",
        "  - { name: only }\n",
    );
    t.plan();
    // Pause just before CompleteMultipartUpload; another writer writes meanwhile.
    let s3 = t.s3.clone();
    let bb = b.clone();
    let exit = t
        .hooked(
            &["apply", t.plan_str(), "--yes"],
            serde_json::json!({ "action": "pause", "on": format!("POST /{b}/weights.bin?uploadId="), "at": 1, "when": "before" }),
            false,
            || async move {
                s3.put_object()
                    .bucket(&bb)
                    .key("weights.bin")
                    .body(ByteStream::from_static(b"another writer"))
                    .send()
                    .await
                    .unwrap();
            },
        )
        .await;
    // The other write took the bucket's new default, the team key: the step found it done,
    // and never overwrote it.
    assert_eq!(exit, Some(0));
    assert_eq!(t.body(&b, "weights.bin").await, b"another writer");
    let uploads =
        t.s3.list_multipart_uploads()
            .bucket(&b)
            .send()
            .await
            .unwrap();
    assert!(uploads.uploads().is_empty(), "its upload was aborted");
    let step = journal_steps(&t.plan)
        .into_iter()
        .find(|r| r.key == "weights.bin")
        .unwrap();
    assert_eq!(step.reason.as_deref(), Some("already on the team key"));
    // Not rekey's write: a rollback leaves it, and says so.
    let out = t.rollback();
    assert_eq!(code(&out), 3, "{}", stdout(&out));
    assert_eq!(t.body(&b, "weights.bin").await, b"another writer");
}

/// Defect 3: rollback ignored steps left `started` by a crash: what they changed stayed.
#[tokio::test]
async fn defect_03_rollback_undoes_what_a_crashed_apply_changed() {
    let t = T::new("d3").await;
    let b = t.bucket("ml-crash");
    t.s3.create_bucket().bucket(&b).send().await.unwrap();
    harness::set_sse_s3_default(&t.s3, &b, true).await;
    t.put(&b, "a.parquet", b"alpha").await;
    t.campaign(", engine: copy", "  - { name: only }\n");
    t.plan();
    // SIGKILL right after the CopyObject was served: it landed, the journal says `started`.
    let exit = t
        .hooked(
            &["apply", t.plan_str(), "--yes"],
            serde_json::json!({ "action": "pause", "on": "x-id=CopyObject", "at": 1, "when": "after" }),
            true,
            || async {},
        )
        .await;
    assert_eq!(exit, None, "killed");
    assert!(t.key_of(&b, "a.parquet", None).await.contains(&t.team));
    let states: Vec<_> = journal_steps(&t.plan)
        .into_iter()
        .map(|r| (r.kind, r.state))
        .collect();
    assert!(
        states.contains(&("copy".into(), "started".into())),
        "{states:?}"
    );
    let out = t.rollback();
    assert_eq!(code(&out), 0, "{} {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("2 steps undone"), "{}", stdout(&out));
    assert_eq!(t.key_of(&b, "a.parquet", None).await, "AES256");
    assert_eq!(t.body(&b, "a.parquet").await, b"alpha");
    let rule =
        t.s3.get_bucket_encryption()
            .bucket(&b)
            .send()
            .await
            .unwrap();
    let rule = &rule.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm(),
        &ServerSideEncryption::Aes256
    );
}

/// Defect 4: rollback reverted changes made after apply (a redeployed endpoint, a changed
/// bucket rule): they must be left alone and reported.
#[tokio::test]
async fn defect_04_rollback_leaves_changes_made_since_apply_alone() {
    let t = T::new("d4").await;
    let b = t.bucket("ml-rule");
    t.s3.create_bucket().bucket(&b).send().await.unwrap();
    harness::set_sse_s3_default(&t.s3, &b, false).await;
    t.put(&b, "x", b"x").await;
    t.campaign(", engine: copy", "  - { name: only }\n");
    t.plan();
    assert_eq!(code(&t.apply(&[])), 0);
    // Someone changes the bucket rule after apply.
    let other = kms_key(&t.kms, &format!("alias/{}other", t.p)).await;
    harness::set_kms_default(&t.s3, &b, &other, false).await;
    let out = t.rollback();
    assert_eq!(code(&out), 3, "{}", stdout(&out));
    assert!(stdout(&out).contains("1 left alone"), "{}", stdout(&out));
    let rule =
        t.s3.get_bucket_encryption()
            .bucket(&b)
            .send()
            .await
            .unwrap();
    let d = rule.server_side_encryption_configuration().unwrap().rules()[0]
        .apply_server_side_encryption_by_default()
        .unwrap()
        .clone();
    assert_eq!(
        d.kms_master_key_id(),
        Some(other.as_str()),
        "left as the other writer set it"
    );
    let report = std::fs::read_to_string(t.plan.with_file_name("t.report.md")).unwrap();
    assert!(report.contains("rollback left alone"), "{report}");
    assert!(report.contains("changed since apply"), "{report}");
}

/// Defect 5: noncurrent versions were verified and undone version-blind.
#[tokio::test]
async fn defect_05_noncurrent_versions_are_verified_and_undone_by_version() {
    let t = T::new("d5").await;
    let b = t.bucket("ml-ver");
    t.s3.create_bucket().bucket(&b).send().await.unwrap();
    harness::set_sse_s3_default(&t.s3, &b, false).await;
    harness::enable_versioning(&t.s3, &b).await;
    let legacy = kms_key(&t.kms, &format!("alias/{}legacy", t.p)).await;
    for g in 0..2 {
        t.s3.put_object()
            .bucket(&b)
            .key("m")
            .body(ByteStream::from(vec![g; 64]))
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(&legacy)
            .send()
            .await
            .unwrap();
    }
    t.campaign(
        ", versions: all, engine: update-encryption",
        "  - { name: only }\n",
    );
    t.plan();
    let planned = t.versions(&b).await;
    assert_eq!(code(&t.apply(&[])), 0);
    for v in &planned {
        assert!(t.key_of(&b, "m", Some(v)).await.contains(&t.team), "{v}");
    }
    // A new current version written since, on SSE-S3: the plan's versions are still done.
    t.put(&b, "m", b"new").await;
    let out = t.rekey(&["verify", t.plan_str()]);
    assert_eq!(
        code(&out),
        0,
        "verify reads each planned version: {}",
        stdout(&out)
    );
    let out = t.rollback();
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    for v in &planned {
        assert!(
            t.key_of(&b, "m", Some(v)).await.contains(&legacy),
            "{v} back on its key"
        );
    }
    assert_eq!(t.body(&b, "m").await, b"new", "the newer write untouched");
    assert_eq!(t.key_of(&b, "m", None).await, "AES256");
}

/// Defect 6: `plan -o` overwrote a plan whose journal held applied work.
#[tokio::test]
async fn defect_06_replanning_over_an_applied_journal_is_refused() {
    let t = T::new("d6").await;
    let b = t.bucket("ml-re");
    t.s3.create_bucket().bucket(&b).send().await.unwrap();
    t.put(&b, "x", b"x").await;
    t.campaign(", engine: copy", "  - { name: only }\n");
    t.plan();
    let plan_before = std::fs::read(&t.plan).unwrap();
    assert_eq!(code(&t.apply(&[])), 0);
    let again = harness::rekey(&t.endpoint)
        .args(["plan", "-c"])
        .arg(&t.campaign)
        .arg("-o")
        .arg(&t.plan)
        .output()
        .unwrap();
    assert_eq!(code(&again), 2, "{}", stderr(&again));
    assert!(
        stderr(&again).contains("not rolled back"),
        "{}",
        stderr(&again)
    );
    assert!(
        stderr(&again).contains("-2.plan.yaml"),
        "the fix names another path"
    );
    assert_eq!(
        std::fs::read(&t.plan).unwrap(),
        plan_before,
        "the old plan is intact"
    );
    // Rolled back, it may be planned over; the old journal is set aside, not deleted.
    assert_eq!(code(&t.rollback()), 0);
    let again = harness::rekey(&t.endpoint)
        .args(["plan", "-c"])
        .arg(&t.campaign)
        .arg("-o")
        .arg(&t.plan)
        .output()
        .unwrap();
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(stderr(&again).contains("set aside"), "{}", stderr(&again));
    let aside = std::fs::read_dir(t.plan.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("superseded")
        })
        .count();
    assert_eq!(aside, 1);
}

/// Defect 7: a failed canary still let later stages run; a bucket whose default could not be
/// set still had its objects moved.
#[tokio::test]
async fn defect_07_failures_gate_later_work() {
    let t = T::new("d7").await;
    let (canary, rest) = (t.bucket("ml-canary"), t.bucket("ml-rest"));
    for b in [&canary, &rest] {
        t.s3.create_bucket().bucket(b).send().await.unwrap();
        t.put(b, "o", b"o").await;
    }
    t.campaign(
        ", engine: copy",
        &format!(
            "  - {{ name: canary, match: {{ bucket: \"{canary}\" }} }}\n  - {{ name: rest }}\n"
        ),
    );
    t.plan();
    // The canary's bucket default is refused (403 is not retried).
    let refused = serde_json::json!({ "action": "fail", "status": 403, "code": "AccessDenied", "when": "before", "at": 1, "on": format!("PUT /{canary}/?encryption") });
    let exit = t
        .hooked(
            &["apply", t.plan_str(), "--yes"],
            refused.clone(),
            false,
            || async {},
        )
        .await;
    assert_eq!(exit, Some(3));
    let rows = journal_steps(&t.plan);
    let state = |bucket: &str, key: &str| {
        rows.iter()
            .find(|r| r.bucket == bucket && r.key == key)
            .map(|r| r.state.clone())
            .unwrap()
    };
    assert_eq!(state(&canary, ""), "failed");
    assert_eq!(
        state(&canary, "o"),
        "pending",
        "no object step without its bucket default"
    );
    assert_eq!(state(&rest, ""), "pending", "the next stage did not start");
    assert_eq!(t.key_of(&rest, "o", None).await, "AES256");
    // --continue-on-failure goes past the failed stage (which still fails).
    let exit = t
        .hooked(
            &["apply", t.plan_str(), "--yes", "--continue-on-failure"],
            refused,
            false,
            || async {},
        )
        .await;
    assert_eq!(exit, Some(3));
    assert!(t.key_of(&rest, "o", None).await.contains(&t.team));
    assert_eq!(t.key_of(&canary, "o", None).await, "AES256");
    // Once the cause is gone, apply again finishes everything.
    assert_eq!(code_of(t.apply(&[])), 0);
    assert!(t.key_of(&canary, "o", None).await.contains(&t.team));
}

fn code_of(o: Output) -> i32 {
    code(&o)
}

/// Defect 8: the bucket rule was rebuilt without BlockedEncryptionTypes; an object's undo
/// always turned Bucket Key off.
#[tokio::test]
async fn defect_08_rules_and_bucket_keys_come_back_whole() {
    let t = T::new("d8").await;
    let b = t.bucket("ml-rule8");
    t.s3.create_bucket().bucket(&b).send().await.unwrap();
    harness::set_sse_s3_default(&t.s3, &b, true).await;
    let legacy = kms_key(&t.kms, &format!("alias/{}legacy", t.p)).await;
    t.s3.put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from_static(b"k"))
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&legacy)
        .bucket_key_enabled(true)
        .send()
        .await
        .unwrap();
    t.campaign(", engine: copy", "  - { name: only }\n");
    t.plan();
    assert_eq!(code(&t.apply(&[])), 0);
    let blocked = |r: aws_sdk_s3::operation::get_bucket_encryption::GetBucketEncryptionOutput| {
        r.server_side_encryption_configuration().unwrap().rules()[0]
            .blocked_encryption_types()
            .map(|b| b.encryption_type().to_vec())
            .unwrap_or_default()
    };
    let r =
        t.s3.get_bucket_encryption()
            .bucket(&b)
            .send()
            .await
            .unwrap();
    assert_eq!(
        blocked(r),
        vec![EncryptionType::SseC],
        "SSE-C stays blocked on the team key"
    );
    // An SSE-C upload is still refused.
    let sse_c =
        t.s3.put_object()
            .bucket(&b)
            .key("c")
            .body(ByteStream::from_static(b"c"))
            .sse_customer_algorithm("AES256")
            .sse_customer_key("MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=")
            .sse_customer_key_md5("A5MCd7iQbjJb3WXiuxKtYA==")
            .send()
            .await;
    assert!(sse_c.is_err(), "SSE-C blocked");
    assert_eq!(code(&t.rollback()), 0);
    let r =
        t.s3.get_bucket_encryption()
            .bucket(&b)
            .send()
            .await
            .unwrap();
    assert_eq!(blocked(r), vec![EncryptionType::SseC]);
    let h = t.s3.head_object().bucket(&b).key("k").send().await.unwrap();
    assert_eq!(h.ssekms_key_id(), Some(legacy.as_str()));
    assert_eq!(
        h.bucket_key_enabled(),
        Some(true),
        "the object's Bucket Key comes back"
    );
}

/// Everything S3 keeps on an object, as a test compares it.
async fn whole(s3: &aws_sdk_s3::Client, b: &str, k: &str) -> BTreeMap<String, String> {
    let h = s3
        .head_object()
        .bucket(b)
        .key(k)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    let mut m = BTreeMap::new();
    let mut put = |n: &str, v: Option<String>| {
        if let Some(v) = v {
            m.insert(n.to_string(), v);
        }
    };
    put("content-type", h.content_type().map(str::to_string));
    put("content-encoding", h.content_encoding().map(str::to_string));
    put(
        "content-disposition",
        h.content_disposition().map(str::to_string),
    );
    put("content-language", h.content_language().map(str::to_string));
    put("cache-control", h.cache_control().map(str::to_string));
    put("expires", h.expires_string().map(str::to_string));
    put(
        "website-redirect",
        h.website_redirect_location().map(str::to_string),
    );
    put(
        "storage-class",
        Some(
            h.storage_class()
                .map(|c| c.as_str().to_string())
                .unwrap_or_else(|| "STANDARD".into()),
        ),
    );
    put(
        "checksum-algorithm",
        [
            ("CRC32", h.checksum_crc32()),
            ("CRC32C", h.checksum_crc32_c()),
            ("SHA256", h.checksum_sha256()),
            ("SHA1", h.checksum_sha1()),
            ("CRC64NVME", h.checksum_crc64_nvme()),
        ]
        .into_iter()
        .find(|(_, v)| v.is_some())
        .map(|(a, _)| a.to_string()),
    );
    put("size", h.content_length().map(|l| l.to_string()));
    for (k, v) in h.metadata().cloned().unwrap_or_default() {
        put(&format!("meta:{k}"), Some(v));
    }
    let tags = s3
        .get_object_tagging()
        .bucket(b)
        .key(k)
        .send()
        .await
        .unwrap();
    for t in tags.tag_set() {
        put(&format!("tag:{}", t.key()), Some(t.value().to_string()));
    }
    let acl = s3.get_object_acl().bucket(b).key(k).send().await.unwrap();
    let mut grants: Vec<String> = acl
        .grants()
        .iter()
        .map(|g| {
            format!(
                "{:?}:{}",
                g.permission(),
                g.grantee()
                    .and_then(|x| x.id().or(x.uri()))
                    .unwrap_or_default()
            )
        })
        .collect();
    grants.sort();
    put("acl", Some(grants.join(",")));
    m
}

async fn rich_object(s3: &aws_sdk_s3::Client, b: &str, k: &str, size: usize) {
    s3.put_object()
        .bucket(b)
        .key(k)
        .body(ByteStream::from(vec![7u8; size]))
        .server_side_encryption(ServerSideEncryption::Aes256)
        .content_type("application/x-parquet")
        .content_encoding("identity")
        .content_disposition("attachment; filename=\"f.parquet\"")
        .content_language("en")
        .cache_control("max-age=600")
        .expires(aws_smithy_types::DateTime::from_secs(1_900_000_000))
        .website_redirect_location("/moved.html")
        .metadata("owner", "fraud")
        .tagging("team=fraud&tier=gold")
        .storage_class(StorageClass::StandardIa)
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .grant_read("uri=\"http://acs.amazonaws.com/groups/global/AuthenticatedUsers\"")
        .send()
        .await
        .unwrap();
}

/// Defect 9: an in-place copy dropped the website redirect (and the multipart path Expires
/// and the checksum algorithm); every copy reset ACL grants. Every field survives every
/// engine, apply and undo.
#[tokio::test]
async fn defect_09_every_object_field_survives_apply_and_undo() {
    for (engine, size) in [
        ("copy", 4096),
        ("copy", 6 * 1024 * 1024),
        ("update-encryption", 4096),
    ] {
        let t = T::new("d9").await;
        let b = t.bucket("ml-fields");
        // A bucket that keeps ACLs (as buckets made before 2023 do).
        t.s3.create_bucket()
            .bucket(&b)
            .object_ownership(aws_sdk_s3::types::ObjectOwnership::ObjectWriter)
            .send()
            .await
            .unwrap();
        rich_object(&t.s3, &b, "f.parquet", size).await;
        let before = whole(&t.s3, &b, "f.parquet").await;
        assert!(before["acl"].contains("AuthenticatedUsers"), "{before:?}");
        t.campaign(
            &format!(", engine: {engine}, multipart_threshold: 5242880"),
            "  - { name: only }\n",
        );
        t.plan();
        let out = t.apply(&[]);
        assert_eq!(code(&out), 0, "{engine} {size}: {}", stderr(&out));
        assert!(t.key_of(&b, "f.parquet", None).await.contains(&t.team));
        assert_eq!(
            whole(&t.s3, &b, "f.parquet").await,
            before,
            "{engine} {size}: apply"
        );
        let out = t.rollback();
        assert_eq!(code(&out), 0, "{engine} {size}: {}", stdout(&out));
        assert_eq!(t.key_of(&b, "f.parquet", None).await, "AES256");
        assert_eq!(
            whole(&t.s3, &b, "f.parquet").await,
            before,
            "{engine} {size}: undo"
        );
    }
}

/// Defect 10: a multipart copy restarted from part 1 after a crash and left its upload.
#[tokio::test]
async fn defect_10_a_multipart_copy_resumes_part_wise() {
    let t = T::new("d10").await;
    let b = t.bucket("ml-parts");
    t.s3.create_bucket().bucket(&b).send().await.unwrap();
    let big: Vec<u8> = (0..11 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    t.put(&b, "w", &big).await;
    t.campaign(
        ", engine: copy, multipart_threshold: 5242880",
        "  - { name: only }\n",
    );
    t.plan();
    // Killed once two parts are copied.
    let exit = t
        .hooked(
            &["apply", t.plan_str(), "--yes", "--concurrency", "1"],
            serde_json::json!({ "action": "pause", "on": "UploadPartCopy", "at": 2, "when": "after" }),
            true,
            || async {},
        )
        .await;
    assert_eq!(exit, None);
    let uploads =
        t.s3.list_multipart_uploads()
            .bucket(&b)
            .send()
            .await
            .unwrap();
    assert_eq!(
        uploads.uploads().len(),
        1,
        "the journaled upload is still there"
    );
    // The resume copies only what is missing.
    arm(
        &t.endpoint,
        &t.scope,
        serde_json::json!({ "action": "count" }),
    );
    let out = t.apply(&[]);
    let log = hook_state(&t.endpoint, &t.scope)["log"].clone();
    arm(
        &t.endpoint,
        &t.scope,
        serde_json::json!({ "action": "off" }),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let parts: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .filter(|x| x.contains("UploadPartCopy"))
        .collect();
    assert!(
        parts.len() < 3,
        "the resume copies only the parts still missing: {parts:?}"
    );
    assert!(
        log.to_string().contains("GET /"),
        "it listed the parts: {log}"
    );
    let uploads =
        t.s3.list_multipart_uploads()
            .bucket(&b)
            .send()
            .await
            .unwrap();
    assert!(uploads.uploads().is_empty());
    assert_eq!(t.body(&b, "w").await, big);
    assert!(t.key_of(&b, "w", None).await.contains(&t.team));
}

/// Defect 11: an object deleted between LIST and HEAD aborted the inventory; a 409 was not
/// retried; two applies could share a journal.
#[tokio::test]
async fn defect_11_robust_to_deletes_races_and_a_second_writer() {
    let t = T::new("d11").await;
    let b = t.bucket("ml-rob");
    t.s3.create_bucket().bucket(&b).send().await.unwrap();
    for k in ["a", "b", "c"] {
        t.put(&b, k, k.as_bytes()).await;
    }
    t.campaign(", engine: copy", "  - { name: only }\n");
    // Deleted between the listing and its HEAD: planned without it.
    let s3 = t.s3.clone();
    let bb = b.clone();
    let mut cmd = harness::rekey(&t.endpoint);
    arm(
        &t.endpoint,
        &t.scope,
        serde_json::json!({ "action": "pause", "on": format!("HEAD /{b}/b"), "at": 1, "when": "before" }),
    );
    let child = cmd
        .env("AWS_ACCESS_KEY_ID", &t.scope)
        .args(["plan", "-c"])
        .arg(&t.campaign)
        .arg("-o")
        .arg(&t.plan)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while hook_state(&t.endpoint, &t.scope)["paused"].is_null() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s3.delete_object()
        .bucket(&bb)
        .key("b")
        .send()
        .await
        .unwrap();
    release(&t.endpoint, &t.scope, false);
    let out = child.wait_with_output().unwrap();
    arm(
        &t.endpoint,
        &t.scope,
        serde_json::json!({ "action": "off" }),
    );
    assert_eq!(code(&out), 0, "the inventory goes on: {}", stderr(&out));
    let manifest = std::fs::read_to_string(t.plan.with_file_name("t.manifest.jsonl")).unwrap();
    assert_eq!(manifest.lines().count(), 2, "{manifest}");
    // A 409 ConditionalRequestConflict on a guarded copy is sent again.
    let exit = t
        .hooked(
            &["apply", t.plan_str(), "--yes"],
            serde_json::json!({ "action": "fail", "status": 409, "code": "ConditionalRequestConflict", "when": "before", "at": 1, "on": "x-id=CopyObject" }),
            false,
            || async {},
        )
        .await;
    assert_eq!(exit, Some(0));
    // One writer per journal: a rollback while an apply holds the journal fails at once.
    assert_eq!(code_of(t.rollback()), 0);
    arm(
        &t.endpoint,
        &t.scope,
        serde_json::json!({ "action": "pause", "on": "x-id=CopyObject", "at": 1, "when": "before" }),
    );
    let mut first = t.spawn(&["apply", t.plan_str(), "--yes"]);
    while hook_state(&t.endpoint, &t.scope)["paused"].is_null() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = t.rekey(&["rollback", t.plan_str(), "--yes"]);
    release(&t.endpoint, &t.scope, false);
    let _ = first.wait();
    arm(
        &t.endpoint,
        &t.scope,
        serde_json::json!({ "action": "off" }),
    );
    assert_eq!(code(&second), 2);
    assert!(
        stderr(&second).contains(&format!("pid {}", first.id())),
        "names the holder: {}",
        stderr(&second)
    );
}

/// Defect 11 (verify): one SlowDown made verify exit 1; it retries like every command.
#[tokio::test]
async fn defect_11_verify_retries_throttling() {
    let t = T::new("d11v").await;
    let b = t.bucket("ml-ver11");
    t.s3.create_bucket().bucket(&b).send().await.unwrap();
    for i in 0..20 {
        t.put(&b, &format!("o{i}"), b"o").await;
    }
    t.campaign(", engine: copy", "  - { name: only }\n");
    t.plan();
    assert_eq!(code(&t.apply(&[])), 0);
    crate::apply::reqwest_post(
        &t.endpoint,
        "/_rekey/faults",
        &format!("{{\"bucket_prefix\": \"{b}\", \"rate\": 0.3, \"seed\": 3}}"),
    );
    let out = t.rekey(&["verify", t.plan_str()]);
    crate::apply::reqwest_post(
        &t.endpoint,
        "/_rekey/faults",
        &format!("{{\"bucket_prefix\": \"{b}\", \"rate\": 0}}"),
    );
    assert_eq!(code(&out), 0, "{} {}", stdout(&out), stderr(&out));
}

/// Defect 14: the journal and the reports are readable by their owner alone.
#[tokio::test]
async fn defect_14_journal_and_reports_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let t = T::new("d14").await;
    let b = t.bucket("ml-priv");
    t.s3.create_bucket().bucket(&b).send().await.unwrap();
    t.put(&b, "o", b"o").await;
    t.campaign(", engine: copy", "  - { name: only }\n");
    t.plan();
    assert_eq!(code(&t.apply(&[])), 0);
    for f in [
        "t.journal.sqlite",
        "t.report.md",
        "t.report.json",
        "t.report.steps.jsonl",
    ] {
        let mode = std::fs::metadata(t.plan.with_file_name(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f} is {mode:o}");
    }
}

/// Defect 9 (continued): where a lifecycle rule transitions objects, a transition after the
/// plan keeps the ETag; the copy must not turn the object back into its planned class.
#[tokio::test]
async fn defect_09_a_lifecycle_transition_since_the_plan_is_kept() {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, ExpirationStatus, LifecycleRule, LifecycleRuleFilter,
        Transition, TransitionStorageClass,
    };
    let t = T::new("d9lc").await;
    let b = t.bucket("ml-tier");
    t.s3.create_bucket().bucket(&b).send().await.unwrap();
    t.s3.put_bucket_lifecycle_configuration()
        .bucket(&b)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(
                    LifecycleRule::builder()
                        .id("ia")
                        .status(ExpirationStatus::Enabled)
                        .filter(LifecycleRuleFilter::builder().prefix("").build())
                        .transitions(
                            Transition::builder()
                                .days(30)
                                .storage_class(TransitionStorageClass::StandardIa)
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    t.put(&b, "o", b"same bytes").await;
    t.campaign(", engine: copy", "  - { name: only }\n");
    t.plan();
    // The transition happens after the plan: same bytes, same ETag, another class.
    let (etag, _) = t.put(&b, "o", b"same bytes").await;
    t.s3.copy_object()
        .bucket(&b)
        .key("o")
        .copy_source(format!("{b}/o"))
        .storage_class(StorageClass::StandardIa)
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .unwrap();
    let h = t.s3.head_object().bucket(&b).key("o").send().await.unwrap();
    assert_eq!(h.e_tag(), Some(etag.as_str()), "the ETag is kept");
    let out = t.apply(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let h = t.s3.head_object().bucket(&b).key("o").send().await.unwrap();
    assert_eq!(h.storage_class(), Some(&StorageClass::StandardIa));
    assert!(t.key_of(&b, "o", None).await.contains(&t.team));
}

/// From the review of issue 12: defect 9's guarantee (every object field survives) with
/// engine batch-copy. A copy job re-applies no ACL grant: an object of a bucket that keeps
/// ACLs stays with rekey's own copy, which does (the plan says why), and keeps every field.
#[tokio::test]
async fn batch_copy_keeps_every_object_field() {
    let t = T::new("bcf").await;
    let b = t.bucket("ml-fields");
    t.batch_setup().await;
    t.s3.create_bucket()
        .bucket(&b)
        .object_ownership(aws_sdk_s3::types::ObjectOwnership::ObjectWriter)
        .send()
        .await
        .unwrap();
    harness::enable_versioning(&t.s3, &b).await;
    rich_object(&t.s3, &b, "f.parquet", 4096).await;
    let before = whole(&t.s3, &b, "f.parquet").await;
    assert!(before["acl"].contains("AuthenticatedUsers"), "{before:?}");
    t.batch_campaign("batch-copy", ", accept_unguarded: true");
    t.plan();
    let plan = std::fs::read_to_string(&t.plan).unwrap();
    assert!(!plan.contains("jobs:"), "no job takes it: {plan}");
    assert!(
        plan.contains("keeps object ACLs"),
        "the plan says why: {plan}"
    );
    let out = t.apply(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(t.key_of(&b, "f.parquet", None).await.contains(&t.team));
    let after = whole(&t.s3, &b, "f.parquet").await;
    let lost: Vec<_> = before
        .iter()
        .filter(|(k, v)| k.as_str() != "encryption" && after.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: {v:?} -> {:?}", after.get(k)))
        .collect();
    assert!(lost.is_empty(), "object fields changed: {lost:#?}");
}

/// From the review of issue 12, I3: a real SIGKILL after CreateJob was served and before its
/// answer reached rekey (the hook pauses after the first `POST /v20180820/jobs`): the journal
/// holds the manifest's ETag and no job id. The rollback finds the job by its description and
/// cancels it before it undoes anything; nothing of the job runs after it.
#[tokio::test]
async fn a_crash_right_after_create_job_is_rolled_back_exactly() {
    let t = T::new("bcj").await;
    let b = t.batch_bucket("ml-jobs").await;
    let n = 30;
    for i in 0..n {
        t.put(&b, &format!("o-{i:03}"), format!("object {i}").as_bytes())
            .await;
    }
    crate::batch_engine::slow_tasks(&t.endpoint, &b, 0.1).await;
    t.batch_campaign("batch-update-encryption", "");
    t.plan();
    let spec = serde_json::json!({"action": "pause", "on": "POST /v20180820/jobs", "at": 1, "when": "after"});
    t.hooked(&["apply", t.plan_str(), "--yes"], spec, true, || async {})
        .await;
    let out = t.rollback();
    assert!(
        matches!(code(&out), 0 | 3),
        "rollback: {} {}",
        stderr(&out),
        stdout(&out)
    );
    let aws = harness::clients(&t.endpoint).await;
    let jobs = aws
        .s3control
        .list_jobs()
        .account_id("123456789012")
        .send()
        .await
        .unwrap();
    let ours: Vec<_> = jobs
        .jobs()
        .iter()
        .filter(|j| {
            j.description()
                .is_some_and(|d| d.contains(&format!("s3://{b} ")))
        })
        .map(|j| j.status().map(|s| s.as_str().to_string()))
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(
        ours[0].as_deref(),
        Some("Cancelled"),
        "stopped by the rollback"
    );
    for i in 0..n {
        let k = format!("o-{i:03}");
        assert!(
            !t.key_of(&b, &k, None).await.contains(&t.team),
            "{k} is back off the team key"
        );
    }
}

/// From the second review of issue 12, R2-2 (I3, I2): a batch-copy job runs on after a
/// SIGKILLed apply; the rollback cancels it (its report is never read) and is itself killed
/// part-way through its undo. The next apply must not take rekey's own part-1 copies for
/// another writer's (a second copy job's time guard would refuse them, 412): what the first
/// part left runs with rekey's guarded copy, and a full rollback then leaves nothing on the
/// team key.
#[tokio::test]
async fn a_killed_rollback_then_apply_leaves_rekeys_copies_undoable() {
    let t = T::new("r2kr").await;
    let b = t.batch_bucket("ml-kr").await;
    let n = 30;
    for i in 0..n {
        t.put(&b, &format!("o-{i:03}"), format!("object {i}").as_bytes())
            .await;
    }
    let pace = |s: f64| crate::batch_engine::slow_tasks(&t.endpoint, &b, s);
    pace(0.1).await;
    t.batch_campaign("batch-copy", ", accept_unguarded: true");
    t.plan();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Apply killed once CreateJob was served; the job runs on for a while.
    let spec = serde_json::json!({"action": "pause", "on": "POST /v20180820/jobs", "at": 1, "when": "after"});
    t.hooked(&["apply", t.plan_str(), "--yes"], spec, true, || async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    })
    .await;
    // The rollback cancels the job, then is killed after its second copy back.
    let spec =
        serde_json::json!({"action": "pause", "on": "x-id=CopyObject", "at": 2, "when": "after"});
    t.hooked(&["rollback", t.plan_str(), "--yes"], spec, true, || async {
    })
    .await;
    pace(0.002).await;
    // The operator goes forward after all, then changes their mind again.
    let out = t.apply(&[]);
    let drifted: Vec<_> = journal_steps(&t.plan)
        .into_iter()
        .filter(|r| r.is_job_member() && r.state == "drifted")
        .map(|r| r.key)
        .collect();
    eprintln!("apply: {} drifted {drifted:?}", code(&out));
    let out = t.rollback();
    assert!(matches!(code(&out), 0 | 3), "rollback: {}", stderr(&out));
    let mut on_team = Vec::new();
    for i in 0..n {
        let k = format!("o-{i:03}");
        if t.key_of(&b, &k, None).await.contains(&t.team) {
            on_team.push(k);
        }
    }
    assert!(
        on_team.is_empty(),
        "left on the team key by rekey's own copy after a full rollback: {on_team:?}; drifted members: {drifted:?}"
    );
}

/// From the second review of issue 12 (held): report rows for keys with spaces, `+`, commas,
/// `%`, unicode map to their members; versions: all (noncurrent versions listed by id); two
/// storage classes make two jobs in one bucket.
#[tokio::test]
async fn odd_keys_versions_and_classes_map_to_their_members() {
    let t = T::new("r2ok").await;
    let b = t.batch_bucket("ml-odd").await;
    let keys = [
        "a b.bin",
        "a+b.bin",
        "a%2Bb.bin",
        "c,d.csv",
        "données/é ü.bin",
        "x%20y",
        "q?r#s&t=u",
        "sp  2",
        "tab\tkey",
        "日本/語",
    ];
    for k in keys {
        t.put(&b, k, format!("v1 {k}").as_bytes()).await;
        t.put(&b, k, format!("v2 {k}").as_bytes()).await;
    }
    for k in ["ia one", "ia+two"] {
        t.s3.put_object()
            .bucket(&b)
            .key(k)
            .storage_class(StorageClass::StandardIa)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(b"ia".to_vec()))
            .send()
            .await
            .unwrap();
    }
    t.campaign(
        &format!(", versions: all, engine: batch-update-encryption, batch: {{ manifest_bucket: {p}ops, report_bucket: {p}ops, role_arn: \"arn:aws:iam::123456789012:role/rekey-batch\" }}", p = t.p),
        "  - { name: only }\n",
    );
    t.plan();
    let plan = std::fs::read_to_string(&t.plan).unwrap();
    let out = t.apply(&[]);
    let rows = journal_steps(&t.plan);
    let jobs = rows.iter().filter(|r| r.kind == "batch-job").count();
    let bad: Vec<_> = rows
        .iter()
        .filter(|r| r.is_job_member() && r.state != "succeeded")
        .map(|r| {
            (
                r.key.clone(),
                r.version_id.clone(),
                r.state.clone(),
                r.reason.clone(),
            )
        })
        .collect();
    assert_eq!(code(&out), 0, "{} {bad:?}", stderr(&out));
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(jobs, 2, "two classes, two jobs: {plan}");
    let members = rows.iter().filter(|r| r.is_job_member()).count();
    assert_eq!(members, keys.len() * 2 + 2, "{plan}");
    for r in rows.iter().filter(|r| r.is_job_member()) {
        assert!(
            t.key_of(&b, &r.key, r.version_id.as_deref())
                .await
                .contains(&t.team),
            "{} {:?}",
            r.key,
            r.version_id
        );
    }
}

/// From the second review of issue 12, R2-3: `apply --retry-failed-locally` never creates a
/// job, also after a crash between the manifest's PUT and CreateJob (the request never reached
/// S3, the manifest's ETag is journaled): the job is only looked up by its description, and
/// the objects run locally.
#[tokio::test]
async fn retry_failed_locally_creates_no_job_after_a_crash_before_create_job() {
    let t = T::new("r2rl").await;
    let b = t.batch_bucket("ml-rl").await;
    for i in 0..10 {
        t.put(&b, &format!("o-{i:03}"), format!("object {i}").as_bytes())
            .await;
    }
    t.batch_campaign("batch-update-encryption", "");
    t.plan();
    arm(
        &t.endpoint,
        &t.scope,
        serde_json::json!({"action": "pause", "on": "POST /v20180820/jobs", "at": 1, "when": "before"}),
    );
    let mut child = t.spawn(&["apply", t.plan_str(), "--yes"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while hook_state(&t.endpoint, &t.scope)["paused"].is_null() {
        assert!(Instant::now() < deadline, "never reached CreateJob");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    release(&t.endpoint, &t.scope, true); // never served
    arm(
        &t.endpoint,
        &t.scope,
        serde_json::json!({ "action": "off" }),
    );
    let out = t.apply(&["--retry-failed-locally"]);
    let aws = harness::clients(&t.endpoint).await;
    let jobs = aws
        .s3control
        .list_jobs()
        .account_id("123456789012")
        .send()
        .await
        .unwrap();
    let ours: Vec<_> = jobs
        .jobs()
        .iter()
        .filter(|j| {
            j.description()
                .is_some_and(|d| d.contains(&format!("s3://{b} ")))
        })
        .map(|j| j.description().unwrap_or_default().to_string())
        .collect();
    assert!(
        ours.is_empty(),
        "--retry-failed-locally sent a job: {ours:?} (exit {}: {})",
        code(&out),
        stderr(&out)
    );
}

/// From the second review of issue 12, R2-4: a multipart-uploaded object under batch-copy stays
/// with rekey's own copy (a job's single-part copy could not be told from another writer's at
/// rollback) and comes back at rollback.
#[tokio::test]
async fn batch_copy_of_a_multipart_object_rolls_back() {
    let t = T::new("r2mp").await;
    let b = t.batch_bucket("ml-mp").await;
    let up =
        t.s3.create_multipart_upload()
            .bucket(&b)
            .key("mp.bin")
            .server_side_encryption(ServerSideEncryption::Aes256)
            .send()
            .await
            .unwrap();
    let id = up.upload_id().unwrap().to_string();
    let mut parts = Vec::new();
    for n in 1..=2 {
        let p =
            t.s3.upload_part()
                .bucket(&b)
                .key("mp.bin")
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(vec![n as u8; 5 * 1024 * 1024]))
                .send()
                .await
                .unwrap();
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n)
                .e_tag(p.e_tag().unwrap())
                .build(),
        );
    }
    t.s3.complete_multipart_upload()
        .bucket(&b)
        .key("mp.bin")
        .upload_id(&id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    t.put(&b, "small.bin", b"small").await;
    t.batch_campaign("batch-copy", ", accept_unguarded: true");
    t.plan();
    let out = t.apply(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let m = journal_steps(&t.plan)
        .into_iter()
        .find(|r| r.key == "mp.bin")
        .unwrap();
    assert!(
        m.job.is_none(),
        "a multipart ETag stays with rekey's copy: {m:?}"
    );
    assert!(t.key_of(&b, "mp.bin", None).await.contains(&t.team));
    let out = t.rollback();
    let m = journal_steps(&t.plan)
        .into_iter()
        .find(|r| r.key == "mp.bin")
        .unwrap();
    assert!(
        !t.key_of(&b, "mp.bin", None).await.contains(&t.team),
        "rekey's own copy left on the team key: {:?} {:?} (rollback exit {})",
        m.undo_state,
        m.undo_reason,
        code(&out)
    );
}

/// Found by the batch sweep (interleave.rs, BatchUpdate Rollback KillAfter at the CopyObject):
/// a version re-keyed in place from SSE-S3 is undone by a copy back (UpdateObjectEncryption
/// cannot return it to SSE-S3); a rollback killed once that copy landed, run again, took its
/// own copy for another writer's and reported a conflict. The local engine shares the path.
#[tokio::test]
async fn a_rollback_killed_after_its_copy_back_finishes_without_a_conflict() {
    let t = T::new("cbk").await;
    let b = t.bucket("ml-cb");
    t.s3.create_bucket().bucket(&b).send().await.unwrap();
    harness::enable_versioning(&t.s3, &b).await;
    let (_, planned) = t.put(&b, "obj", b"model bytes").await;
    let planned = planned.unwrap();
    t.campaign(
        ", versions: current, engine: update-encryption",
        "  - { name: only }\n",
    );
    t.plan();
    let out = t.apply(&[]);
    assert_eq!(code(&out), 0, "apply: {}", stderr(&out));
    assert!(t.key_of(&b, "obj", Some(&planned)).await.contains(&t.team));
    let spec =
        serde_json::json!({"action": "pause", "on": "x-id=CopyObject", "at": 1, "when": "after"});
    t.hooked(&["rollback", t.plan_str(), "--yes"], spec, true, || async {
    })
    .await;
    let out = t.rollback();
    assert_eq!(code(&out), 0, "rollback again: {}", stderr(&out));
    let steps = journal_steps(&t.plan);
    let obj = steps.iter().find(|r| r.key == "obj").unwrap();
    assert_eq!(obj.undo_state.as_deref(), Some("undone"), "{obj:?}");
    // The copy back is current, on SSE-S3, with the original bytes; nothing else was written.
    assert_eq!(t.key_of(&b, "obj", None).await, "AES256");
    assert_eq!(t.body(&b, "obj").await, b"model bytes");
    assert_eq!(t.versions(&b).await.len(), 2);
}

/// Review 2 (I3, "rollback works from any point"), the S3 twin of the Cloud Storage case: an
/// apply SIGKILLed before CreateJob reached S3 (manifest ETag journaled), then
/// `apply --retry-failed-locally` re-keys the objects locally and ends the job step
/// `succeeded` with its part still open. Rollback's `stop_jobs` finds no job by its
/// description and journals the part NotCreated with `save_progress`, which refuses a step
/// that is not running: the rollback fails and restores nothing.
#[tokio::test]
async fn review2_rollback_after_a_local_retry_of_a_part_never_created() {
    let t = T::new("r2rb").await;
    let b = t.batch_bucket("ml-rb").await;
    for i in 0..5 {
        t.put(&b, &format!("o-{i:03}"), format!("object {i}").as_bytes())
            .await;
    }
    t.batch_campaign("batch-update-encryption", "");
    t.plan();
    arm(
        &t.endpoint,
        &t.scope,
        serde_json::json!({"action": "pause", "on": "POST /v20180820/jobs", "at": 1, "when": "before"}),
    );
    let mut child = t.spawn(&["apply", t.plan_str(), "--yes"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while hook_state(&t.endpoint, &t.scope)["paused"].is_null() {
        assert!(Instant::now() < deadline, "never reached CreateJob");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    release(&t.endpoint, &t.scope, true); // never served
    arm(
        &t.endpoint,
        &t.scope,
        serde_json::json!({ "action": "off" }),
    );
    let out = t.apply(&["--retry-failed-locally"]);
    eprintln!("retry exit {}: {}", code(&out), stderr(&out));
    for i in 0..5 {
        eprintln!(
            "  o-{i:03}: {}",
            t.key_of(&b, &format!("o-{i:03}"), None).await
        );
    }
    let out = t.rollback();
    eprintln!("rollback exit {}: {}", code(&out), stderr(&out));
    let mut keys = Vec::new();
    for i in 0..5 {
        keys.push(t.key_of(&b, &format!("o-{i:03}"), None).await);
    }
    assert!(
        code(&out) == 0 && keys.iter().all(|k| k == "AES256"),
        "I3: rollback restores every original (exit {}: {}; keys {keys:?})",
        code(&out),
        stderr(&out)
    );
}
