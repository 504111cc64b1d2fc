//! Multi-account campaigns: every account reached by AssumeRole, each business unit's
//! resources on its own account's key, and a mapping across accounts refused at plan time.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use crate::apply::{code, stderr};
use crate::harness::{self, overlay, unique};

const UNITS: [(&str, &str, &str); 3] = [
    ("fraud-bu", "111111111111", "fraud"),
    ("vision-bu", "222222222222", "vision"),
    ("risk-bu", "333333333333", "risk"),
];

/// Clients in another account, by AssumeRole on the emulator's STS.
async fn assumed(endpoint: &str, role_arn: &str) -> (aws_sdk_s3::Client, aws_sdk_kms::Client) {
    let base = harness::sdk_config(endpoint).await;
    let sts = aws_sdk_sts::Client::new(&base);
    let out = sts
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("test")
        .send()
        .await
        .unwrap();
    let c = out.credentials().unwrap();
    let creds = aws_sdk_s3::config::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        None,
        "assumed",
    );
    let conf = base
        .into_builder()
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(creds))
        .build();
    (
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        ),
        aws_sdk_kms::Client::new(&conf),
    )
}

fn campaign(p: &str, mapping: &str) -> String {
    let accounts: Vec<String> = UNITS
        .iter()
        .map(|(name, id, _)| {
            format!("    - {{ name: {name}, role_arn: \"arn:aws:iam::{id}:role/{p}rekey\" }}")
        })
        .collect();
    format!(
        "version: 1\ncampaign: bu\naws:\n  region: us-east-1\n  accounts:\n{}\n  s3: {{ buckets: [\"{p}*\"] }}\nkeys:\n  fraud: {{ aws: alias/{p}fraud }}\n  vision: {{ aws: alias/{p}vision }}\n  risk: {{ aws: alias/{p}risk }}\nmapping:\n{mapping}\nlimits: {{ concurrency: 4, requests_per_second: 200 }}\n",
        accounts.join("\n")
    )
}

#[tokio::test]
async fn each_business_unit_ends_on_its_own_accounts_key() {
    let endpoint = overlay().endpoint.clone();
    let p = unique("bu");
    let mut keys = Vec::new();
    for (name, id, team) in UNITS {
        let (s3, kms) = assumed(&endpoint, &format!("arn:aws:iam::{id}:role/{p}rekey")).await;
        let k = kms.create_key().send().await.unwrap();
        let arn = k.key_metadata().unwrap().arn().unwrap().to_string();
        assert!(arn.contains(id), "the key lives in account {id}: {arn}");
        kms.create_alias()
            .alias_name(format!("alias/{p}{team}"))
            .target_key_id(&arn)
            .send()
            .await
            .unwrap();
        let bucket = format!("{p}{name}-data");
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        for i in 0..3 {
            s3.put_object()
                .bucket(&bucket)
                .key(format!("features/{i}.parquet"))
                .body(ByteStream::from(vec![b'a' + i as u8; 64]))
                .server_side_encryption(ServerSideEncryption::Aes256)
                .send()
                .await
                .unwrap();
        }
        keys.push((name, id, team, arn, bucket, s3));
    }
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("bu.yaml");
    let mapping = UNITS
        .iter()
        .map(|(name, _, team)| format!("  - {{ match: {{ account: {name} }}, key: {team} }}"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&c, campaign(&p, &mapping)).unwrap();
    let plan = dir.path().join("bu.plan.yaml");
    let out = harness::rekey(&endpoint)
        .args(["plan", "-c"])
        .arg(&c)
        .arg("-o")
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let pf = rekey::plan::load(&plan).unwrap();
    for (name, _, team, arn, bucket, _) in &keys {
        assert_eq!(
            pf.keys[&format!("{team}@{name}")].arn,
            *arn,
            "each account's alias is pinned on its own"
        );
        let b = pf.stages[0]
            .buckets
            .iter()
            .find(|b| &b.bucket == bucket)
            .unwrap();
        assert_eq!(
            &b.account, name,
            "the plan names the account of every bucket"
        );
    }
    let out = harness::rekey(&endpoint)
        .args(["apply"])
        .arg(&plan)
        .arg("--yes")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for (name, _, _, arn, bucket, s3) in &keys {
        for i in 0..3 {
            let h = s3
                .head_object()
                .bucket(bucket)
                .key(format!("features/{i}.parquet"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                h.ssekms_key_id(),
                Some(arn.as_str()),
                "{name}: its own account's key"
            );
        }
    }
    let journal = rekey::journal::Journal::open(
        &rekey::journal::default_path(&plan),
        &rekey::apply::plan_id(&plan).unwrap(),
    )
    .unwrap();
    let accounts: std::collections::BTreeSet<String> = journal
        .steps_from(0)
        .unwrap()
        .into_iter()
        .map(|r| r.account)
        .collect();
    assert_eq!(
        accounts.len(),
        3,
        "the journal names the account of every step: {accounts:?}"
    );
    let out = harness::rekey(&endpoint)
        .args(["verify"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let out = harness::rekey(&endpoint)
        .args(["rollback"])
        .arg(&plan)
        .arg("--yes")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let h = keys[0]
        .5
        .head_object()
        .bucket(&keys[0].4)
        .key("features/0.parquet")
        .send()
        .await
        .unwrap();
    assert_eq!(
        h.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );

    // One mapping for every bucket would put vision-bu's and risk-bu's data under fraud's key,
    // which only exists in fraud-bu: refused at plan time, nothing written.
    let crossing = dir.path().join("crossing.yaml");
    std::fs::write(
        &crossing,
        campaign(
            &p,
            &format!("  - {{ match: {{ bucket: \"{p}*\" }}, key: fraud }}"),
        ),
    )
    .unwrap();
    let out = harness::rekey(&endpoint)
        .args(["plan", "-c"])
        .arg(&crossing)
        .arg("-o")
        .arg(dir.path().join("x.plan.yaml"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("never planned under another account's key"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("x.plan.yaml").exists());
}
