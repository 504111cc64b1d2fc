//! The consumer graph and the hazards around a bucket: each test states what AWS does and
//! asserts that rekey sees it (from an independent review of issue 10).

use super::*;
use crate::model::{Replication, ReplicationRule, Surroundings};

const OWNER: &str = "123456789012";
const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555";

fn with_policy(p: serde_json::Value) -> Surroundings {
    Surroundings {
        policy: Some(p.to_string()),
        ..Default::default()
    }
}

fn principals(s: &Surroundings) -> Vec<String> {
    let g = bucket_graph("b", OWNER, "us-east-1", s);
    g.users
        .iter()
        .map(|(u, _)| u.principal.clone())
        .chain(g.unseen.iter().map(|(p, _, _)| p.clone()))
        .collect()
}

/// s3:GetObjectVersion is a read of object data (SSE-KMS: kms:Decrypt). The docs call the
/// readers "an Allow of the bucket policy lets read (`s3:GetObject*`)".
#[test]
fn get_object_version_reader_is_in_the_graph() {
    let s = with_policy(serde_json::json!({"Version":"2012-10-17","Statement":[{
        "Sid":"VersionedReader","Effect":"Allow",
        "Principal":{"AWS":"arn:aws:iam::210987654321:role/analytics"},
        "Action":["s3:GetObjectVersion","s3:ListBucketVersions"],
        "Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]}]}));
    assert!(
        principals(&s).iter().any(|p| p.contains("210987654321")),
        "a GetObjectVersion reader of another account is not in the consumer graph: {:?}",
        principals(&s)
    );
}

/// A cross-account replication role writes replicas into this bucket (s3:ReplicateObject).
#[test]
fn replicate_object_writer_is_in_the_graph() {
    let s = with_policy(serde_json::json!({"Version":"2012-10-17","Statement":[{
        "Sid":"FromSource","Effect":"Allow",
        "Principal":{"AWS":"arn:aws:iam::210987654321:role/replication"},
        "Action":["s3:ReplicateObject","s3:ReplicateDelete","s3:ReplicateTags"],
        "Resource":"arn:aws:s3:::b/*"}]}));
    assert!(
        principals(&s).iter().any(|p| p.contains("210987654321")),
        "the replication writer of the source account is not in the graph: {:?}",
        principals(&s)
    );
}

/// An OAC statement for two distributions: both read the bucket; only the first is evaluated.
#[test]
fn every_oac_distribution_is_evaluated() {
    let a = "arn:aws:cloudfront::123456789012:distribution/EAAAAAAAAAAAAA";
    let b = "arn:aws:cloudfront::123456789012:distribution/EBBBBBBBBBBBBB";
    let s = with_policy(serde_json::json!({"Version":"2012-10-17","Statement":[{
        "Sid":"OAC","Effect":"Allow","Principal":{"Service":"cloudfront.amazonaws.com"},
        "Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*",
        "Condition":{"StringEquals":{"AWS:SourceArn":[a,b]}}}]}));
    let g = bucket_graph("b", OWNER, "us-east-1", &s);
    let arns: Vec<Option<String>> = g.users.iter().map(|(u, _)| u.source_arn.clone()).collect();
    assert!(
        arns.contains(&Some(b.to_string())),
        "distribution B is never evaluated against the key: {arns:?}"
    );
}

/// A Deny that refuses non-AES256 writes of the account's own principals: rekey's copies
/// (aws:kms, made by a principal of 123456789012) are refused by S3.
#[test]
fn encryption_deny_with_a_request_context_condition_is_a_hazard() {
    let s = with_policy(serde_json::json!({"Version":"2012-10-17","Statement":[{
        "Sid":"OwnSseS3","Effect":"Deny","Principal":"*","Action":"s3:PutObject",
        "Resource":"arn:aws:s3:::b/*",
        "Condition":{
            "StringNotEquals":{"s3:x-amz-server-side-encryption":"AES256"},
            "StringEquals":{"aws:PrincipalAccount":OWNER}}}]}));
    let h = bucket_hazards("b", &s, KEY);
    assert!(
        !h.is_empty(),
        "the Deny applies to rekey's copies (aws:PrincipalAccount is present on every request), yet no hazard"
    );
}

/// Same with the organisation: undecidable here, must not pass (I5).
#[test]
fn encryption_deny_with_org_condition_is_a_hazard() {
    let s = with_policy(serde_json::json!({"Version":"2012-10-17","Statement":[{
        "Sid":"OrgSseS3","Effect":"Deny","Principal":"*","Action":"s3:PutObject",
        "Resource":"arn:aws:s3:::b/*",
        "Condition":{
            "StringNotEquals":{"s3:x-amz-server-side-encryption":"AES256"},
            "StringEquals":{"aws:PrincipalOrgID":"o-abcdef1234"}}}]}));
    assert!(
        !bucket_hazards("b", &s, KEY).is_empty(),
        "an undecidable condition (aws:PrincipalOrgID) is taken as false: no hazard"
    );
}

/// Keys in a central key account (999999999999), bucket in 123456789012: inventory passes the
/// first key's account as the bucket owner. The key account's root is a cross-account reader
/// whose IAM rekey cannot see; it must be in the graph.
#[test]
fn key_account_root_reader_is_not_dropped_as_owner() {
    let s = with_policy(serde_json::json!({"Version":"2012-10-17","Statement":[{
        "Sid":"SecurityAccount","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999999999999:root"},
        "Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}));
    // The owner is the account rekey reads the bucket as (STS), not the keys' account.
    let g = bucket_graph("b", OWNER, "us-east-1", &s);
    assert!(
        g.users
            .iter()
            .any(|(u, _)| u.principal == "arn:aws:iam::999999999999:root"),
        "the reader 999999999999 vanished from the graph"
    );
}

/// A CanonicalUser principal is any account's canonical id, not only an OAI; accepting
/// oai-origin (for a real OAI on the same bucket) must not accept a cross-account reader.
#[test]
fn canonical_user_reader_is_evaluated_not_only_an_oai() {
    let s = with_policy(serde_json::json!({"Version":"2012-10-17","Statement":[{
        "Sid":"Partner","Effect":"Allow",
        "Principal":{"CanonicalUser":"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"},
        "Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}));
    let g = bucket_graph("b", OWNER, "us-east-1", &s);
    assert!(
        !g.users.is_empty() || !g.unseen.is_empty(),
        "the canonical-user reader is only an oai-origin hazard ({:?}), never a graph principal",
        g.oai
    );
}

/// An unparsable policy: the graph cannot be built; it must not come back empty (I5).
#[test]
fn unparsable_policy_is_not_an_empty_graph() {
    let s = Surroundings {
        policy: Some("{\"Statement\": [".into()),
        ..Default::default()
    };
    let g = bucket_graph("b", OWNER, "us-east-1", &s);
    assert!(
        !g.unseen.is_empty() || !bucket_hazards("b", &s, KEY).is_empty(),
        "an unreadable policy yields no principal and no hazard"
    );
}

/// Sanity (expected to pass): a V1 rule without the opt-in is a gap.
#[test]
fn sanity_replication_gap() {
    let s = Surroundings {
        replication: Some(Replication {
            role: "arn:aws:iam::123456789012:role/r".into(),
            rules: vec![ReplicationRule {
                id: "v1".into(),
                enabled: true,
                prefix: "logs/".into(),
                destination_bucket: "arn:aws:s3:::dr".into(),
                sse_kms_opt_in: false,
                replica_kms_key: None,
            }],
        }),
        ..Default::default()
    };
    assert_eq!(bucket_hazards("b", &s, KEY).len(), 1);
}

/// An accepted `Principal: "*"` verdict is `allowed` in the plan; apply and verify cannot
/// evaluate `*` again, so it is not among what they re-check (else every apply would refuse).
#[test]
fn accepted_star_is_not_rechecked() {
    let s = with_policy(
        serde_json::json!({"Statement":[{"Effect":"Allow","Principal":"*",
        "Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}),
    );
    let g = bucket_graph("b", OWNER, "us-east-1", &s);
    assert_eq!(g.unseen.len(), 1);
    assert!(!rechecked(&unseen("*", KEY, "r", "w".into())));
    assert!(!rechecked(&unseen("canonical:79a5", KEY, "r", "w".into())));
    let named = Usage::principal("arn:aws:iam::1:role/r", &["kms:Decrypt"], None);
    let mut v = unseen(&named.principal, KEY, "r", "w".into());
    v.verdict = crate::access::VerdictKind::Allowed;
    assert!(rechecked(&v));
}

// ---- review 10b ----

fn key_facts(statements: serde_json::Value) -> crate::access::KeyFacts {
    crate::access::KeyFacts {
        key_arn: KEY.into(),
        policy: crate::access::Doc::parse(
            "key policy",
            &serde_json::json!({ "Version": "2012-10-17", "Statement": statements }).to_string(),
        )
        .unwrap(),
        grants: Vec::new(),
    }
}

fn verdicts_of(s: &Surroundings, key: &crate::access::KeyFacts) -> Vec<crate::access::Verdict> {
    let g = bucket_graph("b", OWNER, "us-east-1", s);
    let none = crate::access::IdentityView::Unseen("service".into());
    g.users
        .iter()
        .map(|(u, src)| {
            crate::access::evaluate(key, &none, u, &crate::access::Acceptance::default(), src)
        })
        .chain(
            g.unseen
                .iter()
                .map(|(p, src, why)| unseen(p, KEY, src, why.clone())),
        )
        .collect()
}

/// A distribution of another account (210987654321) reads the bucket through OAC; the bucket
/// policy pins it by aws:SourceArn only. AWS sets aws:SourceAccount of CloudFront's request to
/// the distribution's account (210987654321), so a key policy that allows cloudfront only for
/// SourceAccount 123456789012 refuses it. rekey fills in the bucket owner and says allowed.
#[test]
fn oac_source_account_is_the_distributions_not_the_bucket_owners() {
    let dist = "arn:aws:cloudfront::210987654321:distribution/EXXXXXXXXXXXXX";
    let s = with_policy(serde_json::json!({"Version":"2012-10-17","Statement":[{
        "Sid":"OAC","Effect":"Allow","Principal":{"Service":"cloudfront.amazonaws.com"},
        "Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*",
        "Condition":{"StringEquals":{"AWS:SourceArn":dist}}}]}));
    let key = key_facts(serde_json::json!([{
        "Sid":"OAC","Effect":"Allow","Principal":{"Service":"cloudfront.amazonaws.com"},
        "Action":"kms:Decrypt","Resource":"*",
        "Condition":{"StringEquals":{"aws:SourceAccount":OWNER}}}]));
    let v = verdicts_of(&s, &key);
    assert!(
        v.iter().all(|v| !v.allowed()),
        "distribution {dist} is judged allowed with SourceAccount {:?}: {v:?}",
        v.iter()
            .map(|v| v.source_account.clone())
            .collect::<Vec<_>>()
    );
}

/// A negated operator: every distribution EXCEPT EOLD may read. rekey evaluates EOLD alone
/// (the one that cannot read); a key policy allowing only EOLD is then `allowed`, while every
/// distribution that really reads is refused by KMS.
#[test]
fn negated_source_arn_condition_is_not_a_reader_list() {
    let old = "arn:aws:cloudfront::123456789012:distribution/EOLDOLDOLDOLD";
    let s = with_policy(serde_json::json!({"Version":"2012-10-17","Statement":[{
        "Sid":"OAC","Effect":"Allow","Principal":{"Service":"cloudfront.amazonaws.com"},
        "Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*",
        "Condition":{"ArnNotEquals":{"aws:SourceArn":old}}}]}));
    let key = key_facts(serde_json::json!([{
        "Sid":"OnlyOld","Effect":"Allow","Principal":{"Service":"cloudfront.amazonaws.com"},
        "Action":"kms:Decrypt","Resource":"*",
        "Condition":{"ArnEquals":{"aws:SourceArn":old}}}]));
    let v = verdicts_of(&s, &key);
    assert!(
        v.iter().any(|v| !v.allowed()),
        "ArnNotEquals EOLD taken as 'EOLD reads': every verdict allowed: {v:?}"
    );
}

/// A wildcard SourceArn (every distribution of the account) is evaluated as the literal
/// pattern: a key-policy Deny of one distribution never matches it.
#[test]
fn wildcard_source_arn_is_not_one_literal_reader() {
    let s = with_policy(serde_json::json!({"Version":"2012-10-17","Statement":[{
        "Sid":"OAC","Effect":"Allow","Principal":{"Service":"cloudfront.amazonaws.com"},
        "Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*",
        "Condition":{"ArnLike":{"aws:SourceArn":"arn:aws:cloudfront::123456789012:distribution/*"}}}]}));
    let key = key_facts(serde_json::json!([
        {"Sid":"OAC","Effect":"Allow","Principal":{"Service":"cloudfront.amazonaws.com"},
         "Action":"kms:Decrypt","Resource":"*",
         "Condition":{"ArnLike":{"aws:SourceArn":"arn:aws:cloudfront::123456789012:distribution/*"}}},
        {"Sid":"NotLegacy","Effect":"Deny","Principal":{"Service":"cloudfront.amazonaws.com"},
         "Action":"kms:Decrypt","Resource":"*",
         "Condition":{"ArnEquals":{"aws:SourceArn":"arn:aws:cloudfront::123456789012:distribution/ELEGACY"}}}]));
    let v = verdicts_of(&s, &key);
    assert!(
        v.iter().any(|v| !v.allowed()),
        "distribution ELEGACY reads the bucket and is denied the key, yet: {v:?}"
    );
}

/// The usual delegation to access points (`*` under s3:DataAccessPointAccount) adds no reader
/// for the owner's access points (their policies are read); another account's access points
/// are unseen; any other `*` stays unseen.
#[test]
fn delegation_to_access_points() {
    let delegate = |account: &str| {
        with_policy(serde_json::json!({"Version":"2012-10-17","Statement":[{
            "Sid":"Delegate","Effect":"Allow","Principal":{"AWS":"*"},"Action":"*",
            "Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"],
            "Condition":{"StringEquals":{"s3:DataAccessPointAccount":account}}}]}))
    };
    assert!(principals(&delegate(OWNER)).is_empty());
    let g = bucket_graph("b", OWNER, "us-east-1", &delegate("210987654321"));
    assert_eq!(g.unseen.len(), 1);
    assert!(g.unseen[0].2.contains("210987654321"), "{:?}", g.unseen);
    // A negated delegation admits everyone else: unseen.
    let s = with_policy(serde_json::json!({"Statement":[{
        "Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*",
        "Condition":{"StringNotEquals":{"s3:DataAccessPointAccount":OWNER}}}]}));
    assert_eq!(principals(&s), ["*"]);
}

/// An access point policy's readers are in the graph with the access point as their source;
/// the same OAC reader granted by the bucket policy and found as a distribution is one user
/// with both sources.
#[test]
fn access_points_and_distributions_feed_the_graph() {
    use crate::model::{AccessPoint, CdnOrigin};
    let dist = "arn:aws:cloudfront::123456789012:distribution/EAAAAAAAAAAAAA";
    let s = Surroundings {
        policy: Some(
            serde_json::json!({"Statement":[{"Sid":"OAC","Effect":"Allow",
            "Principal":{"Service":"cloudfront.amazonaws.com"},"Action":"s3:GetObject",
            "Resource":"arn:aws:s3:::b/*",
            "Condition":{"StringEquals":{"AWS:SourceArn":dist}}}]})
            .to_string(),
        ),
        access_points: vec![AccessPoint {
            name: "analytics".into(),
            arn: "arn:aws:s3:us-east-1:123456789012:accesspoint/analytics".into(),
            alias: "analytics-abc-s3alias".into(),
            policy: Some(
                serde_json::json!({"Statement":[{"Effect":"Allow",
                "Principal":{"AWS":"arn:aws:iam::210987654321:role/r"},
                "Action":"s3:GetObject",
                "Resource":"arn:aws:s3:us-east-1:123456789012:accesspoint/analytics/object/*"}]})
                .to_string(),
            ),
        }],
        origins: vec![CdnOrigin {
            distribution: dist.into(),
            origin: "o".into(),
            domain: "b.s3.us-east-1.amazonaws.com".into(),
            oac: Some("OAC1".into()),
            signing: Some("always".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let g = bucket_graph("b", OWNER, "us-east-1", &s);
    assert_eq!(g.users.len(), 2, "{:?}", g.users);
    let (cf, sources) = g
        .users
        .iter()
        .find(|(u, _)| u.principal == "cloudfront.amazonaws.com")
        .unwrap();
    assert_eq!(cf.source_arn.as_deref(), Some(dist));
    assert!(
        sources.contains("bucket policy") && sources.contains("origin access control OAC1"),
        "{sources}"
    );
    let (_, sources) = g
        .users
        .iter()
        .find(|(u, _)| u.principal.contains("210987654321"))
        .unwrap();
    assert!(sources.contains("access point analytics"), "{sources}");
}

/// Origins without OAC: an OAI is oai-origin, a website endpoint or an unsigned S3 origin is
/// public-origin; each fix names the distribution.
#[test]
fn unsigned_origins_are_hazards() {
    use crate::campaign::Hazard;
    use crate::model::CdnOrigin;
    let origin = |id: &str, domain: &str, oai: Option<&str>, website: bool| CdnOrigin {
        distribution: format!("arn:aws:cloudfront::123456789012:distribution/{id}"),
        origin: "o".into(),
        domain: domain.into(),
        oac: None,
        oai: oai.map(str::to_string),
        website,
        ..Default::default()
    };
    let s = Surroundings {
        origins: vec![
            origin(
                "EOAI",
                "b.s3.amazonaws.com",
                Some("origin-access-identity/cloudfront/E1"),
                false,
            ),
            origin("EWEB", "b.s3-website-us-east-1.amazonaws.com", None, true),
            origin("EPUB", "b.s3.us-east-1.amazonaws.com", None, false),
        ],
        ..Default::default()
    };
    let h = bucket_hazards("b", &s, KEY);
    let of =
        |kind: Hazard| -> Vec<&HazardFound> { h.iter().filter(|x| x.hazard == kind).collect() };
    assert_eq!(of(Hazard::OaiOrigin).len(), 1);
    assert!(of(Hazard::OaiOrigin)[0].fix.contains("distribution/EOAI"));
    assert_eq!(of(Hazard::PublicOrigin).len(), 2);
    assert!(of(Hazard::PublicOrigin)
        .iter()
        .any(|x| x.detail.contains("website endpoint") && x.fix.contains("distribution/EWEB")));
}

// ---- from the second review of issue 10 (access points, CloudFront origins, delegation) ----

fn oac_key(cond: serde_json::Value) -> crate::access::KeyFacts {
    key_facts(serde_json::json!([{"Sid":"OAC","Effect":"Allow",
        "Principal":{"Service":"cloudfront.amazonaws.com"},"Action":"kms:Decrypt",
        "Resource":"*","Condition":cond}]))
}

fn cf_policy(cond: serde_json::Value) -> Surroundings {
    let mut st = serde_json::json!({"Sid":"CF","Effect":"Allow",
        "Principal":{"Service":"cloudfront.amazonaws.com"},"Action":"s3:GetObject",
        "Resource":"arn:aws:s3:::b/*"});
    if !cond.is_null() {
        st["Condition"] = cond;
    }
    with_policy(serde_json::json!({"Version":"2012-10-17","Statement":[st]}))
}

/// ArnEquals takes `*`/`?` wildcards (as ArnLike): every distribution of the account.
#[test]
fn arn_equals_wildcard_source_arn_is_not_one_literal_reader() {
    let all = "arn:aws:cloudfront::123456789012:distribution/*";
    let s = cf_policy(serde_json::json!({"ArnEquals":{"aws:SourceArn":all}}));
    let key = key_facts(serde_json::json!([
        {"Sid":"OAC","Effect":"Allow","Principal":{"Service":"cloudfront.amazonaws.com"},
         "Action":"kms:Decrypt","Resource":"*","Condition":{"ArnLike":{"aws:SourceArn":all}}},
        {"Sid":"NotLegacy","Effect":"Deny","Principal":{"Service":"cloudfront.amazonaws.com"},
         "Action":"kms:Decrypt","Resource":"*","Condition":{"ArnEquals":{"aws:SourceArn":
         "arn:aws:cloudfront::123456789012:distribution/ELEGACY"}}}]));
    let v = verdicts_of(&s, &key);
    assert!(
        v.iter().any(|v| !v.allowed()),
        "ELEGACY reads and is denied: {v:?}"
    );
}

/// cloudfront.amazonaws.com with no aws:SourceArn/SourceAccount (or only aws:SourceOrgID)
/// admits distributions of other accounts, which rekey cannot see.
#[test]
fn service_principal_without_source_condition_admits_unseen_distributions() {
    let key = oac_key(serde_json::json!({"StringEquals":{"aws:SourceAccount":OWNER}}));
    for cond in [
        serde_json::Value::Null,
        serde_json::json!({"StringEquals":{"aws:SourceOrgID":"o-abcdef1234"}}),
    ] {
        let v = verdicts_of(&cf_policy(cond.clone()), &key);
        assert!(v.iter().any(|v| !v.allowed()), "{cond}: all allowed: {v:?}");
    }
}

/// Delegation naming an access point rekey did not read (a Multi-Region Access Point of
/// another account, or one not routing to this bucket) is unseen; one it read is not.
#[test]
fn delegation_to_an_unread_access_point_is_unseen() {
    let mrap = "arn:aws:s3::123456789012:accesspoint/mfzwi23gnjvgw.mrap";
    let mut s = with_policy(serde_json::json!({"Version":"2012-10-17","Statement":[{
        "Sid":"ToMrap","Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:GetObject",
        "Resource":"arn:aws:s3:::b/*","Condition":{"StringEquals":{"s3:DataAccessPointArn":
        mrap}}}]}));
    let g = bucket_graph("b", OWNER, "us-east-1", &s);
    assert!(!g.unseen.is_empty(), "MRAP readers vanished: {g:?}");
    s.access_points.push(crate::model::AccessPoint {
        name: "mrap/global".into(),
        arn: mrap.into(),
        alias: "mfzwi23gnjvgw.mrap".into(),
        policy: None,
    });
    let g = bucket_graph("b", OWNER, "us-east-1", &s);
    assert!(g.unseen.is_empty() && g.users.is_empty(), "{g:?}");
}

/// An origin access control that never signs reads anonymously; one that lets a viewer's
/// own signature through admits readers rekey cannot list; an origin rekey cannot tie to a
/// bucket is unseen.
#[test]
fn origin_signing_behaviour_decides_who_reads() {
    use crate::model::CdnOrigin;
    let origin = |signing: &str| CdnOrigin {
        distribution: "arn:aws:cloudfront::123456789012:distribution/E1".into(),
        origin: "o".into(),
        domain: "b.s3.amazonaws.com".into(),
        oac: Some("OAC1".into()),
        signing: Some(signing.into()),
        ..Default::default()
    };
    let with = |o: CdnOrigin| Surroundings {
        origins: vec![o],
        ..Default::default()
    };
    let g = bucket_graph("b", OWNER, "us-east-1", &with(origin("never")));
    assert!(g.users.is_empty() && g.anonymous.len() == 1, "{g:?}");
    assert!(bucket_hazards("b", &with(origin("never")), KEY)
        .iter()
        .any(|h| h.hazard == crate::campaign::Hazard::PublicOrigin));
    let g = bucket_graph("b", OWNER, "us-east-1", &with(origin("no-override")));
    assert_eq!(g.users.len(), 1, "{g:?}");
    assert_eq!(g.unseen.len(), 1, "{g:?}");
    let g = bucket_graph("b", OWNER, "us-east-1", &with(origin("always")));
    assert!(g.unseen.is_empty() && g.users.len() == 1, "{g:?}");
    let g = bucket_graph(
        "b",
        OWNER,
        "us-east-1",
        &with(CdnOrigin {
            unattributed: true,
            domain: "olap-123456789012.s3-object-lambda.us-east-1.amazonaws.com".into(),
            ..origin("always")
        }),
    );
    assert!(g.users.is_empty() && g.unseen.len() == 1, "{g:?}");
}

/// A bucket that receives server access logs cannot move its default to SSE-KMS.
#[test]
fn a_log_target_is_a_hazard() {
    let s = with_policy(
        serde_json::json!({"Statement":[{"Sid":"S3ServerAccessLogsPolicy",
        "Effect":"Allow","Principal":{"Service":"logging.s3.amazonaws.com"},
        "Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*",
        "Condition":{"StringEquals":{"aws:SourceAccount":OWNER}}}]}),
    );
    let h = bucket_hazards("b", &s, KEY);
    assert!(
        h.iter()
            .any(|x| x.hazard == crate::campaign::Hazard::LogTarget),
        "{h:?}"
    );
}

// ---- from the third review of issue 10 ----

/// The bare service principal is not what an unconditioned statement is accepted by: the
/// accept names that statement, and the accepted verdict is not evaluated again by apply
/// (which would judge it without a source and refuse the plan).
#[test]
fn an_unconditioned_service_principal_is_accepted_by_its_statement() {
    let s = cf_policy(serde_json::Value::Null);
    let g = bucket_graph("b", OWNER, "us-east-1", &s);
    assert_eq!(g.unseen.len(), 1, "{g:?}");
    let name = &g.unseen[0].0;
    assert!(
        name.starts_with(
            "cloudfront.amazonaws.com without a source condition (bucket policy of s3://b"
        ),
        "{name}"
    );
    assert!(
        g.unseen[0].2.contains(name.as_str()),
        "the reason says what to accept"
    );
    let v = unseen(name, KEY, "r", "why".into());
    assert!(
        !rechecked(&v),
        "an accepted unseen reader is not evaluated again"
    );
}

#[test]
fn a_log_target_granted_by_not_action_is_a_hazard() {
    let s = with_policy(
        serde_json::json!({"Statement":[{"Sid":"Logs","Effect":"Allow",
        "Principal":{"Service":"logging.s3.amazonaws.com"},
        "NotAction":["s3:GetObject","s3:DeleteObject"],"Resource":"arn:aws:s3:::b/*",
        "Condition":{"StringEquals":{"aws:SourceAccount":OWNER}}}]}),
    );
    assert!(bucket_hazards("b", &s, KEY)
        .iter()
        .any(|x| x.hazard == crate::campaign::Hazard::LogTarget));
}

#[test]
fn unattributed_origins_are_accepted_one_by_one() {
    use crate::model::CdnOrigin;
    let origin = |id: &str| CdnOrigin {
        distribution: format!("arn:aws:cloudfront::123456789012:distribution/{id}"),
        origin: "o".into(),
        domain: "s3.us-east-1.amazonaws.com".into(),
        unattributed: true,
        ..Default::default()
    };
    let g = bucket_graph(
        "b",
        OWNER,
        "us-east-1",
        &Surroundings {
            origins: vec![origin("ECHECKED"), origin("EOTHER")],
            ..Default::default()
        },
    );
    let names: std::collections::BTreeSet<&String> = g.unseen.iter().map(|(p, _, _)| p).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn an_unknown_signing_behaviour_is_unverified() {
    use crate::model::CdnOrigin;
    for (signing, readers) in [("Never", 0), ("NO-OVERRIDE", 1), ("", 0), ("sometimes", 0)] {
        let s = Surroundings {
            origins: vec![CdnOrigin {
                distribution: "arn:aws:cloudfront::123456789012:distribution/E1".into(),
                origin: "o".into(),
                domain: "b.s3.amazonaws.com".into(),
                oac: Some("OAC1".into()),
                signing: Some(signing.into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let g = bucket_graph("b", OWNER, "us-east-1", &s);
        assert!(
            !g.unseen.is_empty() || !g.anonymous.is_empty(),
            "SigningBehavior {signing:?} judged as `always`: {g:?}"
        );
        assert_eq!(g.users.len(), readers, "{signing:?}: {g:?}");
    }
}
