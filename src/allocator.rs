//! Tuning of the C allocator (glibc's malloc, which Rust's default allocator uses on Linux).
//!
//! Password hashing with argon2id allocates 19 MiB per hash. glibc serves large allocations
//! with `mmap` — until the first such block is freed, after which it raises its threshold and
//! serves them from its heaps instead, which it hardly ever returns to the system. Measured:
//! a fresh Hearth at 16 MiB resident grew to 570 MiB after 50 registrations and stayed
//! there. Pinning the threshold keeps every large block on `mmap`, so it goes back to the
//! system when freed; capping the number of heaps keeps what many threads free from being
//! spread over (and kept by) one heap per thread.

/// Allocations from this size on always get their own mapping.
const MMAP_THRESHOLD_BYTES: i32 = 1 << 20;
/// Heaps ("arenas") at most; glibc's default is eight per core.
const MAX_ARENAS: i32 = 4;

/// Call once, early, before other threads allocate.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only adjusts the allocator's parameters; it is called before the
    // async runtime starts its threads, with parameters and values glibc documents.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
    }
}
