//! Signed requests to S3 and KMS that `object_store` does not make: a
//! bucket's Object Lock settings, object versions and their retention (what
//! `verify` checks on a WORM archive), and KMS Encrypt/Decrypt (custody of
//! the archive key). Signed with AWS Signature Version 4 by `aws-sigv4`.
//!
//! Credentials, region and endpoints come from the usual variables:
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION` (or `AWS_DEFAULT_REGION`), and for S3-compatible stores and
//! tests `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL_KMS` / `AWS_ENDPOINT_URL`
//! (or object_store's `AWS_ENDPOINT`).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use zeroize::Zeroizing;

use crate::RetentionError;

/// Where and as whom.
#[derive(Clone)]
pub struct AwsConfig {
    region: String,
    access_key: String,
    secret_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
    endpoint_s3: Option<String>,
    endpoint_kms: Option<String>,
    /// Server-side encryption for writes made here, as object_store reads
    /// it: `AWS_SERVER_SIDE_ENCRYPTION` (`aws:kms`, `aws:kms:dsse`,
    /// `AES256`) and `AWS_SSE_KMS_KEY_ID`.
    sse: Option<(String, Option<String>)>,
}

impl std::fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsConfig")
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("endpoint_s3", &self.endpoint_s3)
            .field("endpoint_kms", &self.endpoint_kms)
            .finish_non_exhaustive()
    }
}

impl AwsConfig {
    /// Explicit settings (one endpoint for S3 and KMS, as an S3-compatible
    /// store or a test double serves them).
    pub fn new(region: &str, access_key: &str, secret_key: &str, endpoint: Option<&str>) -> Self {
        Self {
            region: region.into(),
            access_key: access_key.into(),
            secret_key: Zeroizing::new(secret_key.into()),
            session_token: None,
            endpoint_s3: endpoint.map(str::to_owned),
            endpoint_kms: endpoint.map(str::to_owned),
            sse: None,
        }
    }

    /// Writes made here ask for server-side encryption `mode` (`aws:kms`)
    /// under `kms_key_id`.
    pub fn with_sse(mut self, mode: &str, kms_key_id: Option<&str>) -> Self {
        self.sse = Some((mode.into(), kms_key_id.map(str::to_owned)));
        self
    }

    /// From the environment.
    pub fn from_env() -> Result<Self, RetentionError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let (Some(access_key), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) else {
            return Err(RetentionError::Usage(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set to use S3 or KMS".into(),
            ));
        };
        let generic = var("AWS_ENDPOINT_URL").or_else(|| var("AWS_ENDPOINT"));
        Ok(Self {
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into()),
            access_key,
            secret_key: Zeroizing::new(secret),
            session_token: var("AWS_SESSION_TOKEN").map(Zeroizing::new),
            endpoint_s3: var("AWS_ENDPOINT_URL_S3").or_else(|| generic.clone()),
            endpoint_kms: var("AWS_ENDPOINT_URL_KMS").or(generic),
            sse: var("AWS_SERVER_SIDE_ENCRYPTION").map(|m| (m, var("AWS_SSE_KMS_KEY_ID"))),
        })
    }
}

/// A response: status and body.
struct Reply {
    status: u16,
    body: bytes::Bytes,
    version_id: Option<String>,
    e_tag: Option<String>,
    lock_mode: Option<String>,
    lock_until: Option<String>,
    sse: Option<String>,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Written.
    Done {
        /// Its ETag.
        e_tag: Option<String>,
        /// Its version.
        version_id: Option<String>,
    },
    /// Create-only, and the key exists.
    Exists,
}

fn cloud(what: &str, e: impl std::fmt::Display) -> RetentionError {
    RetentionError::Cloud(format!("{what}: {e}"))
}

async fn send(
    http: &reqwest::Client,
    cfg: &AwsConfig,
    service: &str,
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<Reply, RetentionError> {
    let identity = Credentials::new(
        &cfg.access_key,
        cfg.secret_key.as_str(),
        cfg.session_token.as_ref().map(|t| t.to_string()),
        None,
        "environment",
    )
    .into();
    let mut settings = SigningSettings::default();
    if service == "s3" {
        // S3 signs the path as sent and wants the payload hash in a header.
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&cfg.region)
        .name(service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| cloud("signing", e))?
        .into();
    let signable =
        SignableRequest::new(method, url, headers.iter().map(|(k, v)| (*k, v.as_str())), SignableBody::Bytes(&body))
            .map_err(|e| cloud("signing", e))?;
    let (instructions, _) = sign(signable, &params).map_err(|e| cloud("signing", e))?.into_parts();
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| cloud("method", e))?;
    let mut req = http.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    for (k, v) in instructions.headers() {
        req = req.header(k, v);
    }
    let resp = req.body(body).send().await.map_err(|e| cloud(service, e))?;
    let status = resp.status().as_u16();
    // Listings and KMS replies are small: a reply past this is not S3's.
    const MAX_REPLY: u64 = 64 << 20;
    if resp.content_length().is_some_and(|n| n > MAX_REPLY) {
        return Err(RetentionError::Cloud(format!("{service} sent a reply over {MAX_REPLY} bytes")));
    }
    let header = |k: &str| resp.headers().get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (version_id, e_tag) = (header("x-amz-version-id"), header("etag"));
    let (lock_mode, lock_until) = (header("x-amz-object-lock-mode"), header("x-amz-object-lock-retain-until-date"));
    let sse = header("x-amz-server-side-encryption");
    let body = resp.bytes().await.map_err(|e| cloud(service, e))?;
    if body.len() as u64 > MAX_REPLY {
        return Err(RetentionError::Cloud(format!("{service} sent a reply over {MAX_REPLY} bytes")));
    }
    Ok(Reply { status, body, version_id, e_tag, lock_mode, lock_until, sse })
}

/// An error reply as one line: the service's code and message.
fn refusal(what: &str, reply: &Reply) -> RetentionError {
    let xml = String::from_utf8_lossy(&reply.body);
    let code = xml_text(&xml, "Code")
        .or_else(|| {
            serde_json::from_slice::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|v| v.get("__type").and_then(|t| t.as_str()).map(str::to_owned))
        })
        .unwrap_or_default();
    let message = xml_text(&xml, "Message").unwrap_or_default();
    RetentionError::Cloud(format!("{what} refused ({}): {code} {message}", reply.status).trim().to_owned())
}

/// Each `<tag>` element in `xml` as its direct children's texts (and its
/// own text under `$text`): S3's replies are this flat. Malformed XML is an
/// error, never a shorter answer.
fn xml_elements(xml: &str, tag: &str) -> Result<Vec<Vec<(String, String)>>, RetentionError> {
    use quick_xml::events::Event;
    let bad = |e: &dyn std::fmt::Display| RetentionError::Cloud(format!("a malformed XML reply: {e}"));
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut depth_in: Option<usize> = None;
    let mut depth = 0usize;
    let mut current: Vec<(String, String)> = Vec::new();
    let mut child: Option<String> = None;
    let mut text = String::new();
    loop {
        match reader.read_event().map_err(|e| bad(&e))? {
            Event::Start(e) => {
                depth += 1;
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match depth_in {
                    None if name == tag => {
                        depth_in = Some(depth);
                        current = Vec::new();
                        text.clear();
                    }
                    Some(d) if depth == d + 1 => {
                        child = Some(name);
                        text.clear();
                    }
                    _ => {}
                }
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if depth_in.is_none() && name == tag {
                    out.push(Vec::new());
                }
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| bad(&e))?),
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) => match r.resolve_char_ref().map_err(|e| bad(&e))? {
                Some(c) => text.push(c),
                None => {
                    let name = r.decode().map_err(|e| bad(&e))?;
                    let c = quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| bad(&format!("unknown entity &{name};")))?;
                    text.push_str(c);
                }
            },
            Event::End(_) => {
                if let Some(d) = depth_in {
                    if depth == d {
                        let own = std::mem::take(&mut text);
                        if !own.trim().is_empty() {
                            current.push(("$text".into(), own));
                        }
                        out.push(std::mem::take(&mut current));
                        depth_in = None;
                    } else if depth == d + 1 {
                        if let Some(c) = child.take() {
                            current.push((c, std::mem::take(&mut text)));
                        }
                    }
                }
                depth = depth.checked_sub(1).ok_or_else(|| bad(&"an end tag with no start"))?;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if depth != 0 {
        return Err(bad(&"truncated"));
    }
    Ok(out)
}

/// The text of the first `<tag>` in `xml`, if it parses.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    xml_elements(xml, tag)
        .ok()?
        .into_iter()
        .next()
        .and_then(|e| e.into_iter().find(|(k, _)| k == "$text").map(|(_, v)| v))
}

fn field<'a>(e: &'a [(String, String)], k: &str) -> Option<&'a str> {
    e.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// `2026-12-01T23:01:50.000Z` as ms since the epoch.
pub fn parse_time(s: &str) -> Option<u64> {
    let days = strongroom_wire::time::parse_date(s)?;
    let t = s.get(11..19)?;
    let mut it = t.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (it.next()??, it.next()??, it.next()??);
    // S3 writes UTC; an offset would be misread, so it is refused.
    if s.get(10..11)? != "T" || !s.ends_with('Z') || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    u64::try_from(days + (h * 3600 + m * 60 + sec) * 1000).ok()
}

/// ms since the epoch as `2026-12-01T23:01:50Z`.
pub fn format_time(ms: u64) -> String {
    let (y, mo, d, h, mi, s, _) = strongroom_wire::time::utc(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// A bucket's Object Lock settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectLock {
    /// `COMPLIANCE` (nobody can shorten or remove it) or `GOVERNANCE`.
    pub mode: Option<String>,
    /// Default retention of every new object version, in days.
    pub days: Option<u64>,
}

/// One stored version of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// Key, relative to the archive's prefix.
    pub key: String,
    /// Version id.
    pub version_id: String,
    /// Written (ms).
    pub last_modified: u64,
    /// A delete marker rather than data.
    pub delete_marker: bool,
}

/// An object version's retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// `COMPLIANCE` or `GOVERNANCE`.
    pub mode: String,
    /// Until (ms).
    pub until: u64,
}

/// The checksum headers S3 requires on writes to a locked bucket (and on
/// lock and retention settings), in place of Content-MD5.
fn checksum(body: &[u8]) -> Vec<(&'static str, String)> {
    let sum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    vec![
        ("x-amz-sdk-checksum-algorithm", "SHA256".into()),
        ("x-amz-checksum-sha256", base64::engine::general_purpose::STANDARD.encode(sum.as_ref())),
    ]
}

/// An archive's bucket, addressed the way object_store addresses it.
pub struct S3Bucket {
    http: reqwest::Client,
    cfg: AwsConfig,
    /// `https://bucket.s3.region.amazonaws.com` or `endpoint/bucket`.
    base: String,
    /// The archive's prefix in the bucket, with a trailing `/` (or empty).
    prefix: String,
}

impl std::fmt::Debug for S3Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Bucket").field("base", &self.base).field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// Percent-encodes a key, keeping its `/`.
fn encode_key(key: &str) -> String {
    key.split('/').map(strongroom_wire::time::urlencode).collect::<Vec<_>>().join("/")
}

impl S3Bucket {
    /// For an `s3://bucket/prefix` destination (settings from the
    /// environment); `None` for any other.
    pub fn for_destination(spec: &str) -> Result<Option<Self>, RetentionError> {
        if !spec.starts_with("s3://") {
            return Ok(None);
        }
        Self::new(spec, AwsConfig::from_env()?).map(Some)
    }

    /// For an `s3://bucket/prefix` destination.
    pub fn new(spec: &str, cfg: AwsConfig) -> Result<Self, RetentionError> {
        let Some(rest) = spec.strip_prefix("s3://") else {
            return Err(RetentionError::Usage(format!("{spec:?} is not an s3://bucket/prefix destination")));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || !bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err(RetentionError::Usage(format!("{spec:?} does not name a bucket: use s3://bucket/prefix")));
        }
        let base = match &cfg.endpoint_s3 {
            Some(e) => format!("{}/{bucket}", e.trim_end_matches('/')),
            // A dotted name does not match S3's wildcard certificate as a host.
            None if bucket.contains('.') => format!("https://s3.{}.amazonaws.com/{bucket}", cfg.region),
            None => format!("https://{bucket}.s3.{}.amazonaws.com", cfg.region),
        };
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| cloud("http client", e))?;
        Ok(Self { http, cfg, base, prefix })
    }

    fn url(&self, key: Option<&str>, query: &str) -> String {
        let path = key.map(|k| format!("/{}", encode_key(&format!("{}{k}", self.prefix)))).unwrap_or_default();
        let sep = if key.is_none() { "/" } else { "" };
        if query.is_empty() {
            format!("{}{path}{sep}", self.base)
        } else {
            format!("{}{path}{sep}?{query}", self.base)
        }
    }

    async fn call(
        &self,
        method: &str,
        key: Option<&str>,
        query: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Reply, RetentionError> {
        send(&self.http, &self.cfg, "s3", method, &self.url(key, query), headers, body).await
    }

    /// Creates the bucket with Object Lock on and a default retention of
    /// `days` in compliance mode (what `retention bucket-create` does).
    pub async fn create_locked(&self, days: u64) -> Result<(), RetentionError> {
        // Outside us-east-1 the region is named in the body.
        let body = if self.cfg.region == "us-east-1" {
            vec![]
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.cfg.region
            )
            .into_bytes()
        };
        let create = self.call("PUT", None, "", &[("x-amz-bucket-object-lock-enabled", "true".into())], body).await?;
        if create.status != 200 {
            return Err(refusal("creating the bucket", &create));
        }
        self.put_default_retention(days).await
    }

    /// Sets the bucket's default retention in compliance mode (raising it is
    /// what an operator does; lowering it is what `verify` names).
    pub async fn put_default_retention(&self, days: u64) -> Result<(), RetentionError> {
        let xml = format!(
            "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Days>{days}</Days></DefaultRetention></Rule></ObjectLockConfiguration>"
        )
        .into_bytes();
        let put = self.call("PUT", None, "object-lock", &checksum(&xml), xml).await?;
        if put.status != 200 {
            return Err(refusal("setting the bucket's default retention", &put));
        }
        Ok(())
    }

    /// The bucket's Object Lock settings; `None` if it has none.
    pub async fn lock(&self) -> Result<Option<ObjectLock>, RetentionError> {
        let reply = self.call("GET", None, "object-lock", &[], vec![]).await?;
        if reply.status == 404 {
            let code = xml_text(&String::from_utf8_lossy(&reply.body), "Code").unwrap_or_default();
            if code == "ObjectLockConfigurationNotFoundError" {
                return Ok(None);
            }
        }
        if reply.status != 200 {
            return Err(refusal("reading the bucket's Object Lock settings", &reply));
        }
        let xml = String::from_utf8_lossy(&reply.body);
        let config = xml_elements(&xml, "ObjectLockConfiguration")?;
        let Some(config) = config.first() else {
            return Err(RetentionError::Cloud("the Object Lock reply holds no ObjectLockConfiguration".into()));
        };
        if field(config, "ObjectLockEnabled") != Some("Enabled") {
            return Ok(None);
        }
        let rule = xml_elements(&xml, "DefaultRetention")?.into_iter().next().unwrap_or_default();
        let num = |k: &str| field(&rule, k).and_then(|v| v.trim().parse::<u64>().ok()).filter(|n| *n > 0);
        let days = num("Days").or_else(|| num("Years").map(|y| y.saturating_mul(365)));
        Ok(Some(ObjectLock { mode: field(&rule, "Mode").map(str::to_owned), days }))
    }

    /// Every version of every object under the archive's prefix.
    pub async fn versions(&self) -> Result<Vec<ObjectVersion>, RetentionError> {
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        // Bounded: 100,000 pages of 1,000.
        for _ in 0..100_000 {
            let mut query = format!("prefix={}&versions=", strongroom_wire::time::urlencode(&self.prefix));
            if let Some((k, v)) = &marker {
                query = format!(
                    "key-marker={}&prefix={}&version-id-marker={}&versions=",
                    strongroom_wire::time::urlencode(k),
                    strongroom_wire::time::urlencode(&self.prefix),
                    strongroom_wire::time::urlencode(v)
                );
            }
            let reply = self.call("GET", None, &query, &[], vec![]).await?;
            if reply.status != 200 {
                return Err(refusal("listing object versions", &reply));
            }
            let xml = String::from_utf8_lossy(&reply.body);
            let Some(result) = xml_elements(&xml, "ListVersionsResult")?.into_iter().next() else {
                return Err(RetentionError::Cloud("the version listing holds no ListVersionsResult".into()));
            };
            for (tag, delete_marker) in [("Version", false), ("DeleteMarker", true)] {
                for e in xml_elements(&xml, tag)? {
                    let (Some(key), Some(version_id), Some(modified)) =
                        (field(&e, "Key"), field(&e, "VersionId"), field(&e, "LastModified").and_then(parse_time))
                    else {
                        return Err(RetentionError::Cloud(format!(
                            "the version listing has a {tag} without a key, version id or time"
                        )));
                    };
                    out.push(ObjectVersion {
                        key: key.strip_prefix(&self.prefix).unwrap_or(key).to_owned(),
                        version_id: version_id.to_owned(),
                        last_modified: modified,
                        delete_marker,
                    });
                }
            }
            if field(&result, "IsTruncated") != Some("true") {
                return Ok(out);
            }
            match (field(&result, "NextKeyMarker"), field(&result, "NextVersionIdMarker")) {
                (Some(k), Some(v)) if marker.as_ref().is_none_or(|(mk, mv)| (mk.as_str(), mv.as_str()) != (k, v)) => {
                    marker = Some((k.to_owned(), v.to_owned()))
                }
                _ => {
                    return Err(RetentionError::Cloud(
                        "a truncated version listing whose marker does not move on".into(),
                    ))
                }
            }
        }
        Err(RetentionError::Cloud("more than 100 million object versions".into()))
    }

    /// A version's retention (from its HEAD, which S3 answers with the
    /// lock to a caller allowed `s3:GetObjectRetention`); `None` if it has none.
    pub async fn retention(&self, key: &str, version_id: &str) -> Result<Option<Retention>, RetentionError> {
        Ok(self.head(key, version_id).await?.0)
    }

    /// A version's retention and server-side encryption (`aws:kms`…).
    pub async fn head(
        &self,
        key: &str,
        version_id: &str,
    ) -> Result<(Option<Retention>, Option<String>), RetentionError> {
        let query = format!("versionId={}", strongroom_wire::time::urlencode(version_id));
        let reply = self.call("HEAD", Some(key), &query, &[], vec![]).await?;
        if reply.status != 200 {
            return Err(refusal(&format!("reading the retention of {key}"), &reply));
        }
        let lock = match (reply.lock_mode, reply.lock_until.as_deref().and_then(parse_time)) {
            (Some(mode), Some(until)) => Some(Retention { mode, until }),
            _ => None,
        };
        Ok((lock, reply.sse))
    }

    /// One version's bytes.
    pub async fn get_version(&self, key: &str, version_id: &str) -> Result<bytes::Bytes, RetentionError> {
        let query = format!("versionId={}", strongroom_wire::time::urlencode(version_id));
        let reply = self.call("GET", Some(key), &query, &[], vec![]).await?;
        if reply.status != 200 {
            return Err(refusal(&format!("reading {key}"), &reply));
        }
        Ok(reply.body)
    }

    /// Writes an object (a new version if it exists); its version id.
    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<Option<String>, RetentionError> {
        match self.put_object(key, body, false).await? {
            Written::Done { version_id, .. } => Ok(version_id),
            Written::Exists => Err(RetentionError::Cloud(format!("{key} exists"))),
        }
    }

    /// Writes an object with the checksum headers a locked bucket requires;
    /// `create_only` refuses to make a second version (`If-None-Match: *`).
    pub async fn put_object(&self, key: &str, body: Vec<u8>, create_only: bool) -> Result<Written, RetentionError> {
        let mut headers = checksum(&body);
        if create_only {
            headers.push(("if-none-match", "*".into()));
        }
        if let Some((mode, key)) = &self.cfg.sse {
            headers.push(("x-amz-server-side-encryption", mode.clone()));
            if let Some(key) = key {
                headers.push(("x-amz-server-side-encryption-aws-kms-key-id", key.clone()));
            }
        }
        let reply = self.call("PUT", Some(key), "", &headers, body).await?;
        match reply.status {
            200 => Ok(Written::Done { e_tag: reply.e_tag, version_id: reply.version_id }),
            412 | 409 if create_only => Ok(Written::Exists),
            _ => Err(refusal(&format!("writing {key}"), &reply)),
        }
    }

    /// Deletes one version (what a locked archive must refuse).
    pub async fn delete_version(&self, key: &str, version_id: &str, bypass: bool) -> Result<(), RetentionError> {
        let query = format!("versionId={}", strongroom_wire::time::urlencode(version_id));
        let headers: Vec<(&str, String)> =
            if bypass { vec![("x-amz-bypass-governance-retention", "true".into())] } else { vec![] };
        let reply = self.call("DELETE", Some(key), &query, &headers, vec![]).await?;
        if reply.status != 204 && reply.status != 200 {
            return Err(refusal(&format!("deleting {key} version {version_id}"), &reply));
        }
        Ok(())
    }

    /// Sets one version's retention (shortening it is what compliance mode refuses).
    pub async fn put_retention(
        &self,
        key: &str,
        version_id: &str,
        retention: &Retention,
        bypass: bool,
    ) -> Result<(), RetentionError> {
        let query = format!("retention=&versionId={}", strongroom_wire::time::urlencode(version_id));
        let xml = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            retention.mode,
            format_time(retention.until)
        )
        .into_bytes();
        let mut headers = checksum(&xml);
        if bypass {
            headers.push(("x-amz-bypass-governance-retention", "true".into()));
        }
        let reply = self.call("PUT", Some(key), &query, &headers, xml).await?;
        if reply.status != 200 {
            return Err(refusal(&format!("setting the retention of {key}"), &reply));
        }
        Ok(())
    }
}

/// KMS: wraps and unwraps small secrets under a KMS key (custody).
pub struct Kms {
    http: reqwest::Client,
    cfg: AwsConfig,
    url: String,
}

impl Kms {
    /// From the environment.
    pub fn from_env() -> Result<Self, RetentionError> {
        Self::new(AwsConfig::from_env()?)
    }

    /// With explicit settings.
    pub fn new(cfg: AwsConfig) -> Result<Self, RetentionError> {
        let url = cfg.endpoint_kms.clone().unwrap_or_else(|| format!("https://kms.{}.amazonaws.com", cfg.region));
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| cloud("http client", e))?;
        Ok(Self { http, cfg, url: format!("{}/", url.trim_end_matches('/')) })
    }

    async fn call(&self, action: &str, body: serde_json::Value) -> Result<serde_json::Value, RetentionError> {
        let headers = [
            ("content-type", "application/x-amz-json-1.1".to_owned()),
            ("x-amz-target", format!("TrentService.{action}")),
        ];
        let body = serde_json::to_vec(&body).map_err(|e| cloud("kms request", e))?;
        let reply = send(&self.http, &self.cfg, "kms", "POST", &self.url, &headers, body).await?;
        if reply.status != 200 {
            return Err(refusal(&format!("KMS {action}"), &reply));
        }
        serde_json::from_slice(&reply.body).map_err(|e| cloud("KMS reply", e))
    }

    /// Creates a symmetric key (tests and first setup); its ARN.
    pub async fn create_key(&self, description: &str) -> Result<String, RetentionError> {
        let v = self.call("CreateKey", serde_json::json!({"Description": description})).await?;
        v.pointer("/KeyMetadata/Arn")
            .and_then(|a| a.as_str())
            .map(str::to_owned)
            .ok_or_else(|| RetentionError::Cloud("KMS CreateKey returned no ARN".into()))
    }

    /// Encrypts `plain` under `key_id`, bound to `context`.
    pub async fn encrypt(&self, key_id: &str, plain: &[u8], context: &str) -> Result<Vec<u8>, RetentionError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let v = self
            .call(
                "Encrypt",
                serde_json::json!({"KeyId": key_id, "Plaintext": b64.encode(plain), "EncryptionContext": {"strongroom": context}}),
            )
            .await?;
        v.get("CiphertextBlob")
            .and_then(|c| c.as_str())
            .and_then(|c| b64.decode(c).ok())
            .ok_or_else(|| RetentionError::Cloud("KMS Encrypt returned no ciphertext".into()))
    }

    /// Decrypts what [`Kms::encrypt`] made under `key_id`, with the same context.
    pub async fn decrypt(
        &self,
        blob: &[u8],
        context: &str,
        key_id: &str,
    ) -> Result<Zeroizing<Vec<u8>>, RetentionError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let v = self
            .call(
                "Decrypt",
                serde_json::json!({"CiphertextBlob": b64.encode(blob), "EncryptionContext": {"strongroom": context}, "KeyId": key_id}),
            )
            .await?;
        let plain = v
            .get("Plaintext")
            .and_then(|c| c.as_str())
            .and_then(|c| b64.decode(c).ok())
            .ok_or_else(|| RetentionError::Cloud("KMS Decrypt returned no plaintext".into()))?;
        Ok(Zeroizing::new(plain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_xml_replies_are_read() {
        let xml = r#"<?xml version="1.0"?><ListVersionsResult><IsTruncated>true</IsTruncated><NextKeyMarker>a/b</NextKeyMarker>
<Version><Key>p/segments/1.seg</Key><VersionId>v1</VersionId><LastModified>2026-12-01T23:01:50.000Z</LastModified><Owner><ID>x</ID></Owner></Version>
<DeleteMarker><Key>p/k</Key><VersionId>v2</VersionId></DeleteMarker><Version><Key>p/segments/1.seg</Key><VersionId>v3</VersionId></Version></ListVersionsResult>"#;
        let v = xml_elements(xml, "Version").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(field(&v[0], "VersionId"), Some("v1"));
        assert_eq!(field(&v[0], "ID"), None, "only direct children");
        assert_eq!(xml_elements(xml, "DeleteMarker").unwrap().len(), 1);
        assert_eq!(xml_text(xml, "IsTruncated").as_deref(), Some("true"));
        assert_eq!(xml_text(xml, "Absent"), None);
        // Entities are resolved, not cut short.
        let e = xml_elements("<R><Version><Key>a&amp;b&#x2F;c</Key></Version></R>", "Version").unwrap();
        assert_eq!(field(&e[0], "Key"), Some("a&b/c"));
        // Malformed input is an error, never a shorter answer, and never a panic.
        for bad in ["<Version><Key>a</Key", "<<>>", "<R><Version><Key>&bogus;</Key></Version></R>", "</R>"] {
            assert!(xml_elements(bad, "Version").is_err(), "{bad}");
        }
    }

    #[test]
    fn times_round_trip_and_bad_ones_are_refused() {
        let t = parse_time("2026-12-01T23:01:50.000Z").unwrap();
        assert_eq!(format_time(t), "2026-12-01T23:01:50Z");
        assert_eq!(parse_time(&format_time(t)), Some(t));
        for bad in [
            "",
            "2026-12-01",
            "2026-12-01 23:01:50Z",
            "2026-12-01T25:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-01T23:01:50+02:00",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_are_encoded_segment_by_segment() {
        assert_eq!(encode_key("a b/c+d/e"), "a%20b/c%2Bd/e");
    }
}
