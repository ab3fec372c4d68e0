//! glibc allocator tuning for CPU training.

/// Raises glibc's mmap and trim thresholds, once, at the start of a program that trains or
/// generates on the CPU.
///
/// candle allocates a fresh buffer for every operation's output; with glibc's defaults each
/// large buffer is an mmap/munmap pair whose pages the kernel zeroes again on every step, which
/// doubles CPU training time on the development machine. With the thresholds raised, freed
/// buffers stay in the heap for reuse. Call it before any other thread starts (mallopt is not
/// synchronised with concurrent allocation). Does nothing outside Linux/glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn tune_allocator() {
    const ONE_GIB: libc::c_int = 1 << 30;
    // SAFETY: mallopt only changes allocator tuning; a failure (return 0) leaves the defaults
    // in place. The caller promises no other thread is allocating yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, ONE_GIB);
        libc::mallopt(libc::M_TRIM_THRESHOLD, ONE_GIB);
    }
}

/// Raises glibc's mmap and trim thresholds (nothing to do on this platform).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}
