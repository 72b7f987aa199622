#!/usr/bin/env python3
"""Build the small TFLite fixture models under fixtures/models/ and their reference outputs.

Usage (from the repository root):
    python3 -m venv .venv-models && .venv-models/bin/pip install -r scripts/requirements-models.txt
    .venv-models/bin/python scripts/gen-tflite-fixtures.py

What it writes (all little-endian float32 for .f32 files):
  waveform_stft.tflite     input  [dynamic batch, 16000] (1 s at 16 kHz); graph: tf.signal.stft
                           (RFFT2D, COMPLEX_ABS), mel matrix, log, mean/std pooling, dense layers;
                           outputs: embedding [b, 64], logits [b, 5], spectrogram [b, 98, 32]
  logmel_fixed1.tflite     input  [1, 128, 128] (fixed batch 1, frames x mel bins);
                           outputs: embedding [1, 48], logits [1, 3], spectrogram [1, 128, 128]
  logmel_fixed4.tflite     the same graph and weights with a fixed batch of 4
  logmel_dynamic.tflite    the same graph and weights with a dynamic batch (used by the benchmark)
  flex_select_op.tflite    a model that needs a TensorFlow "Flex" (select TF) op; LiteRT cannot run it
  waveform.input.f32       3 waveform windows, one after the other; logmel.input.f32: 3 log-mel windows
  NAME.NAME_OF_OUTPUT.f32  reference outputs of Python's LiteRT interpreter (ai-edge-litert 2.1.4),
                           each window run on its own with batch 1 (or padded to the fixed batch)
  manifest.json            shapes, output names and file names of all of the above
(waveform_stft.toml, the sidecar saying that model's input is 16 kHz audio, is written by hand.)

The weights come from a fixed seed, so rerunning gives the same models (up to converter versions).
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models")
WINDOW_COUNT = 3


def quantized_noise(rng, shape, scale):
    """Pseudo-random values that are exact in float32 (multiples of 1/32768)."""
    return (rng.integers(-32768, 32768, size=shape).astype(np.float32) / 32768.0 * scale).astype(np.float32)


def mel_like_matrix(bin_count, band_count):
    """Triangular filters over linear bins; only needs to be deterministic, not a real mel scale."""
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


def convert(concrete_function, trackable, select_tf_ops=False):
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function], trackable)
    if select_tf_ops:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    return converter.convert()


class WaveformModel(tf.Module):
    def __init__(self, rng):
        super().__init__()
        self.mel = tf.constant(mel_like_matrix(257, 32))
        self.w1 = tf.constant(quantized_noise(rng, (64, 64), 0.3))
        self.b1 = tf.constant(quantized_noise(rng, (64,), 0.1))
        self.w2 = tf.constant(quantized_noise(rng, (64, 5), 0.3))

    @tf.function(input_signature=[tf.TensorSpec([None, 16000], tf.float32, name="waveform")])
    def __call__(self, waveform):
        stft = tf.signal.stft(waveform, frame_length=400, frame_step=160, fft_length=512)
        magnitude = tf.abs(stft)
        spectrogram = tf.math.log(tf.matmul(magnitude, self.mel) + 1e-3)
        mean = tf.reduce_mean(spectrogram, axis=1)
        centred = spectrogram - mean[:, None, :]
        deviation = tf.sqrt(tf.reduce_mean(centred * centred, axis=1) + 1e-6)
        pooled = tf.concat([mean, deviation], axis=1)
        embedding = tf.tanh(tf.matmul(pooled, self.w1) + self.b1)
        logits = tf.matmul(embedding, self.w2)
        return {"embedding": embedding, "logits": logits, "spectrogram": spectrogram}


class LogMelModel(tf.Module):
    def __init__(self, rng, batch):
        super().__init__()
        self.batch = batch
        self.w1 = tf.constant(quantized_noise(rng, (256, 48), 0.2))
        self.w2 = tf.constant(quantized_noise(rng, (48, 3), 0.3))
        self.__call__ = tf.function(
            self.forward, input_signature=[tf.TensorSpec([batch, 128, 128], tf.float32, name="log_mel")]
        )

    def forward(self, log_mel):
        mean = tf.reduce_mean(log_mel, axis=1)
        peak = tf.reduce_max(log_mel, axis=1)
        pooled = tf.concat([mean, peak], axis=1)
        embedding = tf.nn.relu(tf.matmul(pooled, self.w1))
        logits = tf.matmul(embedding, self.w2)
        return {"embedding": embedding, "logits": logits, "spectrogram": log_mel * 2.0}


class FlexModel(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32, name="waveform")])
    def __call__(self, waveform):
        # MatrixInverse has no TFLite builtin kernel, so the converter emits the Flex op "FlexMatrixInverse".
        return {"embedding": tf.reshape(tf.linalg.inv(tf.reshape(waveform, [4, 4]) + 5.0 * tf.eye(4)), [1, 16])}


def run_reference(model_bytes, windows, fixed_batch):
    """Runs each window on its own (batch 1, or padded with zeros to the fixed batch)."""
    interpreter = Interpreter(model_content=model_bytes, num_threads=1)
    runner = interpreter.get_signature_runner()
    input_name = list(runner.get_input_details().keys())[0]
    outputs_per_name = {}
    for window in windows:
        batch = np.zeros((fixed_batch or 1,) + window.shape, dtype=np.float32)
        batch[0] = window
        result = runner(**{input_name: batch})
        for name, value in result.items():
            outputs_per_name.setdefault(name, []).append(np.asarray(value[0], dtype=np.float32))
    return input_name, {name: np.stack(values) for name, values in outputs_per_name.items()}


def run_reference_batched(model_bytes, windows):
    """Runs all windows in one call with a resized (dynamic) batch dimension."""
    interpreter = Interpreter(model_content=model_bytes, num_threads=1)
    input_index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(input_index, list(windows.shape), strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(input_index, windows)
    interpreter.invoke()
    return {detail["name"]: interpreter.get_tensor(detail["index"]) for detail in interpreter.get_output_details()}


def write_f32(path, array):
    np.ascontiguousarray(array, dtype="<f4").tofile(path)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    rng = np.random.default_rng(20260401)
    manifest = {"generator": "scripts/gen-tflite-fixtures.py", "tensorflow": tf.__version__, "models": []}

    waveform_module = WaveformModel(rng)
    logmel_weights_seed = rng.integers(0, 2**31)
    logmel_fixed1 = LogMelModel(np.random.default_rng(logmel_weights_seed), 1)
    logmel_fixed4 = LogMelModel(np.random.default_rng(logmel_weights_seed), 4)
    logmel_dynamic = LogMelModel(np.random.default_rng(logmel_weights_seed), None)

    time_axis = np.arange(16000, dtype=np.float32) / 16000.0
    waveform_windows = np.stack(
        [
            quantized_noise(rng, (16000,), 0.05) + (0.5 * np.sin(2 * np.pi * 440.0 * time_axis)).astype(np.float32),
            quantized_noise(rng, (16000,), 0.2),
            (0.8 * np.sin(2 * np.pi * (200.0 + 1500.0 * time_axis) * time_axis)).astype(np.float32),
        ]
    ).astype(np.float32)
    logmel_windows = quantized_noise(rng, (WINDOW_COUNT, 128, 128), 4.0) - 6.0

    specs = [
        ("waveform_stft", waveform_module, waveform_windows, "waveform", None),
        ("logmel_fixed1", logmel_fixed1, logmel_windows, "logmel", 1),
        ("logmel_fixed4", logmel_fixed4, logmel_windows, "logmel", 4),
        ("logmel_dynamic", logmel_dynamic, logmel_windows, "logmel", None),
    ]
    for name, module, windows, input_family, fixed_batch in specs:
        concrete_function = module.__call__.get_concrete_function()
        model_bytes = convert(concrete_function, module)
        with open(os.path.join(OUT_DIR, f"{name}.tflite"), "wb") as handle:
            handle.write(model_bytes)
        write_f32(os.path.join(OUT_DIR, f"{input_family}.input.f32"), windows)
        input_name, outputs = run_reference(model_bytes, windows, fixed_batch)
        entry = {
            "file": f"{name}.tflite",
            "input_name": input_name,
            "input_file": f"{input_family}.input.f32",
            "window_shape": list(windows.shape[1:]),
            "window_count": WINDOW_COUNT,
            "fixed_batch": fixed_batch,
            "outputs": {},
        }
        for output_name, values in sorted(outputs.items()):
            if output_name == "spectrogram":
                continue  # large and not an embedding; shapes are still checked via the model itself
            file_name = f"{name}.{output_name}.f32"
            write_f32(os.path.join(OUT_DIR, file_name), values)
            entry["outputs"][output_name] = {"file": file_name, "shape_per_window": list(values.shape[1:])}
        if fixed_batch is None:
            batched = run_reference_batched(model_bytes, windows)
            single_embedding = outputs["embedding"]
            batched_embedding = [v for k, v in batched.items() if v.shape == single_embedding.shape]
            entry["python_batched_vs_single_max_abs_difference"] = float(
                max(np.max(np.abs(v - single_embedding)) for v in batched_embedding)
            )
        manifest["models"].append(entry)
        print(f"{name}: {len(model_bytes)} bytes, outputs {sorted(outputs)}", file=sys.stderr)

    flex_module = FlexModel()
    flex_bytes = convert(flex_module.__call__.get_concrete_function(), flex_module, select_tf_ops=True)
    with open(os.path.join(OUT_DIR, "flex_select_op.tflite"), "wb") as handle:
        handle.write(flex_bytes)
    manifest["flex_model"] = {"file": "flex_select_op.tflite", "flex_ops": ["FlexMatrixInverse"]}
    print(f"flex_select_op: {len(flex_bytes)} bytes", file=sys.stderr)

    with open(os.path.join(OUT_DIR, "manifest.json"), "w") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    main()
