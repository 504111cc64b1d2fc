//! Inventory against the emulator overlay: classification of every encryption class, key
//! resolution by ARN, pagination, versions.

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use futures::StreamExt;
use rekey::campaign;
use rekey::events::{Collect, Silent};
use rekey::inventory::{self, Record};
use rekey::model::{EncryptionClass, Resource};

use crate::harness::{self, overlay, unique};

pub async fn inventory_of(
    endpoint: &str,
    campaign_yaml: &str,
) -> (Vec<Record>, inventory::InventoryStats) {
    let c =
        campaign::parse(Path::new("test.campaign.yaml"), campaign_yaml).expect("campaign is valid");
    let aws = harness::clients(endpoint).await;
    let pinned = inventory::resolve_keys(&c, &aws, &Silent)
        .await
        .expect("keys resolve");
    let mut records = Vec::new();
    let stats = inventory::run(&c, "default", &aws, &aws, &pinned, &Silent, |r| {
        records.push(r);
        Ok(())
    })
    .await
    .expect("inventory runs");
    (records, stats)
}

fn object_classes(records: &[Record]) -> BTreeMap<String, EncryptionClass> {
    records
        .iter()
        .filter(|r| matches!(r.resource, Resource::S3Object(_)))
        .map(|r| (r.resource.display_name(), r.class))
        .collect()
}

#[tokio::test]
async fn every_encryption_class_is_classified() {
    let m = overlay();
    let prefix = unique("classes");
    let seeded = harness::seed_estate(&m.endpoint, &prefix, 3);
    let (records, stats) = inventory_of(&m.endpoint, &harness::demo_campaign(&prefix)).await;

    let expected: BTreeMap<String, EncryptionClass> = seeded["objects"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::from_value(v.clone()).unwrap()))
        .collect();
    assert_eq!(object_classes(&records), expected);
    // Every class the design names for S3 occurs in this estate.
    for class in [
        "sse-s3",
        "aws-managed-kms",
        "foreign-cmk",
        "target-cmk",
        "sse-c",
        "dsse-kms",
        "unencrypted",
    ] {
        assert!(
            expected.values().any(|c| c.as_str() == class),
            "estate lacks {class}"
        );
    }
    assert_eq!(stats.objects as usize, expected.len());

    let buckets: BTreeMap<String, (EncryptionClass, Option<String>)> = records
        .iter()
        .filter_map(|r| match &r.resource {
            Resource::S3Bucket(b) => Some((
                b.bucket.trim_start_matches(&prefix).to_string(),
                (r.class, r.team_key.clone()),
            )),
            _ => None,
        })
        .collect();
    let want = |c: EncryptionClass, k: Option<&str>| (c, k.map(str::to_string));
    assert_eq!(
        buckets["ml-fraud-sandbox"],
        want(EncryptionClass::SseS3, Some("fraud"))
    );
    assert_eq!(
        buckets["ml-fraud-models"],
        want(EncryptionClass::AwsManagedKms, Some("fraud"))
    );
    assert_eq!(
        buckets["ml-vision-data"],
        want(EncryptionClass::Unencrypted, Some("vision")),
        "mapped by tag"
    );
    assert_eq!(
        buckets["ml-scratch"],
        want(EncryptionClass::Unencrypted, None),
        "matched by no rule"
    );

    // KMS keys are reported as ARNs, whatever the writer named them by.
    for r in &records {
        if let Resource::S3Object(o) = &r.resource {
            if let Some(k) = &o.encryption.kms_key_arn {
                assert!(k.starts_with("arn:aws:kms:us-east-1:"), "{k} is not an ARN");
            }
        }
    }
    let fraud_arn = seeded["keys"]["fraud"].as_str().unwrap();
    let on_target = records
        .iter()
        .find(|r| {
            r.resource
                .display_name()
                .ends_with("features/on-target.parquet")
        })
        .unwrap();
    match &on_target.resource {
        Resource::S3Object(o) => assert_eq!(o.encryption.kms_key_arn.as_deref(), Some(fraud_arn)),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn bucket_default_named_by_alias_resolves_to_the_team_key() {
    let m = overlay();
    let prefix = unique("alias");
    harness::seed_estate(&m.endpoint, &prefix, 1);
    let s3 = harness::clients(&m.endpoint).await.s3;
    let bucket = format!("{prefix}ml-fraud-sandbox");
    harness::set_kms_default(&s3, &bucket, &format!("alias/{prefix}ml-fraud"), true).await;
    let (records, _) = inventory_of(&m.endpoint, &harness::demo_campaign(&prefix)).await;
    let b = records
        .iter()
        .find(|r| r.resource.display_name() == format!("s3://{bucket}"))
        .unwrap();
    assert_eq!(b.class, EncryptionClass::TargetCmk);
    match &b.resource {
        Resource::S3Bucket(sb) => {
            assert!(sb
                .default_encryption
                .kms_key_arn
                .as_deref()
                .unwrap()
                .contains(":key/"));
            assert!(sb.default_encryption.bucket_key);
        }
        _ => unreachable!(),
    }
    // The same bucket pointed at the foreign key by alias is foreign.
    harness::set_kms_default(&s3, &bucket, &format!("alias/{prefix}legacy"), false).await;
    let (records, _) = inventory_of(&m.endpoint, &harness::demo_campaign(&prefix)).await;
    let b = records
        .iter()
        .find(|r| r.resource.display_name() == format!("s3://{bucket}"))
        .unwrap();
    assert_eq!(b.class, EncryptionClass::ForeignCmk);
}

/// Put `n` small SSE-S3 objects into a new bucket, 16 at a time.
pub async fn fill_bucket(endpoint: &str, bucket: &str, n: usize) {
    let s3 = harness::clients(endpoint).await.s3;
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    futures::stream::iter(0..n)
        .map(|i| {
            let s3 = s3.clone();
            async move {
                s3.put_object()
                    .bucket(bucket)
                    .key(format!("shards/{i:05}.bin"))
                    .body(ByteStream::from(vec![b'x'; 1024]))
                    .server_side_encryption(ServerSideEncryption::Aes256)
                    .send()
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

#[tokio::test]
async fn two_thousand_objects_are_listed_across_pages() {
    let m = overlay();
    let prefix = unique("big");
    let bucket = format!("{prefix}ml-big");
    fill_bucket(&m.endpoint, &bucket, 2000).await;
    let yaml = format!(
        "version: 1\ncampaign: big\naws: {{ region: us-east-1, s3: {{ buckets: [\"{bucket}\"] }} }}\nkeys: {{ k: {{ aws: alias/unused }} }}\nmapping: []\n"
    );
    // No alias exists for `k`, and no mapping uses it: resolve only what exists.
    let c = campaign::parse(Path::new("big.yaml"), &yaml).unwrap();
    let aws = harness::clients(&m.endpoint).await;
    let events = Collect::default();
    let mut keys = Vec::new();
    let stats = inventory::run(
        &c,
        "default",
        &aws,
        &aws,
        &Default::default(),
        &events,
        |r| {
            if let Resource::S3Object(o) = &r.resource {
                assert_eq!(r.class, EncryptionClass::SseS3);
                keys.push(o.key.clone());
            }
            Ok(())
        },
    )
    .await
    .unwrap();
    assert_eq!(stats.objects, 2000);
    assert_eq!(keys.len(), 2000);
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "listing order is kept and no key repeats"
    );
    assert_eq!(stats.list_pages, 2, "1,000 keys per page");
    assert_eq!(stats.head_requests, 2000);
    let progress = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, rekey::events::Event::Progress { .. }))
        .count();
    assert_eq!(progress, 4, "a progress event every 500 objects");
}

#[tokio::test]
async fn all_versions_include_noncurrent_versions() {
    let m = overlay();
    let prefix = unique("versions");
    let bucket = format!("{prefix}ml-versioned");
    let s3 = harness::clients(&m.endpoint).await.s3;
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    harness::enable_versioning(&s3, &bucket).await;
    for body in ["v1", "v2"] {
        s3.put_object()
            .bucket(&bucket)
            .key("model.bin")
            .body(ByteStream::from_static(body.as_bytes()))
            .server_side_encryption(ServerSideEncryption::Aes256)
            .send()
            .await
            .unwrap();
    }
    let yaml = |versions: &str| {
        format!(
            "version: 1\ncampaign: v\naws: {{ region: us-east-1, s3: {{ buckets: [\"{bucket}\"], versions: {versions} }} }}\nkeys: {{ k: {{ aws: alias/unused }} }}\n"
        )
    };
    for (versions, want) in [("current", 1), ("all", 2)] {
        let c = campaign::parse(Path::new("v.yaml"), &yaml(versions)).unwrap();
        let aws = harness::clients(&m.endpoint).await;
        let mut objects = Vec::new();
        inventory::run(
            &c,
            "default",
            &aws,
            &aws,
            &Default::default(),
            &Silent,
            |r| {
                if let Resource::S3Object(o) = r.resource {
                    objects.push(o);
                }
                Ok(())
            },
        )
        .await
        .unwrap();
        assert_eq!(objects.len(), want, "versions: {versions}");
        if versions == "all" {
            assert_eq!(objects.iter().filter(|o| o.is_latest).count(), 1);
            assert!(objects.iter().all(|o| o.version_id.is_some()));
            assert_ne!(objects[0].version_id, objects[1].version_id);
        }
    }
}
