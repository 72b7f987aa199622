//! `humpback bench classifier`: training time of a detector on synthetic labelled windows
//! (a planted separating direction, windows grouped into recordings): one fit, and the grouped
//! cross-validation the training job runs, with the L-BFGS iterations and the AUC reached.

use std::time::Instant;

use clap::Args;

use crate::classifier::evaluation::{cross_validate, CrossValidationSettings};
use crate::classifier::logistic::{fit_binary, LogisticParameters};
use crate::clustering::random::SeededRandom;

#[derive(Debug, Args)]
pub struct BenchClassifierArgs {
    /// Labelled windows.
    #[arg(long, default_value_t = 10_000)]
    pub windows: usize,
    #[arg(long, default_value_t = 1280)]
    pub dims: usize,
    /// Windows per recording (the cross-validation groups).
    #[arg(long, default_value_t = 100)]
    pub windows_per_recording: usize,
    /// Fraction of positives.
    #[arg(long, default_value_t = 0.2)]
    pub positive_fraction: f64,
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    #[arg(long, default_value_t = 1.0)]
    pub c: f64,
}

pub fn run(args: BenchClassifierArgs) -> anyhow::Result<()> {
    let mut random = SeededRandom::new(12);
    let direction: Vec<f64> = (0..args.dims).map(|_| random.next_normal()).collect();
    let norm = direction.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut features = Vec::with_capacity(args.windows * args.dims);
    let mut targets = Vec::with_capacity(args.windows);
    for _ in 0..args.windows {
        let positive = random.next_f64() < args.positive_fraction;
        let shift = if positive { 1.0 } else { -1.0 };
        features.extend(direction.iter().map(|d| (random.next_normal() + shift * d / norm) as f32));
        targets.push(positive);
    }
    let groups: Vec<usize> = (0..args.windows).map(|index| index / args.windows_per_recording.max(1)).collect();
    let parameters = LogisticParameters { c: args.c, ..LogisticParameters::default() };
    let started = Instant::now();
    let model = fit_binary(&features, args.dims, &targets, &parameters, "bench")?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let settings = CrossValidationSettings { folds: args.folds, threshold: 0.5, parameters };
    let metrics = cross_validate(&features, args.dims, &targets, &groups, "bench", &settings)?;
    let cross_validation_seconds = started.elapsed().as_secs_f64();
    println!(
        "{} windows x {} dims, {} recordings: fit {:.2} s ({} iterations, converged {}), \
         {}-fold grouped cross-validation {:.2} s, AUC {:.4}, whole training {:.2} s",
        args.windows,
        args.dims,
        groups.last().map_or(0, |g| g + 1),
        fit_seconds,
        model.iterations,
        model.converged,
        metrics.folds,
        cross_validation_seconds,
        metrics.roc_auc.unwrap_or(f64::NAN),
        fit_seconds + cross_validation_seconds
    );
    Ok(())
}
