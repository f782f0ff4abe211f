//! Erasing a profile: after a remote wipe, or too many failed unlocks.

use std::path::Path;

use crate::client::Client;
use crate::error::ClientError;
use crate::rules::events::EventKind;

/// Overwrites every file in the profile with zeros, then removes the
/// directory. Best effort: a file system may keep old blocks, which is why
/// everything in the profile was encrypted in the first place.
pub(crate) fn erase_profile(dir: &Path) {
    fn overwrite(dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                overwrite(&path);
            } else if let Ok(meta) = entry.metadata() {
                use std::io::Write;
                if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) {
                    let zeros = vec![0u8; 1 << 16];
                    let mut left = meta.len();
                    while left > 0 {
                        let n = left.min(zeros.len() as u64) as usize;
                        if f.write_all(zeros.get(..n).unwrap_or_default()).is_err() {
                            break;
                        }
                        left -= n as u64;
                    }
                    let _ = f.sync_all();
                }
            }
        }
    }
    overwrite(dir);
    let _ = std::fs::remove_dir_all(dir);
}

impl Client {
    /// Passes `r` on; a wipe order in it is first logged as the event log's
    /// last event (once), so an application reading the log from its cursor
    /// learns of the order before it erases the profile.
    pub(crate) async fn noting_wipe<T>(&mut self, r: Result<T, ClientError>) -> Result<T, ClientError> {
        if let Err(ClientError::Wiped(why)) = &r {
            if !self.wipe_logged {
                // Best effort: the order stands whether or not the log takes it.
                self.wipe_logged = self.log(&[EventKind::Wiped { reason: why.clone() }]).await.is_ok();
            }
        }
        r
    }

    /// Carries out a remote wipe: erases this profile (keys, store, files)
    /// and tells the server it is done. Call it when an operation returned
    /// [`ClientError::Wiped`].
    pub async fn erase_after_wipe(self) -> Result<(), ClientError> {
        let dir = self.dir().to_owned();
        let confirmed = self.confirm_wipe().await;
        self.close().await;
        erase_profile(&dir);
        confirmed
    }
}
