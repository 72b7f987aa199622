#!/usr/bin/env python3
"""Reference figures for humpback's clustering core, from umap-learn, scikit-learn and hdbscan.

    python -m venv .venv-clustering && .venv-clustering/bin/pip install -r scripts/requirements-clustering.txt
    .venv-clustering/bin/python scripts/clustering-reference.py fixtures      # rewrites fixtures/clustering/
    .venv-clustering/bin/python scripts/clustering-reference.py bench-data --rows N --dims D --out FILE
    .venv-clustering/bin/python scripts/clustering-reference.py bench-umap --input FILE --dims D --out FILE
    .venv-clustering/bin/python scripts/clustering-reference.py bench-hdbscan --input FILE --dims D --out FILE
    .venv-clustering/bin/python scripts/clustering-reference.py compare ...   (used by scripts/bench-clustering)

`fixtures` writes (all matrices little-endian float32, row-major):
  umap_blobs_2000x64.f32        structured blobs for the UMAP trustworthiness test
  hdbscan_blobs_1500x5.f32      blobs of several densities plus background noise (post-UMAP-like)
  reference.json                umap-learn trustworthiness, scikit-learn HDBSCAN labels and
                                probabilities, metric values on small fixed inputs, a/b curve.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "clustering")


def structured_blobs(rows, dims, blobs, seed, latent=4, noise=0.3, spread=3.0):
    """Blobs with low-dimensional internal structure: centre + latent Gaussian through a random
    linear map + isotropic noise. Uneven blob sizes. Returns (float32 matrix, int labels)."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 1.5, size=blobs)
    sizes = np.floor(weights / weights.sum() * rows).astype(int)
    sizes[: rows - sizes.sum()] += 1
    parts, labels = [], []
    for blob, size in enumerate(sizes):
        centre = rng.normal(0.0, spread, size=dims)
        mixing = rng.normal(0.0, 1.0, size=(latent, dims)) / np.sqrt(latent)
        z = rng.normal(0.0, 1.0, size=(size, latent))
        parts.append(centre + z @ mixing + rng.normal(0.0, noise, size=(size, dims)))
        labels.extend([blob] * size)
    return np.vstack(parts).astype("<f4"), np.array(labels)


def density_blobs(seed=7):
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    specs = [(300, 0.3), (250, 0.5), (200, 0.8), (150, 0.4), (250, 1.0), (200, 0.25)]
    for blob, (size, std) in enumerate(specs):
        centre = rng.uniform(-12, 12, size=5)
        parts.append(centre + rng.normal(0.0, std, size=(size, 5)))
        labels.extend([blob] * size)
    background = rng.uniform(-15, 15, size=(150, 5))
    parts.append(background)
    labels.extend([-1] * 150)
    return np.vstack(parts).astype("<f4"), np.array(labels)


def fixtures():
    import sklearn
    import umap
    import hdbscan as hdbscan_library
    from sklearn.cluster import HDBSCAN
    from sklearn.manifold import trustworthiness
    from sklearn import metrics

    os.makedirs(FIXTURES, exist_ok=True)
    reference = {"versions": {"umap-learn": umap.__version__, "scikit-learn": sklearn.__version__,
                              "numpy": np.__version__}}

    # UMAP trustworthiness on structured blobs.
    data, truth = structured_blobs(2000, 64, 8, seed=20261124)
    data.tofile(os.path.join(FIXTURES, "umap_blobs_2000x64.f32"))
    umap_reference = {"rows": 2000, "dims": 64, "truth": truth.tolist(), "runs": []}
    for n_components in (2, 5):
        for init in ("spectral", "pca"):
            started = time.time()
            embedding = umap.UMAP(n_neighbors=15, min_dist=0.1, n_components=n_components, init=init,
                                  random_state=42).fit_transform(data)
            seconds = time.time() - started
            run = {"n_components": n_components, "init": init, "seconds": seconds,
                   "trustworthiness_k5": float(trustworthiness(data, embedding, n_neighbors=5)),
                   "trustworthiness_k15": float(trustworthiness(data, embedding, n_neighbors=15))}
            print("umap", run, file=sys.stderr)
            umap_reference["runs"].append(run)
    reference["umap"] = umap_reference

    from umap.umap_ import find_ab_params
    reference["ab_params"] = [{"min_dist": d, "a": float(find_ab_params(1.0, d)[0]), "b": float(find_ab_params(1.0, d)[1])}
                              for d in (0.001, 0.1, 0.5)]

    # HDBSCAN labels on density blobs.
    points, point_truth = density_blobs()
    points.tofile(os.path.join(FIXTURES, "hdbscan_blobs_1500x5.f32"))
    runs = []
    for min_cluster_size, min_samples, selection in ((5, None, "eom"), (15, None, "eom"), (10, 5, "leaf"),
                                                     (30, 10, "eom"), (8, None, "leaf")):
        model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                        cluster_selection_method=selection).fit(points.astype(np.float64))
        library = hdbscan_library.HDBSCAN(
            min_cluster_size=min_cluster_size,
            min_samples=(min_samples or min_cluster_size) - 1 if (min_samples or min_cluster_size) > 1 else 1,
            cluster_selection_method=selection).fit(points.astype(np.float64))
        runs.append({"min_cluster_size": min_cluster_size, "min_samples": min_samples, "selection": selection,
                     "labels": model.labels_.tolist(),
                     "probabilities": [round(float(p), 6) for p in model.probabilities_],
                     "ari_hdbscan_library_vs_sklearn": float(metrics.adjusted_rand_score(model.labels_, library.labels_)),
                     "clusters": int(model.labels_.max() + 1), "noise": int((model.labels_ == -1).sum())})
        print("hdbscan", {k: v for k, v in runs[-1].items() if k not in ("labels", "probabilities")}, file=sys.stderr)
    reference["hdbscan"] = {"rows": int(points.shape[0]), "dims": 5, "truth": point_truth.tolist(), "runs": runs}

    # Metrics on small fixed inputs.
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(c, 1.0, size=(10, 3)) for c in (0.0, 3.0, 6.0)]).astype("<f4")
    labels = np.array([0] * 9 + [1] * 11 + [2] * 8 + [0] * 2)
    truth_names = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    truth_codes = np.array([0] * 10 + [1] * 10 + [2] * 10)
    h, c, v = metrics.homogeneity_completeness_v_measure(truth_codes, labels)
    low = x[:, :2] + rng.normal(0, 0.5, size=(30, 2))
    contingency = metrics.cluster.contingency_matrix(labels, truth_codes)
    reference["metrics"] = {
        "x": x.astype(float).tolist(), "labels": labels.tolist(), "truth": truth_names,
        "low": low.astype("<f4").astype(float).tolist(),
        "silhouette": float(metrics.silhouette_score(x, labels)),
        "davies_bouldin": float(metrics.davies_bouldin_score(x, labels)),
        "calinski_harabasz": float(metrics.calinski_harabasz_score(x, labels)),
        "adjusted_rand_index": float(metrics.adjusted_rand_score(truth_codes, labels)),
        "normalized_mutual_information": float(metrics.normalized_mutual_info_score(truth_codes, labels)),
        "homogeneity": float(h), "completeness": float(c), "v_measure": float(v),
        "purity": float(contingency.max(axis=1).sum() / contingency.sum()),
        "trustworthiness_k5": float(trustworthiness(x, low.astype("<f4"), n_neighbors=5)),
    }
    with open(os.path.join(FIXTURES, "reference.json"), "w") as handle:
        json.dump(reference, handle, separators=(",", ":"))
    print(json.dumps({k: v for k, v in reference["metrics"].items() if k not in ("x", "labels", "truth", "low")}),
          file=sys.stderr)


def load(path, dims):
    return np.fromfile(path, dtype="<f4").reshape(-1, dims)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fixtures")
    data = sub.add_parser("bench-data")
    data.add_argument("--rows", type=int, required=True)
    data.add_argument("--dims", type=int, default=1280)
    data.add_argument("--blobs", type=int, default=20)
    data.add_argument("--out", required=True)
    for name in ("bench-umap", "bench-hdbscan"):
        command = sub.add_parser(name)
        command.add_argument("--input", required=True)
        command.add_argument("--dims", type=int, required=True)
        command.add_argument("--out", required=True)
        command.add_argument("--min-cluster-size", type=int, default=5)
        command.add_argument("--n-components", type=int, default=5)
    compare = sub.add_parser("compare")
    compare.add_argument("--high", required=True)
    compare.add_argument("--high-dims", type=int, required=True)
    compare.add_argument("--low", nargs="+", required=True)
    compare.add_argument("--low-dims", type=int, required=True)
    compare.add_argument("--labels", nargs="*", default=[])
    compare.add_argument("--sample", type=int, default=5000)
    args = parser.parse_args()

    if args.command == "fixtures":
        fixtures()
    elif args.command == "bench-data":
        # Blocks of rows so 1M x 1280 never needs two copies in memory.
        matrix, _ = structured_blobs(args.rows, args.dims, args.blobs, seed=args.rows, latent=8, noise=0.5)
        matrix.tofile(args.out)
    elif args.command == "bench-umap":
        import umap
        data = load(args.input, args.dims)
        started = time.time()
        embedding = umap.UMAP(n_neighbors=15, min_dist=0.1, n_components=args.n_components,
                              random_state=42).fit_transform(data)
        print(json.dumps({"umap_seconds": time.time() - started}))
        embedding.astype("<f4").tofile(args.out)
    elif args.command == "bench-hdbscan":
        import hdbscan as hdbscan_library
        from sklearn.cluster import HDBSCAN
        data = load(args.input, args.dims).astype(np.float64)
        started = time.time()
        library = hdbscan_library.HDBSCAN(min_cluster_size=args.min_cluster_size,
                                          min_samples=args.min_cluster_size - 1).fit(data)
        library_seconds = time.time() - started
        result = {"hdbscan_library_seconds": library_seconds}
        if data.shape[0] <= 200_000:
            started = time.time()
            model = HDBSCAN(min_cluster_size=args.min_cluster_size).fit(data)
            result["sklearn_seconds"] = time.time() - started
            model.labels_.astype("<i8").tofile(args.out)
        else:
            library.labels_.astype("<i8").tofile(args.out)
        result["labels_from"] = "sklearn" if data.shape[0] <= 200_000 else "hdbscan library"
        print(json.dumps(result))
    elif args.command == "compare":
        from sklearn.manifold import trustworthiness
        from sklearn.metrics import adjusted_rand_score
        high = load(args.high, args.high_dims)
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(high.shape[0], size=min(args.sample, high.shape[0]), replace=False))
        result = {"trustworthiness_sample_rows": int(sample.size)}
        for path in args.low:
            low = load(path, args.low_dims)
            result["trustworthiness_k15:" + os.path.basename(path)] = float(
                trustworthiness(high[sample], low[sample], n_neighbors=15))
        if len(args.labels) == 2:
            first = np.fromfile(args.labels[0], dtype="<i8")
            second = np.fromfile(args.labels[1], dtype="<i8")
            result["ari"] = float(adjusted_rand_score(first, second))
        print(json.dumps(result))


if __name__ == "__main__":
    main()
