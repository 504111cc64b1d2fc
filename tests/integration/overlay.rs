//! The moto overlay's own tests: each behaviour holds on the overlay and is missing on
//! plain moto, so each test would fail without the overlay.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ObjectEncryption, ServerSideEncryption,
    SsekmsEncryption,
};

use crate::harness::{self, overlay, plain, unique};

struct Env {
    s3: aws_sdk_s3::Client,
    kms: aws_sdk_kms::Client,
    bucket: String,
    prefix: String,
}

async fn env(endpoint: &str, tag: &str) -> Env {
    let conf = harness::sdk_config(endpoint).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let kms = aws_sdk_kms::Client::new(&conf);
    let prefix = unique(tag);
    let bucket = format!("{prefix}bucket");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    Env {
        s3,
        kms,
        bucket,
        prefix,
    }
}

impl Env {
    async fn key(&self, alias: &str) -> (String, String) {
        let k = self.kms.create_key().send().await.unwrap();
        let m = k.key_metadata().unwrap();
        self.kms
            .create_alias()
            .alias_name(format!("alias/{}{alias}", self.prefix))
            .target_key_id(m.key_id())
            .send()
            .await
            .unwrap();
        (m.key_id().to_string(), m.arn().unwrap().to_string())
    }

    async fn put(&self, key: &str, body: &[u8]) -> String {
        let out = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .server_side_encryption(ServerSideEncryption::Aes256)
            .send()
            .await
            .unwrap();
        out.e_tag().unwrap().to_string()
    }
}

/// Ok when CopyObject and UploadPartCopy refuse a stale `x-amz-copy-source-if-match`.
async fn copy_if_match(endpoint: &str) -> Result<(), String> {
    let e = env(endpoint, "ifmatch").await;
    let etag = e.put("a", b"first").await;
    let stale = "\"00000000000000000000000000000000\"";
    let copy =
        e.s3.copy_object()
            .bucket(&e.bucket)
            .key("a")
            .copy_source(format!("{}/a", e.bucket))
            .copy_source_if_match(stale)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Copy)
            .send()
            .await;
    match copy {
        Err(err) if err.code() == Some("PreconditionFailed") => {}
        other => return Err(format!("CopyObject with a stale if-match: {other:?}")),
    }
    // The matching ETag still copies.
    e.s3.copy_object()
        .bucket(&e.bucket)
        .key("a")
        .copy_source(format!("{}/a", e.bucket))
        .copy_source_if_match(&etag)
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .map_err(|err| format!("copy with the right ETag failed: {err:?}"))?;
    let up =
        e.s3.create_multipart_upload()
            .bucket(&e.bucket)
            .key("b")
            .send()
            .await
            .unwrap();
    let part =
        e.s3.upload_part_copy()
            .bucket(&e.bucket)
            .key("b")
            .upload_id(up.upload_id().unwrap())
            .part_number(1)
            .copy_source(format!("{}/a", e.bucket))
            .copy_source_if_match(stale)
            .send()
            .await;
    match part {
        Err(err) if err.code() == Some("PreconditionFailed") => Ok(()),
        other => Err(format!("UploadPartCopy with a stale if-match: {other:?}")),
    }
}

#[tokio::test]
async fn copy_honours_copy_source_if_match() {
    copy_if_match(&overlay().endpoint).await.unwrap();
    assert!(
        copy_if_match(&plain().endpoint).await.is_err(),
        "plain moto ignores CopySourceIfMatch"
    );
}

/// Ok when SSE-KMS writes with a missing, disabled or pending-deletion key are refused.
async fn unusable_keys_refused(endpoint: &str) -> Result<(), String> {
    let e = env(endpoint, "badkey").await;
    let put = |key: &'static str, kms_key: String| {
        e.s3.put_object()
            .bucket(&e.bucket)
            .key(key)
            .body(ByteStream::from_static(b"x"))
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(kms_key)
            .send()
    };
    let code = |r: Result<_, aws_sdk_s3::error::SdkError<_, _>>| match r {
        Ok(_) => "accepted".to_string(),
        Err(err) => ProvideErrorMetadata::code(&err).unwrap_or("?").to_string(),
    };
    let missing = code(put("m", "alias/does-not-exist".into()).await);
    let (disabled_id, disabled_arn) = e.key("disabled").await;
    e.kms
        .disable_key()
        .key_id(&disabled_id)
        .send()
        .await
        .unwrap();
    let disabled = code(put("d", disabled_arn.clone()).await);
    let (doomed_id, _) = e.key("doomed").await;
    e.kms
        .schedule_key_deletion()
        .key_id(&doomed_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let doomed = code(put("p", doomed_id.clone()).await);
    let multipart = match e
        .s3
        .create_multipart_upload()
        .bucket(&e.bucket)
        .key("mp")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id("alias/does-not-exist")
        .send()
        .await
    {
        Ok(_) => "accepted".to_string(),
        Err(err) => err.code().unwrap_or("?").to_string(),
    };
    // A write that takes the bucket's default rule, which names the disabled key.
    harness::set_kms_default(&e.s3, &e.bucket, &disabled_arn, false).await;
    let by_default = match e
        .s3
        .put_object()
        .bucket(&e.bucket)
        .key("bd")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
    {
        Ok(_) => "accepted".to_string(),
        Err(err) => err.code().unwrap_or("?").to_string(),
    };
    let got = [missing, disabled, doomed, multipart, by_default];
    let want = [
        "KMS.NotFoundException",
        "KMS.DisabledException",
        "KMS.KMSInvalidStateException",
        "KMS.NotFoundException",
        "KMS.DisabledException",
    ];
    if got == want {
        Ok(())
    } else {
        Err(format!("got {got:?}"))
    }
}

#[tokio::test]
async fn sse_kms_writes_need_a_usable_key() {
    unusable_keys_refused(&overlay().endpoint).await.unwrap();
    assert!(
        unusable_keys_refused(&plain().endpoint).await.is_err(),
        "plain moto accepts unusable keys"
    );
}

/// Ok when SSEKMSKeyId comes back as the key ARN for id, alias and alias-ARN writers, and
/// `aws:kms` without a key lands on the AWS-managed aws/s3 key.
async fn key_reported_as_arn(endpoint: &str) -> Result<(), String> {
    let e = env(endpoint, "arn").await;
    let (id, arn) = e.key("team").await;
    let alias = format!("alias/{}team", e.prefix);
    let alias_arn = format!("arn:aws:kms:us-east-1:123456789012:{alias}");
    for (i, given) in [id, alias, alias_arn].into_iter().enumerate() {
        let k = format!("o{i}");
        e.s3.put_object()
            .bucket(&e.bucket)
            .key(&k)
            .body(ByteStream::from_static(b"x"))
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(&given)
            .send()
            .await
            .map_err(|err| format!("put with {given}: {err:?}"))?;
        let head =
            e.s3.head_object()
                .bucket(&e.bucket)
                .key(&k)
                .send()
                .await
                .unwrap();
        if head.ssekms_key_id() != Some(arn.as_str()) {
            return Err(format!(
                "written with {given}, reported {:?}",
                head.ssekms_key_id()
            ));
        }
    }
    e.s3.put_object()
        .bucket(&e.bucket)
        .key("managed")
        .body(ByteStream::from_static(b"x"))
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .send()
        .await
        .unwrap();
    let head =
        e.s3.head_object()
            .bucket(&e.bucket)
            .key("managed")
            .send()
            .await
            .unwrap();
    let reported = head
        .ssekms_key_id()
        .ok_or("aws:kms without a key reports no key")?;
    let described = e
        .kms
        .describe_key()
        .key_id(reported)
        .send()
        .await
        .map_err(|err| format!("{err:?}"))?;
    let m = described.key_metadata().unwrap();
    if m.arn() != Some(reported) || m.key_manager().map(|k| k.as_str()) != Some("AWS") {
        return Err(format!(
            "aws:kms without a key reported {reported}, a {:?} key",
            m.key_manager()
        ));
    }
    Ok(())
}

#[tokio::test]
async fn kms_key_reported_as_arn() {
    key_reported_as_arn(&overlay().endpoint).await.unwrap();
    assert!(
        key_reported_as_arn(&plain().endpoint).await.is_err(),
        "plain moto echoes the key as sent"
    );
}

/// Ok when UpdateObjectEncryption re-keys in place with AWS's rules.
async fn update_object_encryption(endpoint: &str) -> Result<(), String> {
    let e = env(endpoint, "uoe").await;
    let (_, arn) = e.key("team").await;
    e.s3.put_object()
        .bucket(&e.bucket)
        .key("ia")
        .body(ByteStream::from_static(b"payload"))
        .server_side_encryption(ServerSideEncryption::Aes256)
        .storage_class(aws_sdk_s3::types::StorageClass::StandardIa)
        .send()
        .await
        .unwrap();
    let before =
        e.s3.head_object()
            .bucket(&e.bucket)
            .key("ia")
            .send()
            .await
            .unwrap();
    let enc = |k: &str| {
        ObjectEncryption::Ssekms(
            SsekmsEncryption::builder()
                .kms_key_arn(k)
                .bucket_key_enabled(true)
                .build()
                .unwrap(),
        )
    };
    e.s3.update_object_encryption()
        .bucket(&e.bucket)
        .key("ia")
        .object_encryption(enc(&arn))
        .send()
        .await
        .map_err(|err| format!("UpdateObjectEncryption: {err:?}"))?;
    let after =
        e.s3.head_object()
            .bucket(&e.bucket)
            .key("ia")
            .send()
            .await
            .unwrap();
    if after.ssekms_key_id() != Some(arn.as_str())
        || after.e_tag() != before.e_tag()
        || after.storage_class() != before.storage_class()
        || after.last_modified() != before.last_modified()
    {
        return Err(format!("after update: {after:?}"));
    }
    // An alias is not a key ARN.
    let alias = format!("alias/{}team", e.prefix);
    let r =
        e.s3.update_object_encryption()
            .bucket(&e.bucket)
            .key("ia")
            .object_encryption(enc(&alias))
            .send()
            .await;
    if !matches!(&r, Err(err) if err.code() == Some("InvalidRequest")) {
        return Err(format!("alias accepted: {r:?}"));
    }
    // Unencrypted and SSE-C objects are refused.
    e.s3.put_object()
        .bucket(&e.bucket)
        .key("plain")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let r =
        e.s3.update_object_encryption()
            .bucket(&e.bucket)
            .key("plain")
            .object_encryption(enc(&arn))
            .send()
            .await;
    if !matches!(&r, Err(err) if err.code() == Some("InvalidRequest")) {
        return Err(format!("unencrypted accepted: {r:?}"));
    }
    put_sse_c(&e.s3, &e.bucket, "ssec").await;
    let r =
        e.s3.update_object_encryption()
            .bucket(&e.bucket)
            .key("ssec")
            .object_encryption(enc(&arn))
            .send()
            .await;
    if !matches!(&r, Err(err) if err.code() == Some("InvalidRequest")) {
        return Err(format!("SSE-C accepted: {r:?}"));
    }
    Ok(())
}

async fn put_sse_c(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    use base64_key::*;
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from_static(b"secret"))
        .sse_customer_algorithm("AES256")
        .sse_customer_key(KEY_B64)
        .sse_customer_key_md5(KEY_MD5_B64)
        .send()
        .await
        .unwrap();
}

/// A fixed 32-byte customer key ("k" × 32), base64, and the base64 of its MD5.
mod base64_key {
    pub const KEY_B64: &str = "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=";
    pub const KEY_MD5_B64: &str = "mT2HRsMGJ5IX5C+0rreZ8Q==";
}

#[tokio::test]
async fn update_object_encryption_rekeys_in_place() {
    update_object_encryption(&overlay().endpoint).await.unwrap();
    assert!(
        update_object_encryption(&plain().endpoint).await.is_err(),
        "plain moto lacks UpdateObjectEncryption"
    );
}

/// Ok when an SSE-C object answers HEAD without its key with 400, and reports SSE-C with it.
async fn sse_c_is_remembered(endpoint: &str) -> Result<(), String> {
    let e = env(endpoint, "ssec").await;
    put_sse_c(&e.s3, &e.bucket, "o").await;
    let bare = e.s3.head_object().bucket(&e.bucket).key("o").send().await;
    match &bare {
        Err(err) if err.raw_response().map(|r| r.status().as_u16()) == Some(400) => {}
        other => return Err(format!("HEAD without the key: {other:?}")),
    }
    let with_key =
        e.s3.head_object()
            .bucket(&e.bucket)
            .key("o")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(base64_key::KEY_B64)
            .sse_customer_key_md5(base64_key::KEY_MD5_B64)
            .send()
            .await
            .map_err(|err| format!("{err:?}"))?;
    if with_key.sse_customer_algorithm() != Some("AES256") {
        return Err(format!("HEAD with the key: {with_key:?}"));
    }
    Ok(())
}

#[tokio::test]
async fn sse_c_objects_stay_sse_c() {
    sse_c_is_remembered(&overlay().endpoint).await.unwrap();
    assert!(
        sse_c_is_remembered(&plain().endpoint).await.is_err(),
        "plain moto drops SSE-C"
    );
}

/// Ok when GetBucketVersioning parses in the Rust SDK and DSSE objects report their key.
async fn versioning_and_dsse(endpoint: &str) -> Result<(), String> {
    let e = env(endpoint, "ver").await;
    let (_, arn) = e.key("k").await;
    harness::enable_versioning(&e.s3, &e.bucket).await;
    let v =
        e.s3.get_bucket_versioning()
            .bucket(&e.bucket)
            .send()
            .await
            .map_err(|err| format!("{err:?}"))?;
    if v.status().map(|s| s.as_str()) != Some("Enabled") {
        return Err(format!("versioning: {v:?}"));
    }
    e.s3.put_object()
        .bucket(&e.bucket)
        .key("d")
        .body(ByteStream::from_static(b"x"))
        .server_side_encryption(ServerSideEncryption::AwsKmsDsse)
        .ssekms_key_id(&arn)
        .send()
        .await
        .unwrap();
    let h =
        e.s3.head_object()
            .bucket(&e.bucket)
            .key("d")
            .send()
            .await
            .unwrap();
    if h.ssekms_key_id() != Some(arn.as_str()) {
        return Err(format!("DSSE object reports key {:?}", h.ssekms_key_id()));
    }
    Ok(())
}

#[tokio::test]
async fn versioning_parses_and_dsse_reports_its_key() {
    versioning_and_dsse(&overlay().endpoint).await.unwrap();
    assert!(versioning_and_dsse(&plain().endpoint).await.is_err());
}

/// Multipart uploads complete on the overlay (a smoke test of the pass-through path).
#[tokio::test]
async fn multipart_upload_passes_through() {
    let e = env(&overlay().endpoint, "mpu").await;
    let (_, arn) = e.key("k").await;
    let up =
        e.s3.create_multipart_upload()
            .bucket(&e.bucket)
            .key("big")
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(format!("alias/{}k", e.prefix))
            .send()
            .await
            .unwrap();
    let part =
        e.s3.upload_part()
            .bucket(&e.bucket)
            .key("big")
            .upload_id(up.upload_id().unwrap())
            .part_number(1)
            .body(ByteStream::from(vec![7u8; 1024]))
            .send()
            .await
            .unwrap();
    e.s3.complete_multipart_upload()
        .bucket(&e.bucket)
        .key("big")
        .upload_id(up.upload_id().unwrap())
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag(part.e_tag().unwrap())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let h =
        e.s3.head_object()
            .bucket(&e.bucket)
            .key("big")
            .send()
            .await
            .unwrap();
    assert_eq!(h.ssekms_key_id(), Some(arn.as_str()));
}

/// SageMaker UpdateEndpoint, checked with boto3 (rekey does not link the SageMaker SDK yet):
/// tests/overlay_sagemaker.py exits 0 when the behaviour holds.
fn sagemaker_update_endpoint(endpoint: &str) -> bool {
    std::process::Command::new(harness::ensure_venv())
        .arg(harness::repo_root().join("tests/overlay_sagemaker.py"))
        .arg(endpoint)
        .status()
        .expect("run tests/overlay_sagemaker.py")
        .success()
}

#[test]
fn sagemaker_update_endpoint_goes_updating_then_in_service() {
    assert!(sagemaker_update_endpoint(&overlay().endpoint));
    assert!(
        !sagemaker_update_endpoint(&plain().endpoint),
        "plain moto lacks UpdateEndpoint"
    );
}

/// One of the endpoint-config checks of tests/overlay_sagemaker_configs.py (exit 0: it holds).
fn sagemaker_config_check(endpoint: &str, check: &str) -> bool {
    std::process::Command::new(harness::ensure_venv())
        .arg(harness::repo_root().join("tests/overlay_sagemaker_configs.py"))
        .args([endpoint, check])
        .status()
        .expect("run tests/overlay_sagemaker_configs.py")
        .success()
}

#[test]
fn sagemaker_endpoint_configs_are_stored_whole() {
    assert!(sagemaker_config_check(&overlay().endpoint, "whole"));
    assert!(
        !sagemaker_config_check(&plain().endpoint, "whole"),
        "plain moto drops fields of an endpoint config"
    );
}

#[test]
fn sagemaker_refuses_a_second_config_with_the_same_name() {
    assert!(sagemaker_config_check(&overlay().endpoint, "duplicate"));
    assert!(
        !sagemaker_config_check(&plain().endpoint, "duplicate"),
        "plain moto overwrites an existing endpoint config"
    );
}

#[test]
fn sagemaker_update_endpoint_retains_the_fleet_and_is_recorded() {
    assert!(sagemaker_config_check(&overlay().endpoint, "retain"));
    assert!(
        !sagemaker_config_check(&plain().endpoint, "retain"),
        "plain moto has no UpdateEndpoint"
    );
}

/// Ok when the destination conditions hold: CopyObject honours If-Match / If-None-Match on
/// the destination, CompleteMultipartUpload honours If-Match (412 PreconditionFailed).
async fn destination_conditions(endpoint: &str) -> Result<(), String> {
    let e = env(endpoint, "dest").await;
    let etag = e.put("a", b"first").await;
    let stale = "\"00000000000000000000000000000000\"";
    let copy = |if_match: Option<&str>, if_none: Option<&str>| {
        e.s3.copy_object()
            .bucket(&e.bucket)
            .key("a")
            .copy_source(format!("{}/a", e.bucket))
            .server_side_encryption(ServerSideEncryption::Aes256)
            .set_if_match(if_match.map(str::to_string))
            .set_if_none_match(if_none.map(str::to_string))
            .send()
    };
    match copy(Some(stale), None).await {
        Err(err) if err.code() == Some("PreconditionFailed") => {}
        other => return Err(format!("CopyObject with a stale If-Match: {other:?}")),
    }
    match copy(None, Some("*")).await {
        Err(err) if err.code() == Some("PreconditionFailed") => {}
        other => {
            return Err(format!(
                "CopyObject If-None-Match * onto an object: {other:?}"
            ))
        }
    }
    copy(Some(&etag), None)
        .await
        .map_err(|err| format!("CopyObject with the right If-Match: {err:?}"))?;
    let up =
        e.s3.create_multipart_upload()
            .bucket(&e.bucket)
            .key("a")
            .send()
            .await
            .unwrap();
    let part =
        e.s3.upload_part()
            .bucket(&e.bucket)
            .key("a")
            .upload_id(up.upload_id().unwrap())
            .part_number(1)
            .body(ByteStream::from(vec![1u8; 64]))
            .send()
            .await
            .unwrap();
    let done =
        e.s3.complete_multipart_upload()
            .bucket(&e.bucket)
            .key("a")
            .upload_id(up.upload_id().unwrap())
            .if_match(stale)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(
                        CompletedPart::builder()
                            .part_number(1)
                            .e_tag(part.e_tag().unwrap())
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await;
    match done {
        Err(err) if err.code() == Some("PreconditionFailed") => Ok(()),
        other => Err(format!(
            "CompleteMultipartUpload with a stale If-Match: {other:?}"
        )),
    }
}

#[tokio::test]
async fn copy_and_complete_honour_destination_conditions() {
    destination_conditions(&overlay().endpoint).await.unwrap();
    assert!(
        destination_conditions(&plain().endpoint).await.is_err(),
        "plain moto ignores destination conditions on CopyObject and Complete"
    );
}

/// Ok when a bucket rule's BlockedEncryptionTypes is reported and enforced, a new bucket's
/// Object Ownership is BucketOwnerEnforced, and ListParts parses.
async fn bucket_settings_as_aws(endpoint: &str) -> Result<(), String> {
    use aws_sdk_s3::types::{
        BlockedEncryptionTypes, EncryptionType, ServerSideEncryptionByDefault,
        ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    let e = env(endpoint, "rule").await;
    e.s3.put_bucket_encryption()
        .bucket(&e.bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::Aes256)
                                .build()
                                .unwrap(),
                        )
                        .blocked_encryption_types(
                            BlockedEncryptionTypes::builder()
                                .encryption_type(EncryptionType::SseC)
                                .build(),
                        )
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let r =
        e.s3.get_bucket_encryption()
            .bucket(&e.bucket)
            .send()
            .await
            .unwrap();
    let blocked = r.server_side_encryption_configuration().unwrap().rules()[0]
        .blocked_encryption_types()
        .map(|b| b.encryption_type().to_vec())
        .unwrap_or_default();
    if blocked != vec![EncryptionType::SseC] {
        return Err(format!("blocked types reported: {blocked:?}"));
    }
    let sse_c =
        e.s3.put_object()
            .bucket(&e.bucket)
            .key("c")
            .body(ByteStream::from_static(b"c"))
            .sse_customer_algorithm("AES256")
            .sse_customer_key("MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=")
            .sse_customer_key_md5("A5MCd7iQbjJb3WXiuxKtYA==")
            .send()
            .await;
    match sse_c {
        Err(err) if err.code() == Some("AccessDenied") => {}
        other => return Err(format!("SSE-C into a bucket that blocks it: {other:?}")),
    }
    let own =
        e.s3.get_bucket_ownership_controls()
            .bucket(&e.bucket)
            .send()
            .await
            .map_err(|err| format!("ownership controls of a new bucket: {err:?}"))?;
    let rule = own.ownership_controls().unwrap().rules()[0]
        .object_ownership()
        .clone();
    if rule.as_str() != "BucketOwnerEnforced" {
        return Err(format!("a new bucket's ownership: {rule:?}"));
    }
    let up =
        e.s3.create_multipart_upload()
            .bucket(&e.bucket)
            .key("m")
            .send()
            .await
            .unwrap();
    e.s3.list_parts()
        .bucket(&e.bucket)
        .key("m")
        .upload_id(up.upload_id().unwrap())
        .send()
        .await
        .map_err(|err| format!("ListParts: {err:?}"))?;
    Ok(())
}

#[tokio::test]
async fn bucket_rules_ownership_and_list_parts_as_aws() {
    bucket_settings_as_aws(&overlay().endpoint).await.unwrap();
    assert!(bucket_settings_as_aws(&plain().endpoint).await.is_err());
}

/// GetBucketNotificationConfiguration reads through the SDK (moto's root element is not AWS's
/// for a bucket without one) and reports EventBridge when it is on (moto forgets it).
async fn empty_notifications_as_aws(endpoint: &str) -> Result<(), String> {
    let e = env(endpoint, "notif").await;
    e.s3.get_bucket_notification_configuration()
        .bucket(&e.bucket)
        .send()
        .await
        .map_err(|err| format!("{err:?}"))?;
    // EventBridge on: reported back.
    e.s3.put_bucket_notification_configuration()
        .bucket(&e.bucket)
        .notification_configuration(
            aws_sdk_s3::types::NotificationConfiguration::builder()
                .event_bridge_configuration(
                    aws_sdk_s3::types::EventBridgeConfiguration::builder().build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|err| format!("{err:?}"))?;
    let got =
        e.s3.get_bucket_notification_configuration()
            .bucket(&e.bucket)
            .send()
            .await
            .map_err(|err| format!("{err:?}"))?;
    if got.event_bridge_configuration().is_none() {
        return Err("EventBridgeConfiguration not reported".into());
    }
    Ok(())
}

/// GetBucketReplication reports the rule's SourceSelectionCriteria (moto drops it).
async fn replication_as_put(endpoint: &str) -> Result<(), String> {
    use aws_sdk_s3::types::{
        BucketVersioningStatus, Destination, ReplicationConfiguration, ReplicationRule,
        ReplicationRuleFilter, ReplicationRuleStatus, SourceSelectionCriteria,
        SseKmsEncryptedObjects, SseKmsEncryptedObjectsStatus, VersioningConfiguration,
    };
    let e = env(endpoint, "repl").await;
    let dest = format!("{}-dr", e.bucket);
    e.s3.create_bucket()
        .bucket(&dest)
        .send()
        .await
        .map_err(|x| format!("{x:?}"))?;
    for b in [&e.bucket, &dest] {
        e.s3.put_bucket_versioning()
            .bucket(b)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(|x| format!("{x:?}"))?;
    }
    let rule = ReplicationRule::builder()
        .id("r")
        .priority(1)
        .status(ReplicationRuleStatus::Enabled)
        .filter(ReplicationRuleFilter::builder().prefix("").build())
        .source_selection_criteria(
            SourceSelectionCriteria::builder()
                .sse_kms_encrypted_objects(
                    SseKmsEncryptedObjects::builder()
                        .status(SseKmsEncryptedObjectsStatus::Enabled)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .destination(
            Destination::builder()
                .bucket(format!("arn:aws:s3:::{dest}"))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    e.s3.put_bucket_replication()
        .bucket(&e.bucket)
        .replication_configuration(
            ReplicationConfiguration::builder()
                .role("arn:aws:iam::123456789012:role/r")
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .map_err(|x| format!("{x:?}"))?;
    let got =
        e.s3.get_bucket_replication()
            .bucket(&e.bucket)
            .send()
            .await
            .map_err(|x| format!("{x:?}"))?;
    let kept = got
        .replication_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.source_selection_criteria())
        .and_then(|c| c.sse_kms_encrypted_objects())
        .is_some();
    if kept {
        Ok(())
    } else {
        Err("SourceSelectionCriteria dropped".into())
    }
}

#[tokio::test]
async fn replication_rules_read_back_as_put() {
    replication_as_put(&overlay().endpoint).await.unwrap();
    assert!(replication_as_put(&plain().endpoint).await.is_err());
}

#[tokio::test]
async fn empty_notification_configuration_reads_as_aws() {
    empty_notifications_as_aws(&overlay().endpoint)
        .await
        .unwrap();
    assert!(empty_notifications_as_aws(&plain().endpoint).await.is_err());
}

/// The test hooks: counted per access key; a 5xx served after the request took effect; a
/// pause the test releases.
#[tokio::test]
async fn hooks_count_fail_and_pause_per_access_key() {
    use crate::interleave::{arm, hook_state, release};
    let endpoint = overlay().endpoint.clone();
    let e = env(&endpoint, "hook").await;
    let scope = "hookscope1";
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            scope, "testing", None, None, "tests",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let hooked = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    arm(
        &endpoint,
        scope,
        serde_json::json!({ "action": "fail", "at": 2, "when": "after" }),
    );
    e.put("x", b"by the test's own key: not counted").await;
    let put = |body: &'static [u8]| {
        hooked
            .put_object()
            .bucket(&e.bucket)
            .key("x")
            .body(ByteStream::from_static(body))
            .send()
    };
    put(b"one").await.unwrap();
    let second = put(b"two").await;
    assert!(second.is_err(), "the second request answered 500");
    // ... after it took effect.
    let body =
        e.s3.get_object()
            .bucket(&e.bucket)
            .key("x")
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
    assert_eq!(&body[..], b"two");
    let st = hook_state(&endpoint, scope);
    assert_eq!(st["count"], 2);
    assert_eq!(st["fired"], true);
    // A pause holds the request until released.
    arm(
        &endpoint,
        scope,
        serde_json::json!({ "action": "pause", "at": 1, "when": "before" }),
    );
    let h = tokio::spawn({
        let hooked = hooked.clone();
        let bucket = e.bucket.clone();
        async move {
            hooked
                .put_object()
                .bucket(bucket)
                .key("y")
                .body(ByteStream::from_static(b"y"))
                .send()
                .await
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while hook_state(&endpoint, scope)["paused"].is_null() {
        assert!(std::time::Instant::now() < deadline, "paused");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!h.is_finished());
    release(&endpoint, scope, false);
    h.await.unwrap().unwrap();
    arm(&endpoint, scope, serde_json::json!({ "action": "off" }));
}

/// Seed `tests/seed_origins.py bare` for a new bucket: (distribution ARN, access point name).
fn bare_origins(endpoint: &str, tag: &str) -> (String, String, String) {
    let p = unique(tag);
    let bucket = format!("{p}origin");
    let out = std::process::Command::new(harness::ensure_venv())
        .arg(harness::repo_root().join("tests/seed_origins.py"))
        .args([endpoint, &p, "bare", &bucket])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        bucket,
        v["distribution"].as_str().unwrap().to_string(),
        v["access_point"].as_str().unwrap().to_string(),
    )
}

/// Behaviour 16: ListDistributions reports how each origin signs (OAC id, OAI).
async fn origin_access_reported(endpoint: &str) -> Result<(), String> {
    let (_, arn, _) = bare_origins(endpoint, "cfo");
    let aws = harness::clients(endpoint).await;
    let list = aws
        .cloudfront
        .list_distributions()
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let d = list
        .distribution_list()
        .and_then(|l| l.items().iter().find(|d| d.arn() == arn))
        .ok_or("distribution not listed")?;
    let origins = d.origins().map(|o| o.items()).unwrap_or_default();
    let oac = origins
        .iter()
        .find(|o| o.id() == "signed")
        .and_then(|o| o.origin_access_control_id())
        .unwrap_or_default();
    let oai = origins
        .iter()
        .find(|o| o.id() == "identity")
        .and_then(|o| o.s3_origin_config())
        .map(|c| c.origin_access_identity())
        .unwrap_or_default();
    if oac.is_empty() || oai != "origin-access-identity/cloudfront/E2QWRUHEXAMPLE" {
        return Err(format!("oac {oac:?}, oai {oai:?}"));
    }
    Ok(())
}

#[tokio::test]
async fn cloudfront_origins_report_their_access() {
    origin_access_reported(&overlay().endpoint).await.unwrap();
    assert!(origin_access_reported(&plain().endpoint).await.is_err());
}

/// Behaviour 17: the access points of a bucket and their policies read through the SDK.
async fn access_points_read(endpoint: &str) -> Result<(), String> {
    let (bucket, _, name) = bare_origins(endpoint, "apr");
    let aws = harness::clients(endpoint).await;
    let list = aws
        .s3control
        .list_access_points()
        .account_id("123456789012")
        .bucket(&bucket)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let names: Vec<&str> = list.access_point_list().iter().map(|a| a.name()).collect();
    if names != [name.as_str()] {
        return Err(format!("{names:?}"));
    }
    let policy = aws
        .s3control
        .get_access_point_policy()
        .account_id("123456789012")
        .name(&name)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    if !policy.policy().unwrap_or_default().contains("ap-reader") {
        return Err(format!("{policy:?}"));
    }
    Ok(())
}

#[tokio::test]
async fn access_points_and_their_policies_read_as_aws() {
    access_points_read(&overlay().endpoint).await.unwrap();
    assert!(access_points_read(&plain().endpoint).await.is_err());
}

/// Behaviours 18 and 19: a Current-versions configuration reads back as put, and the trigger
/// delivers a report whose manifest matches its checksum.
async fn inventory_as_put_and_delivered(endpoint: &str) -> Result<(), String> {
    let p = unique("invc");
    let bucket = format!("{p}src");
    let dest = format!("{p}dest");
    let aws = harness::clients(endpoint).await;
    for b in [&bucket, &dest] {
        aws.s3
            .create_bucket()
            .bucket(b)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
    }
    let out = std::process::Command::new(harness::ensure_venv())
        .arg(harness::repo_root().join("tests/seed_inventory.py"))
        .args([endpoint, &dest, &bucket, "--current"])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    let list = aws
        .s3
        .list_bucket_inventory_configurations()
        .bucket(&bucket)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let c = list
        .inventory_configuration_list()
        .first()
        .ok_or("no configuration")?;
    if c.included_object_versions().as_str() != "Current" || c.optional_fields().len() != 11 {
        return Err(format!("{c:?}"));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let url = v[&bucket].as_str().ok_or("no manifest")?;
    let (_, key) = url
        .strip_prefix("s3://")
        .and_then(|u| u.split_once('/'))
        .ok_or("bad url")?;
    let read = |k: String| {
        let s3 = aws.s3.clone();
        let dest = dest.clone();
        async move {
            s3.get_object()
                .bucket(dest)
                .key(k)
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?
                .body
                .collect()
                .await
                .map(|b| b.into_bytes().to_vec())
                .map_err(|e| e.to_string())
        }
    };
    let json = read(key.to_string()).await?;
    let sum = read(key.replace("manifest.json", "manifest.checksum")).await?;
    rekey::s3report::parse_manifest(url, &json, &String::from_utf8_lossy(&sum))
        .map_err(|e| e.message)?;
    Ok(())
}

#[tokio::test]
async fn inventory_configurations_read_as_put_and_reports_are_delivered() {
    inventory_as_put_and_delivered(&overlay().endpoint)
        .await
        .unwrap();
    assert!(inventory_as_put_and_delivered(&plain().endpoint)
        .await
        .is_err());
}

/// Behaviour 20: S3 Batch Operations jobs run over the emulator's objects. Returns the job
/// ids it created, or why it could not.
async fn batch_jobs_run(endpoint: &str) -> Result<(), String> {
    use aws_sdk_s3control::types::{
        JobManifest, JobManifestFieldName, JobManifestFormat, JobManifestLocation, JobManifestSpec,
        JobOperation, JobReport, JobReportFormat, JobReportScope, JobStatus, ObjectEncryption,
        RequestedJobStatus, S3CopyObjectOperation, S3UpdateObjectEncryptionOperation,
        S3UpdateObjectEncryptionSsekms,
    };
    const ACCOUNT: &str = "123456789012";
    let e = env(endpoint, "batch").await;
    let (_, key_arn) = e.key("batch").await;
    let control = harness::clients(endpoint).await.s3control;
    for k in ["a b.bin", "données/c.bin", "d.bin"] {
        e.put(k, b"bytes").await;
    }
    // Keys are URL-encoded in a manifest; one names an object that does not exist.
    let lines = ["a+b.bin", "donn%C3%A9es/c.bin", "d.bin", "missing.bin"]
        .iter()
        .map(|k| format!("{},{k}\n", e.bucket))
        .collect::<String>();
    let etag = e.put("jobs/manifest.csv", lines.as_bytes()).await;
    let manifest = |etag: &str| {
        JobManifest::builder()
            .spec(
                JobManifestSpec::builder()
                    .format(JobManifestFormat::S3BatchOperationsCsv20180820)
                    .fields(JobManifestFieldName::Bucket)
                    .fields(JobManifestFieldName::Key)
                    .build()
                    .unwrap(),
            )
            .location(
                JobManifestLocation::builder()
                    .object_arn(format!("arn:aws:s3:::{}/jobs/manifest.csv", e.bucket))
                    .e_tag(etag.trim_matches('"'))
                    .build()
                    .unwrap(),
            )
            .build()
    };
    let report = JobReport::builder()
        .bucket(format!("arn:aws:s3:::{}", e.bucket))
        .format(JobReportFormat::ReportCsv20180820)
        .enabled(true)
        .prefix("reports")
        .report_scope(JobReportScope::AllTasks)
        .build();
    let rekey = JobOperation::builder()
        .s3_update_object_encryption(
            S3UpdateObjectEncryptionOperation::builder()
                .object_encryption(
                    ObjectEncryption::builder()
                        .ssekms(
                            S3UpdateObjectEncryptionSsekms::builder()
                                .kms_key_arn(&key_arn)
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .build(),
        )
        .build();
    let create = |token: &str, confirm: bool, op: JobOperation, etag: &str| {
        control
            .create_job()
            .account_id(ACCOUNT)
            .client_request_token(token)
            .operation(op)
            .manifest(manifest(etag))
            .report(report.clone())
            .priority(10)
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/batch"))
            .confirmation_required(confirm)
            .description(format!("rekey {token}"))
            .send()
    };
    let token = format!("{}-1", e.prefix);
    let id = create(&token, false, rekey.clone(), &etag)
        .await
        .map_err(|err| format!("{err:?}"))?
        .job_id()
        .unwrap_or_default()
        .to_string();
    // The same token is the same job.
    let again = create(&token, false, rekey.clone(), &etag)
        .await
        .map_err(|err| format!("{err:?}"))?;
    if again.job_id() != Some(id.as_str()) {
        return Err(format!("a second job for one token: {again:?}"));
    }
    let wait = |id: String| {
        let control = control.clone();
        async move {
            for _ in 0..400 {
                let j = control
                    .describe_job()
                    .account_id(ACCOUNT)
                    .job_id(&id)
                    .send()
                    .await
                    .map_err(|err| format!("{err:?}"))?;
                let job = j.job().cloned().ok_or("no job")?;
                if matches!(
                    job.status(),
                    Some(JobStatus::Complete | JobStatus::Failed | JobStatus::Cancelled)
                ) {
                    return Ok::<_, String>(job);
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            Err("the job never ended".to_string())
        }
    };
    let job = wait(id.clone()).await?;
    let p = job.progress_summary().ok_or("no progress")?;
    if job.status() != Some(&JobStatus::Complete)
        || (
            p.total_number_of_tasks(),
            p.number_of_tasks_succeeded(),
            p.number_of_tasks_failed(),
        ) != (Some(4), Some(3), Some(1))
    {
        return Err(format!("{job:?}"));
    }
    for k in ["a b.bin", "données/c.bin", "d.bin"] {
        let h =
            e.s3.head_object()
                .bucket(&e.bucket)
                .key(k)
                .send()
                .await
                .unwrap();
        if h.ssekms_key_id() != Some(key_arn.as_str()) {
            return Err(format!("{k} not re-keyed: {h:?}"));
        }
    }
    // The completion report: a results file per task status, listed in its manifest.
    let read = |key: String| {
        let s3 = e.s3.clone();
        let bucket = e.bucket.clone();
        async move {
            let o = s3.get_object().bucket(bucket).key(&key).send().await;
            let o = o.map_err(|err| format!("{key}: {err:?}"))?;
            Ok::<_, String>(String::from_utf8(o.body.collect().await.unwrap().to_vec()).unwrap())
        }
    };
    let m: serde_json::Value =
        serde_json::from_str(&read(format!("reports/job-{id}/manifest.json")).await?)
            .map_err(|err| err.to_string())?;
    if m["Format"] != "Report_CSV_20180820"
        || m["ReportSchema"]
            != "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"
    {
        return Err(format!("{m}"));
    }
    let failed = m["Results"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["TaskExecutionStatus"] == "failed"))
        .ok_or(format!("no failed results: {m}"))?;
    let rows = read(failed["Key"].as_str().unwrap_or_default().to_string()).await?;
    if !rows.contains("missing.bin,,failed,NoSuchKey,404") {
        return Err(rows);
    }
    let listed = control
        .list_jobs()
        .account_id(ACCOUNT)
        .send()
        .await
        .map_err(|err| format!("{err:?}"))?;
    if !listed.jobs().iter().any(|j| {
        j.job_id() == Some(id.as_str()) && j.description() == Some(&format!("rekey {token}"))
    }) {
        return Err(format!("not listed: {listed:?}"));
    }
    // Confirmation: Suspended until made Ready; a cancelled job ends Cancelled.
    let copy_since = |since: aws_smithy_types::DateTime| {
        JobOperation::builder()
            .s3_put_object_copy(
                S3CopyObjectOperation::builder()
                    .target_resource(format!("arn:aws:s3:::{}", e.bucket))
                    .sse_aws_kms_key_id(&key_arn)
                    .un_modified_since_constraint(since)
                    .build(),
            )
            .build()
    };
    let past = aws_smithy_types::DateTime::from_secs(1_000_000_000);
    let held = create(&format!("{}-2", e.prefix), true, copy_since(past), &etag)
        .await
        .map_err(|err| format!("{err:?}"))?
        .job_id()
        .unwrap_or_default()
        .to_string();
    let mut suspended = false;
    for _ in 0..100 {
        let j = control
            .describe_job()
            .account_id(ACCOUNT)
            .job_id(&held)
            .send()
            .await
            .map_err(|err| format!("{err:?}"))?;
        if j.job().and_then(|j| j.status()) == Some(&JobStatus::Suspended) {
            suspended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    if !suspended {
        return Err("a job that needs confirmation was not Suspended".into());
    }
    control
        .update_job_status()
        .account_id(ACCOUNT)
        .job_id(&held)
        .requested_job_status(RequestedJobStatus::Ready)
        .send()
        .await
        .map_err(|err| format!("{err:?}"))?;
    let job = wait(held).await?;
    // Every object was modified after the constraint: every copy fails with 412.
    let p = job.progress_summary().ok_or("no progress")?;
    if job.status() != Some(&JobStatus::Failed) || p.number_of_tasks_failed() != Some(4) {
        return Err(format!("UnModifiedSinceConstraint not honoured: {job:?}"));
    }
    let cancelled = create(&format!("{}-3", e.prefix), true, rekey, &etag)
        .await
        .map_err(|err| format!("{err:?}"))?
        .job_id()
        .unwrap_or_default()
        .to_string();
    control
        .update_job_status()
        .account_id(ACCOUNT)
        .job_id(&cancelled)
        .requested_job_status(RequestedJobStatus::Cancelled)
        .send()
        .await
        .map_err(|err| format!("{err:?}"))?;
    if wait(cancelled).await?.status() != Some(&JobStatus::Cancelled) {
        return Err("not cancelled".into());
    }
    // A manifest whose ETag is not the one given fails the job.
    let stale = create(&format!("{}-4", e.prefix), false, copy_since(past), "0000")
        .await
        .map_err(|err| format!("{err:?}"))?
        .job_id()
        .unwrap_or_default()
        .to_string();
    let job = wait(stale).await?;
    if job.status() != Some(&JobStatus::Failed) || job.failure_reasons().is_empty() {
        return Err(format!("a manifest ETag mismatch was run: {job:?}"));
    }
    Ok(())
}

#[tokio::test]
async fn batch_operations_jobs_run_over_the_objects() {
    batch_jobs_run(&overlay().endpoint).await.unwrap();
    assert!(batch_jobs_run(&plain().endpoint).await.is_err());
}
