//! A bucket through `object_store`: uploads, cached downloads, ranged footer reads, server-side
//! promotion, listing. The futures run on one small runtime shared by every bucket, and each
//! call blocks until its future is done.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::Digest;

use super::spec::{parse_aws_profile, split_object_url};
use super::{io, StorageError, StoredObject};

/// Files up to this size are uploaded in one request; larger ones in parts of this size.
const SINGLE_UPLOAD_BYTES: u64 = 16 << 20;

/// A bucket (with a prefix) and the local cache of its objects.
pub struct BucketStorage {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    cache_root: PathBuf,
}

impl BucketStorage {
    /// Opens `url` (`s3://bucket/prefix`, normalised by `parse_storage_spec`); local copies go
    /// below `cache_root`.
    pub fn open(url: &str, cache_root: &Path) -> Result<BucketStorage, StorageError> {
        let (bucket_url, prefix) =
            split_object_url(url).ok_or_else(|| StorageError::BadSpec(format!("{url} is not a bucket URL")))?;
        let store = store_for(&bucket_url)?;
        std::fs::create_dir_all(cache_root).map_err(io("creating", cache_root.display()))?;
        Ok(BucketStorage { url: url.to_string(), store, prefix, cache_root: cache_root.to_path_buf() })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn cache_root(&self) -> &Path {
        &self.cache_root
    }

    fn object_path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn name(&self, key: &str) -> String {
        format!("{}/{key}", self.url)
    }

    pub fn readable_path(&self, key: &str) -> Result<PathBuf, StorageError> {
        let local = self.cache_root.join(key);
        if local.is_file() {
            return Ok(local);
        }
        download(self.store.clone(), self.object_path(key), &local, &self.name(key))?;
        Ok(local)
    }

    /// Uploads the local copy of `key`.
    pub fn upload(&self, key: &str) -> Result<(), StorageError> {
        upload(self.store.clone(), self.object_path(key), &self.cache_root.join(key), &self.name(key))
    }

    /// Uploads the local file `source` as `key`.
    pub fn upload_from(&self, source: &Path, key: &str) -> Result<(), StorageError> {
        upload(self.store.clone(), self.object_path(key), source, &self.name(key))
    }

    pub fn size_of(&self, key: &str) -> Result<Option<u64>, StorageError> {
        let (store, path, name) = (self.store.clone(), self.object_path(key), self.name(key));
        block_on("reading an object's size", async move {
            match store.head(&path).await {
                Ok(meta) => Ok(Some(meta.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(source) => Err(StorageError::ObjectStore { doing: "reading the size of", what: name, source }),
            }
        })?
    }

    pub fn remove(&self, key: &str) -> Result<bool, StorageError> {
        let (store, path, name) = (self.store.clone(), self.object_path(key), self.name(key));
        block_on("removing an object", async move {
            match store.head(&path).await {
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(source) => return Err(StorageError::ObjectStore { doing: "looking up", what: name, source }),
                Ok(_) => {}
            }
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
                Err(source) => Err(StorageError::ObjectStore { doing: "removing", what: name, source }),
            }
        })?
    }

    /// Copies `staged` to `final_key` inside the bucket, then deletes `staged`. A local copy of
    /// `staged` (the server read it to check it) becomes the local copy of `final_key`, so it is
    /// not fetched again.
    pub fn promote(&self, staged: &str, final_key: &str) -> Result<(), StorageError> {
        self.promote_in_bucket(staged, final_key)?;
        let (cached, target) = (self.cache_root.join(staged), self.cache_root.join(final_key));
        if cached.is_file() {
            let moved = target
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::rename(&cached, &target));
            if moved.is_err() {
                let _ = std::fs::remove_file(&cached);
            }
        }
        Ok(())
    }

    fn promote_in_bucket(&self, staged: &str, final_key: &str) -> Result<(), StorageError> {
        let (store, from, to, name) =
            (self.store.clone(), self.object_path(staged), self.object_path(final_key), self.name(final_key));
        block_on("promoting an object", async move {
            store.copy(&from, &to).await.map_err(|source| StorageError::ObjectStore {
                doing: "copying the staged object to",
                what: name.clone(),
                source,
            })?;
            match store.delete(&from).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(source) => {
                    Err(StorageError::ObjectStore { doing: "removing the staged copy of", what: name, source })
                }
            }
        })?
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, StorageError> {
        let (store, path, name) = (self.store.clone(), self.object_path(prefix), self.name(prefix));
        let strip = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        let objects = list_objects(store, path, name)?;
        Ok(objects
            .into_iter()
            .filter_map(|object| {
                Some(StoredObject { key: object.key.strip_prefix(&strip)?.to_string(), size_bytes: object.size_bytes })
            })
            .collect())
    }

    /// The footer of a stored Parquet file, from two ranged reads (the tail, then the metadata).
    pub fn parquet_metadata(&self, key: &str) -> Result<parquet::file::metadata::ParquetMetaData, String> {
        let (store, path) = (self.store.clone(), self.object_path(key));
        let name = key.to_string();
        block_on("reading a Parquet footer", async move {
            let size = store.head(&path).await.map_err(|error| format!("{name} cannot be read: {error}"))?.size;
            if size < 12 {
                return Err(format!("{name} is too short to be a Parquet file ({size} bytes)"));
            }
            let tail = store
                .get_range(&path, size - 8..size)
                .await
                .map_err(|error| format!("reading the end of {name}: {error}"))?;
            if tail.len() != 8 || &tail[4..] != b"PAR1" {
                return Err(format!("{name} does not end like a Parquet file"));
            }
            let metadata_length = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
            if metadata_length + 12 > size {
                return Err(format!("{name}: its footer claims {metadata_length} bytes, more than the file"));
            }
            let metadata = store
                .get_range(&path, size - 8 - metadata_length..size - 8)
                .await
                .map_err(|error| format!("reading the footer of {name}: {error}"))?;
            parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&metadata)
                .map_err(|error| format!("{name} has an unreadable Parquet footer: {error}"))
        })
        .map_err(|error| error.to_string())?
    }
}

/// Every object below `path` of `store`, keys relative to the bucket.
fn list_objects(
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    name: String,
) -> Result<Vec<StoredObject>, StorageError> {
    block_on("listing objects", async move {
        let mut listing = store.list(Some(&path));
        let mut found = Vec::new();
        while let Some(object) = listing.next().await {
            let object =
                object.map_err(|source| StorageError::ObjectStore { doing: "listing", what: name.clone(), source })?;
            found.push(StoredObject { key: object.location.to_string(), size_bytes: object.size });
        }
        Ok(found)
    })?
}

/// What was found below an object URL (`s3://bucket/prefix/`): full URLs and sizes.
pub fn list_object_url(url: &str) -> Result<Vec<StoredObject>, StorageError> {
    let (bucket_url, prefix) =
        split_object_url(url).ok_or_else(|| StorageError::BadSpec(format!("{url} is not a bucket URL")))?;
    let store = store_for(&bucket_url)?;
    let objects = list_objects(store, ObjectPath::from(prefix.trim_end_matches('/')), url.to_string())?;
    Ok(objects
        .into_iter()
        .map(|object| StoredObject { key: format!("{bucket_url}/{}", object.key), size_bytes: object.size_bytes })
        .collect())
}

/// Downloads an object URL to `destination` (through a temporary sibling), returning its size
/// and SHA-256, computed while the bytes stream past.
pub fn download_object_url(
    url: &str,
    destination: &Path,
) -> Result<(u64, crate::domain::ids::Sha256Hex), StorageError> {
    let (bucket_url, key) =
        split_object_url(url).ok_or_else(|| StorageError::BadSpec(format!("{url} is not an object URL")))?;
    download(store_for(&bucket_url)?, ObjectPath::from(key), destination, url)
}

/// Where an object URL's local copy is kept below `cache_root`.
pub fn external_cache_path(url: &str, cache_root: &Path) -> PathBuf {
    let digest = sha2::Sha256::digest(url.as_bytes());
    let tag: String = digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
    let name: String = url
        .rsplit('/')
        .next()
        .unwrap_or("object")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .take(100)
        .collect();
    cache_root.join(format!("{tag}-{name}"))
}

/// A local copy of an object URL (a recording registered where it sits), fetched once.
pub fn fetch_object_url(url: &str, cache_root: &Path) -> Result<PathBuf, StorageError> {
    let local = external_cache_path(url, cache_root);
    if !local.is_file() {
        download_object_url(url, &local)?;
    }
    Ok(local)
}

fn download(
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    destination: &Path,
    name: &str,
) -> Result<(u64, crate::domain::ids::Sha256Hex), StorageError> {
    if let Some(parent) = destination.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent.display()))?;
    }
    let temp = crate::artifacts::files::temp_sibling(destination);
    let (temp_for_task, name_for_task) = (temp.clone(), name.to_string());
    let fetched = block_on("downloading an object", async move {
        let name = name_for_task;
        let result = store.get(&path).await.map_err(|source| match source {
            object_store::Error::NotFound { .. } => StorageError::NotFound { what: name.clone() },
            source => StorageError::ObjectStore { doing: "reading", what: name.clone(), source },
        })?;
        let mut file = std::fs::File::create(&temp_for_task).map_err(io("creating", temp_for_task.display()))?;
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|source| StorageError::ObjectStore { doing: "reading", what: name.clone(), source })?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).map_err(io("writing", temp_for_task.display()))?;
        }
        file.sync_all().map_err(io("syncing", temp_for_task.display()))?;
        let hex: String = hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
        Ok::<_, StorageError>((size, crate::domain::ids::Sha256Hex(hex)))
    })
    .and_then(|result| result);
    match fetched {
        Ok(done) => {
            std::fs::rename(&temp, destination).map_err(io("moving into place", destination.display()))?;
            Ok(done)
        }
        Err(error) => {
            let _ = std::fs::remove_file(&temp);
            Err(error)
        }
    }
}

fn upload(store: Arc<dyn ObjectStore>, path: ObjectPath, local: &Path, name: &str) -> Result<(), StorageError> {
    let size = std::fs::metadata(local).map_err(io("reading", local.display()))?.len();
    let (local, name) = (local.to_path_buf(), name.to_string());
    block_on("uploading an object", async move {
        let failed = |source| StorageError::ObjectStore { doing: "uploading", what: name.clone(), source };
        if size <= SINGLE_UPLOAD_BYTES {
            let bytes = std::fs::read(&local).map_err(io("reading", local.display()))?;
            store.put(&path, PutPayload::from(bytes)).await.map_err(failed)?;
            return Ok(());
        }
        let upload = store.put_multipart(&path).await.map_err(failed)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, SINGLE_UPLOAD_BYTES as usize);
        let mut file = std::fs::File::open(&local).map_err(io("reading", local.display()))?;
        let mut block = vec![0u8; 1 << 20];
        loop {
            let read = std::io::Read::read(&mut file, &mut block).map_err(io("reading", local.display()))?;
            if read == 0 {
                break;
            }
            writer.wait_for_capacity(4).await.map_err(failed)?;
            writer.write(&block[..read]);
        }
        writer.finish().await.map_err(failed)?;
        Ok(())
    })?
}

/// The store for `s3://bucket`, `gs://bucket` or `az://container`, opened once per process.
fn store_for(bucket_url: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    if let Some(store) = stores.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(bucket_url) {
        return Ok(store.clone());
    }
    let store = open_bucket(bucket_url)?;
    stores.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(bucket_url.to_string(), store.clone());
    Ok(store)
}

/// Opens a bucket with credentials from the usual places:
/// - S3: the `AWS_*` environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
///   `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` for
///   S3-compatible servers, `AWS_SKIP_SIGNATURE=true` for public buckets), then the shared
///   files `~/.aws/credentials` and `~/.aws/config` (profile `AWS_PROFILE`, else `default`),
///   then the instance or container role.
/// - GCS: `GOOGLE_SERVICE_ACCOUNT` / `GOOGLE_APPLICATION_CREDENTIALS` and the metadata server.
/// - Azure: `AZURE_STORAGE_ACCOUNT_NAME` with `AZURE_STORAGE_ACCOUNT_KEY` (or a SAS, or a
///   managed identity).
pub fn open_bucket(bucket_url: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    // reqwest's TLS needs a crypto provider; ring is the one this build carries.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let refused = |source: object_store::Error| StorageError::ObjectStore {
        doing: "opening",
        what: bucket_url.to_string(),
        source,
    };
    let scheme = bucket_url.split("://").next().unwrap_or_default();
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" => {
            let mut builder = object_store::aws::AmazonS3Builder::from_env().with_url(bucket_url);
            let environment = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
            let endpoint = environment("AWS_ENDPOINT_URL").or_else(|| environment("AWS_ENDPOINT"));
            if endpoint.as_deref().is_some_and(|endpoint| endpoint.starts_with("http://")) {
                builder = builder.with_allow_http(true);
            }
            if let Some(home) = environment("HOME") {
                let profile_name = environment("AWS_PROFILE").unwrap_or_else(|| "default".into());
                let read = |variable: &str, default: &str| {
                    let path = environment(variable).unwrap_or_else(|| format!("{home}/.aws/{default}"));
                    std::fs::read_to_string(path)
                        .map(|text| parse_aws_profile(&text, &profile_name))
                        .unwrap_or_default()
                };
                if environment("AWS_ACCESS_KEY_ID").is_none() {
                    let credentials = read("AWS_SHARED_CREDENTIALS_FILE", "credentials");
                    if let (Some(id), Some(secret)) = (credentials.access_key_id, credentials.secret_access_key) {
                        builder = builder.with_access_key_id(id).with_secret_access_key(secret);
                        if let Some(token) = credentials.session_token {
                            builder = builder.with_token(token);
                        }
                    }
                }
                if environment("AWS_REGION").is_none() && environment("AWS_DEFAULT_REGION").is_none() {
                    if let Some(region) = read("AWS_CONFIG_FILE", "config").region {
                        builder = builder.with_region(region);
                    }
                }
            }
            Arc::new(builder.build().map_err(refused)?)
        }
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(bucket_url).build().map_err(refused)?,
        ),
        "az" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env().with_url(bucket_url).build().map_err(refused)?,
        ),
        other => return Err(StorageError::BadSpec(format!("{bucket_url}: unsupported scheme {other:?}"))),
    };
    Ok(store)
}

/// Runs `future` on the storage runtime and waits for it: usable from any thread, inside a
/// tokio runtime or not.
fn block_on<T: Send + 'static>(
    doing: &'static str,
    future: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, StorageError> {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    let runtime = RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("humpback-storage")
                .enable_all()
                .build()
                .ok()
        })
        .as_ref()
        .ok_or(StorageError::RuntimeGone(doing))?;
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver.recv().map_err(|_| StorageError::RuntimeGone(doing))
}
