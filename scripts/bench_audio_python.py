#!/usr/bin/env python3
"""The Python side of scripts/bench-audio: the same work done the way a user of Python tools would.

- decode: soundfile.read (libsndfile, which also reads mp3) + average channels to mono
- decode+resample: librosa.load(path, sr=32000, mono=True) (soundfile + soxr 'soxr_hq', librosa's default)
- decode+resample+logmel: librosa.load as above, then per 5 s window melspectrogram
  (n_fft 2048, hop 1259, 128 mels, Slaney) + power_to_db(ref=np.max, top_db=80)

Run single-threaded (the bench script sets OMP/OPENBLAS/MKL thread counts to 1).
Prints lines `RESULT python <stage> <file> <audio_s> <wall_s> <x_realtime>`.
"""

import sys
import time

import librosa
import numpy as np
import soundfile

TARGET = 32000
WINDOW = 5 * TARGET


def report(stage, path, audio_seconds, wall):
    print(f"RESULT python {stage} {path} {audio_seconds:.3f} {wall:.4f} {audio_seconds / wall:.1f}", flush=True)


def best_of(repeat, function):
    best = None
    for _ in range(repeat):
        started = time.perf_counter()
        audio_seconds = function()
        wall = time.perf_counter() - started
        if best is None or wall < best[1]:
            best = (audio_seconds, wall)
    return best


def decode(path):
    data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    return len(mono) / rate


def decode_resample(path):
    y, _ = librosa.load(path, sr=TARGET, mono=True)
    return len(y) / TARGET


def full(path):
    y, _ = librosa.load(path, sr=TARGET, mono=True)
    starts = list(range(0, max(len(y) - WINDOW, 0) + 1, WINDOW))
    if len(y) > WINDOW and (len(y) - WINDOW) % WINDOW:
        starts.append(len(y) - WINDOW)
    for start in starts:
        window = y[start : start + WINDOW]
        mel = librosa.feature.melspectrogram(y=window, sr=TARGET, n_fft=2048, hop_length=1259, n_mels=128)
        librosa.power_to_db(mel, ref=np.max, top_db=80.0)
    return len(y) / TARGET


def main():
    repeat = int(sys.argv[1])
    for path in sys.argv[2:]:
        for stage, function in (("decode", decode), ("decode+resample", decode_resample),
                                ("decode+resample+logmel", full)):
            audio_seconds, wall = best_of(repeat, lambda: function(path))
            report(stage, path, audio_seconds, wall)


if __name__ == "__main__":
    main()
