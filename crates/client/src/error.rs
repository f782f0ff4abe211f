use thiserror::Error;

/// Why a client operation failed. Messages say what to do.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The profile directory could not be read or written.
    #[error("profile {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The local store failed.
    #[error("local store: {0}")]
    Store(#[from] sqlx::Error),
    /// The passphrase does not unlock the profile.
    #[error("wrong passphrase for this profile")]
    WrongPassphrase,
    /// No profile exists there yet.
    #[error("no Strongroom profile in {0}; run `strongroom enrol` first")]
    NoProfile(String),
    /// A profile already exists there.
    #[error("a Strongroom profile already exists in {0}; use another --profile directory")]
    ProfileExists(String),
    /// Another process has the profile open.
    #[error(
        "another Strongroom process is using the profile in {0}; close it (or wait for it to finish) and try again"
    )]
    ProfileBusy(String),
    /// The profile was written by a newer release.
    #[error("this profile was written by a newer Strongroom (local store schema {found}; this release knows up to {known}): update Strongroom")]
    ProfileTooNew {
        /// The store's schema version.
        found: u32,
        /// The newest this release knows.
        known: u32,
    },
    /// Stored data failed to decrypt or parse: altered or damaged.
    #[error("the profile is damaged or was altered: {0}")]
    Corrupt(&'static str),
    /// The server could not be reached.
    #[error("cannot reach the server: {0}")]
    Network(#[from] reqwest::Error),
    /// The server refused a request.
    #[error("the server refused ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Explanation.
        message: String,
    },
    /// The relay refused an envelope whose recipients differ from the
    /// devices it expects (`user:device` hex): what it lacks and what it
    /// must not have.
    #[error("the relay expects other recipients (missing [{}], unexpected [{}])", addresses(.missing), addresses(.extra))]
    RecipientMismatch {
        /// Devices the relay expected and the envelope lacks.
        missing: Vec<strongroom_wire::DeviceAddress>,
        /// Devices the envelope has and the relay does not expect.
        extra: Vec<strongroom_wire::DeviceAddress>,
    },
    /// The invite code is unusable.
    #[error("invalid invite: {0}")]
    Invite(&'static str),
    /// Something a peer or the server sent failed verification.
    #[error("security check failed: {0}")]
    Trust(String),
    /// Internal: a delivery of a message already stored (not an error to report).
    #[error("message already stored")]
    AlreadyStored,
    /// Bad input from the caller.
    #[error("{0}")]
    Usage(String),
    /// The security group's policy does not allow it.
    #[error("not allowed: {0}")]
    Policy(String),
    /// A contact's device-list history is long and was followed part of the
    /// way (progress is kept): the next attempt goes on from there.
    #[error("{0}")]
    Incomplete(String),
    /// Only the account's primary device holds the identity key that signs
    /// device lists.
    #[error("only your primary device (the one that enrolled) can link or remove devices: run this there. If it is lost, ask an administrator to reset your account; your contacts will then see a new safety number")]
    NotPrimary,
    /// An administrator wiped this device (or too many unlocks failed): its data is being erased.
    #[error("this device was wiped: {0}")]
    Wiped(String),
}

impl ClientError {
    /// Whether a retry could succeed: the relay or a key lookup failed or is
    /// overloaded, or the local store or profile could not be written. A
    /// message that failed this way must not be acknowledged. Verification
    /// failures (`Trust`) and the relay's definite refusals (4xx) are final.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Refused { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            // An answer that does not decode will not decode next time either.
            ClientError::Network(e) => !e.is_decode(),
            ClientError::Store(_) | ClientError::Io { .. } | ClientError::Corrupt(_) | ClientError::Incomplete(_) => {
                true
            }
            _ => false,
        }
    }
}

/// `user:device, …` for an error message.
fn addresses(list: &[strongroom_wire::DeviceAddress]) -> String {
    list.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
