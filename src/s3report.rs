//! S3 Inventory reports as the object source (issue 11): a bucket's objects come from the
//! newest delivered report of an inventory configuration that covers what the plan needs,
//! instead of LIST + one HEAD per object. The manifest's MD5 (`manifest.checksum`) and every
//! data file's MD5 are checked before a row is used; rows are streamed (data files are
//! downloaded to a temporary file, one at a time, and read as they decompress), so memory
//! does not grow with the report.
//!
//! Layout (Amazon S3 user guide, "Locating your inventory list"):
//! `DEST-PREFIX/SOURCE-BUCKET/CONFIG-ID/YYYY-MM-DDTHH-MMZ/manifest.json` and
//! `manifest.checksum` (the MD5 of manifest.json), data files under
//! `DEST-PREFIX/SOURCE-BUCKET/CONFIG-ID/data/`. CSV data files are gzip-compressed, have no
//! header row, and list the columns of the manifest's `fileSchema`; their keys are URL-encoded
//! ("When you use the CSV file format, the key name is URL-encoded and must be decoded").
//! Parquet data files name their columns in snake case (`version_id`, `e_tag`) and hold keys
//! as they are; the manifest's `fileSchema` is then the Parquet message type. ORC reports are
//! refused with the change to make.

use std::io::Read;

use serde::Deserialize;

use crate::model::{ObjectLock, S3Encryption};

/// `manifest.json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub source_bucket: String,
    /// `arn:aws:s3:::BUCKET`.
    pub destination_bucket: String,
    #[serde(default)]
    pub version: String,
    /// Milliseconds since the epoch, as a string.
    pub creation_timestamp: String,
    /// `CSV`, `ORC` or `Parquet`.
    pub file_format: String,
    pub file_schema: String,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ManifestFile {
    pub key: String,
    pub size: u64,
    #[serde(rename = "MD5checksum")]
    pub md5: String,
}

impl Manifest {
    /// The destination bucket's name.
    pub fn destination(&self) -> &str {
        self.destination_bucket
            .strip_prefix("arn:aws:s3:::")
            .or_else(|| self.destination_bucket.rsplit(":::").next())
            .unwrap_or(&self.destination_bucket)
    }

    /// When the report's scan began, as RFC 3339 (UTC).
    pub fn created(&self) -> String {
        self.creation_timestamp
            .parse::<i64>()
            .ok()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| self.creation_timestamp.clone())
    }
}

/// A problem with a report: bad input (exit 2), with the change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportError {
    pub message: String,
    pub fix: String,
}

impl ReportError {
    fn new(message: impl Into<String>, fix: impl Into<String>) -> Self {
        ReportError {
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl From<ReportError> for crate::error::RekeyError {
    fn from(e: ReportError) -> Self {
        crate::error::RekeyError::Usage {
            message: e.message,
            fix: e.fix,
        }
    }
}

/// Parse `manifest.json`, checking it against `manifest.checksum` (its MD5, hex).
pub fn parse_manifest(url: &str, json: &[u8], checksum: &str) -> Result<Manifest, ReportError> {
    use md5::{Digest, Md5};
    let got = hex::encode(Md5::digest(json));
    let want = checksum.trim().to_ascii_lowercase();
    if got != want {
        return Err(ReportError::new(
            format!("{url}: its MD5 is {got}, manifest.checksum says {want}: the manifest is damaged or was replaced while being read"),
            "read the report again once its delivery is complete, or name another report (aws.s3.inventory.manifests)",
        ));
    }
    let m: Manifest = serde_json::from_slice(json).map_err(|e| {
        ReportError::new(
            format!("{url}: not an S3 Inventory manifest ({e})"),
            "name the manifest.json of an S3 Inventory report",
        )
    })?;
    match m.file_format.as_str() {
        "CSV" | "Parquet" => Ok(m),
        other => Err(ReportError::new(
            format!("{url}: a {other} report; rekey reads CSV and Parquet reports"),
            "add a CSV or Parquet inventory configuration to the bucket (same fields) and plan from its report, or use `inventory: list`",
        )),
    }
}

/// Which columns a report must have for a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// `versions: all`: every version, with its id, whether it is current, delete markers.
    pub versions: bool,
    /// The bucket has Object Lock: retention and legal hold of every version.
    pub object_lock: bool,
}

/// The optional fields of an inventory configuration rekey needs (`Bucket`, `Key` and the
/// version fields come with every report of the right `IncludedObjectVersions`).
pub fn needed_fields(needs: Needs) -> Vec<&'static str> {
    let mut f = vec![
        "Size",
        "LastModifiedDate",
        "ETag",
        "StorageClass",
        "EncryptionStatus",
        "BucketKeyStatus",
    ];
    if needs.object_lock {
        f.extend([
            "ObjectLockRetainUntilDate",
            "ObjectLockMode",
            "ObjectLockLegalHoldStatus",
        ]);
    }
    f
}

/// The columns of a report, from its `fileSchema`: a CSV report's names in order
/// (`Bucket, Key, …`), or a Parquet message type (`message s3.inventory { required binary
/// bucket (STRING); … }`), whose snake-case names are held as the CSV names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    names: Vec<String>,
}

/// `version_id` → `VersionId`, `e_tag` → `ETag`.
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

impl Columns {
    pub fn from_schema(schema: &str) -> Columns {
        let schema = schema.trim();
        if schema.starts_with("message") {
            let body = schema
                .split_once('{')
                .map(|(_, b)| b.rsplit_once('}').map(|(b, _)| b).unwrap_or(b))
                .unwrap_or("");
            return Columns {
                names: body
                    .split(';')
                    .filter_map(|field| field.split_whitespace().nth(2))
                    .map(pascal)
                    .collect(),
            };
        }
        Columns {
            names: schema
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    fn at(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.eq_ignore_ascii_case(name))
    }

    /// The columns `needs` requires that the report lacks.
    pub fn missing(&self, needs: Needs) -> Vec<&'static str> {
        let mut required = vec!["Bucket", "Key"];
        if needs.versions {
            required.extend(["VersionId", "IsLatest", "IsDeleteMarker"]);
        }
        required.extend(needed_fields(needs));
        required
            .into_iter()
            .filter(|c| self.at(c).is_none())
            .collect()
    }
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Row {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub is_latest: bool,
    pub delete_marker: bool,
    pub size: u64,
    pub last_modified: String,
    /// Quoted, as HEAD and LIST report it.
    pub etag: String,
    pub storage_class: String,
    /// `NOT-SSE`, `SSE-S3`, `SSE-C`, `SSE-KMS` or `DSSE-KMS`.
    pub encryption_status: String,
    pub bucket_key: bool,
    pub lock: ObjectLock,
    /// The Intelligent-Tiering archive tier, when the object is in one (a copy must restore it
    /// first, as for a HEAD's archive status).
    pub archive_status: Option<String>,
}

impl Row {
    /// The object's encryption when the report tells it whole; None: an SSE-KMS or DSSE-KMS
    /// object, whose key only a HEAD tells.
    pub fn encryption(&self) -> Option<S3Encryption> {
        let algorithm = match self.encryption_status.as_str() {
            "NOT-SSE" => S3Encryption::NONE,
            "SSE-S3" => "AES256",
            "SSE-C" => S3Encryption::SSE_C,
            _ => return None,
        };
        Some(S3Encryption {
            algorithm: algorithm.to_string(),
            ..Default::default()
        })
    }
}

/// Decode a CSV report's key: `+` is a space, `%XX` a byte of the UTF-8 name.
pub fn decode_key(raw: &str) -> Result<String, ReportError> {
    let plus = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|e| {
            ReportError::new(
                format!("the report lists a key that is not URL-encoded UTF-8 ({raw:?}: {e})"),
                "regenerate the report; if it persists, plan this bucket with `inventory: list`",
            )
        })
}

/// Parse one CSV record.
pub fn parse_row(cols: &Columns, rec: &csv::StringRecord) -> Result<Row, ReportError> {
    row_of(
        &|name: &str| cols.at(name).and_then(|i| rec.get(i)).unwrap_or(""),
        cols.at("IsLatest").is_some(),
        true,
    )
}

/// One row from its columns by (CSV) name; `has_latest`: the report has the IsLatest column;
/// `encoded`: its keys are URL-encoded (CSV).
fn row_of<'a>(
    get: &dyn Fn(&str) -> &'a str,
    has_latest: bool,
    encoded: bool,
) -> Result<Row, ReportError> {
    let bad = |what: &str, v: &str| {
        ReportError::new(
            format!("the report's {what} {v:?} is not readable"),
            "regenerate the report; if it persists, plan this bucket with `inventory: list`",
        )
    };
    let size = match get("Size") {
        "" => 0,
        s => s.parse().map_err(|_| bad("Size", s))?,
    };
    let truthy = |v: &str| v.eq_ignore_ascii_case("true");
    let last_modified = match get("LastModifiedDate") {
        "" => String::new(),
        s => chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|_| bad("LastModifiedDate", s))?
            .to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let etag = match get("ETag").trim_matches('"') {
        "" => String::new(),
        e => format!("\"{e}\""),
    };
    let mode = get("ObjectLockMode");
    let until = get("ObjectLockRetainUntilDate");
    let tier = get("IntelligentTieringAccessTier");
    Ok(Row {
        bucket: get("Bucket").to_string(),
        key: if encoded {
            decode_key(get("Key"))?
        } else {
            get("Key").to_string()
        },
        version_id: Some(get("VersionId"))
            .filter(|v| !v.is_empty())
            .map(str::to_string),
        // A report of current versions only has no IsLatest column: each row is current.
        is_latest: !has_latest || truthy(get("IsLatest")),
        delete_marker: truthy(get("IsDeleteMarker")),
        size,
        last_modified,
        etag,
        storage_class: match get("StorageClass") {
            "" => "STANDARD".to_string(),
            s => s.to_string(),
        },
        encryption_status: get("EncryptionStatus").to_string(),
        bucket_key: get("BucketKeyStatus").eq_ignore_ascii_case("ENABLED"),
        lock: ObjectLock {
            mode: Some(mode).filter(|m| !m.is_empty()).map(str::to_string),
            retain_until: Some(until).filter(|u| !u.is_empty()).map(str::to_string),
            legal_hold: get("ObjectLockLegalHoldStatus").eq_ignore_ascii_case("ON"),
            unreadable: false,
        },
        archive_status: matches!(tier, "ARCHIVE_ACCESS" | "DEEP_ARCHIVE_ACCESS")
            .then(|| tier.to_string()),
    })
}

/// The rows of one Parquet data file, as they are read (a row group at a time). Keys are
/// as they are (not URL-encoded); timestamps are read as RFC 3339.
pub fn parquet_rows(
    file: std::fs::File,
) -> Result<impl Iterator<Item = Result<Row, ReportError>>, ReportError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let unreadable = |e: parquet::errors::ParquetError| {
        ReportError::new(
            format!("a data file of the report is not readable Parquet ({e})"),
            "regenerate the report; if it persists, plan this bucket with `inventory: list`",
        )
    };
    let reader = SerializedFileReader::new(file).map_err(unreadable)?;
    let has_latest = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .any(|c| c.name() == "is_latest");
    let millis = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    };
    Ok(reader.into_iter().map(move |r| {
        let r = r.map_err(unreadable)?;
        let mut values: Vec<(String, String)> = Vec::with_capacity(20);
        for (name, field) in r.get_column_iter() {
            let v = match field {
                Field::Null => String::new(),
                Field::Str(s) => s.clone(),
                Field::Bool(b) => b.to_string(),
                Field::Int(n) => n.to_string(),
                Field::Long(n) => n.to_string(),
                Field::TimestampMillis(ms) => millis(*ms),
                Field::TimestampMicros(us) => millis(us.div_euclid(1000)),
                Field::Bytes(b) => String::from_utf8_lossy(b.data()).into_owned(),
                other => other.to_string(),
            };
            values.push((pascal(name), v));
        }
        row_of(
            &|name: &str| {
                values
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("")
            },
            has_latest,
            false,
        )
    }))
}

/// The rows of one gzip-compressed CSV data file, as they decompress.
pub fn csv_rows<'a, R: Read + 'a>(
    cols: &'a Columns,
    gz: R,
) -> impl Iterator<Item = Result<Row, ReportError>> + 'a {
    let reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(flate2::read::MultiGzDecoder::new(gz));
    reader.into_records().map(move |r| {
        let rec = r.map_err(|e| {
            ReportError::new(
                format!("a data file of the report is not readable gzip CSV ({e})"),
                "regenerate the report; if it persists, plan this bucket with `inventory: list`",
            )
        })?;
        parse_row(cols, &rec)
    })
}

/// An inventory configuration of a bucket, as far as choosing one goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryConfig {
    pub id: String,
    pub enabled: bool,
    /// `arn:aws:s3:::BUCKET`.
    pub destination_bucket: String,
    pub destination_prefix: Option<String>,
    /// `CSV`, `ORC` or `Parquet`.
    pub format: String,
    /// `All` or `Current`.
    pub included_versions: String,
    pub optional_fields: Vec<String>,
    /// The configuration lists only objects under this prefix.
    pub filter_prefix: Option<String>,
}

impl InventoryConfig {
    /// What this configuration lacks for `needs` (empty: it covers them).
    pub fn lacks(&self, needs: Needs) -> Vec<String> {
        let mut out = Vec::new();
        if !self.enabled {
            out.push("it is disabled".to_string());
        }
        if needs.versions && self.included_versions != "All" {
            out.push("IncludedObjectVersions is Current (versions: all needs All)".to_string());
        }
        if let Some(p) = self.filter_prefix.as_deref().filter(|p| !p.is_empty()) {
            out.push(format!("it lists only objects under {p:?}"));
        }
        if self.format != "CSV" && self.format != "Parquet" {
            out.push(format!(
                "its format is {} (rekey reads CSV and Parquet)",
                self.format
            ));
        }
        let missing: Vec<&str> = needed_fields(needs)
            .into_iter()
            .filter(|f| !self.optional_fields.iter().any(|o| o == f))
            .collect();
        if !missing.is_empty() {
            out.push(format!("OptionalFields lacks {}", missing.join(", ")));
        }
        out
    }

    /// Where its reports of `bucket` are delivered: (destination bucket, key prefix ending in
    /// `/`).
    pub fn report_prefix(&self, bucket: &str) -> (String, String) {
        let dest = self
            .destination_bucket
            .strip_prefix("arn:aws:s3:::")
            .unwrap_or(&self.destination_bucket)
            .to_string();
        let prefix = match self.destination_prefix.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => format!("{p}/{bucket}/{}/", self.id),
            None => format!("{bucket}/{}/", self.id),
        };
        (dest, prefix)
    }
}

/// The inventory configuration to add so that a bucket can be planned from its reports.
pub fn configuration_fix(bucket: &str, needs: Needs) -> String {
    serde_json::json!({
        "Id": "rekey",
        "IsEnabled": true,
        "Destination": { "S3BucketDestination": {
            "Bucket": "arn:aws:s3:::<inventory-bucket>", "Format": "CSV", "Prefix": "inventory" } },
        "IncludedObjectVersions": if needs.versions { "All" } else { "Current" },
        "OptionalFields": needed_fields(needs),
        "Schedule": { "Frequency": "Daily" }
    })
    .to_string()
        + &format!(" (aws s3api put-bucket-inventory-configuration --bucket {bucket} --id rekey --inventory-configuration FILE)")
}

/// Whether a delivery folder name is a report timestamp (`YYYY-MM-DDTHH-MMZ`).
pub fn is_delivery(folder: &str) -> bool {
    let b = folder.as_bytes();
    b.len() == 17
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b'-'
        && b[16] == b'Z'
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

/// The MD5 (hex) of what `r` holds, read in 1 MiB pieces.
pub fn md5_of(r: &mut impl Read) -> std::io::Result<String> {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// `s3://bucket/key` → (bucket, key).
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("s3://")?
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
}

/// A report chosen for a bucket, its manifest checked.
#[derive(Debug, Clone)]
pub struct Found {
    pub url: String,
    pub manifest: Manifest,
    pub columns: Columns,
    pub configuration: Option<String>,
    /// A report copied to local disk (`file://…/manifest.json`): the directory holding its
    /// `data/` folder (the manifest's folder's parent).
    pub local: Option<std::path::PathBuf>,
}

impl Found {
    /// Where a data file of a local report is.
    pub fn local_file(&self, key: &str) -> Option<std::path::PathBuf> {
        let name = key.rsplit('/').next()?;
        Some(self.local.as_ref()?.join("data").join(name))
    }
}

/// Read a report copied to local disk: `file:///…/STAMP/manifest.json`, its
/// `manifest.checksum` beside it and the data files in `../data/`.
pub fn find_local(
    url: &str,
    bucket: &str,
    needs: Needs,
) -> Result<Found, crate::error::RekeyError> {
    let path = std::path::PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| {
            crate::error::RekeyError::io(format!("reading the report file {}", p.display()), e)
        })
    };
    let json = read(&path)?;
    let checksum = read(&path.with_file_name("manifest.checksum"))?;
    let manifest = parse_manifest(url, &json, &String::from_utf8_lossy(&checksum))?;
    let columns = checked_columns(url, bucket, &manifest, needs)?;
    Ok(Found {
        url: url.to_string(),
        manifest,
        columns,
        configuration: None,
        local: path
            .parent()
            .and_then(|p| p.parent())
            .map(|p| p.to_path_buf()),
    })
}

/// The manifest is of `bucket`, and its columns cover `needs`.
fn checked_columns(
    url: &str,
    bucket: &str,
    manifest: &Manifest,
    needs: Needs,
) -> Result<Columns, ReportError> {
    if manifest.source_bucket != bucket {
        return Err(ReportError::new(
            format!(
                "{url} is a report of s3://{}, not of s3://{bucket}",
                manifest.source_bucket
            ),
            "name a manifest of this bucket's report",
        ));
    }
    let columns = Columns::from_schema(&manifest.file_schema);
    let missing = columns.missing(needs);
    if !missing.is_empty() {
        return Err(ReportError::new(
            format!(
                "{url} lacks the columns {} that planning s3://{bucket} needs",
                missing.join(", ")
            ),
            format!(
                "change the bucket's inventory configuration to {} and plan after its next report",
                configuration_fix(bucket, needs)
            ),
        ));
    }
    Ok(columns)
}

impl Found {
    pub fn source(&self) -> crate::model::ReportSource {
        crate::model::ReportSource {
            manifest: self.url.clone(),
            created: self.manifest.created(),
            configuration: self.configuration.clone(),
        }
    }
}

/// The largest manifest.json read (a manifest lists data files, not objects).
const MANIFEST_LIMIT: u64 = 64 * 1024 * 1024;

/// The report to plan `bucket` from: the manifest named in the campaign, or the newest
/// delivered report of an inventory configuration that covers `needs`. Every refusal is bad
/// input (exit 2) with the change to make; nothing is assumed.
pub async fn find<S: crate::providers::S3Read>(
    s3: &S,
    bucket: &str,
    needs: Needs,
    named: Option<&str>,
) -> Result<Found, crate::error::RekeyError> {
    use crate::error::{ProviderError, RekeyError};
    if let Some(url) = named.filter(|u| u.starts_with("file://")) {
        return find_local(url, bucket, needs);
    }
    // Candidates, newest first: (delivery folder name, manifest URL, configuration id).
    let mut candidates: Vec<(String, String, Option<String>)> = Vec::new();
    match named {
        Some(url) => candidates.push((String::new(), url.to_string(), None)),
        None => {
            let mut why = Vec::new();
            for c in s3.inventory_configurations(bucket).await? {
                let lacks = c.lacks(needs);
                if !lacks.is_empty() {
                    why.push(format!("{}: {}", c.id, lacks.join("; ")));
                    continue;
                }
                let (dest, prefix) = c.report_prefix(bucket);
                let folders = s3.folders(&dest, &prefix).await?;
                let before = candidates.len();
                for f in &folders {
                    let name = f.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                    if is_delivery(name) {
                        candidates.push((
                            name.to_string(),
                            format!("s3://{dest}/{f}manifest.json"),
                            Some(c.id.clone()),
                        ));
                    }
                }
                if candidates.len() == before {
                    why.push(format!(
                        "{}: no report delivered yet under s3://{dest}/{prefix}",
                        c.id
                    ));
                }
            }
            if candidates.is_empty() {
                return Err(RekeyError::Usage {
                    message: format!(
                        "s3://{bucket}: no S3 Inventory report covers what the plan needs{}",
                        if why.is_empty() {
                            " (the bucket has no inventory configuration)".to_string()
                        } else {
                            format!(" ({})", why.join(" | "))
                        }
                    ),
                    fix: format!(
                        "add this inventory configuration and plan after its first report: {}; or plan the bucket with `aws.s3.inventory: list`",
                        configuration_fix(bucket, needs)
                    ),
                });
            }
            candidates.sort();
            candidates.reverse();
        }
    }
    // The newest delivery whose manifest is there (one being delivered has none yet).
    for (_, url, configuration) in candidates.iter().take(3) {
        let Some((db, dk)) = split_url(url) else {
            continue;
        };
        let json = match s3.read_small(db, dk, MANIFEST_LIMIT).await {
            Ok(j) => j,
            Err(ProviderError::NotFound { .. }) if named.is_none() => continue,
            Err(e) => return Err(e.into()),
        };
        let checksum_key = format!("{}manifest.checksum", dk.trim_end_matches("manifest.json"));
        let checksum = s3.read_small(db, &checksum_key, 1024).await?;
        let manifest = parse_manifest(url, &json, &String::from_utf8_lossy(&checksum))?;
        let columns = checked_columns(url, bucket, &manifest, needs)?;
        return Ok(Found {
            url: url.clone(),
            manifest,
            columns,
            configuration: configuration.clone(),
            local: None,
        });
    }
    Err(RekeyError::Usage {
        message: format!("s3://{bucket}: its newest inventory reports have no manifest.json yet"),
        fix: "plan again once the report's delivery is complete".into(),
    })
}

#[cfg(test)]
mod tests;
