//! Typed calls to the relay's HTTP API.

use reqwest::{Client as Http, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use strongroom_wire::ErrorBody;

use crate::error::ClientError;

pub(crate) struct Api {
    http: Http,
    base: String,
    token: Option<String>,
}

impl Api {
    pub(crate) fn new(base: &str, token: Option<String>) -> Self {
        Self { http: Http::new(), base: base.trim_end_matches('/').to_owned(), token }
    }

    pub(crate) fn set_token(&mut self, token: String) {
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
        let (code, message) =
            body.map(|b| (b.error, b.message)).unwrap_or_else(|| ("http_error".into(), "no details".into()));
        Err(ClientError::Refused { status, code, message })
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let r = self.auth(self.http.get(format!("{}{path}", self.base))).send().await?;
        Ok(Self::check(r).await?.json().await?)
    }

    pub(crate) async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let r = self.auth(self.http.get(format!("{}{path}", self.base))).send().await?;
        Ok(Self::check(r).await?.bytes().await?.to_vec())
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        let r = self.auth(self.http.post(format!("{}{path}", self.base))).json(body).send().await?;
        Ok(Self::check(r).await?.json().await?)
    }

    pub(crate) async fn post_empty<B: Serialize>(&self, path: &str, body: &B) -> Result<(), ClientError> {
        let r = self.auth(self.http.post(format!("{}{path}", self.base))).json(body).send().await?;
        Self::check(r).await.map(|_| ())
    }

    pub(crate) async fn put_json<B: Serialize>(&self, path: &str, body: &B) -> Result<(), ClientError> {
        let r = self.auth(self.http.put(format!("{}{path}", self.base))).json(body).send().await?;
        Self::check(r).await.map(|_| ())
    }

    pub(crate) async fn put_bytes(&self, path: &str, body: Vec<u8>) -> Result<(), ClientError> {
        let r = self.auth(self.http.put(format!("{}{path}", self.base))).body(body).send().await?;
        Self::check(r).await.map(|_| ())
    }

    pub(crate) async fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> Result<T, ClientError> {
        let r = self.auth(self.http.post(format!("{}{path}", self.base))).body(body).send().await?;
        Ok(Self::check(r).await?.json().await?)
    }
}
