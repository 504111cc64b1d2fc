//! Renders an operator runbook for a maintenance window from a plan. Pure: plan in, Markdown out.

use std::fmt::Write;
use std::path::Path;

use crate::plan::{Action, PlanFile};
use crate::summary::{bytes, duration, plural, usd};

fn class_list(from: &std::collections::BTreeMap<crate::model::EncryptionClass, u64>) -> String {
    from.iter()
        .map(|(c, n)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The runbook for `plan` (whose file is `plan_path`, as operators will type it).
pub fn render(plan: &PlanFile, plan_path: &Path) -> String {
    let p = plan_path.display();
    let mut o = String::new();
    let s = &plan.summary;
    let _ = writeln!(o, "# Runbook: campaign `{}`\n", plan.campaign);
    let _ = writeln!(
        o,
        "Plan `{p}` (format {}, made {} by rekey {}), manifest `{}` ({} entries, {}).\n",
        plan.format_version,
        plan.created_at,
        plan.rekey_version,
        plan.manifest.file,
        plan.manifest.entries,
        plan.manifest.sha256
    );
    let _ = writeln!(
        o,
        "In all: {} and {} ({}) move to customer-managed keys in {} stages; {} blocked and {} already on their key. Estimated {} and {} at {} requests/s.\n",
        plural(s.buckets, "bucket default", "bucket defaults"),
        plural(s.objects, "object", "objects"),
        bytes(s.bytes),
        plan.stages.len(),
        plural(s.blocked_objects, "object is", "objects are"),
        s.skipped_objects,
        usd(s.estimated_cost_usd),
        duration(s.estimated_seconds),
        plan.settings.requests_per_second
    );
    let _ = writeln!(o, "## Before the window\n");
    let _ = writeln!(
        o,
        "- [ ] On call for the window: ______ (platform), ______ (security), ______ (ML serving)."
    );
    match &plan.settings.window {
        Some(w) => {
            let days = w
                .days
                .iter()
                .map(|d| {
                    serde_yaml::to_string(d)
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join(", ");
            let utc = crate::window::WindowSpec::from_campaign(w)
                .and_then(|s| s.in_utc())
                .map(|u| format!(" ({u})"))
                .unwrap_or_default();
            let _ = writeln!(o, "- [ ] Window: {days} {}–{} {}{utc}; `apply` stops dispatching when it closes (exit 5) and resumes next time.", w.start, w.end, w.timezone);
        }
        None => {
            let _ = writeln!(o, "- [ ] Window: none in the campaign; pass `--window \"sat 02:00-06:00 UTC\"` to `apply` to bound it.");
        }
    }
    let _ = writeln!(
        o,
        "- [ ] The plan was reviewed and approved: `rekey show {p}`."
    );
    let _ = writeln!(o, "- [ ] The team keys exist, are enabled and are still what their aliases point at (`apply` checks this and refuses a stale plan with exit 4):\n");
    let _ = writeln!(
        o,
        "  | team key | alias | pinned key ARN |\n  |---|---|---|"
    );
    for (name, k) in &plan.keys {
        let _ = writeln!(o, "  | {name} | `{}` | `{}` |", k.alias, k.arn);
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "- [ ] Each key's policy (or a grant) lets every consumer of the data use it: the roles that read these buckets (SageMaker execution roles, training and batch jobs, analysts) need `kms:Decrypt`, and writers `kms:GenerateDataKey`. A consumer without them fails at its next read."
    );
    let _ = writeln!(
        o,
        "- [ ] Nobody disables, or schedules the deletion of, a key objects are on today (the foreign CMKs, `aws/s3`) until the campaign is closed: rollback returns objects to those keys, and refuses to start (exit 4) if one cannot be used."
    );
    let _ = writeln!(
        o,
        "- [ ] Each bucket has a lifecycle rule `AbortIncompleteMultipartUpload` (e.g. 7 days): an upload whose CreateMultipartUpload answer was lost in a crash is empty and rekey cannot tell it from another writer's, so it leaves it."
    );
    let unversioned_updates = plan.stages.iter().any(|st| {
        st.buckets.iter().any(|b| {
            b.actions.iter().any(|a| {
                matches!(a, Action::ReencryptObjects { engine, .. }
                    if *engine != crate::campaign::S3Engine::Copy)
            })
        })
    });
    if unversioned_updates {
        let _ = writeln!(
            o,
            "- [ ] UpdateObjectEncryption takes no condition: in a bucket without versioning, a write landing between rekey's read of an object and its call is re-keyed too (its bytes are never touched). Where that matters, pause the bucket's writers for the stage."
        );
    }
    if let Some(batch) = &plan.settings.batch {
        let _ = writeln!(
            o,
            "- [ ] The S3 Batch Operations job role `{}` exists, trusts `batchoperations.s3.amazonaws.com`, may read `s3://{}` (manifests), write `s3://{}` (completion reports), and use the team keys and the keys objects are on now (the preflight checks what it can read). Jobs run at priority {}{}; at the window's end they are {}.",
            batch.role_arn,
            batch.manifest_bucket,
            batch.report_bucket,
            batch.priority,
            if batch.confirm { " and wait for confirmation in the S3 console" } else { "" },
            match batch.at_window_end {
                crate::campaign::AtWindowEnd::Cancel => "cancelled (what they did not reach goes in a new job at the next window)",
                crate::campaign::AtWindowEnd::Leave => "left to finish (the next apply reads their reports)",
            }
        );
    }
    let _ = writeln!(o, "- [ ] No journal from another plan sits at the journal path; `rekey status {p}` shows what a resumed window has left. One apply or rollback runs at a time (a second one fails at once).\n");
    let n = plan.stages.len();
    for (i, st) in plan.stages.iter().enumerate() {
        let t = &st.summary;
        let _ = writeln!(o, "## Stage {}/{n}: {}\n", i + 1, st.name);
        let _ = writeln!(
            o,
            "Changes {} and {} ({}); expected to take about {} ({}).\n",
            plural(t.buckets, "bucket default", "bucket defaults"),
            plural(t.objects, "object", "objects"),
            bytes(t.bytes),
            duration(t.estimated_seconds),
            usd(t.estimated_cost_usd)
        );
        if st.buckets.is_empty() {
            let _ = writeln!(o, "Nothing to change in this stage.\n");
        }
        for b in &st.buckets {
            let mut lines = Vec::new();
            let gcs = b.provider == crate::model::Provider::Gcp;
            for a in &b.actions {
                match a {
                    Action::SetBucketDefault { key, from, .. } => lines.push(if gcs {
                        format!(
                            "default key {} → `{key}` (a patch of that field alone)",
                            from.algorithm
                        )
                    } else {
                        format!(
                            "default encryption {} → SSE-KMS with `{key}`, Bucket Key on",
                            from.algorithm
                        )
                    }),
                    Action::ReencryptObjects {
                        key,
                        engine,
                        objects,
                        bytes: b,
                        from,
                        ..
                    } => lines.push(format!(
                        "re-encrypt {} ({}) to `{key}` by {} (from {})",
                        plural(*objects, "object", "objects"),
                        bytes(*b),
                        if gcs {
                            "rewrite, guarded by generation".to_string()
                        } else {
                            serde_yaml::to_string(engine)
                                .unwrap_or_default()
                                .trim()
                                .to_string()
                        },
                        class_list(from)
                    )),
                }
            }
            for bl in &b.blocked {
                lines.push(format!(
                    "blocked, left as is: {}: {}",
                    plural(bl.objects, "object", "objects"),
                    bl.reason
                ));
            }
            for j in &b.jobs {
                lines.push(format!(
                    "batch job {}: {} ({}) by {}, storage class {}{}",
                    j.job,
                    plural(j.objects, "object", "objects"),
                    bytes(j.bytes),
                    j.engine_name(),
                    j.storage_class,
                    if j.unguarded {
                        format!(" — **unguarded**: {}, so the bucket's writers must be frozen (paused, or their credentials revoked) from the plan's inventory until the stage is applied; confirm that before `apply`", j.unguarded_why())
                    } else {
                        String::new()
                    }
                ));
            }
            for f in &b.flagged {
                lines.push(format!(
                    "{} with a cost: {}",
                    plural(f.objects, "object", "objects"),
                    f.reason
                ));
            }
            if b.skipped_on_target > 0 {
                lines.push(format!(
                    "{} already on the team key",
                    plural(b.skipped_on_target, "object", "objects")
                ));
            }
            let e = &b.side_effects;
            if !e.is_empty() {
                lines.push(format!(
                    "sets off {} notification deliveries, {} EventBridge events and {} replicated copies ({}), about ${:.2} more: warn the owners of those pipelines and of the replica before the window",
                    e.notification_events,
                    e.eventbridge_events,
                    e.replicated_copies,
                    bytes(e.replicated_bytes),
                    e.estimated_cost_usd
                ));
            }
            for h in &b.hazards {
                lines.push(format!("hazard {h}"));
            }
            let _ = writeln!(
                o,
                "- `{}` ({}, {}): {}",
                b.url(),
                b.account,
                b.region,
                lines.join("; ")
            );
        }
        for sm in &st.sagemaker {
            match sm.action.as_str() {
                "rekey-endpoint" => {
                    let _ = writeln!(
                        o,
                        "- SageMaker endpoint `{}`: config `{}` → `{}` with `{}` (its artifacts move first: {})",
                        sm.name,
                        sm.from_config.as_deref().unwrap_or("?"),
                        sm.new_config.as_deref().unwrap_or("?"),
                        sm.key,
                        sm.artifacts.join(", ")
                    );
                    let how = match &sm.deployment_config {
                        Some(d) => format!(
                            "UpdateEndpoint with RetainAllVariantProperties (instance counts and weights kept) and the campaign's DeploymentConfig `{d}`"
                        ),
                        None => "UpdateEndpoint with RetainAllVariantProperties and RetainDeploymentConfig (instance counts, weights and the endpoint's last deployment config kept)".to_string(),
                    };
                    let _ = writeln!(o, "  - update: {how}");
                    if let Some(r) = &sm.volume_key.reason {
                        let _ = writeln!(
                            o,
                            "  - volume key ({}): {r} (source: {})",
                            match sm.volume_key.coverage {
                                crate::providers::sagemaker::Coverage::Partial => "partial",
                                crate::providers::sagemaker::Coverage::NotCovered => "not covered",
                                crate::providers::sagemaker::Coverage::Covered => "covered",
                            },
                            sm.volume_key.source.as_deref().unwrap_or("")
                        );
                    }
                    for v in &sm.access {
                        let _ = writeln!(
                            o,
                            "  - key access: {} {} for {} ({})",
                            v.principal,
                            v.verdict.as_str(),
                            v.actions.join(", "),
                            v.rests_on.join("; ")
                        );
                    }
                }
                _ => {
                    let _ = writeln!(
                        o,
                        "- {} `{}` ({}): {}",
                        sm.kind,
                        sm.name,
                        sm.action,
                        sm.reason.as_deref().unwrap_or("")
                    );
                    for step in &sm.manual_steps {
                        let _ = writeln!(o, "  - [ ] {step}");
                    }
                }
            }
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "1. Apply: `rekey apply {p} --stage {} --yes`", st.name);
        let _ = writeln!(o, "   (exit 0 done; 3 some steps failed or drifted, and later stages do not start until they are dealt with: read `{}`; 5 window closed; 130 interrupted: run it again to resume).", report_name(plan_path));
        let _ = writeln!(o, "2. Watch: `rekey status {p}`.");
        let _ = writeln!(o, "3. Go/no-go: `rekey verify {p} --stage {} --ignore-blocked` exits 0 (without `--ignore-blocked` it also lists what stays blocked), and the stage's consumers (endpoints, jobs) still read their data.", st.name);
        let _ = writeln!(o, "4. Roll back this stage if no-go: `rekey rollback {p} --to {} --yes` (undoes this stage and every later one, in reverse order, steps a crash left half done included; anything changed since rekey changed it is left alone and listed, exit 3).\n", st.checkpoint);
    }
    let blocked: u64 = plan
        .stages
        .iter()
        .flat_map(|s| &s.buckets)
        .flat_map(|b| &b.blocked)
        .map(|b| b.objects)
        .sum();
    if blocked > 0 || !plan.unmatched.is_empty() {
        let _ = writeln!(o, "## Manual follow-up\n");
        for st in &plan.stages {
            for b in &st.buckets {
                for bl in &b.blocked {
                    let _ = writeln!(
                        o,
                        "- [ ] `{}`: {} ({}): {}",
                        b.url(),
                        plural(bl.objects, "object", "objects"),
                        bytes(bl.bytes),
                        bl.reason
                    );
                }
            }
        }
        for u in &plan.unmatched {
            let _ = writeln!(
                o,
                "- [ ] `{}`: {}{} ({}): add a mapping rule or confirm they stay as they are.",
                if u.bucket.starts_with("sagemaker:") {
                    u.bucket.clone()
                } else {
                    format!("s3://{}", u.bucket)
                },
                plural(u.objects, "object", "objects"),
                if u.bucket_itself {
                    " and the bucket default"
                } else {
                    ""
                },
                u.reason
            );
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "## After the window\n");
    let _ = writeln!(
        o,
        "- [ ] `rekey verify {p}` exits 0 (every planned resource on its team key)."
    );
    let _ = writeln!(
        o,
        "- [ ] Archive `{}` and the journal with the change record.",
        report_name(plan_path)
    );
    let _ = writeln!(o, "- [ ] Versioned buckets keep the old copies as noncurrent versions until lifecycle rules expire them.");
    o
}

fn report_name(plan_path: &Path) -> String {
    let journal = crate::journal::default_path(plan_path);
    crate::apply::report_path(&journal, "md")
        .display()
        .to_string()
}
