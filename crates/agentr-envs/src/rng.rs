//! A small seeded random number generator whose output is fixed forever.
//!
//! Task generation must be a pure function of (task id, seed) across versions, machines and
//! dependency upgrades, so the project does not rely on an external crate's sampling
//! algorithms here: this is xoshiro256++ seeded through SplitMix64, with Lemire's unbiased
//! bounded integers, Fisher-Yates shuffling and partial Fisher-Yates sampling.

/// A deterministic generator (xoshiro256++). Not for cryptography.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded from one number.
    pub fn new(seed: u64) -> Self {
        Self::from_parts(&[seed])
    }

    /// A generator seeded from several numbers (e.g. a run seed and a task id); different
    /// part lists give unrelated streams.
    pub fn from_parts(parts: &[u64]) -> Self {
        let mut mix = 0x6A09_E667_F3BC_C908_u64;
        for &part in parts {
            mix ^= part;
            mix = splitmix64(&mut mix);
        }
        let state = [
            splitmix64(&mut mix),
            splitmix64(&mut mix),
            splitmix64(&mut mix),
            splitmix64(&mut mix),
        ];
        Rng { state }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform integer in `0..n`; `n = 0` gives 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's method: multiply-high with rejection of the biased low zone.
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(n);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// A uniform index in `0..len`; `len = 0` gives 0.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Shuffles a slice in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }

    /// `k` distinct positions of `0..len` in random order (partial Fisher-Yates); all of
    /// them when `k >= len`.
    pub fn sample_indices(&mut self, len: usize, k: usize) -> Vec<usize> {
        let mut pool: Vec<usize> = (0..len).collect();
        let k = k.min(len);
        for i in 0..k {
            let j = i + self.index(len - i);
            pool.swap(i, j);
        }
        pool.truncate(k);
        pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};

    #[test]
    fn output_is_pinned() {
        // These values are part of the project's reproducibility promise: changing them
        // changes every generated task. Do not update them casually.
        let mut rng = Rng::new(42);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        let mut again = Rng::new(42);
        assert_eq!(first, (0..3).map(|_| again.next_u64()).collect::<Vec<_>>());
        assert_ne!(Rng::from_parts(&[42, 1]), Rng::from_parts(&[42, 2]));
        assert_ne!(Rng::from_parts(&[1, 42]), Rng::from_parts(&[42, 1]));
        assert_eq!(PINNED, first.as_slice());
    }

    /// Seed 42's first outputs, cross-checked against an independent implementation of
    /// SplitMix64 + xoshiro256++ written from the published algorithm.
    const PINNED: &[u64] = &[
        257_425_699_591_160_338,
        12_017_300_433_371_545_183,
        1_766_845_707_951_502_964,
    ];

    #[test]
    fn below_covers_the_range_uniformly() {
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[rng.index(6)] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
        assert_eq!(rng.below(0), 0);
    }

    proptest! {
        #[test]
        fn shuffle_is_a_permutation(seed in any::<u64>(), len in 0usize..50) {
            let mut items: Vec<usize> = (0..len).collect();
            Rng::new(seed).shuffle(&mut items);
            let mut sorted = items.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..len).collect::<Vec<_>>());
        }

        #[test]
        fn samples_are_distinct_and_in_range(seed in any::<u64>(), len in 0usize..40, k in 0usize..50) {
            let picked = Rng::new(seed).sample_indices(len, k);
            prop_assert_eq!(picked.len(), k.min(len));
            let mut sorted = picked.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), picked.len());
            prop_assert!(picked.iter().all(|&i| i < len));
        }

        #[test]
        fn unit_is_in_range(seed in any::<u64>()) {
            let x = Rng::new(seed).unit_f64();
            prop_assert!((0.0..1.0).contains(&x));
        }
    }
}
