//! Starts the emulators the tests need, through the same scripts the README uses: one moto
//! overlay (and one plain moto, for the overlay's own tests) per test binary, each on a free
//! loopback port, each exiting when the test binary does.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("REKEY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"));
    venv.join("bin/python")
}

/// Install the pinned emulator if it is not installed yet (idempotent, once per binary).
pub fn ensure_venv() -> PathBuf {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap();
    if !*done {
        let status = Command::new(repo_root().join("scripts/setup-emulator.sh"))
            .status()
            .expect("run scripts/setup-emulator.sh");
        assert!(status.success(), "scripts/setup-emulator.sh failed");
        *done = true;
    }
    venv_python()
}

pub struct Moto {
    pub endpoint: String,
    _child: Mutex<Child>,
    _dir: tempfile::TempDir,
}

fn http_post(endpoint: &str, path: &str) -> std::io::Result<u16> {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0))
}

impl Moto {
    // The server lives as long as the test binary (it is held in a static and exits by
    // itself through --parent-pid), so it is deliberately never waited for.
    fn start(plain: bool) -> Moto {
        let extra: &[&str] = if plain { &["--plain"] } else { &[] };
        Moto::start_script("scripts/moto_overlay.py", "/moto-api/reset", extra, &[])
    }

    #[allow(clippy::zombie_processes)]
    fn start_script(script: &str, ready_path: &str, extra: &[&str], env: &[(&str, &str)]) -> Moto {
        let python = ensure_venv();
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let mut cmd = Command::new(python);
        cmd.arg(repo_root().join(script))
            .args(["--port", "0", "--port-file"])
            .arg(&port_file)
            .args(["--parent-pid", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("REKEY_EMULATOR_STDERR").is_some() {
                // Debugging: the emulator's log on the test's stderr.
                Stdio::inherit()
            } else {
                Stdio::from(std::fs::File::create(dir.path().join("log")).unwrap())
            });
        cmd.args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the moto overlay");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                let endpoint = format!("http://127.0.0.1:{}", port.trim());
                if http_post(&endpoint, ready_path).ok() == Some(200) {
                    // The server outlives this function; it exits with the test binary
                    // (--parent-pid), as statics are never dropped.
                    return Moto {
                        endpoint,
                        _child: Mutex::new(child),
                        _dir: dir,
                    };
                }
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto did not start: {}", read_log(dir.path()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Moto {
    // A server of one test (statics are never dropped) ends with it.
    fn drop(&mut self) {
        if let Ok(mut c) = self._child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An overlay of the caller's own, with `env` (e.g. REKEY_OVERLAY_UPDATE_POLLS): it stops when
/// dropped. Tests that load a server hard (the interleaving sweep) keep off the shared one.
pub fn private_overlay(env: &[(&str, &str)]) -> Moto {
    Moto::start_script("scripts/moto_overlay.py", "/moto-api/reset", &[], env)
}

/// A GCS test server of the caller's own.
pub fn private_gcs() -> Moto {
    Moto::start_script("scripts/gcs_test_server.py", "/_rekey/reset", &[], &[])
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("log")).unwrap_or_default()
}

/// The moto overlay shared by this test binary.
pub fn overlay() -> &'static Moto {
    static M: OnceLock<Moto> = OnceLock::new();
    M.get_or_init(|| Moto::start(false))
}

/// Plain moto, to show each overlay behaviour is missing without the overlay.
pub fn plain() -> &'static Moto {
    static M: OnceLock<Moto> = OnceLock::new();
    M.get_or_init(|| Moto::start(true))
}

/// A prefix no other test in this binary uses (bucket and alias names stay apart).
pub fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("t{}{}-", N.fetch_add(1, Ordering::Relaxed), tag)
}

pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await
}

pub async fn clients(endpoint: &str) -> rekey::providers::aws::AwsClients {
    rekey::providers::aws::AwsClients::from_conf(&sdk_config(endpoint).await, true)
}

/// The rekey binary, pointed at an emulator, with no ambient AWS settings.
/// `REKEY_BIN` runs the suite against another build (e.g. an older one, to show a test fails
/// without the fix it pins).
pub fn rekey(endpoint: &str) -> Command {
    let bin = std::env::var_os("REKEY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rekey")));
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null());
    cmd
}

/// `rekey inventory -c CAMPAIGN -o FILE` against `endpoint`.
pub fn inventory_file(
    endpoint: &str,
    campaign: &std::path::Path,
    file: &std::path::Path,
) -> std::process::Output {
    rekey(endpoint)
        .args(["inventory", "-c"])
        .arg(campaign)
        .arg("-o")
        .arg(file)
        .output()
        .unwrap()
}

/// Seed the demo estate (scripts/seed_estate.py) under `prefix`; returns its JSON report.
pub fn seed_estate(endpoint: &str, prefix: &str, shards: usize) -> serde_json::Value {
    let out = Command::new(ensure_venv())
        .arg(repo_root().join("scripts/seed_estate.py"))
        .args([
            "--endpoint",
            endpoint,
            "--prefix",
            prefix,
            "--objects",
            &shards.to_string(),
        ])
        .output()
        .expect("run seed_estate.py");
    assert!(
        out.status.success(),
        "seeding failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("seed report is JSON")
}

/// The AWS half of the demo campaign (its `gcp` section and GCP keys left out, the GCS tests
/// write their own), with every bucket glob and alias moved under `prefix`.
pub fn demo_campaign(prefix: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("plans/demo.campaign.yaml")).unwrap();
    let mut out = String::new();
    let mut in_gcp = false;
    for line in text.lines() {
        if line.starts_with("gcp:") {
            in_gcp = true;
            continue;
        }
        if in_gcp && line.starts_with(' ') {
            continue;
        }
        in_gcp = false;
        let line = match line.find(", gcp: ") {
            Some(i) => format!("{} }}", &line[..i]),
            None => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.replace("\"ml-", &format!("\"{prefix}ml-"))
        .replace("alias/ml-", &format!("alias/{prefix}ml-"))
}

/// Set a bucket's default encryption to SSE-KMS with `key` (any form S3 accepts).
pub async fn set_kms_default(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, bucket_key: bool) {
    use aws_sdk_s3::types::{
        ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
        ServerSideEncryptionRule,
    };
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::AwsKms)
        .kms_master_key_id(key)
        .build()
        .unwrap();
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(default)
        .bucket_key_enabled(bucket_key)
        .build();
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Set a bucket's default encryption to SSE-S3, with SSE-C uploads blocked if `block_sse_c`.
pub async fn set_sse_s3_default(s3: &aws_sdk_s3::Client, bucket: &str, block_sse_c: bool) {
    use aws_sdk_s3::types::{
        BlockedEncryptionTypes, EncryptionType, ServerSideEncryption,
        ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    let mut rule = ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(
        ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::Aes256)
            .build()
            .unwrap(),
    );
    if block_sse_c {
        rule = rule.blocked_encryption_types(
            BlockedEncryptionTypes::builder()
                .encryption_type(EncryptionType::SseC)
                .build(),
        );
    }
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule.build())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Turn versioning on for a bucket.
pub async fn enable_versioning(s3: &aws_sdk_s3::Client, bucket: &str) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// The project's GCS JSON-API test server (scripts/gcs_test_server.py), one per binary.
pub fn gcs_server() -> &'static Moto {
    static M: OnceLock<Moto> = OnceLock::new();
    M.get_or_init(|| Moto::start_script("scripts/gcs_test_server.py", "/_rekey/reset", &[], &[]))
}

/// Make a Cloud KMS key on a GCS test server ready for Cloud Storage (tests/gcp_key.py): the
/// key exists and the project's service agent may use it; `mode` e.g. `--no-binding`.
pub fn gcp_key(endpoint: &str, name: &str, mode: &str) {
    let mut cmd = Command::new(ensure_venv());
    cmd.arg(repo_root().join("tests/gcp_key.py"))
        .args([endpoint, name]);
    if !mode.is_empty() {
        cmd.arg(mode);
    }
    let out = cmd.output().expect("run tests/gcp_key.py");
    assert!(
        out.status.success(),
        "gcp_key.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
