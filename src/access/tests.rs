//! The evaluator's table: key policy × IAM policy × grant × Deny × condition → verdict. Each
//! row says which rule of AWS KMS's documented authorization it checks ("KMS" below is the AWS
//! KMS Developer Guide; "IAM" the IAM User Guide's policy evaluation logic).

use super::*;
use serde_json::json;

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const OTHER_KEY: &str =
    "arn:aws:kms:us-east-1:111122223333:key/ffffffff-12ab-34cd-56ef-1234567890ab";
const ROLE: &str = "arn:aws:iam::111122223333:role/sm-exec";
const FOREIGN: &str = "arn:aws:iam::444455556666:role/reader";
const S3: &str = "s3.us-east-1.amazonaws.com";
const SM: &str = "sagemaker.us-east-1.amazonaws.com";
const RW: &[&str] = &["kms:Decrypt", "kms:GenerateDataKey"];

fn doc(source: &str, statements: Value) -> Doc {
    Doc {
        source: source.into(),
        value: json!({ "Version": "2012-10-17", "Statement": statements }),
    }
}

/// The default key policy's first statement (KMS, "Default key policy": it lets IAM policies
/// in the account control access; on its own it allows no role anything).
fn root() -> Value {
    json!({ "Sid": "Enable IAM User Permissions", "Effect": "Allow",
            "Principal": { "AWS": "arn:aws:iam::111122223333:root" },
            "Action": "kms:*", "Resource": "*" })
}

fn named(principal: &str, actions: Value) -> Value {
    json!({ "Sid": "Named", "Effect": "Allow", "Principal": { "AWS": principal },
            "Action": actions, "Resource": "*" })
}

fn iam_allow(resource: &str) -> Doc {
    doc(
        "inline policy kms of role sm-exec",
        json!([{ "Sid": "UseKey", "Effect": "Allow",
                 "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": resource }]),
    )
}

fn grant(grantee: &str, ops: &[&str], constrained: bool) -> Grant {
    Grant {
        id: "g-1".into(),
        grantee: grantee.into(),
        operations: ops.iter().map(|o| o.to_string()).collect(),
        constrained,
    }
}

struct Row {
    /// What the row checks, and the documented rule behind its expectation.
    why: &'static str,
    policy: Value,
    grants: Vec<Grant>,
    identity: IdentityView,
    usage: Usage,
    accept: Acceptance,
    expect: VerdictKind,
    /// A statement or grant the verdict must name (in `rests_on` or `reason`).
    names: &'static str,
}

fn seen(policies: Vec<Doc>) -> IdentityView {
    IdentityView::Seen(Identity {
        policies,
        boundary: None,
    })
}

fn usage(principal: &str, via: Option<&str>) -> Usage {
    Usage::principal(principal, RW, via.map(str::to_string))
}

fn rows() -> Vec<Row> {
    let base = |why, policy, identity, expect, names| Row {
        why,
        policy,
        grants: Vec::new(),
        identity,
        usage: usage(ROLE, Some(S3)),
        accept: Acceptance::default(),
        expect,
        names,
    };
    vec![
        base(
            "KMS: an Allow to the account root only delegates to IAM; a role with no IAM policy gets nothing",
            json!([root()]),
            seen(vec![]),
            VerdictKind::NotAllowed,
            "Decrypt",
        ),
        base(
            "KMS: root delegation plus an IAM policy allowing the actions on the key ARN allows",
            json!([root()]),
            seen(vec![iam_allow(KEY)]),
            VerdictKind::Allowed,
            "Enable IAM User Permissions",
        ),
        base(
            "KMS: the IAM policy must allow the key's ARN; a policy on another key does not count",
            json!([root()]),
            seen(vec![iam_allow(OTHER_KEY)]),
            VerdictKind::NotAllowed,
            "Decrypt",
        ),
        base(
            "KMS: an IAM Allow counts only when the key policy allows the account",
            json!([named("arn:aws:iam::111122223333:role/someone-else", json!("kms:*"))]),
            seen(vec![iam_allow("*")]),
            VerdictKind::NotAllowed,
            "Decrypt",
        ),
        base(
            "KMS: a key policy statement naming the role allows it without any IAM policy",
            json!([named(ROLE, json!(["kms:Decrypt", "kms:GenerateDataKey"]))]),
            seen(vec![]),
            VerdictKind::Allowed,
            "\"Named\"",
        ),
        base(
            "IAM: an explicit Deny wins; NotAction denies every action it does not list",
            json!([named(ROLE, json!("kms:*")),
                   { "Sid": "DenyAllButEncrypt", "Effect": "Deny", "Principal": { "AWS": ROLE },
                     "NotAction": "kms:Encrypt", "Resource": "*" }]),
            seen(vec![]),
            VerdictKind::Denied,
            "DenyAllButEncrypt",
        ),
        base(
            "IAM: action wildcards match (kms:Decrypt* covers kms:Decrypt) and a Deny to * applies to the role",
            json!([named(ROLE, json!("kms:*")),
                   { "Sid": "NoDecrypt", "Effect": "Deny", "Principal": "*",
                     "Action": "kms:Decrypt*", "Resource": "*" }]),
            seen(vec![]),
            VerdictKind::Denied,
            "NoDecrypt",
        ),
        base(
            "IAM: a Deny to the account applies to every principal in it",
            json!([named(ROLE, json!("kms:*")),
                   { "Sid": "DenyAccount", "Effect": "Deny", "Principal": { "AWS": "111122223333" },
                     "Action": "kms:GenerateDataKey", "Resource": "*" }]),
            seen(vec![]),
            VerdictKind::Denied,
            "DenyAccount",
        ),
        base(
            "IAM: Deny with NotPrincipal listing a role still applies to its sessions (the session ARN must be listed too)",
            json!([named(ROLE, json!("kms:*")),
                   { "Sid": "OnlyRole", "Effect": "Deny",
                     "NotPrincipal": { "AWS": [ROLE, "arn:aws:iam::111122223333:root"] },
                     "Action": "kms:*", "Resource": "*" }]),
            seen(vec![]),
            VerdictKind::Denied,
            "OnlyRole",
        ),
        base(
            "IAM: a Deny in the role's own IAM policy wins over the key policy's Allow",
            json!([named(ROLE, json!("kms:*"))]),
            seen(vec![doc("inline policy guard of role sm-exec",
                json!([{ "Sid": "NoKms", "Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*" }]))]),
            VerdictKind::Denied,
            "NoKms",
        ),
        base(
            "KMS condition keys: kms:ViaService is decided; S3 calls KMS for the role (model artifacts are read through S3)",
            json!([{ "Sid": "ViaS3", "Effect": "Allow", "Principal": { "AWS": ROLE },
                     "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
                     "Condition": { "StringEquals": { "kms:ViaService": S3 } } }]),
            seen(vec![]),
            VerdictKind::Allowed,
            "ViaS3",
        ),
        base(
            "KMS condition keys: a kms:ViaService for another service does not match the request",
            json!([{ "Sid": "ViaSageMaker", "Effect": "Allow", "Principal": { "AWS": ROLE },
                     "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
                     "Condition": { "StringEquals": { "kms:ViaService": SM } } }]),
            seen(vec![]),
            VerdictKind::NotAllowed,
            "Decrypt",
        ),
        base(
            "I5: a condition key rekey does not decide (aws:PrincipalOrgID) makes the Allow unverified",
            json!([{ "Sid": "OrgOnly", "Effect": "Allow", "Principal": { "AWS": ROLE },
                     "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
                     "Condition": { "StringEquals": { "aws:PrincipalOrgID": "o-123" } } }]),
            seen(vec![]),
            VerdictKind::Unverified,
            "OrgOnly",
        ),
        Row {
            accept: Acceptance {
                statements: ["OrgOnly".to_string()].into(),
                ..Default::default()
            },
            ..base(
                "I5: the campaign accepting the statement by Sid lets its condition hold",
                json!([{ "Sid": "OrgOnly", "Effect": "Allow", "Principal": { "AWS": ROLE },
                         "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
                         "Condition": { "StringEquals": { "aws:PrincipalOrgID": "o-123" } } }]),
                seen(vec![]),
                VerdictKind::Allowed,
                "OrgOnly",
            )
        },
        base(
            "I5: a Deny whose condition rekey cannot decide may apply: unverified, not allowed",
            json!([named(ROLE, json!("kms:*")),
                   { "Sid": "OnlyFromVpce", "Effect": "Deny", "Principal": "*", "Action": "kms:*",
                     "Resource": "*", "Condition": { "StringNotEquals": { "aws:SourceVpce": "vpce-1" } } }]),
            seen(vec![]),
            VerdictKind::Unverified,
            "OnlyFromVpce",
        ),
        base(
            "IAM: a negated operator holds when the key is absent (no kms:ViaService on a direct call is not s3)",
            json!([named(ROLE, json!("kms:*")),
                   { "Sid": "OnlyViaS3", "Effect": "Deny", "Principal": "*", "Action": "kms:*",
                     "Resource": "*", "Condition": { "StringNotEquals": { "kms:ViaService": S3 } } }]),
            seen(vec![]),
            VerdictKind::Allowed,
            "\"Named\"",
        ),
        base(
            "KMS: the AWS-managed-key pattern (Principal * under kms:CallerAccount) allows callers of that account",
            json!([{ "Sid": "CallerAccount", "Effect": "Allow", "Principal": { "AWS": "*" },
                     "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
                     "Condition": { "StringEquals": { "kms:CallerAccount": "111122223333", "kms:ViaService": S3 } } }]),
            seen(vec![]),
            VerdictKind::Allowed,
            "CallerAccount",
        ),
        base(
            "IAM: a permissions boundary that does not allow the action limits the role's IAM Allow",
            json!([root()]),
            IdentityView::Seen(Identity {
                policies: vec![iam_allow(KEY)],
                boundary: Some(doc("permissions boundary arn:aws:iam::111122223333:policy/b",
                    json!([{ "Effect": "Allow", "Action": "s3:*", "Resource": "*" }]))),
            }),
            VerdictKind::NotAllowed,
            "Decrypt",
        ),
        base(
            "I5: IAM policies rekey cannot read make a root-delegated Allow unverified",
            json!([root()]),
            IdentityView::Unseen("AccessDenied".into()),
            VerdictKind::Unverified,
            "could not be read",
        ),
        base(
            "I5: a policy variable in a condition is not decided",
            json!([{ "Sid": "Tagged", "Effect": "Allow", "Principal": { "AWS": ROLE },
                     "Action": "kms:*", "Resource": "*",
                     "Condition": { "StringEquals": { "aws:PrincipalArn": "${aws:PrincipalTag/owner}" } } }]),
            seen(vec![]),
            VerdictKind::Unverified,
            "Tagged",
        ),
        base(
            "IAM: action names match case-insensitively",
            json!([named(ROLE, json!(["KMS:decrypt", "kms:generatedatakey"]))]),
            seen(vec![]),
            VerdictKind::Allowed,
            "\"Named\"",
        ),
        Row {
            grants: vec![grant(ROLE, &["Decrypt", "GenerateDataKey"], false)],
            ..base(
                "KMS: a grant to the role with the operations allows without any policy",
                json!([root()]),
                seen(vec![]),
                VerdictKind::Allowed,
                "grant g-1",
            )
        },
        Row {
            grants: vec![grant(ROLE, &["Decrypt"], false)],
            ..base(
                "KMS: a grant allows only its operations (GenerateDataKey is missing)",
                json!([root()]),
                seen(vec![]),
                VerdictKind::NotAllowed,
                "GenerateDataKey",
            )
        },
        Row {
            grants: vec![grant(ROLE, &["Decrypt", "GenerateDataKey"], true)],
            ..base(
                "KMS: a grant with encryption-context constraints covers only requests with that context: unverified",
                json!([root()]),
                seen(vec![]),
                VerdictKind::Unverified,
                "g-1",
            )
        },
        Row {
            usage: usage(FOREIGN, Some(S3)),
            ..base(
                "KMS cross-account: the key policy names the principal, but its own account's IAM is unseen: unverified",
                json!([root(), named(FOREIGN, json!(["kms:Decrypt", "kms:GenerateDataKey"]))]),
                IdentityView::Unseen("account 444455556666 is not one of the campaign's".into()),
                VerdictKind::Unverified,
                "444455556666",
            )
        },
        Row {
            usage: usage(FOREIGN, Some(S3)),
            ..base(
                "KMS cross-account: key policy naming the principal plus its IAM allowing the key allows",
                json!([root(), named(FOREIGN, json!(["kms:Decrypt", "kms:GenerateDataKey"]))]),
                seen(vec![iam_allow(KEY)]),
                VerdictKind::Allowed,
                "\"Named\"",
            )
        },
        Row {
            usage: usage(FOREIGN, Some(S3)),
            ..base(
                "KMS cross-account: the key's own account root does not reach another account's principal",
                json!([root()]),
                seen(vec![iam_allow(KEY)]),
                VerdictKind::NotAllowed,
                "another account",
            )
        },
        Row {
            usage: Usage {
                grant_for_resource: true,
                ..Usage::principal(ROLE, &["kms:CreateGrant"], Some(SM.into()))
            },
            ..base(
                "KMS: kms:GrantIsForAWSResource is true when an AWS service creates the grant for its resource",
                json!([{ "Sid": "Grants", "Effect": "Allow", "Principal": { "AWS": ROLE },
                         "Action": "kms:CreateGrant", "Resource": "*",
                         "Condition": { "Bool": { "kms:GrantIsForAWSResource": "true" } } }]),
                seen(vec![]),
                VerdictKind::Allowed,
                "Grants",
            )
        },
        Row {
            usage: Usage::principal(ROLE, &["kms:CreateGrant"], None),
            ..base(
                "KMS: the same statement does not allow a grant the principal creates for itself",
                json!([{ "Sid": "Grants", "Effect": "Allow", "Principal": { "AWS": ROLE },
                         "Action": "kms:CreateGrant", "Resource": "*",
                         "Condition": { "Bool": { "kms:GrantIsForAWSResource": "true" } } }]),
                seen(vec![]),
                VerdictKind::NotAllowed,
                "CreateGrant",
            )
        },
        Row {
            usage: Usage {
                source_arn: Some("arn:aws:cloudfront::111122223333:distribution/E1".into()),
                ..Usage::principal("cloudfront.amazonaws.com", &["kms:Decrypt"], None)
            },
            ..base(
                "KMS: a service principal is allowed by a statement naming it under a matching aws:SourceArn",
                json!([{ "Sid": "OAC", "Effect": "Allow", "Principal": { "Service": "cloudfront.amazonaws.com" },
                         "Action": "kms:Decrypt", "Resource": "*",
                         "Condition": { "StringEquals": { "aws:SourceArn": "arn:aws:cloudfront::111122223333:distribution/E1" } } }]),
                seen(vec![]),
                VerdictKind::Allowed,
                "OAC",
            )
        },
        Row {
            usage: Usage {
                source_arn: Some("arn:aws:cloudfront::111122223333:distribution/E2".into()),
                ..Usage::principal("cloudfront.amazonaws.com", &["kms:Decrypt"], None)
            },
            ..base(
                "KMS: ... and not for another distribution",
                json!([{ "Sid": "OAC", "Effect": "Allow", "Principal": { "Service": "cloudfront.amazonaws.com" },
                         "Action": "kms:Decrypt", "Resource": "*",
                         "Condition": { "StringEquals": { "aws:SourceArn": "arn:aws:cloudfront::111122223333:distribution/E1" } } }]),
                seen(vec![]),
                VerdictKind::NotAllowed,
                "Decrypt",
            )
        },
    ]
}

#[test]
fn the_table() {
    let mut failures = Vec::new();
    for row in rows() {
        let key = KeyFacts {
            key_arn: KEY.into(),
            policy: doc(&format!("key policy of {KEY}"), row.policy.clone()),
            grants: row.grants.clone(),
        };
        let v = evaluate(&key, &row.identity, &row.usage, &row.accept, "test");
        let text = format!(
            "{} {}",
            v.rests_on.join(" "),
            v.reason.clone().unwrap_or_default()
        );
        if v.verdict != row.expect || !text.contains(row.names) {
            failures.push(format!(
                "{}\n  expected {:?} naming {:?}, got {:?}: {text}",
                row.why, row.expect, row.names, v.verdict
            ));
        }
        assert!(v.not_evaluated.contains("service control policies"));
        if v.verdict == VerdictKind::NotAllowed {
            let add = v.add.as_deref().unwrap_or_default();
            assert!(
                add.contains(&row.usage.principal),
                "{}: fix names the principal: {add}",
                row.why
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn accepted_by_condition_key_and_principal() {
    let key = KeyFacts {
        key_arn: KEY.into(),
        policy: doc(
            "key policy",
            json!([root(), { "Effect": "Allow", "Principal": { "AWS": ROLE }, "Action": "kms:*", "Resource": "*",
                     "Condition": { "StringEquals": { "aws:PrincipalOrgID": "o-1" } } }]),
        ),
        grants: Vec::new(),
    };
    let accept = Acceptance {
        conditions: ["AWS:PrincipalOrgId".to_string()].into(),
        ..Default::default()
    };
    let v = evaluate(&key, &seen(vec![]), &usage(ROLE, Some(S3)), &accept, "t");
    assert_eq!(v.verdict, VerdictKind::Allowed, "{v:?}");
    assert!(
        v.accepted.iter().any(|a| a.contains("aws:PrincipalOrgID")),
        "{v:?}"
    );

    let unseen = IdentityView::Unseen("another account".into());
    let key = KeyFacts {
        key_arn: KEY.into(),
        policy: doc("key policy", json!([named(FOREIGN, json!("kms:*"))])),
        grants: Vec::new(),
    };
    let accept = Acceptance {
        principals: [FOREIGN.to_string()].into(),
        ..Default::default()
    };
    let v = evaluate(&key, &unseen, &usage(FOREIGN, Some(S3)), &accept, "t");
    assert_eq!(v.verdict, VerdictKind::Allowed, "{v:?}");
    // Accepting the principal does not stand in for the key policy.
    let key = KeyFacts {
        key_arn: KEY.into(),
        policy: doc("key policy", json!([root()])),
        grants: Vec::new(),
    };
    let v = evaluate(&key, &unseen, &usage(FOREIGN, Some(S3)), &accept, "t");
    assert_eq!(v.verdict, VerdictKind::NotAllowed, "{v:?}");
}

#[test]
fn wildcards() {
    assert!(wildcard("kms:Decrypt*", "kms:Decrypt", true));
    assert!(wildcard("kms:*", "kms:GenerateDataKey", true));
    assert!(wildcard("arn:aws:kms:*:111122223333:key/*", KEY, false));
    assert!(!wildcard("arn:aws:kms:*:444455556666:key/*", KEY, false));
    assert!(wildcard("kms:?ecrypt", "kms:Decrypt", false));
    assert!(!wildcard("kms:Encrypt", "kms:Decrypt", true));
}

#[test]
fn fix_statements() {
    let u = Usage {
        grant_for_resource: true,
        ..Usage::principal(ROLE, &["kms:Decrypt", "kms:CreateGrant"], Some(SM.into()))
    };
    let s: Value =
        serde_json::from_str(&statement_for(&u, &["kms:Decrypt", "kms:CreateGrant"])).unwrap();
    let list = s.as_array().expect("two statements");
    assert_eq!(
        list[1]["Condition"]["Bool"]["kms:GrantIsForAWSResource"],
        "true"
    );
    assert!(list[0]["Condition"].get("Bool").is_none());
    // The suggested statement, added to a key policy, allows what it was for.
    let key = KeyFacts {
        key_arn: KEY.into(),
        policy: Doc {
            source: "key policy".into(),
            value: json!({ "Statement": list }),
        },
        grants: Vec::new(),
    };
    assert!(evaluate(&key, &seen(vec![]), &u, &Acceptance::default(), "t").allowed());
}

/// One evaluation of `policy` (no grants, nothing accepted).
fn probe(policy: Value, identity: IdentityView, usage: Usage) -> Verdict {
    let key = KeyFacts {
        key_arn: KEY.into(),
        policy: doc(&format!("key policy of {KEY}"), policy),
        grants: Vec::new(),
    };
    evaluate(&key, &identity, &usage, &Acceptance::default(), "probe")
}

/// IAM: "If the key that you specify in a policy condition is not present in the request
/// context, the values do not match and the condition is false. If the policy condition
/// requires that the key is not matched, such as StringNotLike or ArnNotLike, and the right
/// key is not present, the condition is true." NotIpAddress / NumericNotEquals /
/// DateNotEquals are negated operators too; rekey does not decide them, so the Deny may apply:
/// the verdict must not be `allowed` (I5).
#[test]
fn an_undecided_negated_operator_on_an_absent_key_is_not_allowed() {
    for op in ["NotIpAddress", "NumericNotEquals", "DateNotEquals"] {
        let v = probe(
            json!([named(ROLE, json!("kms:*")),
                   { "Sid": "DenyOdd", "Effect": "Deny", "Principal": "*", "Action": "kms:*",
                     "Resource": "*", "Condition": { op: { "kms:ViaService": "x" } } }]),
            seen(vec![]),
            usage(ROLE, None),
        );
        assert_ne!(v.verdict, VerdictKind::Allowed, "{op}: {v:?}");
    }
}

/// IAM User Guide, "Role session principals": a resource-based policy may name an assumed-role
/// session (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`). SageMaker uses the execution role
/// through such a session; a key-policy Deny naming a session of this role applies to the
/// requests made under it. rekey cannot know the session names, so it cannot say `allowed`.
#[test]
fn a_deny_naming_a_session_of_the_role_is_not_ignored() {
    let v = probe(
        json!([named(ROLE, json!("kms:*")),
               { "Sid": "DenySageMakerSession", "Effect": "Deny",
                 "Principal": { "AWS": "arn:aws:sts::111122223333:assumed-role/sm-exec/SageMaker" },
                 "Action": "kms:*", "Resource": "*" }]),
        seen(vec![]),
        usage(ROLE, Some(S3)),
    );
    assert_ne!(v.verdict, VerdictKind::Allowed, "{v:?}");
}

/// IAM, "ARN condition operators": the ARN is compared component by component, so a `*`
/// never matches across a colon.
#[test]
fn arn_conditions_compare_component_by_component() {
    let role = "arn:aws:iam::111122223333:role/x";
    assert_eq!(arn_like("arn:aws:iam::*:role/x", role), Some(true));
    assert_eq!(
        arn_like(
            "arn:aws:sagemaker:*:*:endpoint/*",
            "arn:aws:sagemaker:us-east-1:1:endpoint/a"
        ),
        Some(true)
    );
    // A pattern with fewer parts is not an ARN pattern: not decided (never a silent miss).
    assert_eq!(arn_like("arn:*:role/x", role), None);
    assert_eq!(arn_like("*", role), Some(true));
}

/// `accept_unverified.statements` is documented as *key-policy*
/// statement Sids ("an Allow's condition holds, a Deny's does not"). It is applied to every
/// document instead: a Deny in the role's own IAM policy (or its permissions boundary) that
/// happens to share the Sid is taken as not applying, and the verdict becomes `allowed` while
/// IAM's Deny (undecided condition: aws:SourceVpce is absent from requests S3 makes to KMS, so
/// StringNotEquals holds) denies.
#[test]
fn a_key_policy_sid_acceptance_does_not_switch_off_an_iam_deny() {
    let key = KeyFacts {
        key_arn: KEY.into(),
        policy: doc(
            "key policy",
            json!([root(),
                   { "Sid": "CorpNetworkOnly", "Effect": "Allow", "Principal": { "AWS": ROLE },
                     "Action": "kms:*", "Resource": "*",
                     "Condition": { "StringEquals": { "aws:SourceVpce": "vpce-1" } } }]),
        ),
        grants: Vec::new(),
    };
    let iam_deny = doc(
        "permissions boundary managed policy arn:aws:iam::111122223333:policy/guard (v1)",
        json!([{ "Sid": "CorpNetworkOnly", "Effect": "Deny", "Action": "kms:*", "Resource": "*",
                 "Condition": { "StringNotEquals": { "aws:SourceVpce": "vpce-1" } } }]),
    );
    let accept = Acceptance {
        statements: ["CorpNetworkOnly".to_string()].into(),
        ..Default::default()
    };
    let v = evaluate(
        &key,
        &seen(vec![iam_allow("*"), iam_deny]),
        &usage(ROLE, Some(S3)),
        &accept,
        "t",
    );
    assert_ne!(v.verdict, VerdictKind::Allowed, "{v:?}");
}

/// The job role's S3 requests (preflight::batch_role): an identity Allow is needed, a Deny
/// wins, an undecidable condition fails closed unless its key is accepted, and a permissions
/// boundary must allow too.
#[test]
fn identity_allows_s3_requests_fail_closed() {
    const ROLE: &str = "arn:aws:iam::111122223333:role/jobs";
    const OBJ: &str = "arn:aws:s3:::data/*";
    let allow = |action: &str, resource: &str| json!({"Effect": "Allow", "Action": action, "Resource": resource});
    let identity = |statements: Value, boundary: Option<Value>| Identity {
        policies: vec![doc("inline policy p of role jobs", statements)],
        boundary: boundary.map(|b| doc("boundary", b)),
    };
    let none = Acceptance::default();
    let ok = identity(json!([allow("s3:*", "arn:aws:s3:::data/*")]), None);
    assert_eq!(
        identity_allows(&ok, ROLE, "s3:PutObject", OBJ, &none),
        Ok(())
    );
    let why = identity_allows(&ok, ROLE, "s3:PutObject", "arn:aws:s3:::ops/x", &none).unwrap_err();
    assert!(why.contains("no statement"), "{why}");
    let denied = identity(
        json!([allow("s3:*", "*"), {"Effect": "Deny", "Action": "s3:Put*", "Resource": "arn:aws:s3:::data/*"}]),
        None,
    );
    let why = identity_allows(&denied, ROLE, "s3:PutObject", OBJ, &none).unwrap_err();
    assert!(why.contains("denies s3:PutObject"), "{why}");
    let conditional = identity(
        json!([{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*",
                "Condition": {"StringEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}}]),
        None,
    );
    let why = identity_allows(&conditional, ROLE, "s3:PutObject", OBJ, &none).unwrap_err();
    assert!(
        why.contains("cannot decide") && why.contains("s3:x-amz-server-side-encryption"),
        "{why}"
    );
    let mut accept = Acceptance::default();
    accept
        .conditions
        .insert("s3:x-amz-server-side-encryption".into());
    assert_eq!(
        identity_allows(&conditional, ROLE, "s3:PutObject", OBJ, &accept),
        Ok(())
    );
    let unknown_deny = identity(
        json!([allow("s3:*", "*"), {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]),
        None,
    );
    let why = identity_allows(&unknown_deny, ROLE, "s3:GetObject", OBJ, &none).unwrap_err();
    assert!(why.contains("Deny rekey cannot rule out"), "{why}");
    let bounded = identity(
        json!([allow("s3:*", "*")]),
        Some(json!([allow("s3:GetObject", "*")])),
    );
    assert_eq!(
        identity_allows(&bounded, ROLE, "s3:GetObject", OBJ, &none),
        Ok(())
    );
    let why = identity_allows(&bounded, ROLE, "s3:PutObject", OBJ, &none).unwrap_err();
    assert!(why.contains("permissions boundary"), "{why}");
}

/// Review 2 (I5): apply.rs asks `identity_allows` about the pattern `arn:aws:s3:::BUCKET/*`
/// (all of a job's objects) as if it were one object ARN. IAM evaluates each task's object:
/// a statement naming some of the objects is a Deny for those tasks (or an Allow that does
/// not cover the others). Each case below should be refused (Err) for a job over `data`.
#[test]
fn review2_identity_allows_statements_on_part_of_a_jobs_objects() {
    const ROLE: &str = "arn:aws:iam::111122223333:role/jobs";
    const OBJ: &str = "arn:aws:s3:::data/*";
    let none = Acceptance::default();
    let identity = |statements: Value, boundary: Option<Value>| Identity {
        policies: vec![doc("inline policy p of role jobs", statements)],
        boundary: boundary.map(|b| doc("boundary", b)),
    };
    let all = json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*"});
    let cases: Vec<(&str, Identity)> = vec![
        (
            "(a) Deny s3:PutObject on arn:aws:s3:::data/private/* (a sub-prefix of the job's objects)",
            identity(json!([all, {"Effect": "Deny", "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::data/private/*"}]), None),
        ),
        (
            "(b) Deny s3:PutObject on arn:aws:s3:::data/*.parquet",
            identity(json!([all, {"Effect": "Deny", "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::data/*.parquet"}]), None),
        ),
        (
            "(c) Allow only on arn:aws:s3:::data/? (one-character keys; '?' matches the literal '*')",
            identity(json!([{"Effect": "Allow", "Action": "s3:*",
                "Resource": "arn:aws:s3:::data/?"}]), None),
        ),
        (
            "(d) Allow s3:* with NotResource arn:aws:s3:::data/private/*",
            identity(json!([{"Effect": "Allow", "Action": "s3:*",
                "NotResource": "arn:aws:s3:::data/private/*"}]), None),
        ),
        (
            "(e) permissions boundary Deny on arn:aws:s3:::data/private/*",
            identity(json!([all]), Some(json!([all, {"Effect": "Deny", "Action": "s3:*",
                "Resource": "arn:aws:s3:::data/private/*"}]))),
        ),
        (
            "(f) Allow s3:PutObject only if kms:CallerAccount (a KMS key, absent from S3 requests)",
            identity(json!([{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*",
                "Condition": {"StringEquals": {"kms:CallerAccount": "111122223333"}}}]), None),
        ),
    ];
    let mut passed = Vec::new();
    for (what, id) in &cases {
        if identity_allows(id, ROLE, "s3:PutObject", OBJ, &none).is_ok() {
            passed.push(*what);
        }
    }
    assert!(
        passed.is_empty(),
        "identity_allows said Ok (the job role would be accepted) for:\n  {}",
        passed.join("\n  ")
    );
}
