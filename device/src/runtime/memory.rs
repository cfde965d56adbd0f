//! How the process gives memory back. A model loads in phases (a text trigger's
//! phrases with the text tower alone, then the loop's graphs), and a phase's
//! memory must be free for the next one, not kept by the allocator.

/// Large blocks go back to the system as soon as they are freed, as musl (the
/// board's libc) does. glibc would otherwise raise its mmap threshold after the
/// first large free and keep later graphs' buffers in its heap, so the phases of
/// a load would add up instead of taking turns.
pub fn return_large_blocks_when_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's policy for allocations made from now on.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
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
