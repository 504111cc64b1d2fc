//! The price and speed assumptions behind a plan's estimates, stated once.
//!
//! Prices are AWS list prices for us-east-1 (S3 Standard request tiers from the Amazon S3
//! pricing page, KMS from the AWS KMS pricing page), as published in 2025. They are written
//! into every plan so that a reviewer sees what an estimate rests on. Other regions and
//! negotiated rates differ: treat the figures as an order of magnitude.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Assumptions {
    pub source: String,
    /// USD per 1,000 PUT, COPY, POST and LIST requests (and UpdateObjectEncryption, assumed
    /// to be billed like them).
    pub s3_put_per_1000: f64,
    /// USD per 1,000 GET and HEAD requests.
    pub s3_get_per_1000: f64,
    /// USD per 10,000 KMS requests.
    pub kms_per_10000: f64,
    /// USD per GB retrieved when copying out of STANDARD_IA / ONEZONE_IA.
    pub ia_retrieval_per_gb: f64,
    /// USD per GB retrieved when copying out of GLACIER_IR.
    pub glacier_ir_retrieval_per_gb: f64,
    /// Mean latency of one request, seconds; with the concurrency it bounds the rate.
    pub request_latency_s: f64,
    /// Server-side copy throughput of one in-flight request, MiB/s.
    pub copy_mib_per_s: f64,
    /// Seconds for a SageMaker endpoint to go from Updating back to InService.
    #[serde(default = "default_endpoint_update_s")]
    pub endpoint_update_s: f64,
}

fn default_endpoint_update_s() -> f64 {
    600.0
}

impl Default for Assumptions {
    fn default() -> Self {
        Assumptions {
            source: "AWS list prices, us-east-1, S3 Standard request tiers and AWS KMS (2025)"
                .into(),
            s3_put_per_1000: 0.005,
            s3_get_per_1000: 0.0004,
            kms_per_10000: 0.03,
            ia_retrieval_per_gb: 0.01,
            glacier_ir_retrieval_per_gb: 0.03,
            request_latency_s: 0.1,
            copy_mib_per_s: 50.0,
            endpoint_update_s: default_endpoint_update_s(),
        }
    }
}

/// The price class of a request kind such as `s3:CopyObject`.
pub fn price_of(a: &Assumptions, request: &str) -> f64 {
    if request.starts_with("gcs:BatchOperations") {
        // Storage batch operations come with a Storage Intelligence subscription, priced on
        // its own (not per request): counted, not priced here.
        return 0.0;
    }
    if request.starts_with("gcs:") {
        // Class A operations (rewrite, bucket patch): USD 0.005 per 1,000, like S3 PUTs.
        return a.s3_put_per_1000 / 1000.0;
    }
    if request.starts_with("kms:") {
        return a.kms_per_10000 / 10_000.0;
    }
    match request {
        // S3 Batch Operations (Amazon S3 pricing page, "Management & Insights"): USD 0.25
        // per job and USD 1.00 per million objects processed, on top of each task's own
        // request (counted as the request it makes).
        "s3:BatchOperationsJob" => 0.25,
        "s3:BatchOperationsObject" => 1.0e-6,
        "s3:HeadObject" | "s3:GetObjectTagging" | "s3:GetBucketEncryption" => {
            a.s3_get_per_1000 / 1000.0
        }
        _ => a.s3_put_per_1000 / 1000.0,
    }
}

/// Retrieval price per byte of copying out of a storage class.
pub fn retrieval_per_byte(a: &Assumptions, storage_class: &str) -> f64 {
    let gb = 1_000_000_000.0;
    match storage_class {
        "STANDARD_IA" | "ONEZONE_IA" => a.ia_retrieval_per_gb / gb,
        "GLACIER_IR" => a.glacier_ir_retrieval_per_gb / gb,
        // Cloud Storage classes (list prices per GB retrieved).
        "NEARLINE" => 0.01 / gb,
        "COLDLINE" => 0.02 / gb,
        "ARCHIVE" => 0.05 / gb,
        _ => 0.0,
    }
}

/// Estimated seconds for `requests` requests moving `bytes` at the configured limits.
pub fn duration_s(a: &Assumptions, requests: u64, bytes: u64, concurrency: usize, rps: u32) -> f64 {
    let by_rate = requests as f64 / rps.max(1) as f64;
    let by_latency = requests as f64 * a.request_latency_s / concurrency.max(1) as f64;
    let by_bytes = bytes as f64 / (1024.0 * 1024.0 * a.copy_mib_per_s * concurrency.max(1) as f64);
    by_rate.max(by_latency) + by_bytes
}
