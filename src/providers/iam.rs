//! What the preflight reads to decide who may use a key (DESIGN §5): the key policy and every
//! grant (KMS), a principal's identity-based policies (IAM) and rekey's own identity (STS).
//! Reads only; nothing here writes.

use std::future::Future;

use aws_sdk_iam::error::ProvideErrorMetadata;

use crate::access::{Doc, Grant, Identity, IdentityView, KeyFacts};
use crate::error::ProviderError;
use crate::providers::aws::{map_sdk_error, AwsClients};

/// The reads of the key-access preflight.
pub trait AccessRead: Send + Sync {
    /// The key policy (`default`) and every grant of a key (all ListGrants pages).
    fn key_facts(
        &self,
        key_arn: &str,
    ) -> impl Future<Output = Result<KeyFacts, ProviderError>> + Send;

    /// The IAM policies of a role or user of this account; `Unseen` with the reason when they
    /// cannot be read (another account, not found, access denied) — never an empty `Seen`.
    fn identity(
        &self,
        principal_arn: &str,
    ) -> impl Future<Output = Result<IdentityView, ProviderError>> + Send;

    /// rekey's own principal: the IAM role (for an assumed-role session) or user ARN.
    fn caller(&self) -> impl Future<Output = Result<String, ProviderError>> + Send;

    /// A role's trust policy (who may assume it): `Unseen` with the reason when it cannot be
    /// read, `None` inside when the role does not exist.
    fn role_trust(
        &self,
        role_arn: &str,
    ) -> impl Future<Output = Result<Trust, ProviderError>> + Send;
}

/// What rekey could read of a role's trust policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Trust {
    Policy(serde_json::Value),
    Missing,
    Unseen(String),
}

/// `arn:aws:iam::ACCOUNT:role/path/name` → (account, "role", name).
pub fn split_principal(arn: &str) -> Option<(&str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (_, _, service, _, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if service != "iam" {
        return None;
    }
    let (kind, path) = resource.split_once('/')?;
    let name = path.rsplit('/').next()?;
    Some((account, kind, name))
}

/// An IAM policy document as IAM returns it: URL-encoded JSON (RFC 3986), or plain JSON.
pub fn policy_text(raw: &str) -> String {
    if raw.trim_start().starts_with('{') {
        return raw.to_string();
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// Why an IAM read error hides the principal's policies (rather than failing the run).
fn unseen(e: &ProviderError) -> Option<String> {
    match e {
        ProviderError::NotFound { what } => Some(format!("{what} not found")),
        ProviderError::PermissionDenied { what, detail } => {
            Some(format!("rekey may not read {what}: {detail}"))
        }
        _ => None,
    }
}

impl AwsClients {
    fn doc(source: String, raw: &str) -> Result<Doc, ProviderError> {
        Doc::parse(source.clone(), &policy_text(raw)).map_err(|detail| ProviderError::Other {
            what: source,
            detail,
        })
    }

    /// A managed policy's default version.
    async fn managed(&self, policy_arn: &str) -> Result<Doc, ProviderError> {
        let p = self
            .iam
            .get_policy()
            .policy_arn(policy_arn)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("managed policy {policy_arn}"), e))?;
        let version = p
            .policy()
            .and_then(|p| p.default_version_id())
            .unwrap_or("v1")
            .to_string();
        let v = self
            .iam
            .get_policy_version()
            .policy_arn(policy_arn)
            .version_id(&version)
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("managed policy {policy_arn}"), e))?;
        let raw = v
            .policy_version()
            .and_then(|v| v.document())
            .unwrap_or_default();
        Self::doc(format!("managed policy {policy_arn} ({version})"), raw)
    }

    /// A permissions boundary (a managed policy), named as one.
    async fn boundary(&self, arn: Option<&str>) -> Result<Option<Doc>, ProviderError> {
        let Some(arn) = arn else { return Ok(None) };
        let mut d = self.managed(arn).await?;
        d.source = format!("permissions boundary {}", d.source);
        Ok(Some(d))
    }

    /// The default versions of attached managed policies.
    async fn all_managed(
        &self,
        attached: &[aws_sdk_iam::types::AttachedPolicy],
    ) -> Result<Vec<Doc>, ProviderError> {
        let mut out = Vec::new();
        for a in attached.iter().filter_map(|p| p.policy_arn()) {
            out.push(self.managed(a).await?);
        }
        Ok(out)
    }

    async fn role_identity(&self, name: &str, arn: &str) -> Result<Identity, ProviderError> {
        let what = || format!("role {arn}");
        let role = self
            .iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        let mut id = Identity {
            policies: Vec::new(),
            boundary: self
                .boundary(
                    role.role()
                        .and_then(|r| r.permissions_boundary())
                        .and_then(|b| b.permissions_boundary_arn()),
                )
                .await?,
        };
        let mut marker = None;
        loop {
            let page = self
                .iam
                .list_role_policies()
                .role_name(name)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| map_sdk_error(what(), e))?;
            for p in page.policy_names() {
                let got = self
                    .iam
                    .get_role_policy()
                    .role_name(name)
                    .policy_name(p)
                    .send()
                    .await
                    .map_err(|e| map_sdk_error(what(), e))?;
                id.policies.push(Self::doc(
                    format!("inline policy {p} of role {arn}"),
                    got.policy_document(),
                )?);
            }
            match page.marker().filter(|_| page.is_truncated()) {
                Some(m) => marker = Some(m.to_string()),
                None => break,
            }
        }
        loop {
            let page = self
                .iam
                .list_attached_role_policies()
                .role_name(name)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| map_sdk_error(what(), e))?;
            id.policies
                .extend(self.all_managed(page.attached_policies()).await?);
            match page.marker().filter(|_| page.is_truncated()) {
                Some(m) => marker = Some(m.to_string()),
                None => break,
            }
        }
        Ok(id)
    }

    async fn user_identity(&self, name: &str, arn: &str) -> Result<Identity, ProviderError> {
        let what = || format!("user {arn}");
        let user = self
            .iam
            .get_user()
            .user_name(name)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        let mut id = Identity {
            policies: Vec::new(),
            boundary: self
                .boundary(
                    user.user()
                        .and_then(|u| u.permissions_boundary())
                        .and_then(|b| b.permissions_boundary_arn()),
                )
                .await?,
        };
        let inline = self
            .iam
            .list_user_policies()
            .user_name(name)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        if inline.is_truncated() {
            return Err(ProviderError::Other {
                what: what(),
                detail: "more inline policies than one page".into(),
            });
        }
        for p in inline.policy_names() {
            let got = self
                .iam
                .get_user_policy()
                .user_name(name)
                .policy_name(p)
                .send()
                .await
                .map_err(|e| map_sdk_error(what(), e))?;
            id.policies.push(Self::doc(
                format!("inline policy {p} of user {arn}"),
                got.policy_document(),
            )?);
        }
        let attached = self
            .iam
            .list_attached_user_policies()
            .user_name(name)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        id.policies
            .extend(self.all_managed(attached.attached_policies()).await?);
        let groups = self
            .iam
            .list_groups_for_user()
            .user_name(name)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        for g in groups.groups() {
            let gname = g.group_name();
            let inline = self
                .iam
                .list_group_policies()
                .group_name(gname)
                .send()
                .await
                .map_err(|e| map_sdk_error(format!("group {gname}"), e))?;
            for p in inline.policy_names() {
                let got = self
                    .iam
                    .get_group_policy()
                    .group_name(gname)
                    .policy_name(p)
                    .send()
                    .await
                    .map_err(|e| map_sdk_error(format!("group {gname}"), e))?;
                id.policies.push(Self::doc(
                    format!("inline policy {p} of group {gname}"),
                    got.policy_document(),
                )?);
            }
            let attached = self
                .iam
                .list_attached_group_policies()
                .group_name(gname)
                .send()
                .await
                .map_err(|e| map_sdk_error(format!("group {gname}"), e))?;
            id.policies
                .extend(self.all_managed(attached.attached_policies()).await?);
        }
        Ok(id)
    }

    async fn own_account(&self) -> Result<String, ProviderError> {
        let me = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| map_sdk_error("the caller identity (STS)", e))?;
        Ok(me.account().unwrap_or_default().to_string())
    }
}

impl AccessRead for AwsClients {
    async fn key_facts(&self, key_arn: &str) -> Result<KeyFacts, ProviderError> {
        let what = || format!("key {key_arn}");
        let p = self
            .kms
            .get_key_policy()
            .key_id(key_arn)
            .policy_name("default")
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        let policy = Self::doc(
            format!("key policy of {key_arn}"),
            p.policy().unwrap_or("{}"),
        )?;
        let mut grants = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .kms
                .list_grants()
                .key_id(key_arn)
                .limit(100)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| map_sdk_error(what(), e))?;
            for g in page.grants() {
                let constrained = g.constraints().is_some_and(|c| {
                    c.encryption_context_subset().is_some_and(|m| !m.is_empty())
                        || c.encryption_context_equals().is_some_and(|m| !m.is_empty())
                });
                grants.push(Grant {
                    id: g.grant_id().unwrap_or_default().to_string(),
                    grantee: g.grantee_principal().unwrap_or_default().to_string(),
                    operations: g
                        .operations()
                        .iter()
                        .map(|o| o.as_str().to_string())
                        .collect(),
                    constrained,
                });
            }
            match page.next_marker().filter(|_| page.truncated()) {
                Some(m) => marker = Some(m.to_string()),
                None => break,
            }
        }
        Ok(KeyFacts {
            key_arn: key_arn.to_string(),
            policy,
            grants,
        })
    }

    async fn identity(&self, principal_arn: &str) -> Result<IdentityView, ProviderError> {
        let Some((account, kind, name)) = split_principal(principal_arn) else {
            return Ok(IdentityView::Unseen(format!(
                "{principal_arn} is not an IAM role or user ARN"
            )));
        };
        let own = self.own_account().await?;
        if account != own {
            return Ok(IdentityView::Unseen(format!(
                "its IAM policies are in account {account}, which rekey (account {own}) cannot read"
            )));
        }
        let got = match kind {
            "role" => self.role_identity(name, principal_arn).await,
            "user" => self.user_identity(name, principal_arn).await,
            other => {
                return Ok(IdentityView::Unseen(format!(
                    "a {other} principal: rekey reads the policies of roles and users only"
                )))
            }
        };
        match got {
            Ok(id) => Ok(IdentityView::Seen(id)),
            Err(e) => match unseen(&e) {
                Some(why) => Ok(IdentityView::Unseen(why)),
                None => Err(e),
            },
        }
    }

    async fn role_trust(&self, role_arn: &str) -> Result<Trust, ProviderError> {
        let Some((account, "role", name)) = split_principal(role_arn) else {
            return Ok(Trust::Unseen(format!("{role_arn} is not an IAM role ARN")));
        };
        let own = self.own_account().await?;
        if account != own {
            return Ok(Trust::Unseen(format!(
                "the role is in account {account}, whose IAM rekey (account {own}) cannot read"
            )));
        }
        match self.iam.get_role().role_name(name).send().await {
            Ok(r) => {
                let raw = r
                    .role()
                    .and_then(|r| r.assume_role_policy_document())
                    .unwrap_or_default();
                let doc = Self::doc(format!("trust policy of {role_arn}"), raw)?;
                Ok(Trust::Policy(doc.value))
            }
            Err(e) if e.code() == Some("NoSuchEntity") => Ok(Trust::Missing),
            Err(e) => {
                let e = map_sdk_error(format!("role {role_arn}"), e);
                match unseen(&e) {
                    Some(why) => Ok(Trust::Unseen(why)),
                    None => Err(e),
                }
            }
        }
    }

    async fn caller(&self) -> Result<String, ProviderError> {
        let me = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| map_sdk_error("the caller identity (STS)", e))?;
        let arn = me.arn().unwrap_or_default();
        let account = me.account().unwrap_or_default();
        // arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION → the role (its path from GetRole).
        if let Some(rest) = arn.split_once(":assumed-role/").map(|(_, r)| r) {
            let name = rest.split('/').next().unwrap_or_default();
            return match self.iam.get_role().role_name(name).send().await {
                Ok(r) => Ok(r
                    .role()
                    .map(|r| r.arn().to_string())
                    .unwrap_or_else(|| format!("arn:aws:iam::{account}:role/{name}"))),
                Err(e) if e.code() == Some("AccessDenied") || e.code() == Some("NoSuchEntity") => {
                    Ok(format!("arn:aws:iam::{account}:role/{name}"))
                }
                Err(e) => Err(map_sdk_error(format!("role {name}"), e)),
            };
        }
        // Some emulators answer with an `sts` user ARN; IAM names it under `iam`.
        if let Some(rest) = arn.strip_prefix(&format!("arn:aws:sts::{account}:user/")) {
            return Ok(format!("arn:aws:iam::{account}:user/{rest}"));
        }
        Ok(arn.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_split() {
        assert_eq!(
            split_principal("arn:aws:iam::123456789012:role/service/fraud-exec"),
            Some(("123456789012", "role", "fraud-exec"))
        );
        assert_eq!(
            split_principal("arn:aws:iam::123456789012:user/moto"),
            Some(("123456789012", "user", "moto"))
        );
        assert_eq!(split_principal("arn:aws:sts::1:assumed-role/r/s"), None);
        assert_eq!(split_principal("cloudfront.amazonaws.com"), None);
    }

    #[test]
    fn iam_documents_are_url_decoded() {
        let raw = "%7B%22Version%22%3A%222012-10-17%22%7D";
        assert_eq!(policy_text(raw), r#"{"Version":"2012-10-17"}"#);
        assert_eq!(policy_text(r#" {"a":"%41"}"#), r#" {"a":"%41"}"#);
    }
}
