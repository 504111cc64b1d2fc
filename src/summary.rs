//! Renders a plan's summary as text a reviewer reads at a glance. Pure: plan in, text out.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::plan::{PlanFile, Totals};

/// Human-readable bytes (binary units).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Human-readable duration; work that rounds to zero shows as `<1s`.
pub fn duration(secs: f64) -> String {
    if secs <= 0.0 {
        return "0s".into();
    }
    if secs < 1.0 {
        return "<1s".into();
    }
    let s = secs.ceil() as u64;
    match s {
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

pub fn usd(x: f64) -> String {
    if x < 0.01 {
        format!("${x:.6}")
    } else {
        format!("${x:.2}")
    }
}

fn requests_line(r: &BTreeMap<String, u64>) -> String {
    // S3 calls first, then KMS: the order a reviewer thinks in.
    let mut parts: Vec<String> = r
        .iter()
        .filter(|(k, _)| k.starts_with("s3:"))
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    parts.extend(
        r.iter()
            .filter(|(k, _)| !k.starts_with("s3:"))
            .map(|(k, n)| format!("{k} {n}")),
    );
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// `1 object`, `2 objects`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn totals_table(out: &mut String, t: &Totals) {
    let _ = writeln!(
        out,
        "  {:<12} {:>7} {:>9} {:>11} {:>12} {:>9}",
        "key", "buckets", "objects", "bytes", "est. cost", "est. time"
    );
    for (k, kt) in &t.by_key {
        let _ = writeln!(
            out,
            "  {:<12} {:>7} {:>9} {:>11} {:>12} {:>9}",
            k,
            kt.buckets,
            kt.objects,
            bytes(kt.bytes),
            usd(kt.estimated_cost_usd),
            duration(kt.estimated_seconds)
        );
        let _ = writeln!(out, "    requests: {}", requests_line(&kt.requests));
    }
}

/// The plan summary, as `rekey plan` and `rekey show` print it.
pub fn render(plan: &PlanFile) -> String {
    let mut out = String::new();
    let s = &plan.settings;
    let _ = writeln!(
        out,
        "Plan for campaign {} (plan format {}, rekey {})",
        plan.campaign, plan.format_version, plan.rekey_version
    );
    let _ = writeln!(
        out,
        "  region {}, engine {}, versions {}, concurrency {}, {} requests/s",
        s.region,
        serde_yaml::to_string(&s.engine).unwrap_or_default().trim(),
        serde_yaml::to_string(&s.versions)
            .unwrap_or_default()
            .trim(),
        s.concurrency,
        s.requests_per_second
    );
    let _ = writeln!(
        out,
        "  manifest {}: {}",
        plan.manifest.file,
        plural(plan.manifest.entries, "entry", "entries")
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Team keys (pinned)");
    for (name, k) in &plan.keys {
        if k.alias == k.arn {
            // Cloud KMS keys are named in full: the name is the pin.
            let _ = writeln!(out, "  {:<12} {}", name, k.arn);
        } else {
            let _ = writeln!(out, "  {:<12} {:<24} {}", name, k.alias, k.arn);
        }
    }
    let n = plan.stages.len();
    for (i, st) in plan.stages.iter().enumerate() {
        let t = &st.summary;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Stage {}/{} {} (checkpoint {}): {}, {}, {}; est. {}, {}",
            i + 1,
            n,
            st.name,
            st.checkpoint,
            plural(t.buckets, "bucket default", "bucket defaults"),
            plural(t.objects, "object", "objects"),
            bytes(t.bytes),
            usd(t.estimated_cost_usd),
            duration(t.estimated_seconds)
        );
        if t.by_key.is_empty() && st.sagemaker.is_empty() {
            let _ = writeln!(out, "  nothing to change");
        } else if !t.by_key.is_empty() {
            totals_table(&mut out, t);
        }
        for sm in &st.sagemaker {
            let line = match sm.action.as_str() {
                "rekey-endpoint" => format!(
                    "  endpoint {}: config {} -> {} with {} ({} artifacts in this or an earlier stage)",
                    sm.name,
                    sm.from_config.as_deref().unwrap_or("?"),
                    sm.new_config.as_deref().unwrap_or("?"),
                    sm.key,
                    sm.artifacts.len()
                ),
                action => format!(
                    "  {:<8} {} {}: {}",
                    action,
                    sm.kind,
                    sm.name,
                    sm.reason.as_deref().unwrap_or("")
                ),
            };
            let _ = writeln!(out, "{line}");
        }
        for b in &st.buckets {
            if let Some(r) = &b.report {
                let _ = writeln!(
                    out,
                    "  source   {}: inventory report {} of {} ({} for SSE-KMS and DSSE-KMS keys); objects written since are not planned",
                    b.url(),
                    r.manifest,
                    r.created,
                    plural(r.heads, "HEAD", "HEADs")
                );
            }
            for j in &b.jobs {
                let _ = writeln!(
                    out,
                    "  job {:<4} {}: {}, {}, {} to {} ({}){}",
                    j.job,
                    b.url(),
                    plural(j.objects, "object", "objects"),
                    bytes(j.bytes),
                    j.engine_name(),
                    j.kms_key_arn,
                    j.storage_class,
                    if j.unguarded {
                        format!(
                            "; UNGUARDED: {}, freeze the bucket's writers for the window",
                            j.unguarded_why()
                        )
                    } else {
                        String::new()
                    }
                );
            }
            for f in &b.flagged {
                let _ = writeln!(
                    out,
                    "  flagged  {}: {}, {}: {}",
                    b.url(),
                    plural(f.objects, "object", "objects"),
                    bytes(f.bytes),
                    f.reason
                );
            }
            for bl in &b.blocked {
                let _ = writeln!(
                    out,
                    "  blocked  {}: {}, {}: {}",
                    b.url(),
                    plural(bl.objects, "object", "objects"),
                    bytes(bl.bytes),
                    bl.reason
                );
            }
        }
        if t.skipped_objects > 0 {
            let _ = writeln!(
                out,
                "  skipped  {} already on the team key",
                plural(t.skipped_objects, "object", "objects")
            );
        }
        if t.noncurrent_bytes_added > 0 {
            let _ = writeln!(
                out,
                "  note     versioned buckets keep each old copy as a noncurrent version: +{} stored until lifecycle rules expire them",
                bytes(t.noncurrent_bytes_added)
            );
        }
    }
    if !plan.unmatched.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Not planned (unmatched)");
        for u in &plan.unmatched {
            let what = match (u.bucket_itself, u.objects) {
                (true, 0) => "the bucket default".to_string(),
                (true, n) => format!("the bucket default and {}", plural(n, "object", "objects")),
                (false, n) => plural(n, "object", "objects"),
            };
            let _ = writeln!(
                out,
                "  {}: {} ({}): {}",
                if u.bucket.starts_with("sagemaker:") {
                    u.bucket.clone()
                } else {
                    format!("s3://{}", u.bucket)
                },
                what,
                bytes(u.bytes),
                u.reason
            );
        }
    }
    let t = &plan.summary;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Total: {}, {}, {}; {} blocked, {} skipped; est. {}, {}",
        plural(t.buckets, "bucket default", "bucket defaults"),
        plural(t.objects, "object", "objects"),
        bytes(t.bytes),
        t.blocked_objects,
        t.skipped_objects,
        usd(t.estimated_cost_usd),
        duration(t.estimated_seconds)
    );
    let _ = writeln!(out, "  requests: {}", requests_line(&t.requests));
    let a = &plan.assumptions;
    let aws = plan.stages.iter().any(|st| {
        !st.sagemaker.is_empty()
            || st
                .buckets
                .iter()
                .any(|b| b.provider == crate::model::Provider::Aws)
    });
    if aws {
        let _ = writeln!(
            out,
            "Estimates assume {}: S3 ${}/1k PUT-class, ${}/1k GET-class, KMS ${}/10k (an upper bound: Bucket Keys cut KMS calls); {} s per request, {} MiB/s per copy.",
            a.source, a.s3_put_per_1000, a.s3_get_per_1000, a.kms_per_10000, a.request_latency_s, a.copy_mib_per_s
        );
    } else {
        // The same figures, under the names Google prices them by (Cloud Storage Class A
        // operations and Cloud KMS software-key operations are listed at these prices too).
        let _ = writeln!(
            out,
            "Estimates assume Google Cloud list prices: Cloud Storage ${}/1k Class A operations (rewrite, bucket patch), Cloud KMS ${}/10k cryptographic operations; {} s per request, {} MiB/s per rewrite.",
            a.s3_put_per_1000, a.kms_per_10000, a.request_latency_s, a.copy_mib_per_s
        );
    }
    let _ = writeln!(out, "{}", verdict(plan));
    out
}

/// The plan in one line: what will change, what is blocked, what needs a person.
pub fn verdict(plan: &PlanFile) -> String {
    let t = &plan.summary;
    let mut change = vec![
        plural(t.buckets, "bucket default", "bucket defaults"),
        format!(
            "{} ({})",
            plural(t.objects, "object", "objects"),
            bytes(t.bytes)
        ),
    ];
    if t.endpoints > 0 {
        change.push(plural(t.endpoints, "endpoint", "endpoints"));
    }
    let manual = plan
        .stages
        .iter()
        .flat_map(|st| &st.sagemaker)
        .filter(|s| s.action == "manual")
        .count() as u64;
    let hazards = plan
        .stages
        .iter()
        .flat_map(|st| &st.buckets)
        .map(|b| {
            b.hazards
                .iter()
                .filter(|h| !h.contains("(accepted"))
                .count() as u64
        })
        .sum::<u64>();
    let unguarded = plan
        .stages
        .iter()
        .flat_map(|st| &st.buckets)
        .flat_map(|b| &b.jobs)
        .filter(|j| j.unguarded)
        .count() as u64;
    let mut person = Vec::new();
    if manual > 0 {
        person.push(plural(
            manual,
            "notebook instance to move by hand",
            "notebook instances to move by hand",
        ));
    }
    if !plan.unmatched.is_empty() {
        person.push(plural(
            plan.unmatched.len() as u64,
            "unmatched bucket",
            "unmatched buckets",
        ));
    }
    if hazards > 0 {
        person.push(plural(
            hazards,
            "hazard to fix or accept",
            "hazards to fix or accept",
        ));
    }
    if unguarded > 0 {
        person.push(plural(
            unguarded,
            "unguarded batch job (freeze its writers)",
            "unguarded batch jobs (freeze their writers)",
        ));
    }
    format!(
        "Verdict: changes {}; {} blocked; {}.",
        change.join(", "),
        plural(t.blocked_objects, "object", "objects"),
        if person.is_empty() {
            "nothing needs a person".to_string()
        } else {
            format!("needs a person: {}", person.join(", "))
        }
    )
}
