//! Report parsing: what an S3 Inventory CSV report holds, read back exactly.

use super::*;
use std::io::Write;

fn gz(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

const SCHEMA: &str = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, EncryptionStatus, BucketKeyStatus, ObjectLockRetainUntilDate, ObjectLockMode, ObjectLockLegalHoldStatus, IntelligentTieringAccessTier";

#[test]
fn keys_are_url_decoded_spaces_plus_and_non_ascii() {
    assert_eq!(decode_key("a+b%2Bc").unwrap(), "a b+c");
    assert_eq!(decode_key("d%C3%A9j%C3%A0%2Fvu").unwrap(), "déjà/vu");
    assert_eq!(decode_key("%E6%97%A5%E6%9C%AC").unwrap(), "日本");
    assert_eq!(decode_key("plain/key.bin").unwrap(), "plain/key.bin");
    assert!(decode_key("%FF%FE").is_err(), "not UTF-8");
}

#[test]
fn rows_of_a_versioned_report() {
    let cols = Columns::from_schema(SCHEMA);
    let data = gz(concat!(
        "\"b\",\"models/a+b.bin\",\"v2\",\"true\",\"false\",\"10\",\"2026-11-01T10:00:00.000Z\",\"e1\",\"STANDARD\",\"SSE-S3\",\"DISABLED\",\"\",\"\",\"\",\"\"\n",
        "\"b\",\"models/a+b.bin\",\"v1\",\"false\",\"false\",\"9\",\"2026-10-01T10:00:00.000Z\",\"e0\",\"GLACIER_IR\",\"NOT-SSE\",\"DISABLED\",\"\",\"\",\"\",\"\"\n",
        "\"b\",\"gone\",\"v9\",\"true\",\"true\",\"\",\"2026-11-02T10:00:00.000Z\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\"\n",
        "\"b\",\"locked\",\"v3\",\"true\",\"false\",\"5\",\"2026-11-01T10:00:00.000Z\",\"e3\",\"INTELLIGENT_TIERING\",\"SSE-KMS\",\"ENABLED\",\"2030-01-01T00:00:00.000Z\",\"COMPLIANCE\",\"ON\",\"DEEP_ARCHIVE_ACCESS\"\n",
    ));
    let rows: Vec<Row> = csv_rows(&cols, &data[..])
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].key, "models/a b.bin");
    assert_eq!(rows[0].version_id.as_deref(), Some("v2"));
    assert!(rows[0].is_latest && !rows[0].delete_marker);
    assert_eq!(rows[0].etag, "\"e1\"");
    assert_eq!(rows[0].last_modified, "2026-11-01T10:00:00Z");
    assert_eq!(rows[0].encryption().unwrap().algorithm, "AES256");
    assert!(!rows[1].is_latest);
    assert_eq!(rows[1].storage_class, "GLACIER_IR");
    assert_eq!(rows[1].encryption().unwrap().algorithm, "none");
    assert!(rows[2].delete_marker);
    let locked = &rows[3];
    assert!(
        locked.encryption().is_none(),
        "SSE-KMS needs a HEAD for its key"
    );
    assert!(locked.bucket_key);
    assert_eq!(locked.lock.mode.as_deref(), Some("COMPLIANCE"));
    assert!(locked.lock.legal_hold && locked.lock.is_locked());
    assert_eq!(
        locked.archive_status.as_deref(),
        Some("DEEP_ARCHIVE_ACCESS")
    );
}

#[test]
fn a_current_only_report_has_no_version_columns() {
    let cols = Columns::from_schema("Bucket, Key, Size, LastModifiedDate, ETag, StorageClass, EncryptionStatus, BucketKeyStatus");
    let data = gz("\"b\",\"k%20x\",\"3\",\"2026-11-01T10:00:00.000Z\",\"e\",\"STANDARD\",\"SSE-C\",\"DISABLED\"\n");
    let rows: Vec<Row> = csv_rows(&cols, &data[..])
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows[0].key, "k x");
    assert!(rows[0].is_latest && rows[0].version_id.is_none());
    assert_eq!(rows[0].encryption().unwrap().algorithm, "sse-c");
    assert!(cols.missing(Needs::default()).is_empty());
    assert_eq!(
        cols.missing(Needs {
            versions: true,
            object_lock: true
        }),
        [
            "VersionId",
            "IsLatest",
            "IsDeleteMarker",
            "ObjectLockRetainUntilDate",
            "ObjectLockMode",
            "ObjectLockLegalHoldStatus"
        ]
    );
}

#[test]
fn a_damaged_data_file_is_an_error_not_an_empty_report() {
    let cols = Columns::from_schema(SCHEMA);
    let mut data = gz("\"b\",\"k\",\"\",\"true\",\"false\",\"1\",\"2026-11-01T10:00:00.000Z\",\"e\",\"STANDARD\",\"SSE-S3\",\"DISABLED\",\"\",\"\",\"\",\"\"\n");
    let n = data.len();
    data.truncate(n - 6);
    let rows: Vec<Result<Row, ReportError>> = csv_rows(&cols, &data[..]).collect();
    assert!(rows.iter().any(|r| r.is_err()), "{rows:?}");
    // A bad number is an error too.
    let data = gz("\"b\",\"k\",\"\",\"true\",\"false\",\"x1\",\"2026-11-01T10:00:00.000Z\",\"e\",\"STANDARD\",\"SSE-S3\",\"DISABLED\",\"\",\"\",\"\",\"\"\n");
    assert!(csv_rows(&cols, &data[..]).next().unwrap().is_err());
}

fn manifest_json() -> String {
    serde_json::json!({
        "sourceBucket": "b",
        "destinationBucket": "arn:aws:s3:::inv",
        "version": "2016-11-30",
        "creationTimestamp": "1764151200000",
        "fileFormat": "CSV",
        "fileSchema": SCHEMA,
        "files": [{"key": "inventory/b/rekey/data/x.csv.gz", "size": 10, "MD5checksum": "00"}]
    })
    .to_string()
}

#[test]
fn the_manifest_is_checked_against_its_checksum() {
    use md5::{Digest, Md5};
    let json = manifest_json();
    let sum = hex::encode(Md5::digest(json.as_bytes()));
    let m = parse_manifest("s3://inv/m.json", json.as_bytes(), &format!("{sum}\n")).unwrap();
    assert_eq!(m.destination(), "inv");
    assert_eq!(m.created(), "2025-11-26T10:00:00Z");
    assert_eq!(m.files.len(), 1);
    let err = parse_manifest("s3://inv/m.json", json.as_bytes(), "0123").unwrap_err();
    assert!(err.message.contains("manifest.checksum"), "{err:?}");
    let parquet = json.replace("\"CSV\"", "\"Parquet\"");
    let sum = hex::encode(Md5::digest(parquet.as_bytes()));
    assert!(parse_manifest("s3://inv/m.json", parquet.as_bytes(), &sum)
        .unwrap_err()
        .message
        .contains("Parquet"));
}

#[test]
fn a_configuration_is_chosen_only_if_it_covers_the_plan() {
    let mut c = InventoryConfig {
        id: "rekey".into(),
        enabled: true,
        destination_bucket: "arn:aws:s3:::inv".into(),
        destination_prefix: Some("inventory".into()),
        format: "CSV".into(),
        included_versions: "Current".into(),
        optional_fields: needed_fields(Needs::default())
            .into_iter()
            .map(str::to_string)
            .collect(),
        filter_prefix: None,
    };
    assert!(c.lacks(Needs::default()).is_empty());
    assert_eq!(
        c.report_prefix("b"),
        ("inv".into(), "inventory/b/rekey/".into())
    );
    let lacks = c.lacks(Needs {
        versions: true,
        object_lock: true,
    });
    assert!(lacks.iter().any(|l| l.contains("IncludedObjectVersions")));
    assert!(lacks.iter().any(|l| l.contains("ObjectLockMode")));
    c.filter_prefix = Some("models/".into());
    assert!(c.lacks(Needs::default())[0].contains("models/"));
    assert!(configuration_fix("b", Needs::default()).contains("\"EncryptionStatus\""));
}

#[test]
fn delivery_folders_and_urls() {
    assert!(is_delivery("2026-11-26T00-00Z"));
    assert!(!is_delivery("data"));
    assert!(!is_delivery("hive"));
    assert_eq!(
        split_url("s3://inv/a/b/manifest.json"),
        Some(("inv", "a/b/manifest.json"))
    );
    assert_eq!(split_url("s3://inv/"), None);
    assert_eq!(split_url("https://x"), None);
}
