//! How many windows go into each run of a model. Pure.

use crate::model::info::BatchSupport;

/// The default number of windows per run when the model's batch dimension is dynamic.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// One run of the model: windows `first_window..first_window + window_count`, fed as a batch of
/// `run_batch_size` (larger than `window_count` only for a fixed batch, padded with zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRun {
    pub first_window: usize,
    pub window_count: usize,
    pub run_batch_size: usize,
}

/// Splits `window_count` windows into runs of `batch_size` (a fixed batch dimension's size, or the
/// size chosen for a dynamic one, at least 1); the last run is padded to the same size, so a model
/// only ever runs at one batch size (one prepared session and arena per worker: see
/// `litert_runtime`), and the padding's outputs are discarded.
pub fn plan_batches(window_count: usize, requested_batch_size: usize, support: BatchSupport) -> Vec<BatchRun> {
    let step = match support {
        BatchSupport::Dynamic => requested_batch_size,
        BatchSupport::Fixed(size) => size,
    }
    .max(1);
    (0..window_count)
        .step_by(step)
        .map(|first_window| BatchRun {
            first_window,
            window_count: step.min(window_count - first_window),
            run_batch_size: step,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_last_run_is_padded_to_the_batch_size_fixed_or_dynamic() {
        let fixed = plan_batches(10, 32, BatchSupport::Fixed(4));
        assert_eq!(fixed.len(), 3);
        assert_eq!(fixed[2], BatchRun { first_window: 8, window_count: 2, run_batch_size: 4 });
        let dynamic = plan_batches(10, 4, BatchSupport::Dynamic);
        let sizes: Vec<usize> = dynamic.iter().map(|run| run.run_batch_size).collect();
        assert_eq!(sizes, [4, 4, 4]);
        assert_eq!(dynamic[2], BatchRun { first_window: 8, window_count: 2, run_batch_size: 4 });
        assert!(plan_batches(0, 4, BatchSupport::Dynamic).is_empty());
    }

    proptest! {
        #[test]
        fn runs_cover_every_window_once_in_order(count in 0usize..200, requested in 0usize..40, fixed in 0usize..9) {
            let support = if fixed == 0 { BatchSupport::Dynamic } else { BatchSupport::Fixed(fixed) };
            let runs = plan_batches(count, requested, support);
            let mut next = 0;
            for run in &runs {
                prop_assert_eq!(run.first_window, next);
                prop_assert!(run.window_count >= 1 && run.window_count <= run.run_batch_size);
                if support == BatchSupport::Dynamic {
                    prop_assert_eq!(run.run_batch_size, requested.max(1));
                }
                next += run.window_count;
            }
            prop_assert_eq!(next, count);
        }
    }
}
