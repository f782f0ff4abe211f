use thiserror::Error;

/// What went wrong in the retention service or its archive.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RetentionError {
    /// Wrong passphrase, or the key file was altered.
    #[error("cannot unlock {0}: wrong passphrase, or the file was altered")]
    Unlock(String),
    /// A file or object could not be read or written.
    #[error("storage: {0}")]
    Storage(#[from] object_store::Error),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The relay could not be reached.
    #[error("cannot reach the relay: {0}")]
    Network(#[from] reqwest::Error),
    /// The relay refused a request.
    #[error("the relay refused ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its explanation.
        message: String,
    },
    /// Archive content that does not decode.
    #[error("the archive is damaged: {0}")]
    Corrupt(String),
    /// A usage mistake, with what to do instead.
    #[error("{0}")]
    Usage(String),
    /// S3 or KMS refused or failed a request.
    #[error("{0}")]
    Cloud(String),
    /// A trust failure (the policy does not name this device, wrong network key…).
    #[error("{0}")]
    Trust(String),
}

/// The SDK's relay errors, as the retention service reports them.
impl From<strongroom_client::ClientError> for RetentionError {
    fn from(e: strongroom_client::ClientError) -> Self {
        use strongroom_client::ClientError as C;
        match e {
            C::Network(e) => RetentionError::Network(e),
            C::Refused { status, message, .. } => RetentionError::Refused { status, message },
            C::RecipientMismatch { .. } => RetentionError::Refused { status: 409, message: e.to_string() },
            C::Io { path, source } => RetentionError::Io { path, source },
            C::Trust(m) => RetentionError::Trust(m),
            C::Wiped(why) => RetentionError::Trust(format!("the relay says this device was wiped {why}")),
            // What a retry could fix stays retryable (treated as the relay unavailable).
            other if other.is_transient() => RetentionError::Refused { status: 503, message: other.to_string() },
            other => RetentionError::Corrupt(other.to_string()),
        }
    }
}

pub(crate) fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> RetentionError + '_ {
    move |source| RetentionError::Io { path: path.display().to_string(), source }
}
