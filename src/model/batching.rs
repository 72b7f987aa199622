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

/// Splits `window_count` windows into runs.
/// - dynamic batch: full runs of `requested_batch_size` (at least 1), then the remaining windows one
///   at a time, so a model only ever runs at two batch sizes (each size is a separately prepared
///   LiteRT session; see `litert_runtime`), and no work is wasted on padding;
/// - fixed batch N: runs of N; the last run is padded to N.
pub fn plan_batches(window_count: usize, requested_batch_size: usize, support: BatchSupport) -> Vec<BatchRun> {
    match support {
        BatchSupport::Dynamic => {
            let step = requested_batch_size.max(1);
            let full_runs = window_count / step;
            let full = (0..full_runs).map(|run| BatchRun {
                first_window: run * step,
                window_count: step,
                run_batch_size: step,
            });
            let remainder = (full_runs * step..window_count).map(|first_window| BatchRun {
                first_window,
                window_count: 1,
                run_batch_size: 1,
            });
            full.chain(remainder).collect()
        }
        BatchSupport::Fixed(size) => {
            let step = size.max(1);
            (0..window_count)
                .step_by(step)
                .map(|first_window| BatchRun {
                    first_window,
                    window_count: step.min(window_count - first_window),
                    run_batch_size: step,
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_fixed_batch_pads_the_last_run_and_a_dynamic_batch_runs_the_rest_one_by_one() {
        let fixed = plan_batches(10, 32, BatchSupport::Fixed(4));
        assert_eq!(fixed.len(), 3);
        assert_eq!(fixed[2], BatchRun { first_window: 8, window_count: 2, run_batch_size: 4 });
        let dynamic = plan_batches(10, 4, BatchSupport::Dynamic);
        let sizes: Vec<usize> = dynamic.iter().map(|run| run.run_batch_size).collect();
        assert_eq!(sizes, [4, 4, 1, 1]);
        assert_eq!(dynamic[3], BatchRun { first_window: 9, window_count: 1, run_batch_size: 1 });
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
                    prop_assert!(run.run_batch_size == requested.max(1) || run.run_batch_size == 1);
                }
                next += run.window_count;
            }
            prop_assert_eq!(next, count);
        }
    }
}
