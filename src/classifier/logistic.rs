//! L2-regularised logistic regression on embeddings, our own solver.
//!
//! linfa-logistic (0.8) minimises its own objective (`alpha`-scaled penalty, no per-sample
//! weights), so it cannot reproduce scikit-learn's `LogisticRegression(class_weight=...)`.
//! We minimise exactly scikit-learn's primal objective
//!
//! ```text
//!   f(w, b) = C * sum_i s_i * log(1 + exp(-y_i * (w . x_i + b))) + 0.5 * ||w||^2
//! ```
//!
//! (`y_i` in {-1, +1}, `s_i` the sample weight, the intercept `b` not penalised) with L-BFGS
//! and a backtracking line search, in f64. The objective is strictly convex in `w`, so both
//! solvers reach the same optimum; `reference_tests.rs` checks the probabilities against
//! scikit-learn's within 1e-3.

use serde::{Deserialize, Serialize};

use super::ClassifierError;

/// How windows of the two classes are weighted in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeighting {
    /// Every window counts once.
    None,
    /// scikit-learn's `class_weight='balanced'`: a window of class `c` weighs
    /// `n_windows / (2 * n_windows_of_c)`.
    #[default]
    Balanced,
}

/// The knobs of one fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticParameters {
    /// Inverse L2 strength, as scikit-learn's `C`.
    pub c: f64,
    pub class_weighting: ClassWeighting,
    pub max_iterations: usize,
    /// Stop when the largest gradient component of the objective divided by `C * sum(s_i)`
    /// falls below this.
    pub gradient_tolerance: f64,
}

impl Default for LogisticParameters {
    fn default() -> Self {
        LogisticParameters {
            c: 1.0,
            class_weighting: ClassWeighting::Balanced,
            max_iterations: 1000,
            gradient_tolerance: 1e-6,
        }
    }
}

/// One binary head: `P(label | x) = sigmoid(weights . x + bias)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryLogisticModel {
    pub weights: Vec<f64>,
    pub bias: f64,
    pub iterations: usize,
    pub converged: bool,
}

impl BinaryLogisticModel {
    pub fn decision(&self, row: &[f32]) -> f64 {
        self.bias + self.weights.iter().zip(row).map(|(w, x)| w * f64::from(*x)).sum::<f64>()
    }

    pub fn probability(&self, row: &[f32]) -> f64 {
        sigmoid(self.decision(row))
    }
}

pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + exp(-m))` without overflow.
fn log_one_plus_exp_minus(m: f64) -> f64 {
    if m > 0.0 {
        (-m).exp().ln_1p()
    } else {
        -m + m.exp().ln_1p()
    }
}

/// Check the shape and values of a feature matrix (row-major, `dims` columns); the row count.
pub fn check_features(features: &[f32], dims: usize) -> Result<usize, ClassifierError> {
    if dims == 0 || features.len() % dims != 0 {
        return Err(ClassifierError::BadShape { values: features.len(), dims });
    }
    if let Some(index) = features.iter().position(|v| !v.is_finite()) {
        return Err(ClassifierError::NotFinite { row: index / dims });
    }
    Ok(features.len() / dims)
}

/// Per-window weights for one head.
pub fn sample_weights(targets: &[bool], weighting: ClassWeighting) -> Vec<f64> {
    match weighting {
        ClassWeighting::None => vec![1.0; targets.len()],
        ClassWeighting::Balanced => {
            let positives = targets.iter().filter(|t| **t).count();
            let negatives = targets.len() - positives;
            let total = targets.len() as f64;
            let positive_weight = if positives > 0 { total / (2.0 * positives as f64) } else { 0.0 };
            let negative_weight = if negatives > 0 { total / (2.0 * negatives as f64) } else { 0.0 };
            targets.iter().map(|t| if *t { positive_weight } else { negative_weight }).collect()
        }
    }
}

/// The objective and its gradient (weights then bias), scaled by `1 / (C * sum(s_i))`.
struct Objective<'a> {
    features: &'a [f32],
    dims: usize,
    signs: Vec<f64>,
    weights: Vec<f64>,
    scale: f64,
    c: f64,
}

impl Objective<'_> {
    fn evaluate(&self, point: &[f64], gradient: &mut [f64]) -> f64 {
        let dims = self.dims;
        let (w, b) = (&point[..dims], point[dims]);
        gradient.iter_mut().for_each(|g| *g = 0.0);
        let mut loss = 0.0;
        for (row_index, row) in self.features.chunks_exact(dims).enumerate() {
            let z = b + w.iter().zip(row).map(|(w, x)| w * f64::from(*x)).sum::<f64>();
            let sign = self.signs[row_index];
            let margin = sign * z;
            let sample_weight = self.weights[row_index];
            loss += sample_weight * log_one_plus_exp_minus(margin);
            // d/dz log(1 + exp(-y z)) = -y * sigmoid(-y z)
            let slope = -sign * sigmoid(-margin) * sample_weight;
            if slope != 0.0 {
                for (g, x) in gradient[..dims].iter_mut().zip(row) {
                    *g += slope * f64::from(*x);
                }
                gradient[dims] += slope;
            }
        }
        let penalty: f64 = w.iter().map(|v| v * v).sum::<f64>() * 0.5;
        // scaled: loss/sum_s + penalty/(C sum_s)
        let value = (self.c * loss + penalty) * self.scale;
        for (g, wv) in gradient[..dims].iter_mut().zip(w) {
            *g = (self.c * *g + wv) * self.scale;
        }
        gradient[dims] *= self.c * self.scale;
        value
    }
}

/// Fit one binary head. `targets[i]` says whether row `i` is a positive.
pub fn fit_binary(
    features: &[f32],
    dims: usize,
    targets: &[bool],
    parameters: &LogisticParameters,
    label: &str,
) -> Result<BinaryLogisticModel, ClassifierError> {
    let rows = check_features(features, dims)?;
    if rows == 0 {
        return Err(ClassifierError::NoWindows);
    }
    if targets.len() != rows {
        return Err(ClassifierError::TargetCount { targets: targets.len(), rows });
    }
    if !(parameters.c.is_finite() && parameters.c > 0.0) {
        return Err(ClassifierError::BadRegularisation(parameters.c));
    }
    if !targets.iter().any(|t| *t) {
        return Err(ClassifierError::OneClassOnly { label: label.to_string(), missing: "positive" });
    }
    if targets.iter().all(|t| *t) {
        return Err(ClassifierError::OneClassOnly { label: label.to_string(), missing: "negative" });
    }
    let weights = sample_weights(targets, parameters.class_weighting);
    let weight_sum: f64 = weights.iter().sum();
    let objective = Objective {
        features,
        dims,
        signs: targets.iter().map(|t| if *t { 1.0 } else { -1.0 }).collect(),
        weights,
        scale: 1.0 / (parameters.c * weight_sum),
        c: parameters.c,
    };
    let (point, iterations, converged) = minimise_lbfgs(&objective, dims + 1, parameters);
    Ok(BinaryLogisticModel { weights: point[..dims].to_vec(), bias: point[dims], iterations, converged })
}

const MEMORY: usize = 10;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(values: &[f64]) -> f64 {
    values.iter().fold(0.0_f64, |m, v| m.max(v.abs()))
}

/// L-BFGS (two-loop recursion) with an Armijo backtracking line search from a zero start.
fn minimise_lbfgs(objective: &Objective, size: usize, parameters: &LogisticParameters) -> (Vec<f64>, usize, bool) {
    let mut point = vec![0.0; size];
    let mut gradient = vec![0.0; size];
    let mut value = objective.evaluate(&point, &mut gradient);
    let mut history: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = std::collections::VecDeque::new();
    let mut candidate = vec![0.0; size];
    let mut candidate_gradient = vec![0.0; size];
    for iteration in 0..parameters.max_iterations {
        if max_abs(&gradient) <= parameters.gradient_tolerance {
            return (point, iteration, true);
        }
        // direction = -H * gradient
        let mut direction: Vec<f64> = gradient.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let alpha = rho * dot(s, &direction);
            direction.iter_mut().zip(y).for_each(|(d, yv)| *d -= alpha * yv);
            alphas.push(alpha);
        }
        let gamma = match history.back() {
            Some((s, y, _)) => dot(s, y) / dot(y, y),
            None => 1.0 / dot(&gradient, &gradient).sqrt().max(1e-12),
        };
        direction.iter_mut().for_each(|d| *d *= gamma);
        for ((s, y, rho), alpha) in history.iter().zip(alphas.iter().rev()) {
            let beta = rho * dot(y, &direction);
            direction.iter_mut().zip(s).for_each(|(d, sv)| *d += (alpha - beta) * sv);
        }
        direction.iter_mut().for_each(|d| *d = -*d);
        let mut slope = dot(&gradient, &direction);
        if slope >= 0.0 {
            // not a descent direction: restart from steepest descent
            history.clear();
            direction = gradient.iter().map(|g| -g).collect();
            slope = dot(&gradient, &direction);
        }
        let mut step = 1.0;
        let mut accepted = false;
        for _ in 0..60 {
            candidate.iter_mut().zip(&point).zip(&direction).for_each(|((c, p), d)| *c = p + step * d);
            let candidate_value = objective.evaluate(&candidate, &mut candidate_gradient);
            if candidate_value <= value + 1e-4 * step * slope {
                if value - candidate_value <= f64::EPSILON * value.abs() {
                    // no progress measurable at f64 precision: this is the optimum we can reach
                    let converged =
                        max_abs(&candidate_gradient).min(max_abs(&gradient)) <= parameters.gradient_tolerance;
                    if max_abs(&candidate_gradient) < max_abs(&gradient) {
                        std::mem::swap(&mut point, &mut candidate);
                    }
                    return (point, iteration + 1, converged);
                }
                accepted = true;
                let s: Vec<f64> = candidate.iter().zip(&point).map(|(c, p)| c - p).collect();
                let y: Vec<f64> = candidate_gradient.iter().zip(&gradient).map(|(c, g)| c - g).collect();
                let curvature = dot(&s, &y);
                if curvature > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
                    if history.len() == MEMORY {
                        history.pop_front();
                    }
                    history.push_back((s, y, 1.0 / curvature));
                }
                std::mem::swap(&mut point, &mut candidate);
                std::mem::swap(&mut gradient, &mut candidate_gradient);
                value = candidate_value;
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            // no progress possible at f64 precision
            let converged = max_abs(&gradient) <= parameters.gradient_tolerance * 100.0;
            return (point, iteration + 1, converged);
        }
    }
    let converged = max_abs(&gradient) <= parameters.gradient_tolerance;
    (point, parameters.max_iterations, converged)
}

/// One head per label, trained on the same windows (one-vs-rest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneVsRestModel {
    pub labels: Vec<String>,
    pub heads: Vec<BinaryLogisticModel>,
}

impl OneVsRestModel {
    /// `targets[h][i]`: whether row `i` is a positive of label `h`.
    pub fn fit(
        features: &[f32],
        dims: usize,
        labels: &[String],
        targets: &[Vec<bool>],
        parameters: &LogisticParameters,
    ) -> Result<OneVsRestModel, ClassifierError> {
        let heads = labels
            .iter()
            .zip(targets)
            .map(|(label, head_targets)| fit_binary(features, dims, head_targets, parameters, label))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OneVsRestModel { labels: labels.to_vec(), heads })
    }

    /// One probability per label.
    pub fn probabilities(&self, row: &[f32]) -> Vec<f64> {
        self.heads.iter().map(|head| head.probability(row)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clustering::random::SeededRandom;

    /// Windows on either side of a plane through the origin along a known direction, with noise.
    pub(crate) fn planted(rows: usize, dims: usize, seed: u64) -> (Vec<f32>, Vec<bool>, Vec<f64>) {
        let mut rng = SeededRandom::new(seed);
        let direction: Vec<f64> = (0..dims).map(|_| rng.next_normal()).collect();
        let norm = dot(&direction, &direction).sqrt();
        let direction: Vec<f64> = direction.iter().map(|v| v / norm).collect();
        let mut features = Vec::with_capacity(rows * dims);
        let mut targets = Vec::with_capacity(rows);
        for _ in 0..rows {
            let positive = rng.next_f64() < 0.3;
            let offset = if positive { 2.5 } else { -2.5 };
            for d in direction.iter() {
                features.push((rng.next_normal() + offset * d) as f32);
            }
            targets.push(positive);
        }
        (features, targets, direction)
    }

    #[test]
    fn training_recovers_a_planted_direction() {
        let dims = 32;
        let (all_features, all_targets, direction) = planted(3000, dims, 7);
        let (features, test_features) = all_features.split_at(2000 * dims);
        let (targets, test_targets) = all_targets.split_at(2000);
        let model = fit_binary(features, dims, targets, &LogisticParameters::default(), "song").unwrap();
        assert!(model.converged, "{} iterations", model.iterations);
        let norm = dot(&model.weights, &model.weights).sqrt();
        let cosine = dot(&model.weights, &direction) / norm;
        assert!(cosine > 0.95, "cosine to the planted direction {cosine}");
        let scores: Vec<f64> = test_features.chunks_exact(dims).map(|row| model.probability(row)).collect();
        let auc = crate::classifier::evaluation::roc_auc(&scores, test_targets).unwrap();
        assert!(auc > 0.99, "AUC {auc}");
    }

    #[test]
    fn one_class_only_is_refused_with_the_missing_class() {
        let error = fit_binary(&[1.0, 2.0], 1, &[true, true], &LogisticParameters::default(), "song").unwrap_err();
        assert_eq!(error, ClassifierError::OneClassOnly { label: "song".into(), missing: "negative" });
        let error =
            fit_binary(&[1.0, f32::NAN], 1, &[true, false], &LogisticParameters::default(), "song").unwrap_err();
        assert_eq!(error, ClassifierError::NotFinite { row: 1 });
    }

    #[test]
    fn balanced_weights_match_scikit_learn() {
        let weights = sample_weights(&[true, false, false, false], ClassWeighting::Balanced);
        assert_eq!(weights, vec![2.0, 4.0 / 6.0, 4.0 / 6.0, 4.0 / 6.0]);
    }
}
