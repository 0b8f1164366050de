//! Core store tests: appends, reads, errors, concurrency.
