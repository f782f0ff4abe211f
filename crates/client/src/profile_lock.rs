//! One process owns a profile: two processes writing the same store and
//! state record would each overwrite the other's pre-keys and pins. The
//! lock is an advisory lock on `lock` in the profile directory, held for as
//! long as the client is open and released by the OS if the process dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::error::ClientError;

/// Held while a [`crate::Client`] (or an enrolment) uses the profile.
#[derive(Debug)]
pub struct ProfileLock {
    _file: File,
}

impl ProfileLock {
    /// Takes the profile's lock, or says which profile is busy.
    pub fn acquire(dir: &Path) -> Result<Self, ClientError> {
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| ClientError::Io { path: path.display().to_string(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(ClientError::ProfileBusy(dir.display().to_string())),
            Err(TryLockError::Error(source)) => Err(ClientError::Io { path: path.display().to_string(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_second_owner_is_refused_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!("strongroom-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = ProfileLock::acquire(&dir).unwrap();
        match ProfileLock::acquire(&dir) {
            Err(ClientError::ProfileBusy(d)) => assert!(d.contains("strongroom-lock")),
            other => panic!("expected ProfileBusy, got {other:?}"),
        }
        drop(first);
        ProfileLock::acquire(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
