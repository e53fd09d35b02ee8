//! [`SimStorage`]: an in-memory [`Storage`] for fault tests. It keeps two images of everything:
//! the *live* one that reads see, and the *durable* one that a power cut leaves behind.
//!
//! - File bytes become durable only through `sync_data` on that file; directory entries
//!   (creations, renames, removals) only through `sync_dir` on their directory. Directories
//!   themselves are durable once created (weir-log creates a partition's directory once, before
//!   anything is written in it), and so are a directory's rename and removal (weir-store's topic
//!   deletion) — a simplification: the files and entries inside them follow the rules above.
//! - [`SimStorage::fail_call`] makes the Nth call of any kind fail with an I/O error (a failing
//!   write first writes part of its bytes, as a real short write would).
//! - [`SimStorage::power_cut`] returns the storage a machine would find after losing power:
//!   durable bytes and entries, plus — depending on [`CrashMode`] — some unsynced writes that
//!   happened to reach the disk, possibly out of order, possibly torn into zeros or garbage.
//! - [`SimStorage::capacity_bytes`] makes the device full: a write that would grow the files
//!   past it writes what fits and fails with `ErrorKind::StorageFull`, as `ENOSPC` does.
//! - [`SimStorage::lying_sync`] and [`SimStorage::lying_dir_sync`] break the storage on purpose
//!   (`sync` does nothing) so that tests can show the power-cut suite catches a missing fsync.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{OpenMode, Storage, StorageFile, StorageLock};

/// What survives of unsynced writes at a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Only what was synced survives.
    DropUnsynced,
    /// Each unsynced write independently survives or not (so later writes may survive while
    /// earlier ones are lost), and a surviving write may be torn (one in two): cut at a
    /// 512-byte sector boundary, with the rest left as zeros or garbage.
    Scramble {
        /// Seed for the choices; the same seed gives the same image.
        seed: u64,
    },
    /// A process crash (kill -9), not a power cut: every write and directory change the
    /// process made survives (the kernel's page cache holds them), synced or not.
    ProcessCrash,
}

type FileId = u64;

#[derive(Debug, Clone)]
enum PendingOp {
    Write { position: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
struct FileState {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<PendingOp>,
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<FileId, FileState>,
    next_id: FileId,
    dirs_live: BTreeMap<PathBuf, BTreeMap<String, FileId>>,
    dirs_durable: BTreeMap<PathBuf, BTreeMap<String, FileId>>,
    locks: BTreeSet<PathBuf>,
    calls: u64,
    fail_at: Option<u64>,
    failures: u64,
    lying_sync: bool,
    lying_dir_sync: bool,
    crash_at: Option<(u64, CrashMode)>,
    crash_image: Option<Box<State>>,
    capacity_bytes: Option<u64>,
    /// How long each `sync_data` takes (see [`SimStorage::sync_delay`]).
    sync_delay: Option<std::time::Duration>,
    /// `sync_data` calls running now, per file, and the most ever seen on one file.
    syncing: HashMap<FileId, u32>,
    syncing_max: u32,
}

impl State {
    /// Bytes held by the files that a directory still names.
    fn used_bytes(&self) -> u64 {
        let linked: BTreeSet<FileId> = self
            .dirs_live
            .values()
            .flat_map(|entries| entries.values().copied())
            .collect();
        linked
            .iter()
            .filter_map(|id| self.files.get(id))
            .map(|file| file.live.len() as u64)
            .sum()
    }
}

/// An in-memory, fault-injecting [`Storage`]. Cloning gives another handle to the same state.
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
}

fn injected(call: u64) -> io::Error {
    io::Error::other(format!("injected fault at storage call {call}"))
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
        .to_string_lossy()
        .into_owned();
    Ok((dir, name))
}

impl SimStorage {
    /// An empty storage.
    pub fn new() -> Self {
        SimStorage::default()
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock can only come from a failed test assertion elsewhere;
        // the state itself is still consistent, so keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes the `n`th storage call from now on (1-based, counting every call of either trait)
    /// fail with an I/O error. `None` clears the fault.
    pub fn fail_call(&self, n: Option<u64>) {
        let mut state = self.lock_state();
        state.fail_at = n.map(|n| state.calls + n);
    }

    /// Storage calls made so far.
    pub fn calls(&self) -> u64 {
        self.lock_state().calls
    }

    /// Injected failures so far.
    pub fn failures(&self) -> u64 {
        self.lock_state().failures
    }

    /// Limits the bytes all files may hold (`None`: unlimited). A write past the limit writes
    /// the part that fits and fails with `ErrorKind::StorageFull`.
    pub fn capacity_bytes(&self, capacity: Option<u64>) {
        self.lock_state().capacity_bytes = capacity;
    }

    /// Bytes the files a directory names hold now (what [`SimStorage::capacity_bytes`] limits).
    pub fn used_bytes(&self) -> u64 {
        self.lock_state().used_bytes()
    }

    /// Makes every `sync_data` take `delay` (before it looks at the state, without holding
    /// it), like a disk: so tests see appenders pile up behind a running fsync.
    pub fn sync_delay(&self, delay: Option<std::time::Duration>) {
        self.lock_state().sync_delay = delay;
    }

    /// The most `sync_data` calls ever seen running at once on one file (the log runs them one
    /// at a time: a writeback error is reported to one of two concurrent fsyncs only).
    pub fn concurrent_syncs_of_one_file_max(&self) -> u32 {
        self.lock_state().syncing_max
    }

    /// Breaks `sync_data`: it succeeds without making anything durable.
    pub fn lying_sync(&self, lying: bool) {
        self.lock_state().lying_sync = lying;
    }

    /// Breaks `sync_dir`: it succeeds without making any entry durable.
    pub fn lying_dir_sync(&self, lying: bool) {
        self.lock_state().lying_dir_sync = lying;
    }

    /// The storage as a power cut would leave it. Open handles of `self` keep working on
    /// `self`; the returned storage is independent and has no locks held.
    pub fn power_cut(&self, mode: CrashMode) -> SimStorage {
        let state = self.lock_state();
        SimStorage {
            state: Arc::new(Mutex::new(crash_image(&state, mode))),
        }
    }

    /// Takes a power-cut image (as [`SimStorage::power_cut`]) just before the `n`th storage
    /// call from now runs, wherever the caller is at that moment; fetch it with
    /// [`SimStorage::take_crash_image`].
    pub fn crash_at_call(&self, n: u64, mode: CrashMode) {
        let mut state = self.lock_state();
        state.crash_at = Some((state.calls + n, mode));
        state.crash_image = None;
    }

    /// True once the image asked for by [`SimStorage::crash_at_call`] was taken.
    pub fn has_crash_image(&self) -> bool {
        self.lock_state().crash_image.is_some()
    }

    /// The image taken by [`SimStorage::crash_at_call`], if that call was reached.
    pub fn take_crash_image(&self) -> Option<SimStorage> {
        let image = self.lock_state().crash_image.take()?;
        Some(SimStorage {
            state: Arc::new(Mutex::new(*image)),
        })
    }

    /// The live bytes of the file at `path` (test inspection).
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock_state();
        let (dir, name) = split(path).ok()?;
        let id = state.dirs_live.get(&dir)?.get(&name)?;
        Some(state.files.get(id)?.live.clone())
    }

    /// Overwrites the live and durable bytes of the file at `path` (test damage).
    pub fn write_file(&self, path: &Path, bytes: &[u8]) -> bool {
        let mut state = self.lock_state();
        let Ok((dir, name)) = split(path) else {
            return false;
        };
        let Some(&id) = state.dirs_live.get(&dir).and_then(|d| d.get(&name)) else {
            return false;
        };
        let Some(file) = state.files.get_mut(&id) else {
            return false;
        };
        file.live = bytes.to_vec();
        file.durable = bytes.to_vec();
        file.pending.clear();
        true
    }

    /// Counts a call and returns the injected failure for it, if this is the failing call.
    fn tick(state: &mut State) -> Option<u64> {
        state.calls += 1;
        if let Some((at, mode)) = state.crash_at {
            if at == state.calls {
                state.crash_image = Some(Box::new(crash_image(state, mode)));
                state.crash_at = None;
            }
        }
        if state.fail_at == Some(state.calls) {
            state.failures += 1;
            Some(state.calls)
        } else {
            None
        }
    }

    fn begin(&self) -> io::Result<MutexGuard<'_, State>> {
        let mut state = self.lock_state();
        match SimStorage::tick(&mut state) {
            Some(call) => Err(injected(call)),
            None => Ok(state),
        }
    }
}

/// The state a power cut leaves behind (see [`CrashMode`]).
fn crash_image(state: &State, mode: CrashMode) -> State {
    let mut rng = match mode {
        CrashMode::DropUnsynced | CrashMode::ProcessCrash => None,
        CrashMode::Scramble { seed } => Some(SplitMix64::new(seed)),
    };
    let keep_all = mode == CrashMode::ProcessCrash;
    let mut files = HashMap::new();
    for (&id, file) in &state.files {
        let mut image = if keep_all {
            file.live.clone()
        } else {
            file.durable.clone()
        };
        if let Some(rng) = rng.as_mut() {
            for op in &file.pending {
                if rng.below(2) == 0 {
                    continue; // this unsynced operation never reached the disk
                }
                match op {
                    PendingOp::SetLen(len) => image.resize(*len as usize, 0),
                    PendingOp::Write { position, bytes } => {
                        let mut bytes = bytes.clone();
                        if rng.below(2) == 0 && !bytes.is_empty() {
                            // Torn: a sector-aligned prefix made it, the rest is zeros or garbage.
                            let sectors = bytes.len().div_ceil(512) as u64;
                            let kept = (rng.below(sectors) * 512) as usize;
                            let garbage = rng.below(2) == 0;
                            for byte in bytes.iter_mut().skip(kept) {
                                *byte = if garbage { rng.next() as u8 } else { 0 };
                            }
                        }
                        write_into(&mut image, *position, &bytes);
                    }
                }
            }
        }
        files.insert(
            id,
            FileState {
                live: image.clone(),
                durable: image,
                pending: Vec::new(),
            },
        );
    }
    let dirs = if keep_all {
        state.dirs_live.clone()
    } else {
        state.dirs_durable.clone()
    };
    State {
        files,
        next_id: state.next_id,
        dirs_live: dirs.clone(),
        dirs_durable: dirs,
        ..State::default()
    }
}

fn write_into(image: &mut Vec<u8>, position: u64, bytes: &[u8]) {
    let start = position as usize;
    let end = start + bytes.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(bytes);
}

#[derive(Debug)]
struct SimFile {
    storage: SimStorage,
    id: FileId,
    writable: bool,
}

impl SimFile {
    fn with_file<T>(&self, f: impl FnOnce(&mut FileState) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.storage.begin()?;
        let file = state
            .files
            .get_mut(&self.id)
            .ok_or_else(|| io::Error::other("file vanished"))?;
        f(file)
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        self.with_file(|file| {
            let start = (position as usize).min(file.live.len());
            let end = (start + buf.len()).min(file.live.len());
            buf[..end - start].copy_from_slice(&file.live[start..end]);
            Ok(end - start)
        })
    }

    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ));
        }
        let mut state = self.storage.lock_state();
        let failed = SimStorage::tick(&mut state);
        let free_bytes = state
            .capacity_bytes
            .map(|capacity| capacity.saturating_sub(state.used_bytes()));
        let file = state
            .files
            .get_mut(&self.id)
            .ok_or_else(|| io::Error::other("file vanished"))?;
        let len = file.live.len() as u64;
        let fits = match free_bytes {
            Some(free) => ((len + free).saturating_sub(position) as usize).min(buf.len()),
            None => buf.len(),
        };
        // A failing write still writes a prefix, as a short write before ENOSPC or EIO would.
        let bytes = if failed.is_some() {
            &buf[..(buf.len() / 2).min(fits)]
        } else {
            &buf[..fits]
        };
        if !bytes.is_empty() {
            write_into(&mut file.live, position, bytes);
            file.pending.push(PendingOp::Write {
                position,
                bytes: bytes.to_vec(),
            });
        }
        match failed {
            Some(call) => Err(injected(call)),
            None if fits < buf.len() => Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on the simulated device",
            )),
            None => Ok(()),
        }
    }

    fn len(&self) -> io::Result<u64> {
        self.with_file(|file| Ok(file.live.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ));
        }
        self.with_file(|file| {
            file.live.resize(len as usize, 0);
            file.pending.push(PendingOp::SetLen(len));
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        let delay = {
            let mut state = self.storage.lock_state();
            let running = state.syncing.entry(self.id).or_default();
            *running += 1;
            let running = *running;
            state.syncing_max = state.syncing_max.max(running);
            state.sync_delay
        };
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        let result = self.sync_now();
        if let Some(running) = self.storage.lock_state().syncing.get_mut(&self.id) {
            *running -= 1;
        }
        result
    }
}

impl SimFile {
    /// `sync_data` once its delay has passed.
    fn sync_now(&self) -> io::Result<()> {
        let mut state = self.storage.begin()?;
        let lying = state.lying_sync;
        let file = state
            .files
            .get_mut(&self.id)
            .ok_or_else(|| io::Error::other("file vanished"))?;
        if !lying {
            for op in std::mem::take(&mut file.pending) {
                match op {
                    PendingOp::Write { position, bytes } => {
                        write_into(&mut file.durable, position, &bytes)
                    }
                    PendingOp::SetLen(len) => file.durable.resize(len as usize, 0),
                }
            }
            debug_assert_eq!(file.durable, file.live);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct SimLock {
    storage: SimStorage,
    path: PathBuf,
}

impl StorageLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.storage.lock_state().locks.remove(&self.path);
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.begin()?;
        let mut current = PathBuf::new();
        for component in path.components() {
            current.push(component);
            state.dirs_live.entry(current.clone()).or_default();
            state.dirs_durable.entry(current.clone()).or_default();
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.begin()?;
        let dir = state.dirs_live.get(path).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", path.display()),
            )
        })?;
        let mut names: Vec<String> = dir.keys().cloned().collect();
        // Nested directories are listed too, as a real read_dir would.
        for other in state.dirs_live.keys() {
            if other.parent() == Some(path) {
                if let Some(name) = other.file_name() {
                    names.push(name.to_string_lossy().into_owned());
                }
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let (dir, name) = split(path)?;
        let mut state = self.begin()?;
        let next_id = state.next_id;
        let entries = state.dirs_live.get_mut(&dir).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", dir.display()),
            )
        })?;
        let existing = entries.get(&name).copied();
        let (id, created) = match (mode, existing) {
            (OpenMode::Read | OpenMode::ReadWrite, Some(id)) => (id, false),
            (OpenMode::Read | OpenMode::ReadWrite, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no file {}", path.display()),
                ))
            }
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", path.display()),
                ))
            }
            (OpenMode::CreateTruncate, Some(id)) => (id, false),
            (OpenMode::CreateNew | OpenMode::CreateTruncate, None) => {
                entries.insert(name, next_id);
                (next_id, true)
            }
        };
        if created {
            state.next_id += 1;
            state.files.insert(id, FileState::default());
        } else if mode == OpenMode::CreateTruncate {
            if let Some(file) = state.files.get_mut(&id) {
                file.live.clear();
                file.pending.push(PendingOp::SetLen(0));
            }
        }
        drop(state);
        Ok(Arc::new(SimFile {
            storage: self.clone(),
            id,
            writable: mode != OpenMode::Read,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = split(path)?;
        let mut state = self.begin()?;
        let removed = state
            .dirs_live
            .get_mut(&dir)
            .and_then(|entries| entries.remove(&name));
        match removed {
            Some(_) => Ok(()),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no file {}", path.display()),
            )),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        let mut state = self.begin()?;
        if state.dirs_live.contains_key(from) {
            // Directories are durable at once in this model (see the module docs), and so is
            // moving one; the files inside keep their own rules.
            let state = &mut *state;
            for dirs in [&mut state.dirs_live, &mut state.dirs_durable] {
                let moved: Vec<PathBuf> = dirs
                    .keys()
                    .filter(|d| d.starts_with(from))
                    .cloned()
                    .collect();
                for old in moved {
                    let entries = dirs.remove(&old).unwrap_or_default();
                    let rest = old.strip_prefix(from).unwrap_or(Path::new(""));
                    dirs.insert(to.join(rest), entries);
                }
            }
            return Ok(());
        }
        let id = state
            .dirs_live
            .get_mut(&from_dir)
            .and_then(|entries| entries.remove(&from_name))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no file {}", from.display()),
                )
            })?;
        let target = state.dirs_live.get_mut(&to_dir).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", to_dir.display()),
            )
        })?;
        target.insert(to_name, id);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.begin()?;
        if state.lying_dir_sync {
            return Ok(());
        }
        let live = state.dirs_live.get(path).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", path.display()),
            )
        })?;
        state.dirs_durable.insert(path.to_path_buf(), live);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.begin()?;
        if !state.dirs_live.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", path.display()),
            ));
        }
        let state = &mut *state;
        for dirs in [&mut state.dirs_live, &mut state.dirs_durable] {
            dirs.retain(|dir, _| !dir.starts_with(path));
        }
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn StorageLock>> {
        let mut state = self.begin()?;
        if !state.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the lock is held by another handle",
            ));
        }
        drop(state);
        Ok(Box::new(SimLock {
            storage: self.clone(),
            path: path.to_path_buf(),
        }))
    }
}

/// A small, fixed pseudo-random generator (SplitMix64): the same seed gives the same sequence
/// on every platform and every version, so a failing seed replays forever.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        self.next() % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_bytes_and_entries_are_lost_at_a_power_cut() {
        let storage = SimStorage::new();
        let dir = Path::new("/d");
        storage.create_dir_all(dir).unwrap();
        let file = storage.open(&dir.join("a"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"hello", 0).unwrap();
        // Neither the file's bytes nor its directory entry is durable yet.
        let after = storage.power_cut(CrashMode::DropUnsynced);
        assert!(after.read_file(&dir.join("a")).is_none());
        storage.sync_dir(dir).unwrap();
        let after = storage.power_cut(CrashMode::DropUnsynced);
        assert_eq!(after.read_file(&dir.join("a")), Some(Vec::new()));
        file.sync_data().unwrap();
        file.write_all_at(b" world", 5).unwrap();
        let after = storage.power_cut(CrashMode::DropUnsynced);
        assert_eq!(after.read_file(&dir.join("a")), Some(b"hello".to_vec()));
    }

    #[test]
    fn the_nth_call_fails_once() {
        let storage = SimStorage::new();
        storage.create_dir_all(Path::new("/d")).unwrap();
        storage.fail_call(Some(2));
        assert!(storage.list_dir(Path::new("/d")).is_ok());
        assert!(storage.list_dir(Path::new("/d")).is_err());
        assert!(storage.list_dir(Path::new("/d")).is_ok());
        assert_eq!(storage.failures(), 1);
    }

    #[test]
    fn a_lying_sync_keeps_nothing() {
        let storage = SimStorage::new();
        let dir = Path::new("/d");
        storage.create_dir_all(dir).unwrap();
        let file = storage.open(&dir.join("a"), OpenMode::CreateNew).unwrap();
        storage.sync_dir(dir).unwrap();
        storage.lying_sync(true);
        file.write_all_at(b"hello", 0).unwrap();
        file.sync_data().unwrap();
        let after = storage.power_cut(CrashMode::DropUnsynced);
        assert_eq!(after.read_file(&dir.join("a")), Some(Vec::new()));
    }
}
