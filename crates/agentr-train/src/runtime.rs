//! Process-wide tuning for CPU training and generation.

/// Tunes the process for candle on the CPU; call it first thing in `main`.
///
/// * glibc's mmap threshold is raised and heap trimming is off: candle allocates a fresh buffer
///   for every operation's output, and with glibc's defaults each large one is an mmap/munmap
///   pair whose pages the kernel zeroes again on every step, which doubles CPU training time on
///   the development machine. With the threshold raised, freed buffers stay in the heap for
///   reuse; without trimming, a step that frees more than any fixed threshold at the heap's
///   top (SmolLM2's logits alone are 0.4 GB at 2,048 tokens) does not hand it back to the
///   kernel only to fault it in, zeroed, in the next step (system time of a LoRA run on
///   SmolLM2 halved, BENCHMARKS.md). The process keeps its peak heap for its lifetime.
/// * `RAYON_NUM_THREADS` is set to the available parallelism when unset: candle asks for the
///   thread count on every matrix product, and without the variable it parses
///   `/proc/cpuinfo` each time (a tenth of decoding time for tiny models).
/// * `CANDLE_BARRIER_POOL_SPIN_LIMIT` is set to 1,000 when unset: candle's barrier-pool
///   threads spin that long (tens of microseconds) after an operation before they sleep.
///   candle's default (25,000) stole from training the time the next operation's threads
///   need on two cores (13-22 % slower steps, BENCHMARKS.md); sleeping at once (0) made
///   every one of generation's few hundred kernels per token wake a sleeping thread (int8
///   decoding 46 tokens/s at 0 against 74 at 1,000 on SmolLM2).
///
/// # Safety
///
/// No other thread may exist yet (call it before anything starts one: rayon, a server, a
/// progress bar). It changes the allocator's settings and the process environment, and neither
/// is synchronised with other threads that allocate or read the environment.
///
/// The first statement of `main`:
///
/// ```
/// // SAFETY: no other thread exists yet.
/// unsafe { agentr_train::tune_runtime() };
/// // ... load, train, generate ...
/// ```
#[allow(unsafe_code)]
pub unsafe fn tune_runtime() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const ONE_GIB: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes allocator tuning; a failure (return 0) leaves the
        // defaults in place. The caller guarantees that no other thread is allocating yet.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, ONE_GIB);
            libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (name, value) in [
        ("RAYON_NUM_THREADS", threads.to_string()),
        ("CANDLE_BARRIER_POOL_SPIN_LIMIT", "1000".to_owned()),
    ] {
        if std::env::var_os(name).is_none() {
            // SAFETY: the caller guarantees that no other thread exists yet, so nothing reads
            // the environment concurrently.
            unsafe { std::env::set_var(name, value) };
        }
    }
}
