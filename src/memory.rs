//! Giving freed memory back to the operating system.
//!
//! glibc's allocator keeps memory that was freed inside its arenas for reuse, and after
//! many large requests (slow clients holding big bodies, README, HTTP API) it would keep
//! hundreds of MiB it no longer uses: it returns only the top of each heap, and once a large
//! block was freed it serves blocks of that size from the heaps instead of mapping them on
//! their own. `malloc_trim` returns every whole free page.

/// Returns the allocator's free pages to the system. A no-op where the allocator is not
/// glibc's.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` has no preconditions: it takes each arena's lock while it walks
    // that arena's free blocks, so it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
