//! API errors: a status code and a JSON [`ErrorBody`] that says what was
//! wrong and what to do. Internal details (database errors) are logged, never
//! sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use strongroom_wire::{DeviceAddress, ErrorBody};

use crate::store::StoreError;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    /// Any status with a code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody { error: code.to_owned(), message: message.into(), missing: vec![], extra: vec![] },
        }
    }
    /// 400.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 410: an administrator ordered this device wiped.
    pub fn device_wiped() -> Self {
        Self::new(
            StatusCode::GONE,
            "device_wiped",
            "an administrator wiped this device: erase its local data, then confirm at /v1/devices/wipe/confirm",
        )
    }
    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// 403.
    pub fn forbidden(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    /// 404.
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    /// 409.
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    /// 429.
    pub fn too_many(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
    }
    /// 409 listing the devices an envelope lacks and those it must not have.
    pub fn recipient_mismatch(missing: Vec<DeviceAddress>, extra: Vec<DeviceAddress>) -> Self {
        let mut e = Self::conflict(
            "recipient_mismatch",
            "the envelope's recipient devices differ from the conversation's current devices; refresh members, device lists and policy, then seal again",
        );
        e.body.missing = missing;
        e.body.extra = extra;
        e
    }
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The status and the body, for an answer that is not an HTTP response
    /// (a send over the WebSocket).
    pub fn into_parts(self) -> (StatusCode, ErrorBody) {
        (self.status, self.body)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if let StoreError::NotOwned = e {
            return Self::not_found("unknown_device", "no such active device of that user in your network");
        }
        tracing::error!(error = %e, "storage failure");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "the server's storage failed; retry shortly")
    }
}

impl ApiError {
    /// What went wrong, for people.
    pub fn message(&self) -> &str {
        &self.body.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

/// Parses a 32-hex-digit identifier from a request.
pub fn parse_id(s: &str, what: &str) -> ApiResult<[u8; 16]> {
    let s = s.as_bytes();
    if s.len() != 32 {
        return Err(ApiError::bad_request("bad_id", format!("{what} must be 32 hex digits")));
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let hex = std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok());
        *o = hex.ok_or_else(|| ApiError::bad_request("bad_id", format!("{what} must be 32 hex digits")))?;
    }
    Ok(out)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
