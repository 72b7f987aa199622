//! The one seeded random source of the clustering core (xoshiro256++), with the few draws we
//! need. Never seeded from the environment: the same seed gives the same numbers everywhere.

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

pub struct SeededRandom {
    generator: Xoshiro256PlusPlus,
}

impl SeededRandom {
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom { generator: Xoshiro256PlusPlus::seed_from_u64(seed) }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.generator.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, bound); `bound` must be positive.
    pub fn next_below(&mut self, bound: usize) -> usize {
        // Lemire's multiply-shift; the tiny bias is irrelevant for sampling here.
        ((self.next_u64() as u128 * bound as u128) >> 64) as usize
    }

    /// Standard normal (Box-Muller).
    pub fn next_normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `count` distinct indices below `bound`, in increasing order (all of them when
    /// `count >= bound`).
    pub fn sample_indices(&mut self, bound: usize, count: usize) -> Vec<usize> {
        if count >= bound {
            return (0..bound).collect();
        }
        let mut indices: Vec<usize> = (0..bound).collect();
        for position in 0..count {
            let swap_with = position + self.next_below(bound - position);
            indices.swap(position, swap_with);
        }
        indices.truncate(count);
        indices.sort_unstable();
        indices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        let mut first = SeededRandom::new(7);
        let mut second = SeededRandom::new(7);
        for _ in 0..100 {
            assert_eq!(first.next_u64(), second.next_u64());
        }
        let sample = SeededRandom::new(3).sample_indices(100, 10);
        assert_eq!(sample.len(), 10);
        assert!(sample.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(sample.iter().all(|index| *index < 100));
    }
}
