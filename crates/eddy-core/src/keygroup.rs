//! Key groups: the unit of keyed state and of its redistribution when parallelism changes.
//!
//! A key is hashed with a stable hash (identical in every process and every run — never a
//! randomly-seeded hasher), the hash is spread with murmur3's finalizer, and the key group is that
//! value modulo `max_parallelism`. Subtask `i` of `p` owns the contiguous range of key groups
//! `[ceil(i*m/p), ceil((i+1)*m/p))`, Flink's assignment, so a rescale moves whole key groups.

use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};

/// Flink's default lower bound for max parallelism, and ours.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// The stable hash of a key. `FxHasher` has no random seed, so every process agrees.
#[inline]
pub fn stable_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    key.hash(&mut h);
    h.finish()
}

/// murmur3's 64-bit finalizer: FxHash's low bits are weak, this spreads them.
#[inline]
fn spread(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The key group of a key's stable hash.
#[inline]
pub fn key_group_for_hash(hash: u64, max_parallelism: u32) -> u32 {
    (spread(hash) % max_parallelism as u64) as u32
}

/// The key group of a key.
#[inline]
pub fn key_group_of<K: Hash + ?Sized>(key: &K, max_parallelism: u32) -> u32 {
    key_group_for_hash(stable_hash(key), max_parallelism)
}

/// The subtask (operator index) that owns a key group: Flink's `kg * p / max_parallelism`.
#[inline]
pub fn subtask_for_key_group(key_group: u32, parallelism: u32, max_parallelism: u32) -> u32 {
    ((key_group as u64 * parallelism as u64) / max_parallelism as u64) as u32
}

/// A contiguous, half-open range of key groups `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupRange {
    pub start: u32,
    pub end: u32,
}

impl KeyGroupRange {
    /// The range subtask `index` of `parallelism` owns; the inverse of [`subtask_for_key_group`].
    pub fn for_subtask(index: u32, parallelism: u32, max_parallelism: u32) -> Self {
        let (m, p, i) = (max_parallelism as u64, parallelism as u64, index as u64);
        let start = (i * m).div_ceil(p) as u32;
        let end = ((i + 1) * m).div_ceil(p) as u32;
        KeyGroupRange { start, end }
    }

    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub fn contains(&self, key_group: u32) -> bool {
        key_group >= self.start && key_group < self.end
    }
}

/// Checks a (parallelism, max parallelism) pair; the error says what is allowed.
pub fn validate_parallelism(parallelism: u32, max_parallelism: u32) -> Result<(), String> {
    if parallelism == 0 {
        return Err("invalid parallelism 0: expected an integer >= 1".into());
    }
    if max_parallelism == 0 || max_parallelism > 32768 {
        return Err(format!(
            "invalid max parallelism {max_parallelism}: expected an integer in 1..=32768"
        ));
    }
    if parallelism > max_parallelism {
        return Err(format!(
            "invalid parallelism {parallelism}: must not exceed the max parallelism {max_parallelism}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_all_key_groups_contiguously() {
        for m in [1u32, 7, 128, 1000] {
            for p in 1..=m.min(17) {
                let mut next = 0;
                for i in 0..p {
                    let r = KeyGroupRange::for_subtask(i, p, m);
                    assert_eq!(r.start, next, "m={m} p={p} i={i}");
                    assert!(!r.is_empty(), "every subtask owns at least one group");
                    next = r.end;
                }
                assert_eq!(next, m);
            }
        }
    }

    #[test]
    fn subtask_for_key_group_agrees_with_ranges() {
        for m in [128u32, 1000] {
            for p in [1u32, 2, 3, 4, 7, 128] {
                for kg in 0..m {
                    let i = subtask_for_key_group(kg, p, m);
                    assert!(
                        KeyGroupRange::for_subtask(i, p, m).contains(kg),
                        "m={m} p={p} kg={kg}"
                    );
                }
            }
        }
    }

    #[test]
    fn key_group_is_stable_and_spread() {
        assert_eq!(
            key_group_of("hello", 128),
            key_group_of(&String::from("hello"), 128)
        );
        let mut counts = [0u32; 128];
        for k in 0u64..12_800 {
            counts[key_group_of(&k, 128) as usize] += 1;
        }
        // every group used, none more than 3x its fair share
        assert!(counts.iter().all(|&c| c > 0 && c < 300), "{counts:?}");
    }

    #[test]
    fn parallelism_validation_names_the_value() {
        assert!(validate_parallelism(0, 128).unwrap_err().contains("0"));
        assert!(validate_parallelism(200, 128).unwrap_err().contains("200"));
        assert!(validate_parallelism(4, 128).is_ok());
    }
}
