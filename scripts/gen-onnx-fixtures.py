#!/usr/bin/env python3
"""Build the small ONNX fixture models under fixtures/models/ and their reference outputs, with the
`onnx` package alone (no deep-learning framework), checked against Python's onnxruntime.

Usage (from the repository root):
    python3 -m pip install onnx==1.23.2 onnxruntime==1.22.1 numpy
    python3 scripts/gen-onnx-fixtures.py

The graphs are the ONNX twins of the TFLite fixtures made by scripts/gen-tflite-fixtures.py: the
weights come from the same seeds (numpy's PCG64 gives the same numbers on every platform), so the
same inputs (waveform.input.f32, logmel.input.f32) give the same embeddings up to float rounding,
which this script checks against the TFLite references. That also makes them a fair benchmark of
ONNX Runtime against LiteRT on the same network (`humpback bench models`).

What it writes (all little-endian float32 for .f32 files):
  waveform_dft.onnx      input "waveform" [batch (dynamic), 16000]; front end: 98 frames of 400
                         samples every 160 (Gather), periodic Hann window, the ONNX `DFT` op with
                         dft_length 512 (onesided), magnitude, mel matrix, log, mean/std pooling,
                         dense layers; outputs embedding [b, 64], logits [b, 5], spectrogram [b, 98, 32].
                         metadata_props: sample_rate = 16000, embedding_output = embedding.
  logmel_fixed2.onnx     input "log_mel" [2, 128, 128] (fixed batch 2); mean and max over frames,
                         dense layers; outputs embedding [2, 48], logits [2, 3].
                         metadata_props: sample_rate = 32000, window_seconds = 5.0.
  logmel_dynamic.onnx    the same graph and weights with a dynamic batch and no metadata_props
                         (humpback must assume its sample rate, and says so)
  NAME.NAME_OF_OUTPUT.f32  reference outputs of onnxruntime 1.22.1 (the version build.rs links),
                         all windows in one batch (padded to the fixed batch)
  onnx-manifest.json     shapes, names, versions and the differences measured here
"""

import json
import os
import sys

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models")
OPSET = 18  # DFT (17) with its dft_length input; reductions take their axes as an input (18); ONNX Runtime 1.22 runs it


def quantized_noise(rng, shape, scale):
    """As in gen-tflite-fixtures.py: values exact in float32 (multiples of 1/32768)."""
    return (rng.integers(-32768, 32768, size=shape).astype(np.float32) / 32768.0 * scale).astype(np.float32)


def mel_like_matrix(bin_count, band_count):
    """As in gen-tflite-fixtures.py."""
    matrix = np.zeros((bin_count, band_count), dtype=np.float32)
    centres = np.linspace(0, bin_count - 1, band_count + 2)
    for band in range(band_count):
        left, centre, right = centres[band], centres[band + 1], centres[band + 2]
        for index in range(bin_count):
            if left <= index <= centre and centre > left:
                matrix[index, band] = (index - left) / (centre - left)
            elif centre < index <= right and right > centre:
                matrix[index, band] = (right - index) / (right - centre)
    return matrix


def weights():
    """The weights of gen-tflite-fixtures.py, drawn in the same order from the same seeds."""
    rng = np.random.default_rng(20260401)
    waveform = {
        "mel": mel_like_matrix(257, 32),
        "w1": quantized_noise(rng, (64, 64), 0.3),
        "b1": quantized_noise(rng, (64,), 0.1),
        "w2": quantized_noise(rng, (64, 5), 0.3),
    }
    logmel_seed = rng.integers(0, 2**31)
    logmel_rng = np.random.default_rng(logmel_seed)
    logmel = {"w1": quantized_noise(logmel_rng, (256, 48), 0.2), "w2": quantized_noise(logmel_rng, (48, 3), 0.3)}
    return waveform, logmel


def constant(name, array):
    return numpy_helper.from_array(np.asarray(array), name=name)


def model_of(graph, metadata):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="humpback-fixtures")
    model.ir_version = 8
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    return model


def waveform_model(w):
    frame_length, frame_step, fft_length, frames = 400, 160, 512, 98
    frame_indices = (np.arange(frames)[:, None] * frame_step + np.arange(frame_length)[None, :]).astype(np.int64)
    hann = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(frame_length) / frame_length)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["waveform", "frame_indices"], ["frames"], axis=1),  # [b, 98, 400]
        helper.make_node("Mul", ["frames", "hann"], ["windowed"]),
        helper.make_node("Unsqueeze", ["windowed", "last_axis"], ["real_frames"]),  # [b, 98, 400, 1]
        helper.make_node("DFT", ["real_frames", "fft_length"], ["spectrum"], axis=2, onesided=1),  # [b, 98, 257, 2]
        helper.make_node("Mul", ["spectrum", "spectrum"], ["squares"]),
        helper.make_node("ReduceSum", ["squares", "last_axis"], ["power"], keepdims=0),  # [b, 98, 257]
        helper.make_node("Sqrt", ["power"], ["magnitude"]),
        helper.make_node("MatMul", ["magnitude", "mel"], ["mel_magnitude"]),
        helper.make_node("Add", ["mel_magnitude", "log_floor"], ["floored"]),
        helper.make_node("Log", ["floored"], ["spectrogram"]),  # [b, 98, 32]
        helper.make_node("ReduceMean", ["spectrogram", "frame_axis"], ["mean_kept"], keepdims=1),
        helper.make_node("Sub", ["spectrogram", "mean_kept"], ["centred"]),
        helper.make_node("Mul", ["centred", "centred"], ["centred_squares"]),
        helper.make_node("ReduceMean", ["centred_squares", "frame_axis"], ["variance"], keepdims=0),
        helper.make_node("Add", ["variance", "variance_floor"], ["variance_floored"]),
        helper.make_node("Sqrt", ["variance_floored"], ["deviation"]),
        helper.make_node("Squeeze", ["mean_kept", "frame_axis"], ["mean"]),
        helper.make_node("Concat", ["mean", "deviation"], ["pooled"], axis=1),  # [b, 64]
        helper.make_node("MatMul", ["pooled", "w1"], ["hidden"]),
        helper.make_node("Add", ["hidden", "b1"], ["hidden_biased"]),
        helper.make_node("Tanh", ["hidden_biased"], ["embedding"]),
        helper.make_node("MatMul", ["embedding", "w2"], ["logits"]),
    ]
    initializers = [
        constant("frame_indices", frame_indices),
        constant("hann", hann),
        constant("last_axis", np.array([-1], dtype=np.int64)),
        constant("fft_length", np.array(fft_length, dtype=np.int64)),
        constant("mel", w["mel"]),
        constant("log_floor", np.array(1e-3, dtype=np.float32)),
        constant("frame_axis", np.array([1], dtype=np.int64)),
        constant("variance_floor", np.array(1e-6, dtype=np.float32)),
        constant("w1", w["w1"]),
        constant("b1", w["b1"]),
        constant("w2", w["w2"]),
    ]
    graph = helper.make_graph(
        nodes,
        "waveform_dft",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", 16000])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 64]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5]),
            helper.make_tensor_value_info("spectrogram", TensorProto.FLOAT, ["batch", 98, 32]),
        ],
        initializers,
    )
    return model_of(graph, {"sample_rate": "16000", "embedding_output": "embedding"})


def logmel_model(w, batch, metadata):
    nodes = [
        helper.make_node("ReduceMean", ["log_mel", "frame_axis"], ["mean"], keepdims=0),
        helper.make_node("ReduceMax", ["log_mel", "frame_axis"], ["peak"], keepdims=0),
        helper.make_node("Concat", ["mean", "peak"], ["pooled"], axis=1),  # [b, 256]
        helper.make_node("MatMul", ["pooled", "w1"], ["hidden"]),
        helper.make_node("Relu", ["hidden"], ["embedding"]),
        helper.make_node("MatMul", ["embedding", "w2"], ["logits"]),
    ]
    initializers = [
        constant("frame_axis", np.array([1], dtype=np.int64)),
        constant("w1", w["w1"]),
        constant("w2", w["w2"]),
    ]
    graph = helper.make_graph(
        nodes,
        "logmel",
        [helper.make_tensor_value_info("log_mel", TensorProto.FLOAT, [batch, 128, 128])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, 48]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3]),
        ],
        initializers,
    )
    return model_of(graph, metadata)


def read_f32(name, shape):
    return np.fromfile(os.path.join(OUT_DIR, name), dtype="<f4").reshape(shape)


def run(model_bytes, input_name, windows, fixed_batch):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    if fixed_batch:
        padded = np.zeros((-(-len(windows) // fixed_batch) * fixed_batch,) + windows.shape[1:], dtype=np.float32)
        padded[: len(windows)] = windows
        results = [session.run(None, {input_name: padded[i : i + fixed_batch]}) for i in range(0, len(padded), fixed_batch)]
        outputs = [np.concatenate([result[k] for result in results])[: len(windows)] for k in range(len(results[0]))]
    else:
        outputs = session.run(None, {input_name: windows})
    single = [session.run(None, {input_name: np.concatenate([windows[i : i + 1]] * (fixed_batch or 1))})[0][0] for i in range(len(windows))]
    batched_vs_single = float(np.max(np.abs(outputs[0] - np.stack(single))))
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, outputs)), batched_vs_single


def main():
    waveform_weights, logmel_weights = weights()
    waveform_windows = read_f32("waveform.input.f32", (3, 16000))
    logmel_windows = read_f32("logmel.input.f32", (3, 128, 128))
    specs = [
        ("waveform_dft", waveform_model(waveform_weights), "waveform", waveform_windows, None, "waveform_stft"),
        (
            "logmel_fixed2",
            logmel_model(logmel_weights, 2, {"sample_rate": "32000", "window_seconds": "5.0"}),
            "log_mel",
            logmel_windows,
            2,
            "logmel_fixed1",
        ),
        ("logmel_dynamic", logmel_model(logmel_weights, "batch", {}), "log_mel", logmel_windows, None, "logmel_dynamic"),
    ]
    manifest = {
        "generator": "scripts/gen-onnx-fixtures.py",
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": OPSET,
        "models": [],
    }
    for name, model, input_name, windows, fixed_batch, tflite_twin in specs:
        model_bytes = model.SerializeToString()
        with open(os.path.join(OUT_DIR, f"{name}.onnx"), "wb") as handle:
            handle.write(model_bytes)
        outputs, batched_vs_single = run(model_bytes, input_name, windows, fixed_batch)
        entry = {
            "file": f"{name}.onnx",
            "input_name": input_name,
            "window_shape": list(windows.shape[1:]),
            "fixed_batch": fixed_batch,
            "metadata_props": {prop.key: prop.value for prop in model.metadata_props},
            "batched_vs_single_max_abs_difference": batched_vs_single,
            "outputs": {},
        }
        for output_name in ("embedding", "logits"):
            file = f"{name}.{output_name}.f32"
            np.ascontiguousarray(outputs[output_name], dtype="<f4").tofile(os.path.join(OUT_DIR, file))
            twin = read_f32(f"{tflite_twin}.{output_name}.f32", outputs[output_name].shape)
            difference = float(np.max(np.abs(outputs[output_name] - twin)))
            entry["outputs"][output_name] = {"file": file, "max_abs_difference_to_tflite_twin": difference}
            print(f"{name}.{output_name}: max |onnx - tflite {tflite_twin}| = {difference:.3g}", file=sys.stderr)
            if difference > 1e-3:  # different FFTs (LiteRT RFFT2D vs ONNX DFT) round differently
                sys.exit(f"{name}: the ONNX twin differs from {tflite_twin}.tflite by {difference}")
        manifest["models"].append(entry)
        print(f"{name}: {len(model_bytes)} bytes, batched vs single {batched_vs_single:.3g}", file=sys.stderr)
    with open(os.path.join(OUT_DIR, "onnx-manifest.json"), "w") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    main()
