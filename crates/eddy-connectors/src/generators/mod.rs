//! Generator sources: synthetic, deterministic, replayable input for the built-in jobs and the
//! benchmarks.
//!
//! Each generator derives everything from its position (no hidden RNG state), so a restore from
//! its operator state continues exactly where the barrier cut, and two runs produce the same
//! records. Rates are records per second for the whole job, split evenly over the subtasks;
//! generators never sleep in `poll_next` (they return `IdleUntil`).

pub mod cars;
pub mod nexmark;
pub mod rows;
pub mod sequence;

pub use cars::{CarEvent, CarSource};
pub use nexmark::NexmarkSource;
pub use rows::{row_value, RowSource};
pub use sequence::SequenceSource;

#[cfg(test)]
mod tests;

/// SplitMix64's finalizer: a cheap, well-mixed deterministic hash of a position.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
