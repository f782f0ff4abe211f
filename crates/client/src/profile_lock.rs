//! One process owns a profile: two processes writing the same store and
//! state record would each overwrite the other's pre-keys and pins. The
//! lock is an advisory lock on `lock` in the profile directory, held for as
//! long as the client is open and released by the OS if the process dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::ClientError;

/// Held while a [`crate::Client`] (or an enrolment) uses the profile.
#[derive(Debug)]
pub struct ProfileLock {
    _file: File,
}

/// How long a lock held elsewhere is waited for before the profile is
/// called busy. A lock let go by this process can linger that briefly: a
/// child process started by another thread holds a copy of the descriptor
/// (and so the lock) from its fork until its exec closes it.
const PATIENCE: Duration = Duration::from_millis(300);

impl ProfileLock {
    /// Takes the profile's lock, or says which profile is busy (after
    /// waiting up to [`PATIENCE`] for a holder that is letting go).
    pub fn acquire(dir: &Path) -> Result<Self, ClientError> {
        Self::acquire_within(dir, PATIENCE)
    }

    fn acquire_within(dir: &Path, patience: Duration) -> Result<Self, ClientError> {
        let until = Instant::now() + patience;
        loop {
            match Self::try_acquire(dir) {
                Err(ClientError::ProfileBusy(_)) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    fn try_acquire(dir: &Path) -> Result<Self, ClientError> {
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

    #[test]
    fn a_lock_let_go_while_waiting_is_taken() {
        let dir = std::env::temp_dir().join(format!("strongroom-lock-wait-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = ProfileLock::acquire(&dir).unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(first);
        });
        ProfileLock::acquire_within(&dir, Duration::from_secs(5)).unwrap();
        holder.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
