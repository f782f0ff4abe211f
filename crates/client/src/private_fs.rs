//! Owner-only files and directories: profiles, archives, exports and keys
//! hold secrets or plaintext, so every directory Strongroom creates is 0700
//! (an existing one is tightened) and its databases are 0600 — whatever the
//! process umask. (Unix permissions; elsewhere this does nothing.)

use std::path::Path;

/// Creates `dir` (and missing parents) as owner-only, or makes an existing
/// one owner-only.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// Creates `file` empty as owner-only if it does not exist, or makes it
/// owner-only (for databases whose library creates them with default modes;
/// SQLite gives its journal and WAL files the database's mode).
pub fn private_file(file: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        opts.open(file)?;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    opts.open(file).map(drop)
}
