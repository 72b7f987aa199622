#!/usr/bin/env python3
"""Reference probabilities for humpback's logistic regression, from scikit-learn.

    pip install numpy scikit-learn
    python3 scripts/classifier-reference.py        # rewrites fixtures/reference/classifier.json

A small synthetic data set (embeddings with a planted direction, overlapping classes so the
optimum is finite, 30% positives) and, for several (C, class_weight) cases, scikit-learn's
`LogisticRegression(solver='lbfgs')` coefficients, intercept and probabilities of the positive
class. src/classifier/reference_tests.rs checks ours agree within 1e-3.
"""

import json
import os

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "reference", "classifier.json")


def main():
    rng = np.random.default_rng(12)
    rows, dims = 400, 16
    direction = rng.normal(size=dims)
    direction /= np.linalg.norm(direction)
    y = rng.uniform(size=rows) < 0.3
    x = rng.normal(size=(rows, dims)) + np.where(y, 0.8, -0.8)[:, None] * direction + 0.5
    x = x.astype(np.float32)
    cases = []
    for c, class_weight in [(1.0, "balanced"), (0.1, None), (10.0, "balanced"), (0.01, "balanced")]:
        model = LogisticRegression(C=c, class_weight=class_weight, solver="lbfgs", max_iter=10000, tol=1e-10)
        model.fit(x.astype(np.float64), y.astype(int))
        cases.append(
            {
                "c": c,
                "class_weight": class_weight or "none",
                "coef": model.coef_[0].tolist(),
                "intercept": float(model.intercept_[0]),
                "probabilities": model.predict_proba(x.astype(np.float64))[:, 1].tolist(),
            }
        )
    document = {
        "generator": "scripts/classifier-reference.py",
        "scikit_learn": sklearn.__version__,
        "x": [[float(v) for v in row] for row in x],
        "y": [bool(v) for v in y],
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as handle:
        json.dump(document, handle)
        handle.write("\n")


if __name__ == "__main__":
    main()
