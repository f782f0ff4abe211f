//! The second copy: every write to the archive goes to a replica as well
//! (another directory, bucket or region), before the write returns, so
//! before the relay is acknowledged. Reads come from the primary.
//! [`ReplicatedStore::catch_up`] copies what the replica lacks (a replica
//! added later, or one that was down); `verify --replica` checks both and
//! names a segment, checkpoint or file missing from either.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};

use crate::RetentionError;

/// The archive's store and its replica.
#[derive(Debug)]
pub struct ReplicatedStore {
    primary: Arc<dyn ObjectStore>,
    replica: Arc<dyn ObjectStore>,
}

impl std::fmt::Display for ReplicatedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replicated({} -> {})", self.primary, self.replica)
    }
}

/// The archive's own objects (what is copied and compared).
const KINDS: &[&str] = &["archive.json", "segments/", "checkpoints/", "files/", "retired/"];

fn archived(path: &Path) -> bool {
    let p = path.as_ref();
    KINDS.iter().any(|k| p == *k || (k.ends_with('/') && p.starts_with(k)))
}

impl ReplicatedStore {
    /// Writes to `primary` and then `replica`.
    pub fn new(primary: Arc<dyn ObjectStore>, replica: Arc<dyn ObjectStore>) -> Self {
        Self { primary, replica }
    }

    /// Copies every archive object the replica lacks from the primary; how many.
    pub async fn catch_up(&self) -> Result<u64, RetentionError> {
        let there: std::collections::HashSet<Path> =
            self.replica.list(None).map_ok(|m| m.location).try_collect().await?;
        let here: Vec<ObjectMeta> = self.primary.list(None).try_collect().await?;
        let mut copied = 0;
        for meta in here.into_iter().filter(|m| archived(&m.location) && !there.contains(&m.location)) {
            let bytes = self.primary.get(&meta.location).await?.bytes().await?;
            match self.replica.put_opts(&meta.location, bytes.into(), PutMode::Create.into()).await {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => copied += 1,
                Err(object_store::Error::NotImplemented) => {
                    let bytes = self.primary.get(&meta.location).await?.bytes().await?;
                    self.replica.put(&meta.location, bytes.into()).await?;
                    copied += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(copied)
    }
}

/// Archive objects in one store and not the other: `(missing from b, missing from a)`.
pub async fn differences(
    a: &dyn ObjectStore,
    b: &dyn ObjectStore,
) -> Result<(Vec<String>, Vec<String>), RetentionError> {
    let names = |s: &dyn ObjectStore| {
        s.list(None)
            .try_filter(|m| futures_util::future::ready(archived(&m.location)))
            .map_ok(|m| m.location.to_string())
            .try_collect::<std::collections::BTreeSet<String>>()
    };
    let (in_a, in_b) = (names(a).await?, names(b).await?);
    Ok((in_a.difference(&in_b).cloned().collect(), in_b.difference(&in_a).cloned().collect()))
}

/// Both uploads of one file.
#[derive(Debug)]
struct TeeUpload {
    primary: Box<dyn MultipartUpload>,
    replica: Box<dyn MultipartUpload>,
}

#[async_trait]
impl MultipartUpload for TeeUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        let a = self.primary.put_part(data.clone());
        let b = self.replica.put_part(data);
        Box::pin(async move {
            let (a, b) = futures_util::future::join(a, b).await;
            a.and(b)
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let done = self.primary.complete().await?;
        self.replica.complete().await?;
        Ok(done)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let (a, b) = futures_util::future::join(self.primary.abort(), self.replica.abort()).await;
        a.and(b)
    }
}

#[async_trait]
impl ObjectStore for ReplicatedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let create_only = matches!(opts.mode, PutMode::Create);
        let done = self.primary.put_opts(location, payload.clone(), opts).await?;
        let mode = if create_only { PutMode::Create } else { PutMode::Overwrite };
        match self.replica.put_opts(location, payload.clone(), mode.into()).await {
            Ok(_) => {}
            // Copied there by a catch-up already: the same bytes, or the
            // primary's win (the replica follows the primary).
            Err(object_store::Error::AlreadyExists { .. }) => {
                let there = self.replica.get(location).await?.bytes().await?;
                let here: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
                if there.as_ref() != here.as_slice() {
                    self.replica.put(location, payload).await?;
                }
            }
            Err(object_store::Error::NotImplemented) => {
                self.replica.put(location, payload).await?;
            }
            Err(e) => return Err(e),
        }
        Ok(done)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let primary = self.primary.put_multipart_opts(location, opts.clone()).await?;
        let replica = self.replica.put_multipart_opts(location, opts).await?;
        Ok(Box::new(TeeUpload { primary, replica }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.primary.get_opts(location, options).await
    }

    async fn delete(&self, location: &Path) -> object_store::Result<()> {
        self.primary.delete(location).await?;
        match self.replica.delete(location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.primary.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.primary.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.primary.copy(from, to).await?;
        self.replica.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        self.primary.copy_if_not_exists(from, to).await?;
        self.replica.copy_if_not_exists(from, to).await
    }
}

/// What verify found at the replica.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReplicaReport {
    /// Records there.
    pub records: u64,
    /// Its root (hex).
    pub root: Option<String>,
    /// Problems verify found there.
    pub problem_count: u64,
    /// Archive objects the primary has and the replica lacks.
    pub missing_from_replica: Vec<String>,
    /// Archive objects the replica has and the primary lacks.
    pub missing_from_primary: Vec<String>,
}

impl crate::verify::VerifyReport {
    /// Adds the replica's own verify report (`theirs`) and the objects
    /// either side lacks: a segment missing from either is named.
    pub async fn compare_with_replica(
        &mut self,
        primary: &dyn ObjectStore,
        replica: &dyn ObjectStore,
        theirs: crate::verify::VerifyReport,
    ) -> Result<(), RetentionError> {
        let (missing_from_replica, missing_from_primary) = differences(primary, replica).await?;
        for name in &missing_from_replica {
            self.problem(format!("{name} is missing from the replica (run `strongroom retention run` to copy it)"));
        }
        for name in &missing_from_primary {
            self.problem(format!(
                "{name} is missing from the archive but the replica has it: deleted from the archive"
            ));
        }
        for p in &theirs.problems {
            self.problem(format!("replica: {p}"));
        }
        if theirs.problem_count > theirs.problems.len() as u64 {
            self.problem(format!("replica: {} more problem(s)", theirs.problem_count - theirs.problems.len() as u64));
        }
        if theirs.root != self.root && missing_from_replica.is_empty() && missing_from_primary.is_empty() {
            self.problem("the replica's records differ from the archive's (their roots differ)".into());
        }
        self.replica = Some(ReplicaReport {
            records: theirs.records,
            root: theirs.root,
            problem_count: theirs.problem_count,
            missing_from_replica,
            missing_from_primary,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn writes_reach_both_and_catch_up_fills_the_replica() {
        let (a, b): (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>) =
            (Arc::new(InMemory::new()), Arc::new(InMemory::new()));
        a.put(&Path::from("segments/0000000000000000.seg"), b"old".to_vec().into()).await.unwrap();
        let both = ReplicatedStore::new(a.clone(), b.clone());
        assert_eq!(differences(a.as_ref(), b.as_ref()).await.unwrap().0, vec!["segments/0000000000000000.seg"]);
        assert_eq!(both.catch_up().await.unwrap(), 1);
        assert_eq!(both.catch_up().await.unwrap(), 0);
        both.put_opts(&Path::from("segments/0000000000000001.seg"), b"new".to_vec().into(), PutMode::Create.into())
            .await
            .unwrap();
        let mut up = both.put_multipart(&Path::from("files/f")).await.unwrap();
        up.put_part(b"part".to_vec().into()).await.unwrap();
        up.complete().await.unwrap();
        assert_eq!(differences(a.as_ref(), b.as_ref()).await.unwrap(), (vec![], vec![]));
        assert_eq!(b.get(&Path::from("files/f")).await.unwrap().bytes().await.unwrap().as_ref(), b"part");
        both.delete(&Path::from("files/f")).await.unwrap();
        assert!(b.get(&Path::from("files/f")).await.is_err());
        // Not archive objects: never copied or compared.
        a.put(&Path::from("policy-seen.json"), b"{}".to_vec().into()).await.unwrap();
        assert_eq!(both.catch_up().await.unwrap(), 0);
    }
}
