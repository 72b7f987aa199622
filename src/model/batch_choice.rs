//! Which batch size a model runs at: chosen from measurements (windows per second and memory per
//! batch size) within a per-worker memory budget, unless `--batch-size` overrides it. Pure.

use serde::{Deserialize, Serialize};

use crate::model::batching::DEFAULT_BATCH_SIZE;
use crate::model::info::BatchSupport;

/// The batch sizes timed when a model is registered.
pub const CANDIDATE_BATCH_SIZES: [usize; 6] = [1, 4, 8, 16, 32, 64];

/// The default memory one processing worker's model may use (`--model-memory`): 512 MiB.
pub const DEFAULT_MODEL_MEMORY_BYTES: u64 = 512 << 20;

/// One timed batch size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchMeasurement {
    pub batch_size: usize,
    pub windows_per_second: f64,
    /// What one worker needs at this batch size: the peak RSS growth of loading the model and
    /// running it, plus the batches the processing pipeline's queues hold.
    pub memory_bytes: u64,
}

/// Where a model's batch size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchSizeSource {
    /// The fastest measured size within the memory budget.
    Measured,
    /// `--batch-size`.
    Override,
    /// Not measured: the built-in default.
    Default,
    /// The model's input has a fixed batch dimension.
    Fixed,
}

impl BatchSizeSource {
    pub fn label(self) -> &'static str {
        match self {
            BatchSizeSource::Measured => "measured",
            BatchSizeSource::Override => "override",
            BatchSizeSource::Default => "default",
            BatchSizeSource::Fixed => "fixed by the model",
        }
    }
}

/// A model's batch size, why, and the table it was chosen from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchChoice {
    pub batch_size: usize,
    pub batch_size_source: BatchSizeSource,
    pub model_memory_bytes: u64,
    pub batch_measurements: Vec<BatchMeasurement>,
}

impl BatchChoice {
    /// Nothing measured, no override.
    pub fn unmeasured(support: BatchSupport, override_batch_size: Option<usize>) -> BatchChoice {
        choose_batch_size(&[], DEFAULT_MODEL_MEMORY_BYTES, override_batch_size, support)
    }
}

/// Picks the batch size: a fixed batch dimension first, then the override, then the fastest
/// measurement whose memory fits the budget (the smaller size on a tie); when none fits, the one
/// needing the least memory; with no measurements, [`DEFAULT_BATCH_SIZE`].
pub fn choose_batch_size(
    measurements: &[BatchMeasurement],
    model_memory_bytes: u64,
    override_batch_size: Option<usize>,
    support: BatchSupport,
) -> BatchChoice {
    let choice = |batch_size: usize, batch_size_source| BatchChoice {
        batch_size,
        batch_size_source,
        model_memory_bytes,
        batch_measurements: measurements.to_vec(),
    };
    if let BatchSupport::Fixed(size) = support {
        return choice(size.max(1), BatchSizeSource::Fixed);
    }
    if let Some(size) = override_batch_size {
        return choice(size.max(1), BatchSizeSource::Override);
    }
    let fastest_within_budget =
        measurements.iter().filter(|measurement| measurement.memory_bytes <= model_memory_bytes).max_by(|a, b| {
            a.windows_per_second.total_cmp(&b.windows_per_second).then_with(|| b.batch_size.cmp(&a.batch_size))
        });
    let least_memory =
        || measurements.iter().min_by(|a, b| a.memory_bytes.cmp(&b.memory_bytes).then(a.batch_size.cmp(&b.batch_size)));
    match fastest_within_budget.or_else(least_memory) {
        Some(measurement) => choice(measurement.batch_size.max(1), BatchSizeSource::Measured),
        None => choice(DEFAULT_BATCH_SIZE, BatchSizeSource::Default),
    }
}

/// Parses a memory size: bytes, or a number with `K`, `M`, `G` (powers of 1024; `KiB`, `MB`,
/// `g` and the like are accepted too), e.g. `512M`, `1G`, `268435456`.
pub fn parse_memory_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let invalid = || format!("{text:?} is not a memory size: give bytes or a number with K, M or G (e.g. 512M)");
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(invalid()),
    };
    number.checked_mul(1u64 << shift).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn measurement(batch_size: usize, windows_per_second: f64, memory_bytes: u64) -> BatchMeasurement {
        BatchMeasurement { batch_size, windows_per_second, memory_bytes }
    }

    #[test]
    fn the_fastest_size_that_fits_is_kept() {
        let table =
            [measurement(1, 1785.0, 59 << 20), measurement(8, 1787.0, 68 << 20), measurement(64, 2000.0, 129 << 20)];
        let choice = choose_batch_size(&table, 100 << 20, None, BatchSupport::Dynamic);
        assert_eq!((choice.batch_size, choice.batch_size_source), (8, BatchSizeSource::Measured));
        let roomy = choose_batch_size(&table, 1 << 30, None, BatchSupport::Dynamic);
        assert_eq!(roomy.batch_size, 64);
        let tight = choose_batch_size(&table, 1, None, BatchSupport::Dynamic);
        assert_eq!(tight.batch_size, 1, "nothing fits: the least memory");
        let none = choose_batch_size(&[], 1 << 30, None, BatchSupport::Dynamic);
        assert_eq!((none.batch_size, none.batch_size_source), (DEFAULT_BATCH_SIZE, BatchSizeSource::Default));
        let fixed = choose_batch_size(&table, 1 << 30, Some(4), BatchSupport::Fixed(2));
        assert_eq!((fixed.batch_size, fixed.batch_size_source), (2, BatchSizeSource::Fixed));
    }

    #[test]
    fn memory_sizes_parse_with_suffixes_and_bad_ones_name_the_value() {
        assert_eq!(parse_memory_size("512M"), Ok(512 << 20));
        assert_eq!(parse_memory_size("1G"), Ok(1 << 30));
        assert_eq!(parse_memory_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_memory_size("1000"), Ok(1000));
        assert_eq!(parse_memory_size("64k"), Ok(64 << 10));
        for bad in ["", "M", "12T", "-1G", "1.5G", "99999999999999999999G"] {
            let error = parse_memory_size(bad).unwrap_err();
            assert!(error.contains("memory size"), "{error}");
        }
    }

    fn table() -> impl Strategy<Value = Vec<BatchMeasurement>> {
        // One row per batch size, as measuring gives.
        proptest::collection::btree_map(1usize..128, (0.0f64..5000.0, 0u64..1_000_000), 0..8)
            .prop_map(|rows| rows.into_iter().map(|(size, (speed, memory))| measurement(size, speed, memory)).collect())
    }

    proptest! {
        #[test]
        fn the_choice_fits_the_budget_when_anything_does_and_is_the_fastest_that_fits(
            measurements in table(),
            budget in 0u64..1_000_000,
        ) {
            let choice = choose_batch_size(&measurements, budget, None, BatchSupport::Dynamic);
            let fitting: Vec<&BatchMeasurement> =
                measurements.iter().filter(|measurement| measurement.memory_bytes <= budget).collect();
            let chosen = measurements.iter().find(|measurement| measurement.batch_size == choice.batch_size);
            if measurements.is_empty() {
                prop_assert_eq!(choice.batch_size_source, BatchSizeSource::Default);
            } else if let Some(best) = fitting.iter().map(|measurement| measurement.windows_per_second).reduce(f64::max) {
                let chosen_fitting = fitting
                    .iter()
                    .filter(|measurement| measurement.batch_size == choice.batch_size)
                    .map(|measurement| measurement.windows_per_second)
                    .reduce(f64::max);
                prop_assert_eq!(chosen_fitting, Some(best));
                prop_assert_eq!(choice.batch_size_source, BatchSizeSource::Measured);
            } else {
                let least = measurements.iter().map(|measurement| measurement.memory_bytes).min();
                prop_assert_eq!(chosen.map(|measurement| measurement.memory_bytes), least);
            }
        }

        #[test]
        fn the_override_wins(measurements in table(), budget in 0u64..1_000_000, size in 1usize..512) {
            let choice = choose_batch_size(&measurements, budget, Some(size), BatchSupport::Dynamic);
            prop_assert_eq!((choice.batch_size, choice.batch_size_source), (size, BatchSizeSource::Override));
            prop_assert_eq!(choice.batch_measurements, measurements);
        }
    }
}
