//! Attachments: encrypt to a temporary ciphertext file (plaintext never
//! touches the profile), upload it as a stream, and on the other side
//! download, check the blob hash, and decrypt chunk by chunk. Memory stays at
//! a few chunk buffers whatever the file size.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use strongroom_crypto::attachment::{self, DEFAULT_CHUNK_SIZE};
use strongroom_crypto::content::FileRef;
use strongroom_crypto::ids::BlobId;
use strongroom_crypto::keys::SecretBytes;

use crate::error::ClientError;
use crate::store::hex;

/// Reports bytes done out of a total.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

fn io(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io { path: path.display().to_string(), source }
}

/// A reader that reports progress as it is read.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    total: u64,
    progress: Progress<'a>,
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.progress)(self.done, self.total);
        Ok(n)
    }
}

/// Encrypts `source` into `tmp`; returns the file reference (without blob id yet).
pub(crate) fn encrypt_file(source: &Path, tmp: &Path, progress: Progress<'_>) -> Result<FileRef, ClientError> {
    let file = std::fs::File::open(source).map_err(io(source))?;
    let total = file.metadata().map_err(io(source))?.len();
    let out = std::fs::File::create(tmp).map_err(io(tmp))?;
    let key = SecretBytes::<32>::random(&mut OsRng);
    let mut stream_id = [0u8; 16];
    OsRng.fill_bytes(&mut stream_id);
    let reader = Counting { inner: BufReader::with_capacity(1 << 20, file), done: 0, total, progress };
    let summary =
        attachment::encrypt(&key, stream_id, DEFAULT_CHUNK_SIZE, reader, BufWriter::with_capacity(1 << 20, out))
            .map_err(|e| ClientError::Usage(format!("cannot encrypt {}: {e}", source.display())))?;
    let name = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    Ok(FileRef {
        blob_id: BlobId::from_bytes([0; 16]),
        file_key: key,
        ciphertext_sha256: summary.ciphertext_sha256,
        size: summary.plaintext_len,
        media_type: media_type(&name).into(),
        name: name.chars().take(255).collect(),
    })
}

/// Decrypts the downloaded blob `tmp` into `dest`, checking it against the reference.
pub(crate) fn decrypt_file(file: &FileRef, tmp: &Path, dest: &Path, progress: Progress<'_>) -> Result<(), ClientError> {
    let input = std::fs::File::open(tmp).map_err(io(tmp))?;
    let total = input.metadata().map_err(io(tmp))?.len();
    let partial = dest.with_extension("partial");
    let out = std::fs::File::create(&partial).map_err(io(&partial))?;
    let reader = Counting { inner: BufReader::with_capacity(1 << 20, input), done: 0, total, progress };
    let result = attachment::decrypt(&file.file_key, reader, BufWriter::with_capacity(1 << 20, out))
        .and_then(|summary| summary.check(file));
    match result {
        Ok(()) => std::fs::rename(&partial, dest).map_err(io(dest)),
        Err(e) => {
            // Nothing half-written is left behind under the real name.
            let _ = std::fs::remove_file(&partial);
            Err(ClientError::Trust(format!("the file failed verification and was discarded: {e}")))
        }
    }
}

/// A scratch path inside the profile for ciphertext in transit.
pub(crate) fn scratch(profile: &Path) -> Result<PathBuf, ClientError> {
    let dir = profile.join("tmp");
    crate::private_fs::private_dir(&dir).map_err(io(&dir))?;
    let mut r = [0u8; 8];
    OsRng.fill_bytes(&mut r);
    Ok(dir.join(hex(&r)))
}

pub(crate) fn media_type(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "csv" => "text/csv",
        "zip" => "application/zip",
        "json" => "application/json",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}
