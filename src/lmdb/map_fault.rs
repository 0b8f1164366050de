//! A fault in LMDB's memory map, reported as a damaged file.
//!
//! LMDB reads its file through a memory map and trusts the page numbers,
//! offsets and sizes it finds in the pages. A damaged page can send it (or
//! eventfold, reading a value LMDB handed out) to an address past the end of
//! the file, which the kernel answers with `SIGBUS`, or past the end of the
//! map, `SIGSEGV`. Open-time checks (`env::check_file`) and the checks on
//! every value read catch most damage as errors; what is left is a signal.
//!
//! [`install_damaged_file_handler`] turns such a signal into one line on
//! stderr and exit code [`DAMAGED_FILE_EXIT_CODE`], instead of a bare
//! `Bus error`. It acts on faults at addresses inside a mapped store file
//! (the ranges are read from `/proc/self/maps` when an environment opens),
//! and, once a store is open, on faults far from the stack pointer: LMDB
//! trusts a node's flags too, and a damaged flag can make it follow a null
//! pointer. A fault next to the stack pointer — a stack overflow — and any
//! fault before a store is open go to the handler that was installed
//! before, so Rust's "has overflowed its stack" report still appears.
//!
//! This is the only other module with `unsafe`, beside `env.rs`: setting a
//! signal handler is a call into libc.

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::vocab::{Error, Result};

/// The exit code of a process that [`install_damaged_file_handler`] ended
/// because a read of a store's memory map faulted (a damaged file). Exit 1
/// is a command's ordinary failure and 2 a usage error; 3 is only this.
pub const DAMAGED_FILE_EXIT_CODE: i32 = 3;

/// The line written on stderr before the process exits, for a fault inside
/// a store's map. Fixed bytes: a signal handler may not allocate or format.
pub(crate) const MESSAGE: &str = "eventfold: error: the store's file (data.mdb or projections/data.mdb) is damaged: a read through its memory map reached a page that is not in the file or not what it should be. Restore the store from a backup; `eventfold verify` shows what it can read.\n";

/// The line for a fault elsewhere, away from the stack, while a store is
/// open: LMDB followed a damaged page's flags or pointers into memory that
/// is not the map (a node marked as holding duplicates in a database that
/// has none makes it use a null pointer).
pub(crate) const CRASH_MESSAGE: &str = "eventfold: error: a read of the store crashed in LMDB (a memory fault outside its map): the store's file (data.mdb or projections/data.mdb) is damaged in a way LMDB does not check. Restore the store from a backup; `eventfold verify` shows what it can read.\n";

/// How far from the interrupted stack pointer a fault counts as the stack's
/// own (an overflow into its guard page): a frame's probes touch the stack
/// a page at a time, so an overflow faults right next to the pointer.
const STACK_WINDOW: usize = 1 << 20;

/// Address ranges of mapped store files: `(start, end)`, end exclusive,
/// `(0, 0)` for a free slot. Slots are reused round robin once all are
/// taken.
const SLOTS: usize = 64;
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: (AtomicUsize, AtomicUsize) = (AtomicUsize::new(0), AtomicUsize::new(0));
static RANGES: [(AtomicUsize, AtomicUsize); SLOTS] = [EMPTY; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// What was installed for SIGBUS and SIGSEGV before this module's handler.
#[cfg(target_os = "linux")]
static PREVIOUS: OnceLock<[libc::sigaction; 2]> = OnceLock::new();
#[cfg(not(target_os = "linux"))]
static PREVIOUS: OnceLock<()> = OnceLock::new();

/// Makes a fault in the memory map of a store's file end the process with
/// one line on stderr — the file is damaged, restore it from a backup —
/// and exit code [`DAMAGED_FILE_EXIT_CODE`].
///
/// Meant for programs whose job is the store, such as the `eventfold`
/// command-line tool and protocol node, which call it first thing. It
/// replaces the process's `SIGBUS` and `SIGSEGV` handlers with one that
/// reports a fault inside a store's map, or (once a store is open) any
/// fault far from the stack pointer, as a damaged file; a stack overflow,
/// and every fault before a store opens, goes back to the handler that was
/// there before. A program with native code of its own besides LMDB
/// should not call it: a crash in that code would be blamed on the store.
/// Calling it again does nothing.
///
/// On Linux only (it finds the maps in `/proc/self/maps`); elsewhere it
/// returns `Ok(())` and installs nothing.
pub fn install_damaged_file_handler() -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        linux::install()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = PREVIOUS.set(());
        Ok(())
    }
}

/// Notes the address range of the memory map of `data` (a `data.mdb` just
/// opened by LMDB), so a fault there is reported as a damaged file.
pub(crate) fn register_map(data: &Path) {
    let Ok(path) = std::fs::canonicalize(data) else { return };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return };
    let Some(path) = path.to_str() else { return };
    for (start, end) in maps.lines().filter_map(|line| mapping_of(line, path)) {
        let known = RANGES
            .iter()
            .any(|(s, e)| s.load(Ordering::Acquire) == start && e.load(Ordering::Acquire) == end);
        if !known {
            let slot = &RANGES[NEXT_SLOT.fetch_add(1, Ordering::AcqRel) % SLOTS];
            // A handler reading the slot between the stores sees an empty or
            // a narrower range: never one that is not a store's.
            slot.1.store(0, Ordering::Release);
            slot.0.store(start, Ordering::Release);
            slot.1.store(end, Ordering::Release);
        }
    }
}

/// The range of a `/proc/self/maps` line that maps the file `path`:
/// `start-end perms offset dev inode path`.
fn mapping_of(line: &str, path: &str) -> Option<(usize, usize)> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let name = fields.nth(4)?.trim_start();
    if name != path {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (start < end).then_some((start, end))
}

/// Whether any store map has been registered: a fault is only taken for
/// damage once a store is open.
fn any_store_map() -> bool {
    RANGES.iter().any(|(_, e)| e.load(Ordering::Acquire) != 0)
}

/// Whether `addr` lies in a registered store map. Atomic loads only: it
/// runs inside the signal handler.
fn in_store_map(addr: usize) -> bool {
    RANGES.iter().any(|(s, e)| {
        let (start, end) = (s.load(Ordering::Acquire), e.load(Ordering::Acquire));
        start <= addr && addr < end
    })
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;

    /// The alternate signal stack made for a thread that had none.
    const ALT_STACK_BYTES: usize = 64 * 1024;

    pub(super) fn install() -> Result<()> {
        let mut failure = None;
        PREVIOUS.get_or_init(|| {
            ensure_alt_stack();
            let mut previous = [empty_action(), empty_action()];
            for (i, sig) in [libc::SIGBUS, libc::SIGSEGV].into_iter().enumerate() {
                let mut action = empty_action();
                action.sa_sigaction = on_fault as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                // SAFETY: `action` is a fully initialised sigaction whose
                // handler is an `extern "C"` function with the SA_SIGINFO
                // signature that only makes async-signal-safe calls
                // (atomic loads, write, _exit, sigaction, raise);
                // `previous[i]` is valid memory for the old action.
                let rc = unsafe { libc::sigaction(sig, &action, &mut previous[i]) };
                if rc != 0 {
                    failure = Some(std::io::Error::last_os_error());
                }
            }
            previous
        });
        match failure {
            Some(e) => Err(Error::storage("installing the damaged-file signal handler", e)),
            None => Ok(()),
        }
    }

    fn empty_action() -> libc::sigaction {
        // SAFETY: sigaction is a plain C struct (integers, a signal set and
        // nullable function pointers), for which all-zero bytes are a valid
        // value: no handler, no flags, an empty mask.
        unsafe { std::mem::zeroed() }
    }

    /// Gives the calling thread an alternate signal stack when it has none,
    /// so the handler still runs when the fault is a stack overflow. Rust
    /// makes one for the main thread and for the threads it starts.
    fn ensure_alt_stack() {
        // SAFETY: all-zero bytes are a valid stack_t (null pointer, no flags).
        let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: a null new stack only queries; `current` is valid memory.
        if unsafe { libc::sigaltstack(std::ptr::null(), &mut current) } != 0 {
            return;
        }
        if current.ss_flags & libc::SS_DISABLE == 0 {
            return;
        }
        // The stack must live as long as the thread: it is leaked on purpose.
        let stack: &'static mut [u8] = Box::leak(vec![0u8; ALT_STACK_BYTES].into_boxed_slice());
        let new = libc::stack_t { ss_sp: stack.as_mut_ptr().cast(), ss_flags: 0, ss_size: stack.len() };
        // SAFETY: `new` describes memory that is never freed and not used
        // for anything else; a failure leaves the thread as it was.
        unsafe { libc::sigaltstack(&new, std::ptr::null_mut()) };
    }

    /// The stack pointer of the interrupted code, where this build knows
    /// the machine context's layout.
    fn interrupted_sp(context: *mut libc::c_void) -> Option<usize> {
        if context.is_null() {
            return None;
        }
        let context = context.cast::<libc::ucontext_t>();
        #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
        {
            // SAFETY: the kernel passes the interrupted context as the third
            // argument of an SA_SIGINFO handler; it is only read.
            let sp = unsafe { (*context).uc_mcontext.gregs[libc::REG_RSP as usize] };
            Some(sp as usize)
        }
        #[cfg(all(target_arch = "aarch64", target_env = "gnu"))]
        {
            // SAFETY: as above.
            let sp = unsafe { (*context).uc_mcontext.sp };
            Some(sp as usize)
        }
        #[cfg(not(all(any(target_arch = "x86_64", target_arch = "aarch64"), target_env = "gnu")))]
        {
            let _ = context;
            None
        }
    }

    /// Writes `message` on stderr and ends the process with exit code 3.
    fn report(message: &str) -> ! {
        // SAFETY: write(2) and _exit(2) are async-signal-safe; `message` is
        // a static buffer of the length passed.
        unsafe {
            libc::write(libc::STDERR_FILENO, message.as_ptr().cast(), message.len());
            libc::_exit(DAMAGED_FILE_EXIT_CODE)
        }
    }

    extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO
        // handler; it is only read, and only when not null.
        let (code, addr) =
            if info.is_null() { (0, 0) } else { unsafe { ((*info).si_code, (*info).si_addr() as usize) } };
        // A positive code is a fault the kernel raised at `addr`; zero or
        // negative is a signal sent by a process, which says nothing of it.
        if code > 0 && in_store_map(addr) {
            report(MESSAGE);
        }
        // A fault away from the stack while a store is open: in a process
        // whose only native code is LMDB, that is LMDB misled by a damaged
        // page. A fault next to the stack pointer is a stack overflow, for
        // the previous handler (Rust's) to report.
        if code > 0
            && any_store_map()
            && interrupted_sp(context).is_some_and(|sp| addr.abs_diff(sp) > STACK_WINDOW)
        {
            report(CRASH_MESSAGE);
        }
        // Not a read of a store's map: put back the handler that was there
        // before. A fault then happens again when the instruction re-runs,
        // under that handler; a sent signal is sent again.
        let index = usize::from(sig == libc::SIGSEGV);
        let mut fallback = empty_action();
        fallback.sa_sigaction = libc::SIG_DFL;
        let previous = PREVIOUS.get().map_or(&fallback, |p| &p[index]);
        // SAFETY: sigaction and raise are async-signal-safe; `previous` is
        // the action the kernel handed back when this handler was set, or
        // the default action.
        unsafe {
            libc::sigaction(sig, previous, std::ptr::null_mut());
            if code <= 0 {
                libc::raise(sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the parsing of `/proc/self/maps`: the range of a line naming
    /// the file is found, other lines are ignored.
    #[test]
    fn finds_the_mapping_of_a_file() {
        let line = "7f3a00000000-7f4a00000000 r--s 00000000 08:01 1234                       /tmp/x/data.mdb";
        assert_eq!(mapping_of(line, "/tmp/x/data.mdb"), Some((0x7f3a00000000, 0x7f4a00000000)));
        assert_eq!(mapping_of(line, "/tmp/y/data.mdb"), None);
        assert_eq!(mapping_of("55d0-55e0 r-xp 00000000 00:00 0 ", "/tmp/x/data.mdb"), None);
        assert_eq!(mapping_of("garbage", "/tmp/x/data.mdb"), None);
    }

    /// Guards that opening a store records its map, so a fault there is
    /// taken for damage and a fault elsewhere is not.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_open_store_has_its_map_registered() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        store.append("s-1", crate::ExpectedVersion::Any, [crate::NewEvent::json("E", &1)]).unwrap();
        let (env, dbs) = store.env_and_dbs();
        let rtxn = env.read_txn().unwrap();
        let value = dbs.events.get(&rtxn, &crate::lmdb::keys::position_key(1)).unwrap().unwrap();
        assert!(in_store_map(value.as_ptr() as usize));
        let local = 0u8;
        assert!(!in_store_map(&local as *const u8 as usize));
    }
}
