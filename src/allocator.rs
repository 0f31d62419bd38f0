//! Tuning of the C allocator (glibc's malloc, which Rust's default allocator uses on Linux).
//!
//! Password hashing with argon2id allocates 19 MiB per hash. glibc serves large allocations
//! with `mmap` — until the first such block is freed, after which it raises its threshold and
//! serves them from its heaps instead, which it hardly ever returns to the system. Measured:
//! a fresh Hearth at 16 MiB resident grew to 570 MiB after 50 registrations and stayed
//! there. Pinning the threshold keeps every large block on `mmap`, so it goes back to the
//! system when freed; capping the number of heaps keeps what many threads free from being
//! spread over (and kept by) one heap per thread.

/// How often the heaps' free memory is handed back to the system.
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

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

/// Hands the free memory inside the allocator's heaps back to the system, every [`TRIM_EVERY`].
///
/// glibc returns memory only from the top of a heap; what is freed below a block still in use
/// stays resident. Each connection's start (the upgrade or the request, authentication, the
/// first sync) frees most of what it allocated, between the few blocks the waiting connection
/// keeps: measured on 3,000 idle WebSockets (debug build), 12 KB per connection were in use and
/// 32 KB resident. `malloc_trim` gives back every whole free page, wherever it is. It walks the
/// heaps' free lists, a few milliseconds for hundreds of megabytes, so it runs on a blocking
/// thread, and seldom.
pub async fn trim_periodically() {
    let mut interval = tokio::time::interval(TRIM_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases free pages of the allocator's own heaps; it takes the
    // heaps' locks itself, so it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
