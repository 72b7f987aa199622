//! Agreement with scikit-learn's `LogisticRegression(solver='lbfgs')` on committed data
//! (`fixtures/reference/classifier.json`, written by `scripts/classifier-reference.py`).

use serde_json::Value;

use super::logistic::{fit_binary, ClassWeighting, LogisticParameters};

#[test]
fn probabilities_agree_with_scikit_learn_within_1e_3() {
    let reference: Value =
        serde_json::from_str(include_str!("../../fixtures/reference/classifier.json")).expect("classifier.json parses");
    let rows = reference["x"].as_array().expect("x");
    let dims = rows[0].as_array().expect("row").len();
    let features: Vec<f32> = rows
        .iter()
        .flat_map(|row| row.as_array().expect("row").iter().map(|v| v.as_f64().expect("number") as f32))
        .collect();
    let targets: Vec<bool> = reference["y"].as_array().expect("y").iter().map(|v| v.as_bool().expect("bool")).collect();
    let mut worst = 0.0_f64;
    for case in reference["cases"].as_array().expect("cases") {
        let parameters = LogisticParameters {
            c: case["c"].as_f64().expect("c"),
            class_weighting: match case["class_weight"].as_str() {
                Some("balanced") => ClassWeighting::Balanced,
                _ => ClassWeighting::None,
            },
            max_iterations: 10_000,
            gradient_tolerance: 1e-7,
        };
        let model = fit_binary(&features, dims, &targets, &parameters, "song").expect("fits");
        println!("C={}: {} iterations", parameters.c, model.iterations);
        assert!(model.converged, "C={} did not converge after {} iterations", parameters.c, model.iterations);
        for (row, expected) in features.chunks_exact(dims).zip(case["probabilities"].as_array().expect("probabilities"))
        {
            let difference = (model.probability(row) - expected.as_f64().expect("number")).abs();
            worst = worst.max(difference);
        }
        let intercept = case["intercept"].as_f64().expect("intercept");
        assert!((model.bias - intercept).abs() < 1e-3, "intercept ours {} scikit-learn {intercept}", model.bias);
    }
    println!("largest probability difference from scikit-learn: {worst:.2e}");
    assert!(worst < 1e-3, "largest probability difference {worst}");
}
