//! Administration: checking a whole store (`verify`), copying it
//! (`backup`), and loading an export (`import`).

mod backup;
mod import;
mod verify;
mod verify_index;
