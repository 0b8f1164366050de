//! The bottom layer: LMDB. The environment and its named databases, the
//! byte layouts of keys, the `meta` database, the writer's lock file, and
//! the handler that reports a fault in the memory map. This is the only
//! module that may use `unsafe`; each use says why it is sound.

#![allow(unsafe_code)]

mod durability;
pub(crate) mod env;
pub(crate) mod index_keys;
pub(crate) mod keys;
pub(crate) mod lock;
pub(crate) mod map_fault;
pub(crate) mod meta;
pub(crate) mod removed;
pub(crate) mod stream_meta;

pub use durability::Durability;
pub use map_fault::{DAMAGED_FILE_EXIT_CODE, install_damaged_file_handler};
pub use meta::{FORMAT_VERSION, archive_format};
