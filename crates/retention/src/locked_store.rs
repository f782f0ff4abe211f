//! The archive's store on an S3 bucket with Object Lock: `object_store`
//! reads, lists and deletes; whole-object writes are signed here, because
//! S3 refuses a write to a locked bucket without `x-amz-sdk-checksum-algorithm`
//! (or Content-MD5), a header `object_store` does not send. A file written
//! in parts is checked once complete and locked for the bucket's default
//! retention if the store did not lock it (S3 does; some S3-compatible
//! stores, and moto, do not).

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};

use crate::aws::{Retention, S3Bucket, Written};

/// A locked bucket under the archive's prefix.
pub struct LockedStore {
    inner: Arc<dyn ObjectStore>,
    bucket: Arc<S3Bucket>,
    /// The bucket's default retention (days), applied to multipart files.
    days: Option<u64>,
}

impl LockedStore {
    /// `inner` and `bucket` address the same bucket and prefix, whose
    /// default retention is `days`.
    pub fn new(inner: Arc<dyn ObjectStore>, bucket: S3Bucket, days: Option<u64>) -> Self {
        Self { inner, bucket: Arc::new(bucket), days }
    }
}

/// A multipart upload that ends locked.
#[derive(Debug)]
struct LockedUpload {
    inner: Box<dyn MultipartUpload>,
    bucket: Arc<S3Bucket>,
    key: String,
    days: Option<u64>,
}

#[async_trait]
impl MultipartUpload for LockedUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let done = self.inner.complete().await?;
        let (Some(days), Some(version)) = (self.days, done.version.as_deref()) else { return Ok(done) };
        let want = crate::now_ms().saturating_add(days.saturating_mul(86_400_000));
        // Locked as the default says already (S3): nothing to do, and
        // setting a date a little earlier would be refused as shortening.
        let current = self.bucket.retention(&self.key, version).await.map_err(generic)?;
        if current.is_some_and(|r| r.mode == "COMPLIANCE" && r.until.saturating_add(3_600_000) >= want) {
            return Ok(done);
        }
        let lock = Retention { mode: "COMPLIANCE".into(), until: want };
        self.bucket.put_retention(&self.key, version, &lock, false).await.map_err(generic)?;
        Ok(done)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

impl std::fmt::Debug for LockedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockedStore({})", self.inner)
    }
}

impl std::fmt::Display for LockedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockedStore({})", self.inner)
    }
}

fn generic(e: crate::RetentionError) -> object_store::Error {
    object_store::Error::Generic { store: "S3 (Object Lock)", source: Box::new(e) }
}

#[async_trait]
impl ObjectStore for LockedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let create_only = match opts.mode {
            PutMode::Overwrite => false,
            PutMode::Create => true,
            PutMode::Update(_) => return Err(object_store::Error::NotImplemented),
        };
        let body: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
        match self.bucket.put_object(location.as_ref(), body, create_only).await.map_err(generic)? {
            Written::Done { e_tag, version_id } => Ok(PutResult { e_tag, version: version_id }),
            Written::Exists => {
                Err(object_store::Error::AlreadyExists { path: location.to_string(), source: "the key exists".into() })
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(LockedUpload { inner, bucket: self.bucket.clone(), key: location.to_string(), days: self.days }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn delete(&self, location: &Path) -> object_store::Result<()> {
        self.inner.delete(location).await
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}
