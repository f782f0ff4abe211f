//! Typed calls to the relay's HTTP API, and the one mapping of its answers
//! to errors ([`ClientError`]): used by the SDK, the retention service and
//! the CLI alike.

use reqwest::{Client as Http, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use strongroom_wire::ErrorBody;

use crate::error::ClientError;

/// A relay's HTTP API with a session token.
pub struct Api {
    http: Http,
    base: String,
    token: Option<String>,
}

impl Api {
    /// The relay at `base` (`http://host:port`), with a session token if any.
    pub fn new(base: &str, token: Option<String>) -> Self {
        // A relay that takes the connection and then says nothing must not
        // hold a send (or the outbox) for ever; file streams keep reading.
        let http = Http::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Self { http, base: base.trim_end_matches('/').to_owned(), token }
    }

    /// As [`Api::new`], every request bounded by `timeout` (a service that
    /// must not hang on a relay that stopped answering).
    pub fn with_timeout(base: &str, timeout: std::time::Duration) -> Result<Self, ClientError> {
        let http = Http::builder().timeout(timeout).build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), token: None })
    }

    /// Logs `device` in and keeps the session token for the calls that follow.
    /// Logs `device` in (`POST /v1/login`).
    pub async fn login(
        &mut self,
        network: strongroom_crypto::ids::NetworkId,
        username: &str,
        password: &str,
        device: strongroom_crypto::ids::DeviceId,
    ) -> Result<strongroom_wire::Session, ClientError> {
        let login = strongroom_wire::Login {
            network_id: network,
            username: username.into(),
            password: password.into(),
            device_id: device,
        };
        let session: strongroom_wire::Session = self.post("/v1/login", &login).await?;
        self.token = Some(session.token.clone());
        Ok(session)
    }

    /// Uses `token` for the calls that follow.
    pub fn set_token(&mut self, token: String) {
        self.token = Some(token);
    }

    fn auth(&self, r: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn check(r: Response) -> Result<Response, ClientError> {
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status().as_u16();
        let body: Option<ErrorBody> = r.json().await.ok();
        if let Some(b) = body.as_ref().filter(|b| b.error == "recipient_mismatch") {
            return Err(ClientError::RecipientMismatch { missing: b.missing.clone(), extra: b.extra.clone() });
        }
        let (code, message) =
            body.map(|b| (b.error, b.message)).unwrap_or_else(|| ("http_error".into(), "no details".into()));
        if code == "device_wiped" {
            return Err(ClientError::Wiped("by your network administrator".into()));
        }
        Err(ClientError::Refused { status, code, message })
    }

    /// GET, answered with JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let r = self.auth(self.http.get(format!("{}{path}", self.base))).send().await?;
        Ok(Self::check(r).await?.json().await?)
    }

    /// A GET whose answer also names a header's value (a version tag).
    pub(crate) async fn get_tagged<T: DeserializeOwned>(
        &self,
        path: &str,
        header: &str,
    ) -> Result<(T, Option<String>), ClientError> {
        let r = Self::check(self.auth(self.http.get(format!("{}{path}", self.base))).send().await?).await?;
        let tag = r.headers().get(header).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok((r.json().await?, tag))
    }

    /// GET, answered with bytes.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let r = self.auth(self.http.get(format!("{}{path}", self.base))).send().await?;
        Ok(Self::check(r).await?.bytes().await?.to_vec())
    }

    /// POST JSON, answered with JSON.
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        let r = self.auth(self.http.post(format!("{}{path}", self.base))).json(body).send().await?;
        Ok(Self::check(r).await?.json().await?)
    }

    /// POST JSON, answered with nothing.
    pub async fn post_empty<B: Serialize>(&self, path: &str, body: &B) -> Result<(), ClientError> {
        let r = self.auth(self.http.post(format!("{}{path}", self.base))).json(body).send().await?;
        Self::check(r).await.map(|_| ())
    }

    /// POST JSON with one more header (say, a bootstrap `Authorization`).
    pub async fn post_with<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        header: (&str, &str),
    ) -> Result<T, ClientError> {
        let r = self.http.post(format!("{}{path}", self.base)).header(header.0, header.1).json(body).send().await?;
        Ok(Self::check(r).await?.json().await?)
    }

    /// Any JSON call (administration): `None` for an empty answer.
    pub(crate) async fn call_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, ClientError> {
        let mut req = self.auth(self.http.request(method, format!("{}{path}", self.base)));
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = Self::check(req.send().await?).await?;
        let bytes = r.bytes().await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Some(v)),
            // Exports are JSON Lines: handed back as one string.
            Err(_) => Ok(Some(serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()))),
        }
    }

    /// PUT JSON, answered with nothing.
    pub async fn put_json<B: Serialize>(&self, path: &str, body: &B) -> Result<(), ClientError> {
        let r = self.auth(self.http.put(format!("{}{path}", self.base))).json(body).send().await?;
        Self::check(r).await.map(|_| ())
    }

    /// PUT bytes, answered with nothing.
    pub async fn put_bytes(&self, path: &str, body: Vec<u8>) -> Result<(), ClientError> {
        let r = self.auth(self.http.put(format!("{}{path}", self.base))).body(body).send().await?;
        Self::check(r).await.map(|_| ())
    }

    /// Streams a file as the request body.
    pub(crate) async fn post_file<T: DeserializeOwned>(
        &self,
        path: &str,
        file: tokio::fs::File,
        len: u64,
    ) -> Result<T, ClientError> {
        let stream = tokio_util_stream(file);
        let r = self
            .auth(self.http.post(format!("{}{path}", self.base)))
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await?;
        Ok(Self::check(r).await?.json().await?)
    }

    /// Streams a response body into a file; returns the bytes written.
    pub async fn download(&self, path: &str, dest: &std::path::Path) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt;
        let mut r = Self::check(self.auth(self.http.get(format!("{}{path}", self.base))).send().await?).await?;
        let mut out = tokio::fs::File::create(dest)
            .await
            .map_err(|source| ClientError::Io { path: dest.display().to_string(), source })?;
        let mut n = 0u64;
        while let Some(chunk) = r.chunk().await? {
            n += chunk.len() as u64;
            out.write_all(&chunk)
                .await
                .map_err(|source| ClientError::Io { path: dest.display().to_string(), source })?;
        }
        out.flush().await.map_err(|source| ClientError::Io { path: dest.display().to_string(), source })?;
        Ok(n)
    }

    pub(crate) async fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> Result<T, ClientError> {
        self.post_bytes_with(path, body, None).await
    }

    /// [`Api::post_bytes`] with one extra header (name, value).
    pub(crate) async fn post_bytes_with<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
        header: Option<(&str, &str)>,
    ) -> Result<T, ClientError> {
        let mut req = self.auth(self.http.post(format!("{}{path}", self.base))).body(body);
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        Ok(Self::check(req.send().await?).await?.json().await?)
    }
}

/// A file as a stream of 1 MiB chunks.
fn tokio_util_stream(file: tokio::fs::File) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> {
    futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    })
}
