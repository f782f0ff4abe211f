//! The security group's rules a client enforces itself (the relay enforces
//! what it can see: timers, file sizes, calls; content it cannot see —
//! locations, forwards, downloads, receipts — only the client can).

use strongroom_wire::{GroupSettings, ReceiptPolicy};

/// What the person is about to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Share a location.
    ShareLocation,
    /// Send a file of this many bytes.
    SendFile(u64),
    /// Download a received file.
    DownloadFile,
    /// Forward a message.
    Forward,
}

/// Whether the group allows it; if not, why, in words for the person.
pub fn check(rules: &GroupSettings, action: Action) -> Result<(), String> {
    match action {
        Action::ShareLocation if !rules.location_enabled => {
            Err("your security group does not allow sharing locations".into())
        }
        Action::SendFile(_) if !rules.files_enabled => Err("your security group does not allow sending files".into()),
        Action::SendFile(size) if size > rules.max_file_size => Err(format!(
            "files are limited to {} bytes in your security group; this one is {size}",
            rules.max_file_size
        )),
        Action::DownloadFile if !rules.file_download => {
            Err("your security group does not allow downloading files".into())
        }
        Action::Forward if !rules.message_forwarding => {
            Err("your security group does not allow forwarding messages".into())
        }
        _ => Ok(()),
    }
}

/// Whether to send read receipts: `off` never, `forced` always, otherwise
/// as the person chose.
pub fn send_receipts(rules: &GroupSettings, wanted: bool) -> bool {
    match rules.read_receipts {
        ReceiptPolicy::Off => false,
        ReceiptPolicy::Forced => true,
        ReceiptPolicy::On | ReceiptPolicy::Unknown => wanted,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn open() -> GroupSettings {
        GroupSettings {
            files_enabled: true,
            file_download: true,
            max_file_size: 1000,
            location_enabled: true,
            message_forwarding: true,
            read_receipts: ReceiptPolicy::On,
            ..GroupSettings::default()
        }
    }

    #[test]
    fn an_open_group_allows_everything_within_the_size_limit() {
        let r = open();
        for a in [Action::ShareLocation, Action::SendFile(1000), Action::DownloadFile, Action::Forward] {
            assert_eq!(check(&r, a), Ok(()), "{a:?}");
        }
        assert!(check(&r, Action::SendFile(1001)).unwrap_err().contains("limited to 1000 bytes"));
    }

    #[test]
    fn each_switch_refuses_its_action_only() {
        let mut r = open();
        r.location_enabled = false;
        r.message_forwarding = false;
        assert!(check(&r, Action::ShareLocation).unwrap_err().contains("locations"));
        assert!(check(&r, Action::Forward).unwrap_err().contains("forwarding"));
        assert_eq!(check(&r, Action::SendFile(1)), Ok(()));
        r.files_enabled = false;
        r.file_download = false;
        assert!(check(&r, Action::SendFile(1)).unwrap_err().contains("sending files"));
        assert!(check(&r, Action::DownloadFile).unwrap_err().contains("downloading"));
    }

    #[test]
    fn receipts_follow_the_group_then_the_person() {
        let mut r = open();
        assert!(send_receipts(&r, true) && !send_receipts(&r, false));
        r.read_receipts = ReceiptPolicy::Off;
        assert!(!send_receipts(&r, true));
        r.read_receipts = ReceiptPolicy::Forced;
        assert!(send_receipts(&r, false));
    }
}
