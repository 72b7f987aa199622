#!/usr/bin/env python3
"""Write a Perch-shaped ONNX model for benchmarks: the shapes and the order of cost of Google's
Perch, not its weights or its accuracy.

Usage (from the repository root):
    python3 -m pip install onnx==1.23.2 onnxruntime==1.22.1 numpy
    python3 scripts/gen-perch-shaped-onnx.py OUT_DIR

What it writes to OUT_DIR:
  perch_shaped.onnx   input "waveform" [batch (dynamic), 160000]: 5 s at 32 kHz, as Perch takes;
                      500 frames of 320 samples (Reshape), a learned 320 -> 160 filter bank,
                      log magnitude, three dense layers over frames (160 -> 512 -> 512 -> 512, ReLU),
                      mean over frames, a 512 -> 1536 projection: output "embedding" [b, 1536]
                      (Perch's dimension), and "label" [b, 1000] logits from the embedding.
                      About 0.4 GFLOP a window, 11 MB of weights from a fixed seed.
                      metadata_props: sample_rate = 32000, window_seconds = 5.0,
                      embedding_output = embedding.

It is generated, not committed (11 MB). `humpback bench processing --model perch_shaped
--models-dir OUT_DIR --threads T --bare-runtime-windows N FILE` compares the whole pipeline on it
with a bare ONNX Runtime loop over the same windows (README, "One long recording").
The script checks the model with onnx.checker and runs one window through onnxruntime.
"""

import os
import sys

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

OPSET = 18
SAMPLE_RATE = 32000
WINDOW_SAMPLES = 160000
FRAME = 320
FRAMES = WINDOW_SAMPLES // FRAME
BANDS = 160
HIDDEN = 512
EMBEDDING = 1536
LABELS = 1000


def weights(rng, rows, columns):
    """Scaled so activations stay of order one through the layers."""
    return (rng.standard_normal((rows, columns)) / np.sqrt(rows)).astype(np.float32)


def build():
    rng = np.random.default_rng(20261202)
    initializers = [
        numpy_helper.from_array(np.array([-1, FRAMES, FRAME], dtype=np.int64), "frame_shape"),
        numpy_helper.from_array(weights(rng, FRAME, BANDS), "filter_bank"),
        numpy_helper.from_array(np.array(1e-3, dtype=np.float32), "floor"),
        numpy_helper.from_array(weights(rng, BANDS, HIDDEN), "dense_1"),
        numpy_helper.from_array(np.zeros(HIDDEN, dtype=np.float32), "bias_1"),
        numpy_helper.from_array(weights(rng, HIDDEN, HIDDEN), "dense_2"),
        numpy_helper.from_array(np.zeros(HIDDEN, dtype=np.float32), "bias_2"),
        numpy_helper.from_array(weights(rng, HIDDEN, HIDDEN), "dense_3"),
        numpy_helper.from_array(np.zeros(HIDDEN, dtype=np.float32), "bias_3"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "frame_axis"),
        numpy_helper.from_array(weights(rng, HIDDEN, EMBEDDING), "projection"),
        numpy_helper.from_array(weights(rng, EMBEDDING, LABELS), "classifier"),
    ]
    nodes = [
        helper.make_node("Reshape", ["waveform", "frame_shape"], ["frames"]),
        helper.make_node("MatMul", ["frames", "filter_bank"], ["bands"]),
        helper.make_node("Abs", ["bands"], ["magnitude"]),
        helper.make_node("Add", ["magnitude", "floor"], ["floored"]),
        helper.make_node("Log", ["floored"], ["log_bands"]),
        helper.make_node("MatMul", ["log_bands", "dense_1"], ["hidden_1_linear"]),
        helper.make_node("Add", ["hidden_1_linear", "bias_1"], ["hidden_1_biased"]),
        helper.make_node("Relu", ["hidden_1_biased"], ["hidden_1"]),
        helper.make_node("MatMul", ["hidden_1", "dense_2"], ["hidden_2_linear"]),
        helper.make_node("Add", ["hidden_2_linear", "bias_2"], ["hidden_2_biased"]),
        helper.make_node("Relu", ["hidden_2_biased"], ["hidden_2"]),
        helper.make_node("MatMul", ["hidden_2", "dense_3"], ["hidden_3_linear"]),
        helper.make_node("Add", ["hidden_3_linear", "bias_3"], ["hidden_3_biased"]),
        helper.make_node("Relu", ["hidden_3_biased"], ["hidden_3"]),
        helper.make_node("ReduceMean", ["hidden_3", "frame_axis"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "projection"], ["embedding"]),
        helper.make_node("MatMul", ["embedding", "classifier"], ["label"]),
    ]
    graph = helper.make_graph(
        nodes,
        "perch_shaped",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", WINDOW_SAMPLES])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMBEDDING]),
            helper.make_tensor_value_info("label", TensorProto.FLOAT, ["batch", LABELS]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="humpback-bench")
    model.ir_version = 8
    for key, value in {
        "sample_rate": str(SAMPLE_RATE),
        "window_seconds": "5.0",
        "embedding_output": "embedding",
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "perch_shaped.onnx")
    model = build()
    onnx.save(model, path)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    window = (np.random.default_rng(1).standard_normal((1, WINDOW_SAMPLES)) * 0.1).astype(np.float32)
    embedding, label = session.run(None, {"waveform": window})
    if embedding.shape != (1, EMBEDDING) or label.shape != (1, LABELS) or not np.all(np.isfinite(embedding)):
        sys.exit(f"unexpected outputs: {embedding.shape} {label.shape}")
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB); embedding [1, {EMBEDDING}], label [1, {LABELS}]")


if __name__ == "__main__":
    main()
