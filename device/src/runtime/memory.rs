//! How the process holds memory. A model loads in phases (a text trigger's
//! phrases with the text tower alone, then the loop's graphs), and a phase's
//! memory must be free for the next one, not kept by the allocator; once loaded,
//! each inference should reuse the blocks of the one before instead of asking the
//! system for fresh pages.

/// While loading: large blocks go back to the system as soon as they are freed,
/// as musl (the board's libc) does. glibc would otherwise raise its mmap threshold
/// after the first large free and keep later graphs' buffers in its heap, so the
/// phases of a load would add up instead of taking turns.
pub fn return_large_blocks_when_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's policy for allocations made from now on.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Once loaded: what loading freed goes back to the system, then blocks up to
/// 32 MiB (an image's activations) stay in the heap for the next inference.
/// Measured on glibc: the image encoder takes 28 ms this way, 46 ms when each
/// run maps and faults in its activations afresh.
pub fn keep_blocks_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages and mallopt only changes
    // the policy for later allocations; neither touches a live allocation.
    unsafe {
        libc::malloc_trim(0);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// Hands the heap freed by a finished phase back to the system now; glibc keeps
/// it for reuse, musl has already returned it.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Most free memory glibc's heap may hold between two frames; beyond it the
/// free pages go back to the system. Some inputs fragment that heap frame after
/// frame: measured on the Flickr8k int8 bundle with a text trigger that never
/// fired, peak RSS 532 MiB after 100 frames without this bound, 125 MiB under
/// jemalloc, 120 MiB with it; the image encoder still takes 28 ms in the loop
/// (64 MiB let a 600-frame run reach 170 MiB).
pub const MAX_FREE_HEAP: usize = 16 << 20;

/// Keeps the free part of the heap under [`MAX_FREE_HEAP`] (cheap when it is:
/// one `mallinfo2`). A no-op off glibc: musl returns freed memory itself.
pub fn bound_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallinfo2 only reads allocator statistics; malloc_trim only
    // releases free heap pages and touches no live allocation.
    unsafe {
        if libc::mallinfo2().fordblks > MAX_FREE_HEAP {
            libc::malloc_trim(0);
        }
    }
}
