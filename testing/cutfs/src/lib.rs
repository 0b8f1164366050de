//! `cutfs`: an in-memory FUSE file system that can lose power.
//!
//! It keeps, for every file, two images: the **durable** one (what a disk
//! would hold after a power cut) and the **current** one (what reads and
//! `mmap` see). A write changes the current image and marks the 4 KiB pages
//! it touched as *pending*. Pending pages become durable when:
//!
//! - the file is synced (`fsync` or `fdatasync` of any handle of it): every
//!   pending page of that file, and its size;
//! - the write came through a handle opened with `O_SYNC` or `O_DSYNC`: the
//!   pages of that write (whole pages, as a page cache writes them), and the
//!   size it reached.
//!
//! A [`CutFs::cut`] is the power cut: the pending pages of every file are
//! kept all ([`CutMode::KeepAll`]), none ([`CutMode::DropAll`]) or a random
//! subset ([`CutMode::RandomSubset`], modelling write-back in any order), and
//! the mount goes away with the kernel's page cache. What survives is an
//! [`Image`], which [`CutFs::mount`] serves again from a fresh FUSE session.
//! [`CutFs::write_back`] makes every pending page durable at a moment of the
//! caller's choosing, as the kernel's periodic write-back does.
//!
//! Choices and limits of the model:
//!
//! - Directory operations (create, mkdir, unlink, rmdir, rename) are durable
//!   at once, like a file system that journals its metadata synchronously. A
//!   new file is durable as an empty file; its contents are pending.
//! - A pending page survives with its latest contents or not at all; an older
//!   version of a page written twice since the last sync never survives.
//! - A size change that was not synced (a truncate, or a write past the end)
//!   survives in `RandomSubset` with the same odds as a page; a kept page past
//!   the durable end extends the file to cover it.
//! - Locks (`flock`, `fcntl`) are left to the kernel, which handles them
//!   locally when the file system does not claim them; they do not survive a
//!   cut, like on a real machine.
//! - After a cut the file system is dead: writes the kernel still flushes
//!   while unmounting are acknowledged and dropped, other changes fail with
//!   `EIO`. The process that wrote must be gone before the cut (kill it), or
//!   the unmount fails with `EBUSY`.
//!
//! Mounting needs root (or `fusermount3`) and `/dev/fuse`;
//! [`check_support`] tells why a machine cannot, so tests can skip with a
//! reason. The crate has no `unsafe` code.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, BsdFileFlags, Config, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation,
    INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

/// The unit of write-back: a cut keeps or drops whole pages of this size.
pub const PAGE_SIZE: u64 = 4096;

/// How long the kernel may cache names and attributes. Every change goes
/// through the one kernel mount, so its caches stay right.
const TTL: Duration = Duration::from_secs(1);

const ROOT: u64 = 1;

/// What a power cut keeps of the writes that were not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    /// Every pending page is lost: the disk holds exactly what was synced.
    DropAll,
    /// Every pending page survives (as if the machine had flushed its cache).
    KeepAll,
    /// Each pending page (and each unsynced size change) survives or not,
    /// independently, as write-back in any order would leave it. The seed
    /// picks the choices and the odds (one in eight to seven in eight per
    /// cut), so a cut repeats for the same pending pages.
    RandomSubset {
        /// Seed of the choices.
        seed: u64,
    },
}

impl fmt::Display for CutMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CutMode::DropAll => write!(f, "drop-all"),
            CutMode::KeepAll => write!(f, "keep-all"),
            CutMode::RandomSubset { seed } => write!(f, "random-subset (seed {seed})"),
        }
    }
}

/// Why this machine cannot mount a `cutfs`, or `Ok` when it likely can
/// (mounting may still fail; [`CutFs::mount`] then says why).
pub fn check_support() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing (no FUSE in this kernel or container)".into());
    }
    let root = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata("/proc/self").map_err(|e| format!("cannot tell the user id: {e}"))?,
    ) == 0;
    if !root && !fusermount_available() {
        return Err("not root and no fusermount3 to mount FUSE file systems".into());
    }
    Ok(())
}

fn fusermount_available() -> bool {
    ["fusermount3", "fusermount"].iter().any(|b| std::process::Command::new(b).arg("-V").output().is_ok())
}

// ---------------------------------------------------------------------------
// Images: what survives.

/// The durable contents of a whole file system: directories and files. Made
/// by a cut ([`CutFs::cut`]) or a clean unmount ([`CutFs::unmount`]); served
/// by [`CutFs::mount`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    root: DirImage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DirImage {
    perm: u16,
    entries: BTreeMap<OsString, EntryImage>,
}

impl Default for DirImage {
    fn default() -> Self {
        DirImage { perm: 0o755, entries: BTreeMap::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EntryImage {
    Dir(DirImage),
    File { perm: u16, data: Vec<u8> },
}

impl Image {
    /// An empty file system: only the root directory.
    pub fn empty() -> Image {
        Image::default()
    }

    /// The contents of the file at `path` (relative to the root), if any.
    pub fn file(&self, path: impl AsRef<Path>) -> Option<&[u8]> {
        let mut dir = &self.root;
        let mut parts = path.as_ref().components().peekable();
        while let Some(part) = parts.next() {
            let entry = dir.entries.get(part.as_os_str())?;
            match (entry, parts.peek().is_none()) {
                (EntryImage::File { data, .. }, true) => return Some(data),
                (EntryImage::Dir(d), false) => dir = d,
                _ => return None,
            }
        }
        None
    }

    /// Every file with its size, paths relative to the root, in name order.
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        fn walk(dir: &DirImage, at: &Path, out: &mut Vec<(PathBuf, u64)>) {
            for (name, entry) in &dir.entries {
                let path = at.join(name);
                match entry {
                    EntryImage::Dir(d) => walk(d, &path, out),
                    EntryImage::File { data, .. } => out.push((path, data.len() as u64)),
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, Path::new(""), &mut out);
        out
    }

    /// Writes the image into the existing directory `dir` as plain files,
    /// to look at it with other tools or keep it after a failed test.
    pub fn materialize(&self, dir: &Path) -> io::Result<()> {
        fn walk(d: &DirImage, at: &Path) -> io::Result<()> {
            for (name, entry) in &d.entries {
                let path = at.join(name);
                match entry {
                    EntryImage::Dir(sub) => {
                        std::fs::create_dir_all(&path)?;
                        walk(sub, &path)?;
                    }
                    EntryImage::File { data, .. } => std::fs::write(&path, data)?,
                }
            }
            Ok(())
        }
        walk(&self.root, dir)
    }
}

// ---------------------------------------------------------------------------
// Files: current and durable images, pending pages.

#[derive(Debug, Default)]
struct FileData {
    /// What reads see.
    cur: Vec<u8>,
    /// What a cut keeps for certain.
    durable: Vec<u8>,
    /// Pages whose current contents may differ from the durable ones.
    pending: BTreeSet<u64>,
}

fn pages(from: u64, to: u64) -> std::ops::Range<u64> {
    if to <= from { 0..0 } else { from / PAGE_SIZE..to.div_ceil(PAGE_SIZE) }
}

impl FileData {
    fn from_durable(data: Vec<u8>) -> FileData {
        FileData { cur: data.clone(), durable: data, pending: BTreeSet::new() }
    }

    fn len(&self) -> u64 {
        self.cur.len() as u64
    }

    /// The current size differs from the durable one.
    fn size_dirty(&self) -> bool {
        self.cur.len() != self.durable.len()
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        if end > self.len() {
            self.cur.resize(end as usize, 0);
        }
        self.cur[offset as usize..end as usize].copy_from_slice(data);
        self.pending.extend(pages(offset, end));
    }

    fn set_len(&mut self, len: u64) {
        let old = self.len();
        if len == old {
            return;
        }
        if len < old {
            // The durable bytes past the new end must come back as zeros if
            // the file grows again: those pages now differ.
            self.pending.extend(pages(len, old.min(self.durable.len() as u64)));
        }
        self.cur.resize(len as usize, 0);
    }

    /// Makes pages `range` durable with their current contents, and the
    /// durable size at least `min_len` (the effect of an `O_DSYNC` write).
    fn sync_pages(&mut self, range: std::ops::Range<u64>, min_len: u64) {
        let want = (min_len.min(self.len()) as usize).max(self.durable.len());
        if want > self.durable.len() {
            self.durable.resize(want, 0);
        }
        for p in range {
            self.copy_page(p);
            self.pending.remove(&p);
        }
    }

    fn copy_page(&mut self, p: u64) {
        let start = (p * PAGE_SIZE) as usize;
        let end = ((p + 1) * PAGE_SIZE) as usize;
        let cur_end = end.min(self.cur.len());
        let dur_end = end.min(self.durable.len());
        if start < dur_end {
            let from_cur = cur_end.saturating_sub(start).min(dur_end - start);
            self.durable[start..start + from_cur].copy_from_slice(&self.cur[start..start + from_cur]);
            self.durable[start + from_cur..dur_end].fill(0);
        }
    }

    /// `fsync`: everything current becomes durable.
    fn sync_all(&mut self) {
        self.durable.resize(self.cur.len(), 0);
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            self.copy_page(p);
        }
    }

    /// What a cut leaves of this file.
    fn survive(&self, mode: CutMode, rng: &mut Rng, odds: u64) -> (Vec<u8>, u64) {
        match mode {
            CutMode::DropAll => (self.durable.clone(), 0),
            CutMode::KeepAll => (self.cur.clone(), self.pending.len() as u64),
            CutMode::RandomSubset { .. } => {
                let keep_size = self.size_dirty() && rng.chance(odds);
                let kept: Vec<u64> = self.pending.iter().copied().filter(|_| rng.chance(odds)).collect();
                let mut len = if keep_size { self.len() } else { self.durable.len() as u64 };
                for &p in &kept {
                    len = len.max(((p + 1) * PAGE_SIZE).min(self.len()));
                }
                let mut out = self.durable.clone();
                out.resize(len as usize, 0);
                for &p in &kept {
                    let start = (p * PAGE_SIZE) as usize;
                    let end = (((p + 1) * PAGE_SIZE) as usize).min(out.len());
                    if start >= end {
                        continue;
                    }
                    let from_cur = self.cur.len().saturating_sub(start).min(end - start);
                    out[start..start + from_cur].copy_from_slice(&self.cur[start..start + from_cur]);
                    out[start + from_cur..end].fill(0);
                }
                (out, kept.len() as u64)
            }
        }
    }
}

/// xorshift64*: small, deterministic, good enough to pick pages.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `eighths / 8`.
    fn chance(&mut self, eighths: u64) -> bool {
        (self.next() >> 32) % 8 < eighths
    }
}

// ---------------------------------------------------------------------------
// The file system proper.

#[derive(Debug)]
enum Kind {
    Dir { entries: BTreeMap<OsString, u64>, parent: u64 },
    File(FileData),
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    /// Names that refer to it (0: unlinked, kept only while open).
    nlink: u32,
}

impl Node {
    fn new(kind: Kind, perm: u16, uid: u32, gid: u32) -> Node {
        let now = SystemTime::now();
        Node { kind, perm, uid, gid, atime: now, mtime: now, ctime: now, nlink: 1 }
    }

    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, size, nlink) = match &self.kind {
            Kind::Dir { entries, .. } => (FileType::Directory, 4096, 2 + entries.len() as u32),
            Kind::File(f) => (FileType::RegularFile, f.len(), self.nlink),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            crtime: self.ctime,
            kind,
            perm: self.perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: PAGE_SIZE as u32,
            flags: 0,
        }
    }
}

/// Counts of what the file system was asked to do, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `write` requests.
    pub writes: u64,
    /// Bytes they carried.
    pub bytes_written: u64,
    /// Writes through an `O_SYNC`/`O_DSYNC` handle (durable at once).
    pub sync_writes: u64,
    /// `fsync`/`fdatasync` requests of files.
    pub fsyncs: u64,
    /// Writes that arrived after the cut and were dropped.
    pub writes_after_cut: u64,
}

#[derive(Debug)]
struct Handle {
    ino: u64,
    sync: bool,
}

#[derive(Debug)]
struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    cut: bool,
    counters: Counters,
}

fn is_sync(flags: i32) -> bool {
    flags & libc::O_DSYNC != 0
}

impl State {
    fn from_image(image: &Image) -> State {
        let mut s = State {
            nodes: HashMap::new(),
            next_ino: ROOT + 1,
            handles: HashMap::new(),
            next_fh: 1,
            cut: false,
            counters: Counters::default(),
        };
        s.load_dir(ROOT, ROOT, &image.root);
        s
    }

    fn load_dir(&mut self, ino: u64, parent: u64, dir: &DirImage) {
        let mut entries = BTreeMap::new();
        for (name, entry) in &dir.entries {
            let child = self.next_ino;
            self.next_ino += 1;
            entries.insert(name.clone(), child);
            match entry {
                EntryImage::Dir(d) => self.load_dir(child, ino, d),
                EntryImage::File { perm, data } => {
                    let node = Node::new(Kind::File(FileData::from_durable(data.clone())), *perm, 0, 0);
                    self.nodes.insert(child, node);
                }
            }
        }
        self.nodes.insert(ino, Node::new(Kind::Dir { entries, parent }, dir.perm, 0, 0));
    }

    /// The image a cut leaves, with what it kept of each file.
    fn survivors(&self, mode: CutMode) -> (Image, CutReport) {
        let (seed, odds) = match mode {
            CutMode::RandomSubset { seed } => (seed, 1 + Rng::new(seed ^ 0x5eed).next() % 7),
            _ => (0, 0),
        };
        let mut rng = Rng::new(seed);
        let mut report = CutReport { mode, files: Vec::new() };
        let root = self.survive_dir(ROOT, Path::new(""), mode, &mut rng, odds, &mut report);
        (Image { root }, report)
    }

    fn survive_dir(
        &self,
        ino: u64,
        at: &Path,
        mode: CutMode,
        rng: &mut Rng,
        odds: u64,
        report: &mut CutReport,
    ) -> DirImage {
        let node = &self.nodes[&ino];
        let Kind::Dir { entries, .. } = &node.kind else { unreachable!("not a directory: {ino}") };
        let mut out = DirImage { perm: node.perm, entries: BTreeMap::new() };
        for (name, child) in entries {
            let path = at.join(name);
            let c = &self.nodes[child];
            let entry = match &c.kind {
                Kind::Dir { .. } => EntryImage::Dir(self.survive_dir(*child, &path, mode, rng, odds, report)),
                Kind::File(f) => {
                    let (data, kept) = f.survive(mode, rng, odds);
                    report.files.push(FileCut {
                        path: path.clone(),
                        pending_pages: f.pending.len() as u64,
                        kept_pages: kept,
                        current_size: f.len(),
                        durable_size: f.durable.len() as u64,
                        surviving_size: data.len() as u64,
                    });
                    EntryImage::File { perm: c.perm, data }
                }
            };
            out.entries.insert(name.clone(), entry);
        }
        out
    }

    /// Everything written, as a clean shutdown leaves it.
    fn current(&self) -> Image {
        self.survivors(CutMode::KeepAll).0
    }

    fn dir_entries(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.nodes.get_mut(&ino).map(|n| &mut n.kind) {
            Some(Kind::Dir { entries, .. }) => Ok(entries),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn file(&mut self, ino: u64) -> Result<&mut FileData, Errno> {
        match self.nodes.get_mut(&ino).map(|n| &mut n.kind) {
            Some(Kind::File(f)) => Ok(f),
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        self.nodes.get(&ino).map(|n| n.attr(ino)).ok_or(Errno::ENOENT)
    }

    fn alive(&self) -> Result<(), Errno> {
        if self.cut { Err(Errno::EIO) } else { Ok(()) }
    }

    fn add_node(&mut self, parent: u64, name: &OsStr, node: Node) -> Result<u64, Errno> {
        self.alive()?;
        let ino = self.next_ino;
        let entries = self.dir_entries(parent)?;
        if entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        entries.insert(name.to_os_string(), ino);
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        self.touch_dir(parent);
        Ok(ino)
    }

    fn touch_dir(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            let now = SystemTime::now();
            n.mtime = now;
            n.ctime = now;
        }
    }

    fn open_handle(&mut self, ino: u64, flags: i32) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, Handle { ino, sync: is_sync(flags) });
        fh
    }

    /// Drops an inode that has no name left and no open handle.
    fn reap(&mut self, ino: u64) {
        let linked = self.nodes.get(&ino).is_some_and(|n| n.nlink > 0);
        if !linked && !self.handles.values().any(|h| h.ino == ino) {
            self.nodes.remove(&ino);
        }
    }

    fn unlink_entry(&mut self, parent: u64, name: &OsStr, want_dir: bool) -> Result<(), Errno> {
        self.alive()?;
        let ino = *self.dir_entries(parent)?.get(name).ok_or(Errno::ENOENT)?;
        match (&self.nodes[&ino].kind, want_dir) {
            (Kind::Dir { entries, .. }, true) if !entries.is_empty() => return Err(Errno::ENOTEMPTY),
            (Kind::Dir { .. }, false) => return Err(Errno::EISDIR),
            (Kind::File(_), true) => return Err(Errno::ENOTDIR),
            _ => {}
        }
        self.dir_entries(parent)?.remove(name);
        self.touch_dir(parent);
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.nlink = n.nlink.saturating_sub(1);
            n.ctime = SystemTime::now();
        }
        self.reap(ino);
        Ok(())
    }

    fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        noreplace: bool,
    ) -> Result<(), Errno> {
        self.alive()?;
        let ino = *self.dir_entries(parent)?.get(name).ok_or(Errno::ENOENT)?;
        if let Some(&target) = self.dir_entries(newparent)?.get(newname) {
            if target == ino {
                return Ok(());
            }
            if noreplace {
                return Err(Errno::EEXIST);
            }
            let target_is_dir = matches!(self.nodes[&target].kind, Kind::Dir { .. });
            let source_is_dir = matches!(self.nodes[&ino].kind, Kind::Dir { .. });
            match (source_is_dir, target_is_dir) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) => self.unlink_entry(newparent, newname, true)?,
                (false, false) => self.unlink_entry(newparent, newname, false)?,
            }
        }
        self.dir_entries(parent)?.remove(name);
        self.dir_entries(newparent)?.insert(newname.to_os_string(), ino);
        if let Some(Kind::Dir { parent: p, .. }) = self.nodes.get_mut(&ino).map(|n| &mut n.kind) {
            *p = newparent;
        }
        self.touch_dir(parent);
        self.touch_dir(newparent);
        Ok(())
    }
}

/// The FUSE side: every request takes the state's lock.
struct Fs {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl fuser::Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut s = lock(&self.state);
        let found = s.dir_entries(parent.0).and_then(|e| e.get(name).copied().ok_or(Errno::ENOENT));
        match found.and_then(|ino| s.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match lock(&self.state).attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = lock(&self.state);
        if let Err(e) = s.alive() {
            return reply.error(e);
        }
        if let Some(len) = size {
            match s.file(ino.0) {
                Ok(f) => f.set_len(len),
                Err(e) => return reply.error(e),
            }
        }
        let Some(n) = s.nodes.get_mut(&ino.0) else { return reply.error(Errno::ENOENT) };
        if let Some(m) = mode {
            n.perm = (m & 0o7777) as u16;
        }
        if let Some(u) = uid {
            n.uid = u;
        }
        if let Some(g) = gid {
            n.gid = g;
        }
        if let Some(t) = atime {
            n.atime = time(t);
        }
        if let Some(t) = mtime {
            n.mtime = time(t);
        } else if size.is_some() {
            n.mtime = SystemTime::now();
        }
        n.ctime = SystemTime::now();
        reply.attr(&TTL, &n.attr(ino.0));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let mut s = lock(&self.state);
        let node =
            Node::new(Kind::File(FileData::default()), (mode & !umask & 0o7777) as u16, req.uid(), req.gid());
        match s.add_node(parent.0, name, node).and_then(|ino| s.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let mut s = lock(&self.state);
        let kind = Kind::Dir { entries: BTreeMap::new(), parent: parent.0 };
        let node = Node::new(kind, (mode & !umask & 0o7777) as u16, req.uid(), req.gid());
        match s.add_node(parent.0, name, node).and_then(|ino| s.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match lock(&self.state).unlink_entry(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match lock(&self.state).unlink_entry(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let bits = flags.bits();
        if bits & !libc::RENAME_NOREPLACE != 0 {
            return reply.error(Errno::EINVAL);
        }
        let noreplace = bits & libc::RENAME_NOREPLACE != 0;
        match lock(&self.state).rename(parent.0, name, newparent.0, newname, noreplace) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut s = lock(&self.state);
        if let Err(e) = s.attr(ino.0) {
            return reply.error(e);
        }
        let fh = s.open_handle(ino.0, flags.0);
        // No direct I/O: LMDB maps the data file, which needs the page cache.
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = lock(&self.state);
        let node =
            Node::new(Kind::File(FileData::default()), (mode & !umask & 0o7777) as u16, req.uid(), req.gid());
        match s.add_node(parent.0, name, node).and_then(|ino| s.attr(ino).map(|a| (ino, a))) {
            Ok((ino, attr)) => {
                let fh = s.open_handle(ino, flags);
                reply.created(&TTL, &attr, Generation(0), FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut s = lock(&self.state);
        match s.file(ino.0) {
            Ok(f) => {
                let start = (offset as usize).min(f.cur.len());
                let end = (start + size as usize).min(f.cur.len());
                reply.data(&f.cur[start..end]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = lock(&self.state);
        if s.cut {
            s.counters.writes_after_cut += 1;
            return reply.written(data.len() as u32);
        }
        let sync = is_sync(flags.0) || s.handles.get(&fh.0).is_some_and(|h| h.ino == ino.0 && h.sync);
        let f = match s.file(ino.0) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        f.write(offset, data);
        let end = offset + data.len() as u64;
        if sync {
            f.sync_pages(pages(offset, end), end);
        }
        s.counters.writes += 1;
        s.counters.bytes_written += data.len() as u64;
        if sync {
            s.counters.sync_writes += 1;
        }
        if let Some(n) = s.nodes.get_mut(&ino.0) {
            n.mtime = SystemTime::now();
        }
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = lock(&self.state);
        s.handles.remove(&fh.0);
        s.reap(ino.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let mut s = lock(&self.state);
        if let Err(e) = s.alive() {
            return reply.error(e);
        }
        match s.file(ino.0) {
            Ok(f) => f.sync_all(),
            Err(e) => return reply.error(e),
        }
        s.counters.fsyncs += 1;
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let s = lock(&self.state);
        let Some(node) = s.nodes.get(&ino.0) else { return reply.error(Errno::ENOENT) };
        let Kind::Dir { entries, parent } = &node.kind else { return reply.error(Errno::ENOTDIR) };
        let mut all: Vec<(u64, FileType, OsString)> =
            vec![(ino.0, FileType::Directory, ".".into()), (*parent, FileType::Directory, "..".into())];
        for (name, child) in entries {
            let kind = match s.nodes.get(child).map(|n| &n.kind) {
                Some(Kind::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((*child, kind, name.clone()));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Directory operations are durable at once.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = lock(&self.state);
        let used: u64 = s
            .nodes
            .values()
            .map(|n| if let Kind::File(f) = &n.kind { f.len().div_ceil(PAGE_SIZE) } else { 1 })
            .sum();
        let total = 1u64 << 24; // 64 GiB in pages
        let free = total.saturating_sub(used);
        reply.statfs(
            total,
            free,
            free,
            1 << 20,
            (1 << 20) - s.nodes.len() as u64,
            PAGE_SIZE as u32,
            255,
            PAGE_SIZE as u32,
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        match lock(&self.state).attr(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let mut s = lock(&self.state);
        if let Err(e) = s.alive() {
            return reply.error(e);
        }
        match s.file(ino.0) {
            Ok(f) => {
                if offset + length > f.len() {
                    f.set_len(offset + length);
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }
}

// ---------------------------------------------------------------------------
// Mounts and cuts.

/// What a cut did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCut {
    /// The file, relative to the mount's root.
    pub path: PathBuf,
    /// Pages written since the file's last sync.
    pub pending_pages: u64,
    /// Of those, the pages the cut kept.
    pub kept_pages: u64,
    /// Size before the cut, as reads saw it.
    pub current_size: u64,
    /// Size as of the last sync.
    pub durable_size: u64,
    /// Size after the cut.
    pub surviving_size: u64,
}

/// What a cut kept and lost, per file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutReport {
    /// The cut's mode.
    pub mode: CutMode,
    /// Every file of the file system, in path order.
    pub files: Vec<FileCut>,
}

impl CutReport {
    /// Pages pending in all files at the cut.
    pub fn pending_pages(&self) -> u64 {
        self.files.iter().map(|f| f.pending_pages).sum()
    }

    /// Pages the cut kept.
    pub fn kept_pages(&self) -> u64 {
        self.files.iter().map(|f| f.kept_pages).sum()
    }
}

impl fmt::Display for CutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: kept {} of {} pending pages", self.mode, self.kept_pages(), self.pending_pages())?;
        for c in self.files.iter().filter(|c| c.pending_pages > 0) {
            write!(
                f,
                "; {} {}/{} (size {} → {}, durable {})",
                c.path.display(),
                c.kept_pages,
                c.pending_pages,
                c.current_size,
                c.surviving_size,
                c.durable_size
            )?;
        }
        Ok(())
    }
}

/// A mounted `cutfs`. Dropping it unmounts it (what was written is then
/// gone; use [`unmount`](CutFs::unmount) or [`cut`](CutFs::cut) to keep it).
pub struct CutFs {
    session: Option<BackgroundSession>,
    state: Arc<Mutex<State>>,
    mountpoint: PathBuf,
}

impl fmt::Debug for CutFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CutFs").field("mountpoint", &self.mountpoint).finish_non_exhaustive()
    }
}

impl CutFs {
    /// Mounts a file system holding `image` (all of it durable) on the
    /// existing directory `mountpoint`, served by a background thread of
    /// this process.
    pub fn mount(mountpoint: impl AsRef<Path>, image: &Image) -> io::Result<CutFs> {
        let mountpoint = mountpoint.as_ref().to_path_buf();
        let state = Arc::new(Mutex::new(State::from_image(image)));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("cutfs".into()),
            MountOption::Subtype("cutfs".into()),
            MountOption::DefaultPermissions,
        ];
        let fs = Fs { state: state.clone() };
        let session = fuser::spawn_mount(fs, &mountpoint, &config).map_err(|e| {
            io::Error::new(e.kind(), format!("mounting cutfs on {}: {e}", mountpoint.display()))
        })?;
        Ok(CutFs { session: Some(session), state, mountpoint })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// What the file system was asked to do so far.
    pub fn counters(&self) -> Counters {
        lock(&self.state).counters
    }

    /// Pages written and not yet synced, in all files.
    pub fn pending_pages(&self) -> u64 {
        lock(&self.state)
            .nodes
            .values()
            .map(|n| if let Kind::File(f) = &n.kind { f.pending.len() as u64 } else { 0 })
            .sum()
    }

    /// The kernel's write-back, at a moment of the caller's choosing: every
    /// pending page of every file becomes durable at once. Nothing waits for
    /// it (it is not a sync); it makes the durable state a later cut falls
    /// back to more recent, as an operating system that flushes its dirty
    /// pages now and then does.
    pub fn write_back(&self) {
        let mut s = lock(&self.state);
        if s.cut {
            return;
        }
        for n in s.nodes.values_mut() {
            if let Kind::File(f) = &mut n.kind {
                f.sync_all();
            }
        }
    }

    /// The power cut: decides what survives (per `mode`), kills the file
    /// system, unmounts it (the kernel's page cache goes with it) and returns
    /// the surviving image. Every process that had files open on it must be
    /// gone first.
    pub fn cut(mut self, mode: CutMode) -> io::Result<(Image, CutReport)> {
        let survivors = {
            let mut s = lock(&self.state);
            s.cut = true;
            s.survivors(mode)
        };
        self.shut_down()?;
        Ok(survivors)
    }

    /// A clean shutdown: unmounts (the kernel writes back what it caches
    /// first) and returns everything written, synced or not.
    pub fn unmount(mut self) -> io::Result<Image> {
        self.shut_down()?;
        Ok(lock(&self.state).current())
    }

    fn shut_down(&mut self) -> io::Result<()> {
        const ECONNABORTED: i32 = 103;
        match self.session.take() {
            // After our own unmount the kernel ends the connection; the
            // session's last read then fails with ENODEV or, when the kernel
            // aborted the connection to end it (it does so at unmount, racing
            // the read), with ECONNABORTED: both are the normal end.
            Some(session) => session
                .umount_and_join()
                .or_else(|e| if e.raw_os_error() == Some(ECONNABORTED) { Ok(()) } else { Err(e) })
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "unmounting cutfs at {} (a process still using it?): {e}",
                            self.mountpoint.display()
                        ),
                    )
                }),
            None => Ok(()),
        }
    }
}

impl Drop for CutFs {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(durable: &[u8]) -> FileData {
        FileData::from_durable(durable.to_vec())
    }

    #[test]
    fn unsynced_pages_are_lost_by_drop_all_and_kept_by_keep_all() {
        let mut f = file_with(&[1u8; 8192]);
        f.write(4096, &[2u8; 10]);
        f.write(9000, &[3u8; 4]);
        assert_eq!(f.pending.iter().copied().collect::<Vec<_>>(), vec![1, 2]);
        let mut rng = Rng::new(1);
        let (dropped, _) = f.survive(CutMode::DropAll, &mut rng, 4);
        assert_eq!(dropped, vec![1u8; 8192]);
        let (kept, n) = f.survive(CutMode::KeepAll, &mut rng, 4);
        assert_eq!((kept.len(), n), (9004, 2));
        assert_eq!(&kept[4096..4106], &[2u8; 10]);
    }

    #[test]
    fn fsync_makes_everything_durable_and_sync_writes_their_pages() {
        let mut f = file_with(&[]);
        f.write(0, &[5u8; 5000]);
        f.sync_all();
        assert!(f.pending.is_empty());
        assert_eq!(f.durable, f.cur);
        f.write(0, &[6u8; 10]);
        f.write(8192, &[7u8; 10]);
        f.sync_pages(pages(8192, 8202), 8202);
        assert_eq!(f.pending.iter().copied().collect::<Vec<_>>(), vec![0]);
        assert_eq!(f.durable.len(), 8202);
        assert_eq!(&f.durable[8192..8202], &[7u8; 10]);
        assert_eq!(f.durable[0], 5, "page 0 was not synced");
    }

    #[test]
    fn a_random_subset_keeps_some_pages_whole() {
        let mut f = file_with(&vec![0u8; 64 * 4096]);
        for p in 0..64u64 {
            f.write(p * PAGE_SIZE, &vec![9u8; PAGE_SIZE as usize]);
        }
        let mut rng = Rng::new(7);
        let (out, kept) = f.survive(CutMode::RandomSubset { seed: 7 }, &mut rng, 4);
        assert!(kept > 0 && kept < 64, "kept {kept} of 64");
        let whole = out.chunks(PAGE_SIZE as usize).filter(|c| c.iter().all(|b| *b == 9)).count();
        let none = out.chunks(PAGE_SIZE as usize).filter(|c| c.iter().all(|b| *b == 0)).count();
        assert_eq!((whole as u64, whole + none), (kept, 64));
    }

    #[test]
    fn truncation_then_growth_reads_zeros_and_a_cut_can_undo_it() {
        let mut f = file_with(&[1u8; 8192]);
        f.set_len(100);
        f.set_len(8192);
        assert!(f.cur[100..].iter().all(|b| *b == 0));
        let mut rng = Rng::new(3);
        assert_eq!(f.survive(CutMode::DropAll, &mut rng, 4).0, vec![1u8; 8192]);
        f.sync_all();
        assert_eq!(f.durable, f.cur);
    }
}
