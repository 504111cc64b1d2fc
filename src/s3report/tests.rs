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
    assert!(parse_manifest("s3://inv/m.json", parquet.as_bytes(), &sum).is_ok());
    let orc = json.replace("\"CSV\"", "\"ORC\"");
    let sum = hex::encode(Md5::digest(orc.as_bytes()));
    let err = parse_manifest("s3://inv/m.json", orc.as_bytes(), &sum).unwrap_err();
    assert!(
        err.message.contains("ORC") && err.fix.contains("Parquet"),
        "{err:?}"
    );
}

/// The Parquet schema of an S3 Inventory report with every version (as the manifest's
/// `fileSchema` gives it).
const PARQUET_SCHEMA: &str = "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); optional binary version_id (UTF8); optional boolean is_latest; optional boolean is_delete_marker; optional int64 size; optional int64 last_modified_date (TIMESTAMP_MILLIS); optional binary e_tag (UTF8); optional binary storage_class (UTF8); optional binary encryption_status (UTF8); optional binary bucket_key_status (UTF8); }";

/// (key, version, latest, delete marker, size, encryption status)
type PRow<'a> = (&'a str, &'a str, bool, bool, Option<i64>, Option<&'a str>);

/// Write a Parquet data file as S3 Inventory does (Snappy), with the parquet crate's writer.
fn write_parquet(path: &std::path::Path, rows: &[PRow<'_>]) {
    use parquet::basic::Compression;
    use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;
    let schema = Arc::new(parquet::schema::parser::parse_message_type(PARQUET_SCHEMA).unwrap());
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut w =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    let mut rg = w.next_row_group().unwrap();
    let strings = |f: &dyn Fn(&PRow<'_>) -> Option<String>| -> (Vec<ByteArray>, Vec<i16>) {
        let mut vals = Vec::new();
        let mut defs = Vec::new();
        for r in rows {
            match f(r) {
                Some(v) => {
                    vals.push(ByteArray::from(v.as_str()));
                    defs.push(1);
                }
                None => defs.push(0),
            }
        }
        (vals, defs)
    };
    let mut i = 0;
    while let Some(mut col) = rg.next_column().unwrap() {
        match i {
            0 | 1 => {
                let (vals, _) = strings(&|r| {
                    Some(if i == 0 {
                        "b".to_string()
                    } else {
                        r.0.to_string()
                    })
                });
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, None, None)
                    .unwrap();
            }
            2 | 7 | 8 | 9 | 10 => {
                let (vals, defs) = strings(&|r| match i {
                    2 => Some(r.1.to_string()),
                    7 => (!r.3).then(|| format!("e-{}", r.1)),
                    8 => (!r.3).then(|| "STANDARD".to_string()),
                    9 => r.5.map(str::to_string),
                    _ => (!r.3).then(|| "DISABLED".to_string()),
                });
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&defs), None)
                    .unwrap();
            }
            3 | 4 => {
                let vals: Vec<bool> = rows
                    .iter()
                    .map(|r| if i == 3 { r.2 } else { r.3 })
                    .collect();
                col.typed::<BoolType>()
                    .write_batch(&vals, Some(&vec![1; rows.len()]), None)
                    .unwrap();
            }
            5 | 6 => {
                let mut vals = Vec::new();
                let mut defs = Vec::new();
                for r in rows {
                    let v = if i == 5 { r.4 } else { Some(1_793_527_200_000) };
                    match v {
                        Some(v) => {
                            vals.push(v);
                            defs.push(1);
                        }
                        None => defs.push(0),
                    }
                }
                col.typed::<Int64Type>()
                    .write_batch(&vals, Some(&defs), None)
                    .unwrap();
            }
            _ => unreachable!(),
        }
        col.close().unwrap();
        i += 1;
    }
    rg.close().unwrap();
    w.close().unwrap();
}

#[test]
fn rows_of_a_parquet_report_keys_as_they_are() {
    let cols = Columns::from_schema(PARQUET_SCHEMA);
    assert!(
        cols.missing(Needs {
            versions: true,
            object_lock: false
        })
        .is_empty(),
        "the snake-case columns are the CSV ones: {cols:?}"
    );
    assert_eq!(
        cols.missing(Needs {
            versions: true,
            object_lock: true
        }),
        [
            "ObjectLockRetainUntilDate",
            "ObjectLockMode",
            "ObjectLockLegalHoldStatus"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.parquet");
    write_parquet(
        &path,
        &[
            (
                "données/a+b c%2F.bin",
                "v2",
                true,
                false,
                Some(10),
                Some("SSE-S3"),
            ),
            (
                "données/a+b c%2F.bin",
                "v1",
                false,
                false,
                Some(9),
                Some("NOT-SSE"),
            ),
            ("gone", "v9", true, true, None, None),
            ("模型/kms", "v3", true, false, Some(5), Some("SSE-KMS")),
        ],
    );
    let rows: Vec<Row> = parquet_rows(std::fs::File::open(&path).unwrap())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 4);
    // Keys are not URL-encoded in Parquet: `+` and `%2F` are themselves.
    assert_eq!(rows[0].key, "données/a+b c%2F.bin");
    assert_eq!(rows[0].version_id.as_deref(), Some("v2"));
    assert!(rows[0].is_latest && !rows[1].is_latest);
    assert_eq!((rows[0].size, rows[1].size), (10, 9));
    assert_eq!(rows[0].etag, "\"e-v2\"");
    assert_eq!(rows[0].last_modified, "2026-11-01T10:00:00Z");
    assert_eq!(rows[0].encryption().unwrap().algorithm, "AES256");
    assert_eq!(rows[1].encryption().unwrap().algorithm, "none");
    assert!(rows[2].delete_marker);
    assert_eq!(rows[3].key, "模型/kms");
    assert!(
        rows[3].encryption().is_none(),
        "SSE-KMS: its key needs a HEAD"
    );
    // Not Parquet at all: an error, not an empty report.
    std::fs::write(&path, b"PAR1 not really").unwrap();
    assert!(parquet_rows(std::fs::File::open(&path).unwrap()).is_err());
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
