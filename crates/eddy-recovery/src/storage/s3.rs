//! Checkpoint and savepoint storage on S3 (or an S3-compatible server) through `object_store`.
//!
//! Locations stay [`std::path::Path`]s all through Eddy: an `s3://bucket/key` URI is kept
//! verbatim (the config layer strips `file://` and keeps `s3://`), `Path::join` appends `/name`,
//! and only this module turns one into a bucket and an object key. Local directories do not come
//! here: they keep the plain-file code of `storage.rs` (fsync, atomic rename, hard-linked
//! `_metadata`), which the `fs` backend of `object_store` could only slow down and which hard-links
//! savepoint files instead of copying them.
//!
//! Atomicity: an S3 PUT makes an object visible whole or not at all, so a state file needs no temp
//! name, and a checkpoint counts only once its `_metadata` object exists (written last by the
//! JobManager). Directories do not exist on S3: a "directory" is a key prefix, listed with a `/`
//! delimiter.
//!
//! `object_store` is async and Eddy is thread-based: one small tokio runtime (two worker threads)
//! lives here, and every call blocks on it. Clients are built once per bucket from the
//! process-wide [`S3Settings`] (config keys `s3.*`, else the usual `AWS_*` environment variables).

use super::StorageError;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// The URI scheme this module serves.
pub const SCHEME: &str = "s3://";

/// How to reach S3: Flink's `s3.*` keys; unset fields fall back to the `AWS_*` environment
/// variables (`AWS_ENDPOINT`, `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// `s3.endpoint`: e.g. `http://127.0.0.1:9000` (an `http://` endpoint allows plain HTTP).
    pub endpoint: Option<String>,
    /// `s3.region`.
    pub region: Option<String>,
    /// `s3.access-key`.
    pub access_key: Option<String>,
    /// `s3.secret-key`.
    pub secret_key: Option<String>,
    /// `s3.path.style.access`: `http://endpoint/bucket/key` instead of `http://bucket.endpoint/key`.
    pub path_style: Option<bool>,
}

struct Clients {
    settings: S3Settings,
    stores: HashMap<String, Arc<AmazonS3>>,
}

fn clients() -> &'static Mutex<Clients> {
    static CLIENTS: OnceLock<Mutex<Clients>> = OnceLock::new();
    CLIENTS.get_or_init(|| {
        Mutex::new(Clients {
            settings: S3Settings::default(),
            stores: HashMap::new(),
        })
    })
}

/// Sets how this process reaches S3 (from its configuration, at start). Clients built with other
/// settings are dropped.
pub fn configure(settings: S3Settings) {
    let mut c = clients().lock().unwrap_or_else(|e| e.into_inner());
    if c.settings != settings {
        c.settings = settings;
        c.stores.clear();
    }
}

/// [`configure`] from a process's configuration (`s3.*` keys).
pub fn configure_from(config: &eddy_core::config::Config) {
    configure(S3Settings {
        endpoint: config.s3_endpoint(),
        region: config.s3_region(),
        access_key: config.s3_access_key(),
        secret_key: config.s3_secret_key(),
        path_style: config.s3_path_style(),
    });
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eddy-s3")
            .enable_all()
            .build()
            .expect("cannot start the S3 client runtime")
    })
}

/// Whether `path` is an `s3://` location.
pub fn is_s3(path: &Path) -> bool {
    path.to_str().is_some_and(|s| s.starts_with(SCHEME))
}

/// An `s3://bucket/key` location, parsed.
pub(crate) struct Location {
    bucket: String,
    key: ObjectPath,
    display: PathBuf,
}

impl Location {
    pub(crate) fn parse(path: &Path) -> Result<Location, StorageError> {
        let invalid = |reason: &'static str| StorageError::InvalidPath {
            path: path.to_path_buf(),
            relative: path.to_string_lossy().into_owned(),
            reason,
        };
        let rest = path
            .to_str()
            .and_then(|s| s.strip_prefix(SCHEME))
            .ok_or_else(|| invalid("not an s3:// URI"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("an s3:// URI needs a bucket: s3://bucket/prefix"));
        }
        let key = ObjectPath::parse(key.trim_end_matches('/'))
            .map_err(|_| invalid("not a valid S3 object key"))?;
        Ok(Location {
            bucket: bucket.to_string(),
            key,
            display: path.to_path_buf(),
        })
    }

    fn store(&self) -> Result<Arc<AmazonS3>, StorageError> {
        let mut c = clients().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = c.stores.get(&self.bucket) {
            return Ok(s.clone());
        }
        let s = &c.settings;
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&self.bucket);
        if let Some(e) = &s.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(r) = &s.region {
            b = b.with_region(r);
        }
        if let Some(k) = &s.access_key {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &s.secret_key {
            b = b.with_secret_access_key(k);
        }
        if let Some(p) = s.path_style {
            b = b.with_virtual_hosted_style_request(!p);
        }
        let store = Arc::new(b.build().map_err(|e| self.error("connect to", e))?);
        c.stores.insert(self.bucket.clone(), store.clone());
        Ok(store)
    }

    fn error(&self, op: &'static str, e: object_store::Error) -> StorageError {
        StorageError::Remote {
            op,
            path: self.display.clone(),
            detail: one_line(&e),
        }
    }
}

/// The error and its sources on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s.replace('\n', " ")
}

/// Writes `data` to the object at `path` (visible whole or not at all).
pub fn put(path: &Path, data: Vec<u8>) -> Result<(), StorageError> {
    let loc = Location::parse(path)?;
    let store = loc.store()?;
    runtime()
        .block_on(store.put(&loc.key, PutPayload::from(data)))
        .map(|_| ())
        .map_err(|e| loc.error("write", e))
}

/// The object at `path`, or `None` when there is none.
pub(crate) fn get(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    let loc = Location::parse(path)?;
    let store = loc.store()?;
    let got = runtime().block_on(async {
        match store.get(&loc.key).await {
            Ok(r) => r.bytes().await.map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    });
    got.map(|b| b.map(|b| b.to_vec()))
        .map_err(|e| loc.error("read", e))
}

/// The length of the object at `path`, or `None` when there is none.
pub(crate) fn len(path: &Path) -> Result<Option<u64>, StorageError> {
    let loc = Location::parse(path)?;
    let store = loc.store()?;
    match runtime().block_on(store.head(&loc.key)) {
        Ok(m) => Ok(Some(m.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(loc.error("stat", e)),
    }
}

/// The names of the "subdirectories" (common prefixes) directly under `path`.
pub(crate) fn list_dirs(path: &Path) -> Result<Vec<String>, StorageError> {
    let loc = Location::parse(path)?;
    let store = loc.store()?;
    let listed = runtime()
        .block_on(store.list_with_delimiter(Some(&loc.key)))
        .map_err(|e| loc.error("list", e))?;
    Ok(listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect())
}

/// Deletes the object at `path`; a missing object is success.
pub(crate) fn delete(path: &Path) -> Result<(), StorageError> {
    let loc = Location::parse(path)?;
    let store = loc.store()?;
    match runtime().block_on(store.delete(&loc.key)) {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(loc.error("remove", e)),
    }
}

/// Deletes every object under the prefix `path/`. Idempotent.
pub(crate) fn delete_prefix(path: &Path) -> Result<(), StorageError> {
    let loc = Location::parse(path)?;
    let store = loc.store()?;
    runtime()
        .block_on(async {
            let mut prefixes = vec![loc.key.clone()];
            while let Some(prefix) = prefixes.pop() {
                let listed = store.list_with_delimiter(Some(&prefix)).await?;
                for o in listed.objects {
                    match store.delete(&o.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                prefixes.extend(listed.common_prefixes);
            }
            Ok(())
        })
        .map_err(|e| loc.error("remove", e))
}

/// Copies the object `from` to `to`: server-side within one bucket, else by reading and
/// writing. Either side may be a local file. Returns the number of bytes copied.
pub(crate) fn copy(from: &Path, to: &Path) -> Result<u64, StorageError> {
    if is_s3(from) && is_s3(to) {
        let (src, dst) = (Location::parse(from)?, Location::parse(to)?);
        if src.bucket == dst.bucket {
            let store = src.store()?;
            let len = len(from)?.ok_or_else(|| StorageError::MissingFile {
                path: from.to_path_buf(),
            })?;
            runtime()
                .block_on(store.copy(&src.key, &dst.key))
                .map_err(|e| src.error("copy", e))?;
            return Ok(len);
        }
    }
    let data = if is_s3(from) {
        get(from)?.ok_or_else(|| StorageError::MissingFile {
            path: from.to_path_buf(),
        })?
    } else {
        std::fs::read(from).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::MissingFile {
                path: from.to_path_buf(),
            },
            _ => StorageError::Io {
                op: "read",
                path: from.to_path_buf(),
                source: e,
            },
        })?
    };
    let n = data.len() as u64;
    if is_s3(to) {
        put(to, data)?;
    } else {
        let (dir, name) = match (to.parent(), to.file_name().and_then(|n| n.to_str())) {
            (Some(d), Some(n)) => (d, n),
            _ => {
                return Err(StorageError::InvalidPath {
                    path: to.to_path_buf(),
                    relative: to.to_string_lossy().into_owned(),
                    reason: "not a file path",
                })
            }
        };
        super::write_file_atomically(dir, name, &mut &data[..])?;
    }
    Ok(n)
}
