#!/usr/bin/env python3
"""Write librosa log-mel references for the Rust extractor's agreement tests.

Run from the repository root (python deps pinned in scripts/requirements-dev.txt):

    python3 scripts/gen-logmel-reference.py

For each case it writes, under fixtures/logmel/:
  <input>.input.f32        the mono input signal, little-endian float32
  <case>.reference.f32     librosa's log-mel, little-endian float32, frames x bins row-major
and fixtures/logmel/manifest.json describing every case (shapes, parameters, librosa version).

librosa conventions used (and matched on the Rust side, see src/audio/logmel.rs):
  stft center=True with pad_mode='constant' (zero padding of n_fft//2 on both sides; the default
  in librosa >= 0.10), periodic Hann window of length n_fft, htk=False (Slaney mel scale),
  norm='slaney', then power_to_db(S, ref, amin, top_db). The computation runs in float64
  (input cast from the stored float32 values, mel basis requested as float64) so the reference is
  not limited by float32 rounding.
"""

import json
import os

import librosa
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fixtures", "logmel")
RATE = 32000
SEED = 7


def chirp_with_noise(rng):
    seconds = 1.5
    t = np.arange(int(RATE * seconds)) / RATE
    phase = 2 * np.pi * (150.0 * t + 0.5 * (3000.0 - 150.0) / seconds * t**2)  # linear 150 Hz -> 3 kHz
    signal = 0.4 * np.sin(phase) + 0.15 * np.sin(2 * phase) + 0.02 * rng.standard_normal(len(t))
    return signal.astype(np.float32)


def whale_window(rng):
    # One full 5 s window at 32 kHz: a tonal moan with harmonics, two grunts, an up-sweep, noise.
    n = 5 * RATE
    t = np.arange(n) / RATE
    out = 0.01 * rng.standard_normal(n)
    moan = (t > 0.3) & (t < 2.4)
    f0 = 210.0 + 10.0 * np.sin(2 * np.pi * 0.9 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    out += moan * (0.3 * np.sin(phase) + 0.15 * np.sin(2 * phase) + 0.08 * np.sin(3 * phase))
    for start in (2.6, 3.1):
        tt = t - start
        out += (tt > 0) * np.exp(-np.clip(tt, 0, None) / 0.04) * 0.5 * np.sin(2 * np.pi * 110.0 * tt)
    sweep = (t > 3.5) & (t < 4.8)
    ts = np.clip(t - 3.5, 0, None)
    out += sweep * 0.25 * np.sin(2 * np.pi * (400.0 * ts + 0.5 * 1800.0 / 1.3 * ts**2))
    return out.astype(np.float32)


DEFAULT = dict(n_fft=2048, hop_length=1259, n_mels=128, fmin=0.0, fmax=16000.0, power=2.0,
               ref=1.0, amin=1e-10, top_db=80.0)
ALTERNATIVE = dict(n_fft=1024, hop_length=320, n_mels=64, fmin=50.0, fmax=14000.0, power=1.0,
                   ref=1.0, amin=1e-10, top_db=None)


def log_mel(signal, params, ref_is_max=False):
    y = signal.astype(np.float64)
    mel = librosa.feature.melspectrogram(
        y=y, sr=RATE, n_fft=params["n_fft"], hop_length=params["hop_length"], window="hann",
        center=True, pad_mode="constant", power=params["power"], n_mels=params["n_mels"],
        fmin=params["fmin"], fmax=params["fmax"], htk=False, norm="slaney", dtype=np.float64,
    )
    ref = np.max if ref_is_max else params["ref"]
    db = librosa.power_to_db(mel, ref=ref, amin=params["amin"], top_db=params["top_db"])
    return db.T.astype("<f4")  # frames x bins


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    inputs = {"chirp_noise_1s5": chirp_with_noise(rng), "whale_window_5s": whale_window(rng)}
    for name, signal in inputs.items():
        signal.astype("<f4").tofile(os.path.join(OUT, f"{name}.input.f32"))

    cases = [
        ("chirp_noise_1s5_default", "chirp_noise_1s5", DEFAULT, False),
        ("whale_window_5s_default", "whale_window_5s", DEFAULT, False),
        ("chirp_noise_1s5_alternative", "chirp_noise_1s5", ALTERNATIVE, False),
        ("whale_window_5s_ref_max", "whale_window_5s", DEFAULT, True),
    ]
    manifest = {"librosa_version": librosa.__version__, "numpy_version": np.__version__,
                "sample_rate": RATE, "cases": []}
    for case, input_name, params, ref_is_max in cases:
        reference = log_mel(inputs[input_name], params, ref_is_max)
        reference.tofile(os.path.join(OUT, f"{case}.reference.f32"))
        manifest["cases"].append({
            "name": case, "input": f"{input_name}.input.f32", "reference": f"{case}.reference.f32",
            "input_samples": int(len(inputs[input_name])), "frames": int(reference.shape[0]),
            "bins": int(reference.shape[1]), "ref_is_max": ref_is_max, **params,
        })
        print(f"{case}: {reference.shape[0]} frames x {reference.shape[1]} bins")
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
