//! Where artifacts live (issue 14): audio, embedding sets, cluster outputs, detector files.
//!
//! - A **folder**: the data directory (the default) or a shared filesystem path
//!   (`serve --storage /mnt/share/humpback`). Keys are paths below it; artifacts are written in
//!   place, promoted by rename, and read where they are.
//! - A **bucket** (`--storage s3://bucket/prefix`, `gs://…`, `az://…`) through the Arrow
//!   project's `object_store`. Credentials come from the usual environment (see
//!   [`bucket::open_bucket`]). Artifacts are written to a local cache first and uploaded
//!   before any event names them ([`Storage::publish`]); readers get a local copy, fetched once
//!   into the cache ([`Storage::readable_path`]). Staged keys are checked with ranged reads
//!   (the Parquet footer) and put in place with a server-side copy: nothing large passes
//!   through the server.
//!
//! A key is a relative path with `/` separators (`embeddings/{model}/{audio}/{sig}.parquet`),
//! the same string the log records. A recording registered where it already sits has an
//! object URL instead (`s3://archive/2019/file.flac`): [`is_object_url`].
//!
//! Every method blocks; the object store's futures run on the storage's own small runtime, so
//! they may be called from worker threads and from `spawn_blocking` alike.

pub mod bucket;
pub mod spec;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use bucket::BucketStorage;
pub use spec::{is_object_url, parse_storage_spec, StorageSpec};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0}")]
    BadSpec(String),
    #[error("{key:?} is not a storage key: {reason}")]
    BadKey { key: String, reason: &'static str },
    #[error("{doing} {what}: {source}")]
    Io { doing: &'static str, what: String, source: std::io::Error },
    #[error("{doing} {what}: {source}")]
    ObjectStore { doing: &'static str, what: String, source: object_store::Error },
    #[error("{what} was not found in storage")]
    NotFound { what: String },
    #[error("the storage runtime stopped before {0} finished")]
    RuntimeGone(&'static str),
}

fn io(doing: &'static str, what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> StorageError {
    let what = what.to_string();
    move |source| StorageError::Io { doing, what, source }
}

/// A file (or object) in storage, with its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: String,
    pub size_bytes: u64,
}

/// The artifacts' home. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    backend: Arc<Backend>,
}

enum Backend {
    Folder(PathBuf),
    Bucket(BucketStorage),
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Storage({})", self.describe())
    }
}

impl Storage {
    /// Artifacts below a folder.
    pub fn folder(root: impl Into<PathBuf>) -> Storage {
        Storage { backend: Arc::new(Backend::Folder(root.into())) }
    }

    /// Opens what `spec` names: a folder path (or `file://` URL), or a bucket URL whose local
    /// copies go below `cache_dir`.
    pub fn open(spec: &str, cache_dir: &Path) -> Result<Storage, StorageError> {
        match parse_storage_spec(spec)? {
            StorageSpec::Folder(root) => Ok(Storage::folder(root)),
            StorageSpec::Bucket(url) => {
                Ok(Storage { backend: Arc::new(Backend::Bucket(BucketStorage::open(&url, cache_dir)?)) })
            }
        }
    }

    /// What to tell a worker: the folder's path or the bucket's URL.
    pub fn describe(&self) -> String {
        match self.backend.as_ref() {
            Backend::Folder(root) => root.display().to_string(),
            Backend::Bucket(bucket) => bucket.url().to_string(),
        }
    }

    pub fn is_bucket(&self) -> bool {
        matches!(self.backend.as_ref(), Backend::Bucket(_))
    }

    /// The local folder artifacts are written below before they are published: the storage
    /// folder itself, or the bucket's cache.
    pub fn local_root(&self) -> &Path {
        match self.backend.as_ref() {
            Backend::Folder(root) => root,
            Backend::Bucket(bucket) => bucket.cache_root(),
        }
    }

    /// Where to write the artifact `key` locally (then [`Storage::publish`] it).
    pub fn local_path(&self, key: &str) -> Result<PathBuf, StorageError> {
        Ok(self.local_root().join(checked_key(key)?))
    }

    /// A local path holding the bytes of `key` (or of an object URL): the file itself in a
    /// folder; in a bucket, the cached copy, fetched first when missing.
    pub fn readable_path(&self, key: &str) -> Result<PathBuf, StorageError> {
        if is_object_url(key) {
            return bucket::fetch_object_url(key, &self.external_cache_root());
        }
        if let Some(path) = key.strip_prefix("file://") {
            // A recording registered where it sits on a shared filesystem.
            if !spec::is_in_place_location(key) {
                return Err(StorageError::BadKey {
                    key: key.chars().take(200).collect(),
                    reason: "not an absolute path",
                });
            }
            return Ok(PathBuf::from(path));
        }
        match self.backend.as_ref() {
            Backend::Folder(root) => Ok(root.join(checked_key(key)?)),
            Backend::Bucket(bucket) => bucket.readable_path(checked_key(key)?),
        }
    }

    /// Makes the locally written `key` durable in storage: nothing to do in a folder (it was
    /// promoted in place); uploaded to the bucket otherwise. Called before the event that
    /// names it is appended.
    pub fn publish(&self, key: &str) -> Result<(), StorageError> {
        match self.backend.as_ref() {
            Backend::Folder(_) => Ok(()),
            Backend::Bucket(bucket) => bucket.upload(checked_key(key)?),
        }
    }

    /// Stores a copy of the local file `source` as `key` (a model file shared with workers);
    /// skipped when a file of the same size is already there.
    pub fn put_copy(&self, source: &Path, key: &str) -> Result<(), StorageError> {
        let size = std::fs::metadata(source).map_err(io("reading", source.display()))?.len();
        if self.size_of(key)? == Some(size) {
            return Ok(());
        }
        match self.backend.as_ref() {
            Backend::Folder(root) => {
                let target = root.join(checked_key(key)?);
                let bytes = std::fs::read(source).map_err(io("reading", source.display()))?;
                crate::artifacts::files::write_atomically(&target, &bytes).map_err(|error| StorageError::Io {
                    doing: "writing",
                    what: key.into(),
                    source: std::io::Error::other(error.to_string()),
                })
            }
            Backend::Bucket(bucket) => bucket.upload_from(source, checked_key(key)?),
        }
    }

    /// A local folder holding every file below `prefix`: the folder itself, or (from a bucket)
    /// the cache after copying what is missing.
    pub fn fetch_folder(&self, prefix: &str) -> Result<PathBuf, StorageError> {
        if self.is_bucket() {
            for object in self.list(prefix)? {
                self.readable_path(&object.key)?;
            }
        }
        let folder = self.local_path(prefix)?;
        std::fs::create_dir_all(&folder).map_err(io("creating", folder.display()))?;
        Ok(folder)
    }

    /// The size of `key`, or `None` when it is not there.
    pub fn size_of(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match self.backend.as_ref() {
            Backend::Folder(root) => match std::fs::metadata(root.join(checked_key(key)?)) {
                Ok(metadata) => Ok(Some(metadata.len())),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(StorageError::Io { doing: "reading the size of", what: key.into(), source: error }),
            },
            Backend::Bucket(bucket) => bucket.size_of(checked_key(key)?),
        }
    }

    /// Removes `key` (and its local copy); a missing key is fine. `true` when something was there.
    pub fn remove(&self, key: &str) -> Result<bool, StorageError> {
        let key = checked_key(key)?;
        let local = remove_file_if_exists(&self.local_root().join(key))?;
        match self.backend.as_ref() {
            Backend::Folder(_) => Ok(local),
            Backend::Bucket(bucket) => Ok(bucket.remove(key)? || local),
        }
    }

    /// Drops the local copy of a bucket key (a worker done with an input); nothing in a folder.
    pub fn forget_local_copy(&self, key: &str) {
        if self.is_bucket() {
            let target = if is_object_url(key) {
                bucket::external_cache_path(key, &self.external_cache_root())
            } else {
                match self.local_path(key) {
                    Ok(path) => path,
                    Err(_) => return,
                }
            };
            let _ = remove_file_if_exists(&target);
        }
    }

    /// Moves a staged artifact to its final key: a durable rename in a folder; a server-side
    /// copy then delete in a bucket (so the final key appears whole).
    pub fn promote(&self, staged: &str, final_key: &str) -> Result<(), StorageError> {
        let (staged, final_key) = (checked_key(staged)?, checked_key(final_key)?);
        match self.backend.as_ref() {
            Backend::Folder(root) => {
                let target = root.join(final_key);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io("creating", parent.display()))?;
                }
                crate::artifacts::files::promote(&root.join(staged), &target).map_err(|error| StorageError::Io {
                    doing: "promoting",
                    what: final_key.into(),
                    source: std::io::Error::other(error.to_string()),
                })
            }
            Backend::Bucket(bucket) => bucket.promote(staged, final_key),
        }
    }

    /// Every stored file below `prefix`, with its size.
    pub fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, StorageError> {
        let prefix = checked_key(prefix)?;
        match self.backend.as_ref() {
            Backend::Folder(root) => {
                let mut files = Vec::new();
                walk_files(&root.join(prefix), &mut files);
                Ok(files
                    .into_iter()
                    .filter_map(|path| {
                        let size_bytes = std::fs::metadata(&path).ok()?.len();
                        Some(StoredObject { key: key_of(path.strip_prefix(root).ok()?), size_bytes })
                    })
                    .collect())
            }
            Backend::Bucket(bucket) => bucket.list(prefix),
        }
    }

    /// The Parquet metadata of a stored file, read from its footer alone (two ranged reads in
    /// a bucket).
    pub fn parquet_metadata(&self, key: &str) -> Result<parquet::file::metadata::ParquetMetaData, String> {
        match self.backend.as_ref() {
            Backend::Folder(root) => {
                let path = root.join(checked_key(key).map_err(|error| error.to_string())?);
                let file = std::fs::File::open(&path).map_err(|error| format!("{key} cannot be read: {error}"))?;
                parquet::file::metadata::ParquetMetaDataReader::new()
                    .parse_and_finish(&file)
                    .map_err(|error| format!("{key} is not a readable Parquet file: {error}"))
            }
            Backend::Bucket(bucket) => bucket.parquet_metadata(checked_key(key).map_err(|error| error.to_string())?),
        }
    }

    fn external_cache_root(&self) -> PathBuf {
        self.local_root().join("cache").join("external")
    }
}

/// A key checked for shape: relative, `/`-separated, no `..`, no empty or `.` parts. Keys come
/// from the log and from the server's own layout, never from a request; this keeps a damaged
/// or hostile value from naming a file outside storage all the same.
pub fn checked_key(key: &str) -> Result<&str, StorageError> {
    let refuse = |reason| Err(StorageError::BadKey { key: key.chars().take(200).collect(), reason });
    if key.is_empty() {
        return refuse("it is empty");
    }
    if key.starts_with('/') || key.contains('\\') || key.contains('\0') || key.contains(':') {
        return refuse("it must be a relative path with / separators");
    }
    if key.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return refuse("it has an empty, . or .. part");
    }
    Ok(key)
}

/// `relative` as a key (`/` separators).
pub fn key_of(relative: &Path) -> String {
    relative.components().map(|part| part.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

/// Every file below `root` (none when it cannot be read).
pub fn walk_files(root: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => walk_files(&path, found),
            Ok(kind) if kind.is_file() => found.push(path),
            _ => {}
        }
    }
}

fn remove_file_if_exists(path: &Path) -> Result<bool, StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(StorageError::Io { doing: "removing", what: path.display().to_string(), source: error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_relative_paths_inside_storage() {
        assert!(checked_key("embeddings/m/1/abc.parquet").is_ok());
        for bad in ["", "/etc/passwd", "a/../b", "../a", "a//b", "a/./b", "a\\b", "s3://x/y", "a/"] {
            assert!(checked_key(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(key_of(Path::new("a/b/c.parquet")), "a/b/c.parquet");
    }

    #[test]
    fn a_folder_promotes_lists_sizes_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::folder(dir.path());
        let staged = storage.local_path("tmp/workers/x.parquet").unwrap();
        std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
        std::fs::write(&staged, b"12345").unwrap();
        assert_eq!(storage.size_of("tmp/workers/x.parquet").unwrap(), Some(5));
        assert_eq!(
            storage.list("tmp/workers").unwrap(),
            vec![StoredObject { key: "tmp/workers/x.parquet".into(), size_bytes: 5 }]
        );
        storage.promote("tmp/workers/x.parquet", "embeddings/m/1/x.parquet").unwrap();
        assert_eq!(storage.size_of("tmp/workers/x.parquet").unwrap(), None);
        assert_eq!(std::fs::read(storage.readable_path("embeddings/m/1/x.parquet").unwrap()).unwrap(), b"12345");
        assert!(storage.remove("embeddings/m/1/x.parquet").unwrap());
        assert!(!storage.remove("embeddings/m/1/x.parquet").unwrap());
        assert!(storage.readable_path("../outside").is_err());
    }
}
