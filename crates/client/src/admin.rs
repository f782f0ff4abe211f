//! The typed administration API (`/v1/admin/…`) for network
//! administrators: users, invites, devices, security groups, settings and
//! the audit log, with the relay's one error mapping. The CLI's `admin`
//! commands and scripts use it; nothing here builds JSON by hand.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use strongroom_crypto::ids::{DeviceId, UserId};
use strongroom_wire::{
    AdminUser, AuditEntry, BulkInvite, GroupRequest, GroupSettings, InviteCode, InviteCreated, LabelledInvite,
    ResetCode, SecurityGroup, SetGroup, SetRole,
};

use crate::api::Api;
use crate::client::Client;
use crate::error::ClientError;

/// Administration calls made with a device's session (its account must be
/// an administrator of the network; auditors may read).
pub struct Admin<'a> {
    api: &'a Api,
}

/// A value for a query string or path segment, percent-encoded.
fn encode(value: &str) -> Result<String, ClientError> {
    let mut url = reqwest::Url::parse("http://relay/").map_err(|_| ClientError::Corrupt("url"))?;
    url.query_pairs_mut().append_pair("v", value);
    Ok(url.query().unwrap_or_default().trim_start_matches("v=").to_owned())
}

/// A group id as a path segment: 32 hex digits, nothing else.
fn group_id(id: &str) -> Result<String, ClientError> {
    strongroom_crypto::ids::UserId::parse_hex(id)
        .map(|_| id.to_ascii_lowercase())
        .ok_or_else(|| ClientError::Usage(format!("{id:?} is not a group id (32 hex digits)")))
}

/// A query string from pairs, each value encoded.
fn query(pairs: &[(&str, String)]) -> Result<String, ClientError> {
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        out.push(format!("{k}={}", encode(v)?));
    }
    Ok(out.join("&"))
}

impl Client {
    /// The administration API, with this device's session.
    pub fn admin(&self) -> Admin<'_> {
        Admin { api: &self.api }
    }
}

impl Admin<'_> {
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let body = body.map(serde_json::to_value).transpose().map_err(|_| ClientError::Corrupt("request"))?;
        let answer = self.api.call_json(method, path, body.as_ref()).await?.unwrap_or(serde_json::Value::Null);
        serde_json::from_value(answer).map_err(|e| {
            ClientError::Usage(format!("the relay's answer to {path} is not what this release expects: {e}"))
        })
    }

    async fn act(&self, method: Method, path: &str, body: Option<&impl Serialize>) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(method, path, body).await.map(|_| ())
    }

    /// Users of the network, optionally those whose name contains `search`.
    pub async fn users(&self, search: Option<&str>) -> Result<Vec<AdminUser>, ClientError> {
        let q = search.map(|s| encode(s).map(|e| format!("?search={e}"))).transpose()?.unwrap_or_default();
        self.call(Method::GET, &format!("/v1/admin/users{q}"), None::<&()>).await
    }

    /// The network's guests, with who invited each.
    pub async fn guests(&self) -> Result<Vec<AdminUser>, ClientError> {
        self.call(Method::GET, "/v1/admin/guests", None::<&()>).await
    }

    /// One invite per label (at most 1000).
    pub async fn invite(&self, labels: Vec<String>, admin: bool) -> Result<Vec<LabelledInvite>, ClientError> {
        self.call(Method::POST, "/v1/admin/invites", Some(&BulkInvite { labels, admin, ttl_secs: None })).await
    }

    /// Revokes an invite and issues a new one in its place.
    pub async fn reissue_invite(&self, invite: &str) -> Result<InviteCreated, ClientError> {
        self.call(Method::POST, "/v1/admin/invites/reissue", Some(&InviteCode { invite: invite.into() })).await
    }

    /// Suspends a user (their sessions end at once).
    pub async fn suspend(&self, user: UserId) -> Result<(), ClientError> {
        self.act(Method::POST, &format!("/v1/admin/users/{user}/suspend"), None::<&()>).await
    }

    /// Lets a suspended user log in again.
    pub async fn unsuspend(&self, user: UserId) -> Result<(), ClientError> {
        self.act(Method::POST, &format!("/v1/admin/users/{user}/unsuspend"), None::<&()>).await
    }

    /// Deletes a user (messages queued for them are purged).
    pub async fn delete_user(&self, user: UserId) -> Result<(), ClientError> {
        self.act(Method::DELETE, &format!("/v1/admin/users/{user}"), None::<&()>).await
    }

    /// Ends a user's sessions and gives a one-time code to choose a new password.
    pub async fn reset_password(&self, user: UserId) -> Result<ResetCode, ClientError> {
        self.call(Method::POST, &format!("/v1/admin/users/{user}/reset-password"), None::<&()>).await
    }

    /// Sets a user's role (`user`, `admin` or `auditor`).
    pub async fn set_role(&self, user: UserId, role: &str) -> Result<(), ClientError> {
        self.act(Method::POST, &format!("/v1/admin/users/{user}/role"), Some(&SetRole { role: role.into() })).await
    }

    /// Puts a user in a security group (by id), or in none.
    pub async fn set_group(&self, user: UserId, group: Option<String>) -> Result<(), ClientError> {
        self.act(Method::POST, &format!("/v1/admin/users/{user}/group"), Some(&SetGroup { group_id: group })).await
    }

    /// Revokes all of a user's devices and issues an invite to enrol again.
    pub async fn reset_devices(&self, user: UserId) -> Result<InviteCreated, ClientError> {
        self.call(Method::POST, &format!("/v1/admin/users/{user}/devices/reset"), None::<&()>).await
    }

    /// Orders a device wiped (it erases itself when next online).
    pub async fn wipe_device(&self, user: UserId, device: DeviceId) -> Result<(), ClientError> {
        self.act(Method::POST, &format!("/v1/admin/users/{user}/devices/{device}/wipe"), None::<&()>).await
    }

    /// The network's security groups.
    pub async fn groups(&self) -> Result<Vec<SecurityGroup>, ClientError> {
        self.call(Method::GET, "/v1/admin/groups", None::<&()>).await
    }

    /// Creates a security group.
    pub async fn create_group(&self, group: &GroupRequest) -> Result<SecurityGroup, ClientError> {
        self.call(Method::POST, "/v1/admin/groups", Some(group)).await
    }

    /// Renames a security group (by id) or changes its settings.
    pub async fn update_group(&self, id: &str, group: &GroupRequest) -> Result<(), ClientError> {
        self.act(Method::PUT, &format!("/v1/admin/groups/{}", group_id(id)?), Some(group)).await
    }

    /// Deletes a security group (its members fall back to the network's settings).
    pub async fn delete_group(&self, id: &str) -> Result<(), ClientError> {
        self.act(Method::DELETE, &format!("/v1/admin/groups/{}", group_id(id)?), None::<&()>).await
    }

    /// Each retention device of the current policy and what waits for it.
    pub async fn retention_backlog(&self) -> Result<Vec<strongroom_wire::RetentionBacklog>, ClientError> {
        self.call(Method::GET, "/v1/admin/retention/backlog", None::<&()>).await
    }

    /// The network's default settings.
    pub async fn settings(&self) -> Result<GroupSettings, ClientError> {
        self.call(Method::GET, "/v1/admin/settings", None::<&()>).await
    }

    /// Replaces the network's default settings.
    pub async fn put_settings(&self, settings: &GroupSettings) -> Result<(), ClientError> {
        self.act(Method::PUT, "/v1/admin/settings", Some(settings)).await
    }

    /// Audit log entries matching `filter` (pairs of `from`, `until`,
    /// `actor`, `action` and their values; each value is encoded).
    pub async fn audit(&self, filter: &[(&str, String)]) -> Result<Vec<AuditEntry>, ClientError> {
        self.call(Method::GET, &format!("/v1/admin/audit?{}", query(filter)?), None::<&()>).await
    }

    /// The same as JSON Lines, for export.
    pub async fn audit_jsonl(&self, filter: &[(&str, String)]) -> Result<String, ClientError> {
        let bytes = self.api.get_bytes(&format!("/v1/admin/audit?format=jsonl&{}", query(filter)?)).await?;
        String::from_utf8(bytes).map_err(|_| ClientError::Corrupt("audit export"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_cannot_add_parameters() {
        assert_eq!(encode("a&search=b c").unwrap(), "a%26search%3Db+c");
        assert_eq!(encode("bob#x").unwrap(), "bob%23x");
        assert_eq!(query(&[("actor", "a&action=b".into())]).unwrap(), "actor=a%26action%3Db");
        assert!(group_id("..").is_err() && group_id("ab/cd").is_err());
        assert_eq!(group_id(&"AB".repeat(16)).unwrap(), "ab".repeat(16));
    }
}
