//! Topics on disk: `topics/<name>/topic.json` (the metadata, written last and crash-safely:
//! temporary file, fsync, rename, directory fsync) and one weir-log directory per partition,
//! `topics/<name>/<partition>/`. A topic directory without a metadata file is an interrupted
//! creation and is removed at open; a deleted topic is first renamed to `.deleted-<n>`
//! (atomic), then removed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_log::{Log, OpenMode, Storage};

use crate::config::{StoreConfig, TopicConfig};
use crate::error::{Error, Result};
use crate::recovery::Witnesses;

/// The metadata file of a topic.
pub(crate) const TOPIC_FILE: &str = "topic.json";
/// The format version of `topic.json` written by this code.
pub(crate) const TOPIC_FORMAT_VERSION: u32 = 1;
/// Prefix of a topic directory being deleted.
pub(crate) const DELETED_PREFIX: &str = ".deleted-";
/// The largest metadata file read.
const TOPIC_FILE_BYTES_MAX: u64 = 64 * 1024;

/// What `topic.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TopicMeta {
    pub format_version: u32,
    pub name: String,
    /// Random and never 0 for a topic created or opened by this version; names the topic in
    /// the store's journal, so that frames of a deleted topic are never replayed into a new
    /// topic of the same name. Files written before it existed read as 0 and get one at open.
    #[serde(default)]
    pub id: u64,
    pub created_ms: u64,
    pub config: TopicConfig,
}

/// An open topic: its settings and one log per partition.
#[derive(Debug)]
pub(crate) struct Topic {
    pub meta: TopicMeta,
    pub dir: PathBuf,
    pub partitions: Vec<Arc<Log>>,
    round_robin: AtomicU64,
}

impl Topic {
    pub(crate) fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    pub(crate) fn log(&self, partition: u32) -> Result<&Arc<Log>> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| Error::PartitionOutOfRange {
                topic: self.meta.name.clone(),
                partition,
                partitions: self.partition_count(),
            })
    }

    /// The next partition in round-robin order.
    pub(crate) fn next_round_robin(&self) -> u32 {
        (self.round_robin.fetch_add(1, Ordering::Relaxed) % u64::from(self.partition_count()))
            as u32
    }

    /// Creates the topic's directories and logs, then its metadata file (the commit point).
    pub(crate) fn create(topics_dir: &Path, meta: TopicMeta, store: &StoreConfig) -> Result<Topic> {
        let storage = &*store.storage;
        let dir = topics_dir.join(&meta.name);
        if storage.list_dir(&dir).is_ok() {
            // A directory the store no longer lists (its topic's deletion failed midway, and
            // said so): never let a new topic adopt its partitions.
            return Err(Error::io(
                "create topic directory",
                &dir,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the directory of an earlier topic of this name is still there (its deletion \
                     failed); reopen the store, which lists that topic again, and delete it again",
                ),
            ));
        }
        storage
            .create_dir_all(&dir)
            .map_err(|e| Error::io("create topic directory", &dir, e))?;
        sync_dir(storage, topics_dir)?;
        let topic = Topic::open_logs(dir, meta, store, &Witnesses::default())?;
        write_meta(storage, &topic.dir, &topic.meta)?;
        Ok(topic)
    }

    /// Opens a topic directory with its checked metadata ([`read_checked_meta`]): each
    /// partition's recovery decides with what `witnesses` know of it, and a damaged partition
    /// opens read-only below its damage (the rest of the store works on).
    pub(crate) fn open(
        dir: PathBuf,
        meta: TopicMeta,
        store: &StoreConfig,
        witnesses: &Witnesses,
    ) -> Result<Topic> {
        let mut meta = meta;
        if meta.id == 0 {
            meta.id = new_topic_id();
            write_meta(&*store.storage, &dir, &meta)?;
        }
        Topic::open_logs(dir, meta, store, witnesses)
    }

    fn open_logs(
        dir: PathBuf,
        meta: TopicMeta,
        store: &StoreConfig,
        witnesses: &Witnesses,
    ) -> Result<Topic> {
        let log_config = meta.config.log_config(store);
        let mut partitions = Vec::with_capacity(meta.config.partitions as usize);
        for partition in 0..meta.config.partitions {
            let options = weir_log::OpenOptions {
                evidence: witnesses.evidence(&meta, partition),
                on_damage: weir_log::OnDamage::ReadOnly,
            };
            let log = Log::open_with_options(
                dir.join(partition.to_string()),
                log_config.clone(),
                store.storage.clone(),
                store.clock.clone(),
                &options,
            )
            .map_err(|e| Error::from_log(&meta.name, partition, e))?;
            for damage in &log.recovery_report().damage {
                tracing::error!(topic = %meta.name, partition, %damage, "the partition's acknowledged data is damaged: it serves reads below the damage and takes no writes until `weir repair`");
            }
            partitions.push(Arc::new(log));
        }
        Ok(Topic {
            meta,
            dir,
            partitions,
            round_robin: AtomicU64::new(0),
        })
    }

    /// Closes every partition cleanly.
    pub(crate) fn close(&self) -> Result<()> {
        let mut first_error = None;
        for (partition, log) in self.partitions.iter().enumerate() {
            if let Err(error) = log.close() {
                tracing::error!(topic = %self.meta.name, partition, %error, "closing a partition failed");
                first_error.get_or_insert(Error::from_log(
                    &self.meta.name,
                    partition as u32,
                    error,
                ));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A random, non-zero topic id (from the process's randomly keyed hasher, the time and a
/// counter).
pub(crate) fn new_topic_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}

fn write_meta(storage: &dyn Storage, dir: &Path, meta: &TopicMeta) -> Result<()> {
    let path = dir.join(TOPIC_FILE);
    let tmp = dir.join(format!("{TOPIC_FILE}.tmp"));
    let mut bytes = serde_json::to_vec_pretty(meta).map_err(|e| Error::Corrupt {
        path: path.clone(),
        reason: format!("cannot encode topic metadata: {e}"),
    })?;
    bytes.push(b'\n');
    let file = storage
        .open(&tmp, OpenMode::CreateTruncate)
        .map_err(|e| Error::io("create", &tmp, e))?;
    file.write_all_at(&bytes, 0)
        .map_err(|e| Error::io("write", &tmp, e))?;
    file.sync_data().map_err(|e| Error::io("fsync", &tmp, e))?;
    drop(file);
    storage
        .rename(&tmp, &path)
        .map_err(|e| Error::io("rename into place", &path, e))?;
    sync_dir(storage, dir)
}

/// True if any partition directory under the topic directory `dir` holds a segment with a
/// frame (more than a header): then a missing metadata file is damage, not an interrupted
/// creation (which writes the metadata last, before any event can be appended).
pub(crate) fn holds_events(storage: &dyn Storage, dir: &Path) -> Result<bool> {
    let Ok(partitions) = storage.list_dir(dir) else {
        return Ok(false);
    };
    for partition in partitions {
        let partition_dir = dir.join(&partition);
        let Ok(names) = storage.list_dir(&partition_dir) else {
            continue;
        };
        for name in names.iter().filter(|name| name.ends_with(".log")) {
            let path = partition_dir.join(name);
            let len = storage
                .open(&path, OpenMode::Read)
                .and_then(|file| file.len())
                .map_err(|e| Error::io("read the length of", &path, e))?;
            if len > weir_log::format::SEGMENT_HEADER_LEN as u64 {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// True if the topic directory `dir` has its metadata file (its creation completed).
pub(crate) fn meta_exists(storage: &dyn Storage, dir: &Path) -> Result<bool> {
    let path = dir.join(TOPIC_FILE);
    match storage.open(&path, OpenMode::Read) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("open", &path, e)),
    }
}

/// Reads a topic's metadata and checks it: its name is its directory's, its configuration is
/// valid (a hand-edited or damaged file must not get past here: `partitions: 0` would divide by
/// zero on the first keyless append).
pub(crate) fn read_checked_meta(
    storage: &dyn Storage,
    dir: &Path,
    store: &StoreConfig,
) -> Result<TopicMeta> {
    let meta = read_meta(storage, dir)?;
    let named = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if meta.name != named {
        return Err(Error::Corrupt {
            path: dir.join(TOPIC_FILE),
            reason: format!(
                "names topic {:?} but lives in directory {named:?}",
                meta.name
            ),
        });
    }
    if let Err(invalid) = meta.config.validate(store) {
        return Err(Error::Corrupt {
            path: dir.join(TOPIC_FILE),
            reason: format!("holds a configuration that is not valid: {invalid}"),
        });
    }
    Ok(meta)
}

fn read_meta(storage: &dyn Storage, dir: &Path) -> Result<TopicMeta> {
    let path = dir.join(TOPIC_FILE);
    let bytes = read_whole(storage, &path, TOPIC_FILE_BYTES_MAX)?;
    let meta: TopicMeta = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        path: path.clone(),
        reason: format!("not valid topic metadata: {e}"),
    })?;
    if meta.format_version != TOPIC_FORMAT_VERSION {
        return Err(Error::Corrupt {
            path,
            reason: format!("unsupported format version {}", meta.format_version),
        });
    }
    Ok(meta)
}

/// Reads a whole file of at most `len_max` bytes (a larger one is damage).
pub(crate) fn read_whole(storage: &dyn Storage, path: &Path, len_max: u64) -> Result<Vec<u8>> {
    let file = storage
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open", path, e))?;
    let len = file.len().map_err(|e| Error::io("stat", path, e))?;
    if len > len_max {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            reason: format!("{len} bytes is more than such a file holds ({len_max} at most)"),
        });
    }
    let mut bytes = vec![0; len as usize];
    weir_log::storage::read_exact_at(&*file, &mut bytes, 0)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(bytes)
}

/// Fsyncs a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(storage: &dyn Storage, dir: &Path) -> Result<()> {
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Removes a topic's directory: an atomic rename out of the way first, so a crash midway
/// leaves either the whole topic or a `.deleted-` directory that the next open removes.
pub(crate) fn remove_topic_dir(
    storage: &dyn Storage,
    topics_dir: &Path,
    name: &str,
    nonce: u64,
) -> Result<()> {
    let dir = topics_dir.join(name);
    // Named by the nonce alone: the topic's name in it could take it past the 255-byte limit
    // of a file name (a 249-byte topic could then never be deleted).
    let doomed = topics_dir.join(format!("{DELETED_PREFIX}{nonce}"));
    storage
        .rename(&dir, &doomed)
        .map_err(|e| Error::io("rename away", &dir, e))?;
    sync_dir(storage, topics_dir)?;
    storage
        .remove_dir_all(&doomed)
        .map_err(|e| Error::io("remove", &doomed, e))?;
    sync_dir(storage, topics_dir)
}
