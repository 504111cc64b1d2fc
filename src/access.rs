//! Who may use a KMS key: rekey's own evaluator of key policies, grants and IAM policies, for
//! the preflight (DESIGN §5). It fails closed (I5): a principal is allowed only when an explicit
//! Allow reaches it for every action and no Deny can apply; anything it cannot decide — a
//! condition key it does not model, a grant with encryption-context constraints, IAM policies
//! it cannot read — makes the verdict `unverified`, which blocks unless the campaign accepts
//! that statement, condition key or principal by name.
//!
//! The model (AWS KMS developer guide, "Key policies" and "Determining access to a KMS key"):
//! - a key policy statement that names the principal (its ARN, or `*`) allows on its own;
//! - a statement that names the account (`arn:aws:iam::ACCOUNT:root` or the bare id) delegates
//!   to IAM: the principal's own IAM policies must then allow the action on the key ARN;
//! - a grant to the principal with the operation allows (one with constraints only for
//!   requests carrying that encryption context, which rekey cannot know: unverified);
//! - a principal in another account needs the key policy (by name or account) *and* its own
//!   IAM policies;
//! - an explicit Deny anywhere (key policy, IAM policy, permissions boundary) wins;
//! - a permissions boundary must allow too. AWS lets a key policy that names a user's ARN bypass
//!   the boundary; rekey reads it the stricter way (a boundary always has to allow).
//!
//! Service control policies and resource control policies cannot be read from a member
//! account: every verdict says they were not evaluated.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The condition keys the evaluator decides itself (lower case: keys are case-insensitive).
pub const DECIDED_KEYS: &[&str] = &[
    "kms:viaservice",
    "kms:calleraccount",
    "kms:grantisforawsresource",
    "aws:sourcearn",
    "aws:sourceaccount",
    "aws:principalarn",
    "aws:principalaccount",
];

/// What every verdict leaves out, because a member account cannot read it.
pub const NOT_EVALUATED: &str =
    "service control policies and resource control policies (not readable from a member account) and session policies were not evaluated";

/// A policy document with where it came from (named in verdicts).
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// e.g. `key policy of arn:...`, `inline policy p of role r`, `managed policy ARN (v2)`.
    pub source: String,
    pub value: Value,
}

impl Doc {
    pub fn parse(source: impl Into<String>, text: &str) -> Result<Doc, String> {
        let source = source.into();
        let value: Value = serde_json::from_str(text)
            .map_err(|e| format!("{source} is not a JSON policy document: {e}"))?;
        Ok(Doc { source, value })
    }
}

/// A KMS grant, as ListGrants reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub grantee: String,
    /// Operation names as KMS spells them in grants (`Decrypt`, `GenerateDataKey`, ...).
    pub operations: Vec<String>,
    /// The grant has encryption-context constraints.
    pub constrained: bool,
}

/// The identity-based policies of a principal: inline and attached managed ones (default
/// versions), group policies for users, and its permissions boundary.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Identity {
    pub policies: Vec<Doc>,
    pub boundary: Option<Doc>,
}

/// What rekey could learn about a principal's IAM policies.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityView {
    Seen(Identity),
    /// Not readable (another account, access denied, not found): why.
    Unseen(String),
}

/// Who uses the key, for which actions, in which request context.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    /// An IAM role or user ARN, or a service principal (`cloudfront.amazonaws.com`).
    pub principal: String,
    pub actions: Vec<String>,
    /// `kms:ViaService` of the requests (none: the principal calls KMS directly).
    pub via_service: Option<String>,
    /// CreateGrant requests are made for an AWS resource (`kms:GrantIsForAWSResource`).
    pub grant_for_resource: bool,
    /// Service principals: `aws:SourceArn` / `aws:SourceAccount` of their requests.
    pub source_arn: Option<String>,
    pub source_account: Option<String>,
}

impl Usage {
    pub fn principal(principal: &str, actions: &[&str], via_service: Option<String>) -> Usage {
        Usage {
            principal: principal.to_string(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
            via_service,
            grant_for_resource: false,
            source_arn: None,
            source_account: None,
        }
    }

    fn is_service(&self) -> bool {
        !self.principal.starts_with("arn:")
    }

    /// The account of an IAM principal.
    pub fn account(&self) -> Option<&str> {
        if self.is_service() {
            return None;
        }
        self.principal.split(':').nth(4).filter(|a| !a.is_empty())
    }

    /// The request context of one action, keys in lower case.
    fn context(&self, action: &str) -> BTreeMap<&'static str, String> {
        let mut c = BTreeMap::new();
        if let Some(v) = &self.via_service {
            c.insert("kms:viaservice", v.clone());
        }
        if let Some(a) = self.account() {
            c.insert("kms:calleraccount", a.to_string());
            c.insert("aws:principalaccount", a.to_string());
            c.insert("aws:principalarn", self.principal.clone());
        }
        if action.eq_ignore_ascii_case("kms:CreateGrant") {
            c.insert(
                "kms:grantisforawsresource",
                self.grant_for_resource.to_string(),
            );
        }
        if let Some(v) = &self.source_arn {
            c.insert("aws:sourcearn", v.clone());
        }
        if let Some(v) = &self.source_account {
            c.insert("aws:sourceaccount", v.clone());
        }
        c
    }
}

/// What the campaign accepts although rekey cannot verify it (`preflight.accept_unverified`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    /// Statement Sids: their undecidable conditions are taken as the operator says (an Allow's
    /// hold, a Deny's do not).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub statements: BTreeSet<String>,
    /// Condition keys (any case), accepted wherever they appear.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub conditions: BTreeSet<String>,
    /// Principals whose IAM policies rekey cannot read (another account): their key policy
    /// side is still checked.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub principals: BTreeSet<String>,
}

impl Acceptance {
    fn condition(&self, key: &str) -> bool {
        self.conditions.iter().any(|c| c.eq_ignore_ascii_case(key))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    Allowed,
    Denied,
    NotAllowed,
    Unverified,
}

impl VerdictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Allowed => "allowed",
            VerdictKind::Denied => "denied",
            VerdictKind::NotAllowed => "not-allowed",
            VerdictKind::Unverified => "unverified",
        }
    }
}

/// One principal's access to one key, as the plan records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    pub principal: String,
    pub key_arn: String,
    /// Why the principal needs the key (e.g. `execution role of model m`).
    pub role: String,
    pub actions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via_service: Option<String>,
    /// A service principal's `aws:SourceArn` / `aws:SourceAccount` (apply evaluates the same
    /// request again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_account: Option<String>,
    pub verdict: VerdictKind,
    /// The statements and grants the verdict rests on.
    pub rests_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The key policy statement that would allow it (blocked verdicts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<String>,
    /// What the campaign accepted on the way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<String>,
    pub not_evaluated: String,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.verdict == VerdictKind::Allowed
    }

    /// One line for a blocked resource's reason.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} {} ({}) for {} on {}",
            self.principal,
            self.verdict.as_str(),
            self.role,
            self.actions.join(", "),
            self.key_arn
        );
        if let Some(r) = &self.reason {
            s.push_str(": ");
            s.push_str(r);
        }
        if let Some(a) = &self.add {
            s.push_str("; add to the key policy: ");
            s.push_str(a);
        }
        s
    }
}

/// Three-valued result of a check: yes (resting on these statements), unknown (why), no.
#[derive(Debug, Clone, PartialEq)]
enum T {
    Yes(Vec<String>),
    Unknown(Vec<String>),
    No,
}

impl T {
    fn or(self, other: T) -> T {
        match (self, other) {
            (T::Yes(mut a), T::Yes(b)) => {
                a.extend(b);
                T::Yes(a)
            }
            (T::Yes(a), _) | (_, T::Yes(a)) => T::Yes(a),
            (T::Unknown(mut a), T::Unknown(b)) => {
                a.extend(b);
                T::Unknown(a)
            }
            (T::Unknown(a), T::No) | (T::No, T::Unknown(a)) => T::Unknown(a),
            (T::No, T::No) => T::No,
        }
    }

    fn and(self, other: T) -> T {
        match (self, other) {
            (T::No, _) | (_, T::No) => T::No,
            (T::Unknown(mut a), T::Unknown(b)) => {
                a.extend(b);
                T::Unknown(a)
            }
            (T::Unknown(a), T::Yes(_)) | (T::Yes(_), T::Unknown(a)) => T::Unknown(a),
            (T::Yes(mut a), T::Yes(b)) => {
                a.extend(b);
                T::Yes(a)
            }
        }
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` one character.
pub fn wildcard(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let fold = |s: &str| -> Vec<char> {
        if ignore_case {
            s.to_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let (p, t) = (fold(pattern), fold(text));
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// IAM's ARN match: the six colon-separated parts compared one by one (a `*` never spans a
/// colon), each with the wildcard rules.
/// `None`: a pattern that is not an ARN (nor `*`), which rekey does not decide.
pub fn arn_like(pattern: &str, arn: &str) -> Option<bool> {
    if pattern == "*" {
        return Some(true);
    }
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    if p.len() != 6 {
        return None;
    }
    Some(a.len() == 6 && p.iter().zip(&a).all(|(p, a)| wildcard(p, a, false)))
}

/// A policy field's values as strings (one string, or each element of an array).
pub fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Value::Bool(b) => vec![b.to_string()],
        Value::Number(n) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

/// A policy document's statements: its `Statement` array, or the one statement object.
pub fn statement_list(doc: &Value) -> Vec<&Value> {
    match &doc["Statement"] {
        Value::Array(a) => a.iter().collect(),
        s @ Value::Object(_) => vec![s],
        _ => Vec::new(),
    }
}

fn statements(doc: &Doc) -> Vec<(String, &Value)> {
    statement_list(&doc.value)
        .into_iter()
        .enumerate()
        .map(|(i, st)| {
            let name = match st["Sid"].as_str().filter(|s| !s.is_empty()) {
                Some(sid) => format!("{} statement {sid:?}", doc.source),
                None => format!("{} statement #{}", doc.source, i + 1),
            };
            (name, st)
        })
        .collect()
}

fn sid(st: &Value) -> Option<&str> {
    st["Sid"].as_str().filter(|s| !s.is_empty())
}

fn action_applies(st: &Value, action: &str) -> bool {
    if let Some(not) = st.get("NotAction") {
        return !strings(not).iter().any(|p| wildcard(p, action, true));
    }
    strings(&st["Action"])
        .iter()
        .any(|p| wildcard(p, action, true))
}

fn resource_applies(st: &Value, key_arn: &str) -> bool {
    if let Some(not) = st.get("NotResource") {
        return !strings(not).iter().any(|p| wildcard(p, key_arn, false));
    }
    match st.get("Resource") {
        None => true,
        Some(r) => strings(r).iter().any(|p| wildcard(p, key_arn, false)),
    }
}

/// How a key policy statement's Principal names the usage's principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    /// By its ARN, service name, or `*`.
    Directly,
    /// By its account (`arn:aws:iam::ACCOUNT:root` or the bare id): delegation to IAM.
    Account,
    Not,
}

fn principal_entries(p: &Value) -> Vec<String> {
    match p {
        Value::String(s) => vec![s.clone()],
        Value::Object(m) => m.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

fn names(entries: &[String], usage: &Usage) -> Named {
    let mut named = Named::Not;
    for e in entries {
        if e == "*" || *e == usage.principal {
            return Named::Directly;
        }
        if let Some(acct) = usage.account() {
            if *e == format!("arn:aws:iam::{acct}:root") || e == acct {
                named = Named::Account;
            }
        }
    }
    named
}

/// Whether a Principal list names an assumed-role session of the usage's role.
fn names_a_session(entries: &[String], usage: &Usage) -> bool {
    let Some((prefix, path)) = usage.principal.split_once(":role/") else {
        return false;
    };
    let account = prefix.rsplit(':').next().unwrap_or_default();
    let role = path.rsplit('/').next().unwrap_or_default();
    entries.iter().any(|e| {
        e.strip_prefix(&format!("arn:aws:sts::{account}:assumed-role/"))
            .and_then(|rest| rest.split('/').next())
            .is_some_and(|r| r == role)
    })
}

/// Whether a NotPrincipal list leaves the usage's principal out (the Deny then does not apply
/// to it). AWS evaluates the account and the principal: both must be listed; for a role the
/// session ARN too, which rekey cannot know, so a role is never taken as excluded.
fn excluded_by(entries: &[String], usage: &Usage) -> bool {
    if usage.is_service() {
        return entries.contains(&usage.principal);
    }
    if usage.principal.contains(":role/") {
        return false;
    }
    let acct = usage.account().unwrap_or_default();
    let account_listed = entries
        .iter()
        .any(|e| *e == format!("arn:aws:iam::{acct}:root") || e == acct);
    account_listed && entries.contains(&usage.principal)
}

/// Whether a statement's conditions hold for the request.
fn conditions_hold(
    st: &Value,
    name: &str,
    ctx: &BTreeMap<&'static str, String>,
    accept: &Acceptance,
    deny: bool,
    key_policy: bool,
    accepted: &mut Vec<String>,
) -> T {
    let Some(cond) = st.get("Condition").and_then(Value::as_object) else {
        return T::Yes(Vec::new());
    };
    // Sids are accepted in key policies only (IAM policies and boundaries may reuse a Sid).
    let statement_accepted = key_policy && sid(st).is_some_and(|s| accept.statements.contains(s));
    let mut result = T::Yes(Vec::new());
    for (op, block) in cond {
        let Some(block) = block.as_object() else {
            result = result.and(T::Unknown(vec![format!(
                "{name}: condition {op} is not a map"
            )]));
            continue;
        };
        for (key, values) in block {
            let lkey = key.to_ascii_lowercase();
            let decided = DECIDED_KEYS.contains(&lkey.as_str());
            let outcome = if decided {
                eval_operator(
                    op,
                    ctx.get(lkey.as_str()).map(String::as_str),
                    &strings(values),
                )
            } else {
                None
            };
            let t = match outcome {
                Some(true) => T::Yes(Vec::new()),
                Some(false) => T::No,
                None => {
                    let what = if decided {
                        format!("{name}: operator {op} on {key} is not one rekey decides")
                    } else {
                        format!("{name}: condition key {key} is not one rekey decides")
                    };
                    if statement_accepted || accept.condition(key) {
                        accepted.push(format!("{what} (accepted by the campaign)"));
                        // Accepted: an Allow's condition holds, a Deny's does not.
                        if deny {
                            T::No
                        } else {
                            T::Yes(Vec::new())
                        }
                    } else {
                        T::Unknown(vec![what])
                    }
                }
            };
            result = result.and(t);
        }
    }
    result
}

/// Evaluate one condition operator; `None`: not decidable here.
pub fn eval_operator(op: &str, value: Option<&str>, wanted: &[String]) -> Option<bool> {
    if op.contains(':') || wanted.iter().any(|w| w.contains("${")) {
        // ForAnyValue:/ForAllValues: set operators and policy variables.
        return None;
    }
    let (base, if_exists) = match op.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (op, false),
    };
    if base == "Null" {
        let want_absent = wanted.iter().all(|w| w.eq_ignore_ascii_case("true"));
        let want_present = wanted.iter().all(|w| w.eq_ignore_ascii_case("false"));
        return match (want_absent, want_present) {
            (true, false) => Some(value.is_none()),
            (false, true) => Some(value.is_some()),
            _ => None,
        };
    }
    const KNOWN: &[&str] = &[
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "ArnEquals",
        "ArnLike",
        "ArnNotEquals",
        "ArnNotLike",
        "Bool",
    ];
    if !KNOWN.contains(&base) {
        // Numeric, date, IP and binary operators: not decided here, present key or not.
        return None;
    }
    let negated = matches!(
        base,
        "StringNotEquals"
            | "StringNotEqualsIgnoreCase"
            | "StringNotLike"
            | "ArnNotEquals"
            | "ArnNotLike"
    );
    let Some(v) = value else {
        // An absent key: the negated operators hold, the others do not; IfExists holds.
        return Some(if_exists || negated);
    };
    let any = |f: &dyn Fn(&str) -> bool| wanted.iter().any(|w| f(w));
    let hit = match base {
        "StringEquals" | "StringNotEquals" => any(&|w| w == v),
        "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => {
            any(&|w| w.eq_ignore_ascii_case(v))
        }
        "StringLike" | "StringNotLike" => any(&|w| wildcard(w, v, false)),
        "ArnEquals" | "ArnLike" | "ArnNotEquals" | "ArnNotLike" => {
            let mut hit = false;
            for w in wanted {
                hit |= arn_like(w, v)?;
            }
            hit
        }
        "Bool" => any(&|w| w.eq_ignore_ascii_case(v)),
        _ => return None,
    };
    Some(if negated { !hit } else { hit })
}

/// One evaluation's fixed inputs, and what the campaign accepted along the way.
struct Eval<'a> {
    usage: &'a Usage,
    key_arn: &'a str,
    accept: &'a Acceptance,
    accepted: Vec<String>,
}

impl Eval<'_> {
    /// Whether a statement applies to one action: principal (key policies only; `want` says
    /// how an Allow must name it, a Deny applies however it names it), action, resource,
    /// conditions.
    fn applies(
        &mut self,
        name: &str,
        st: &Value,
        key_policy: bool,
        want: Named,
        action: &str,
    ) -> T {
        let deny = st["Effect"].as_str() == Some("Deny");
        if key_policy {
            if let Some(np) = st.get("NotPrincipal") {
                // NotPrincipal: the statement applies to everyone not listed.
                let excluded = excluded_by(&principal_entries(np), self.usage);
                if excluded || want == Named::Account {
                    return T::No;
                }
            } else {
                let entries = principal_entries(&st["Principal"]);
                let named = names(&entries, self.usage);
                let fits = if deny {
                    named != Named::Not
                } else {
                    named == want
                };
                if !fits {
                    if deny
                        && names_a_session(&entries, self.usage)
                        && action_applies(st, action)
                        && resource_applies(st, self.key_arn)
                    {
                        // The role's requests are made in sessions whose names rekey cannot
                        // know: a Deny naming one may apply.
                        return T::Unknown(vec![format!(
                            "{name}: a Deny names a session of this role (arn:aws:sts::...:assumed-role/...), which may be the one its requests use"
                        )]);
                    }
                    return T::No;
                }
            }
        }
        if !action_applies(st, action) || !resource_applies(st, self.key_arn) {
            return T::No;
        }
        let ctx = self.usage.context(action);
        match conditions_hold(
            st,
            name,
            &ctx,
            self.accept,
            deny,
            key_policy,
            &mut self.accepted,
        ) {
            T::Yes(_) => T::Yes(vec![name.to_string()]),
            other => other,
        }
    }

    /// Whether any statement of `doc` with this effect applies.
    fn any(&mut self, doc: &Doc, effect: &str, key_policy: bool, want: Named, action: &str) -> T {
        let mut t = T::No;
        for (name, st) in statements(doc) {
            if st["Effect"].as_str() == Some(effect) {
                t = t.or(self.applies(&name, st, key_policy, want, action));
            }
        }
        t
    }
}

/// The KMS operation name of an action, as grants spell it.
fn grant_op(action: &str) -> &str {
    action.split_once(':').map_or(action, |(_, op)| op)
}

fn grant_allows(grants: &[Grant], usage: &Usage, action: &str) -> T {
    let mut t = T::No;
    for g in grants {
        if g.grantee != usage.principal || !g.operations.iter().any(|o| o == grant_op(action)) {
            continue;
        }
        t = t.or(if g.constrained {
            T::Unknown(vec![format!(
                "grant {} has encryption-context constraints: it covers only requests with that context, which rekey cannot know",
                g.id
            )])
        } else {
            T::Yes(vec![format!("grant {}", g.id)])
        });
    }
    t
}

/// The key facts an evaluation reads.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyFacts {
    pub key_arn: String,
    pub policy: Doc,
    pub grants: Vec<Grant>,
}

impl KeyFacts {
    fn account(&self) -> &str {
        self.key_arn.split(':').nth(4).unwrap_or_default()
    }
}

/// The verdict for one usage of one key.
pub fn evaluate(
    key: &KeyFacts,
    identity: &IdentityView,
    usage: &Usage,
    accept: &Acceptance,
    role: &str,
) -> Verdict {
    let mut ev = Eval {
        usage,
        key_arn: &key.key_arn,
        accept,
        accepted: Vec::new(),
    };
    let mut rests_on: BTreeSet<String> = BTreeSet::new();
    let mut denied: Option<String> = None;
    let mut missing = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let service = usage.is_service();
    let cross = !service && usage.account() != Some(key.account());
    let identity_accepted = accept.principals.contains(&usage.principal);
    for action in &usage.actions {
        let a = action.as_str();
        // Explicit denies anywhere.
        let mut deny = ev.any(&key.policy, "Deny", true, Named::Directly, a);
        let (iam, boundary) = match identity {
            _ if service => (T::Yes(Vec::new()), T::Yes(Vec::new())),
            IdentityView::Seen(id) => {
                let mut iam = T::No;
                for d in &id.policies {
                    deny = deny.or(ev.any(d, "Deny", false, Named::Directly, a));
                    iam = iam.or(ev.any(d, "Allow", false, Named::Directly, a));
                }
                let boundary = match &id.boundary {
                    None => T::Yes(Vec::new()),
                    Some(b) => {
                        deny = deny.or(ev.any(b, "Deny", false, Named::Directly, a));
                        ev.any(b, "Allow", false, Named::Directly, a)
                    }
                };
                (iam, boundary)
            }
            IdentityView::Unseen(why) if identity_accepted => {
                ev.accepted.push(format!(
                    "IAM policies of {} not readable ({why}): accepted by the campaign",
                    usage.principal
                ));
                (T::Yes(Vec::new()), T::Yes(Vec::new()))
            }
            IdentityView::Unseen(why) => {
                let u = T::Unknown(vec![format!(
                    "the IAM policies of {} could not be read ({why})",
                    usage.principal
                )]);
                (u.clone(), u)
            }
        };
        if let T::Yes(on) = &deny {
            denied = Some(on.first().cloned().unwrap_or_default());
            break;
        }
        let direct = ev.any(&key.policy, "Allow", true, Named::Directly, a);
        let account = ev.any(&key.policy, "Allow", true, Named::Account, a);
        let grant = grant_allows(&key.grants, usage, a);
        let allow = if service {
            direct.or(grant)
        } else if cross {
            direct.or(account).and(iam).or(grant).and(boundary)
        } else {
            direct.or(grant).or(account.and(iam)).and(boundary)
        };
        match (allow, deny) {
            (T::Yes(on), T::No) => rests_on.extend(on),
            (T::Yes(_), T::Unknown(why)) => unknown.extend(
                why.into_iter()
                    .map(|w| format!("{a}: a Deny may apply: {w}")),
            ),
            (T::Unknown(why), _) => unknown.extend(why.into_iter().map(|w| format!("{a}: {w}"))),
            (T::No, _) => missing.push(a.to_string()),
            (T::Yes(_), T::Yes(_)) => unreachable!("a Deny that applies stops the loop"),
        }
    }
    let actions_for_fix: Vec<&str> = if missing.is_empty() {
        usage.actions.iter().map(String::as_str).collect()
    } else {
        missing.iter().map(String::as_str).collect()
    };
    let (verdict, reason, add) = if let Some(st) = &denied {
        (
            VerdictKind::Denied,
            Some(format!(
                "denied by {st}: narrow that Deny so it leaves this principal out"
            )),
            None,
        )
    } else if !missing.is_empty() {
        (
            VerdictKind::NotAllowed,
            Some(format!(
                "no Allow reaches it for {}{}",
                missing.join(", "),
                if cross {
                    " (another account: the key policy must name it or its account, and its own IAM policies must allow the key)"
                } else {
                    ""
                }
            )),
            Some(statement_for(usage, &actions_for_fix)),
        )
    } else if !unknown.is_empty() {
        unknown.sort();
        unknown.dedup();
        (
            VerdictKind::Unverified,
            Some(format!(
                "{}; accept it by name under preflight.accept_unverified, or allow it without that condition",
                unknown.join("; ")
            )),
            Some(statement_for(usage, &actions_for_fix)),
        )
    } else {
        (VerdictKind::Allowed, None, None)
    };
    let mut accepted = ev.accepted;
    accepted.sort();
    accepted.dedup();
    Verdict {
        principal: usage.principal.clone(),
        key_arn: key.key_arn.clone(),
        role: role.to_string(),
        actions: usage.actions.clone(),
        via_service: usage.via_service.clone(),
        source_arn: usage.source_arn.clone(),
        source_account: usage.source_account.clone(),
        verdict,
        // Allowed: the statements that allow; denied: the Deny; unverified: what could not
        // be decided (each names its statement); not allowed: nothing reaches it.
        rests_on: match verdict {
            VerdictKind::Allowed => rests_on.into_iter().collect(),
            VerdictKind::Denied => denied.into_iter().collect(),
            VerdictKind::Unverified => unknown,
            VerdictKind::NotAllowed => Vec::new(),
        },
        reason,
        add,
        accepted,
        not_evaluated: NOT_EVALUATED.to_string(),
    }
}

/// The key policy statement(s) that let a principal use a key for these actions (CreateGrant
/// for an AWS resource goes in a statement of its own, under `kms:GrantIsForAWSResource`).
pub fn statement_for(usage: &Usage, actions: &[&str]) -> String {
    let mut st = statements_for(usage, actions);
    if st.len() == 1 {
        st.remove(0).to_string()
    } else {
        Value::Array(st).to_string()
    }
}

/// The key policy statements that allow a usage: one, or two when CreateGrant for an AWS
/// resource goes apart under `kms:GrantIsForAWSResource` (`AllowRekeyConsumer`,
/// `AllowRekeyConsumerGrants`). `rekey keys` writes its policies from these.
pub fn statements_for(usage: &Usage, actions: &[&str]) -> Vec<Value> {
    let principal = if usage.is_service() {
        serde_json::json!({ "Service": usage.principal })
    } else {
        serde_json::json!({ "AWS": usage.principal })
    };
    let statement = |sid: &str, actions: &[&str], grant: bool| {
        let mut st = serde_json::json!({
            "Sid": sid,
            "Effect": "Allow",
            "Principal": principal,
            "Action": actions,
            "Resource": "*",
        });
        let mut cond = serde_json::Map::new();
        if let Some(v) = &usage.via_service {
            cond.insert(
                "StringEquals".into(),
                serde_json::json!({ "kms:ViaService": v }),
            );
        }
        if grant {
            cond.insert(
                "Bool".into(),
                serde_json::json!({ "kms:GrantIsForAWSResource": "true" }),
            );
        }
        if !cond.is_empty() {
            st["Condition"] = Value::Object(cond);
        }
        st
    };
    let is_grant = |a: &&str| a.eq_ignore_ascii_case("kms:CreateGrant");
    let grants: Vec<&str> = actions.iter().copied().filter(is_grant).collect();
    let others: Vec<&str> = actions.iter().copied().filter(|a| !is_grant(a)).collect();
    if grants.is_empty() || !usage.grant_for_resource {
        return vec![statement("AllowRekeyConsumer", actions, false)];
    }
    if others.is_empty() {
        return vec![statement("AllowRekeyConsumerGrants", &grants, true)];
    }
    vec![
        statement("AllowRekeyConsumer", &others, false),
        statement("AllowRekeyConsumerGrants", &grants, true),
    ]
}

#[cfg(test)]
mod tests;

/// The literal part of a resource pattern before its first wildcard.
fn literal_prefix(p: &str) -> &str {
    &p[..p.find(['*', '?']).unwrap_or(p.len())]
}

/// Whether resource pattern `p` matches every ARN of `set` (an ARN, or a prefix and a final
/// `*`): exactly, `*`, or a literal prefix of the set's followed by a final `*` alone.
fn covers(p: &str, set: &str) -> bool {
    if p == "*" || p == set {
        return true;
    }
    match p.strip_suffix('*') {
        Some(pp) if !pp.contains(['*', '?']) => literal_prefix(set).starts_with(pp),
        _ => !set.contains(['*', '?']) && wildcard(p, set, false),
    }
}

/// Whether resource pattern `p` may match some ARN of `set` (fail-closed: a pattern whose
/// literal start is compatible with the set's is taken as matching some of it).
fn touches(p: &str, set: &str) -> bool {
    if !set.contains(['*', '?']) {
        return wildcard(p, set, false);
    }
    let (a, b) = (literal_prefix(p), literal_prefix(set));
    a.starts_with(b) || b.starts_with(a)
}

/// How a statement's Resource / NotResource meets a set of ARNs.
#[derive(PartialEq)]
enum Reach {
    All,
    Some,
    None,
}

fn reach(st: &Value, set: &str) -> Reach {
    let (pats, negated) = match (st.get("NotResource"), st.get("Resource")) {
        (Some(not), _) => (strings(not), true),
        (None, Some(r)) => (strings(r), false),
        (None, None) => return Reach::All,
    };
    let all = pats.iter().any(|p| covers(p, set));
    let some = pats.iter().any(|p| touches(p, set));
    match (negated, all, some) {
        (false, true, _) => Reach::All,
        (false, false, true) => Reach::Some,
        (false, false, false) => Reach::None,
        // NotResource: the statement applies where none of its patterns does.
        (true, _, false) => Reach::All,
        (true, true, _) => Reach::None,
        (true, false, true) => Reach::Some,
    }
}

/// Whether a principal's identity-based policies (and its permissions boundary) allow one
/// request, `action` on every ARN of `resource` (an S3 object or bucket ARN, or a prefix and a
/// final `*` for all of a job's objects), failing closed: a Deny that may reach one of them, a
/// condition rekey cannot decide (unless the campaign accepts its key), or no Allow reaching
/// all of them is `Err` with the reason. For a bucket of the principal's own account an
/// identity Allow is enough (AWS: "Policy evaluation logic", same-account requests); bucket
/// policies are not read here.
pub fn identity_allows(
    identity: &Identity,
    principal: &str,
    action: &str,
    resource: &str,
    accept: &Acceptance,
) -> Result<(), String> {
    let usage = Usage::principal(principal, &[action], None);
    // An S3 request's context: the principal; none of KMS's keys.
    let ctx: BTreeMap<&'static str, String> = usage
        .context(action)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("kms:"))
        .collect();
    let mut accepted = Vec::new();
    // (allowed by some statement, undecided statements) of a set of documents.
    let mut judge = |docs: &[&Doc]| -> Result<(bool, Vec<String>), String> {
        let (mut allowed, mut unknown) = (false, Vec::new());
        for doc in docs {
            for (name, st) in statements(doc) {
                let deny = st["Effect"].as_str() == Some("Deny");
                let r = reach(st, resource);
                // A Deny that reaches some of the ARNs blocks; an Allow must reach all of them.
                if !action_applies(st, action) || r == Reach::None || (!deny && r == Reach::Some) {
                    continue;
                }
                match conditions_hold(st, &name, &ctx, accept, deny, false, &mut accepted) {
                    T::Yes(_) if deny => {
                        return Err(format!("{name} denies {action} on {resource}"))
                    }
                    T::Yes(_) => allowed = true,
                    T::No => {}
                    // A Deny that may apply blocks; an Allow that may not hold does not count.
                    T::Unknown(w) if deny => {
                        return Err(format!("{} (a Deny rekey cannot rule out)", w.join("; ")))
                    }
                    T::Unknown(w) => unknown.extend(w),
                }
            }
        }
        Ok((allowed, unknown))
    };
    let policies: Vec<&Doc> = identity.policies.iter().collect();
    let (allowed, unknown) = judge(&policies)?;
    if !allowed {
        return Err(if unknown.is_empty() {
            format!("no statement of its IAM policies allows {action} on {resource}")
        } else {
            format!(
                "only statements rekey cannot decide allow {action} on {resource}: {}",
                unknown.join("; ")
            )
        });
    }
    if let Some(b) = &identity.boundary {
        let (allowed, unknown) = judge(&[b])?;
        if !allowed {
            return Err(if unknown.is_empty() {
                format!("its permissions boundary does not allow {action} on {resource}")
            } else {
                format!(
                    "its permissions boundary allows {action} on {resource} only under conditions rekey cannot decide: {}",
                    unknown.join("; ")
                )
            });
        }
    }
    Ok(())
}
