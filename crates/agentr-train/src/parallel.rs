//! Work split between candle's barrier pool and the calling thread.
//!
//! Generation calls a few hundred small kernels per token from a thread outside rayon's pool.
//! A rayon job from such a thread puts the caller to sleep and wakes it when the job is done,
//! two context switches per kernel; in candle's barrier pool the caller takes a share of the
//! work itself and only wakes the pool's workers.

use std::sync::Mutex;

/// Calls `f(index, chunk)` for every `chunk_len`-long chunk of `data` (the last may be
/// shorter), spread over the barrier pool's threads and the caller.
pub(crate) fn for_each_chunk<T: Send>(
    data: &mut [T],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunks: Vec<Mutex<&mut [T]>> = data.chunks_mut(chunk_len.max(1)).map(Mutex::new).collect();
    candle_core::utils::barrier_pool().execute_chunked(chunks.len(), |range| {
        for index in range {
            // Each index is handed out once, so the lock is never contended.
            let mut chunk = chunks[index].lock().unwrap_or_else(|p| p.into_inner());
            f(index, &mut chunk);
        }
    });
}

/// The number of threads [`for_each_chunk`] spreads work over.
pub(crate) fn threads() -> usize {
    candle_core::utils::barrier_pool().n_workers() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_is_visited_once_with_its_index() {
        for (len, chunk) in [(0, 3), (1, 3), (10, 3), (12, 4), (7, 100)] {
            let mut data = vec![0usize; len];
            for_each_chunk(&mut data, chunk, |index, part| {
                for value in part.iter_mut() {
                    *value += index + 1;
                }
            });
            let expected: Vec<usize> = (0..len).map(|i| i / chunk + 1).collect();
            assert_eq!(data, expected, "len {len}, chunk {chunk}");
        }
    }
}
