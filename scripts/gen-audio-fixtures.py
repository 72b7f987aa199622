#!/usr/bin/env python3
"""Generate the small audio fixtures under fixtures/audio/ used by the audio front-end tests.

Rerunnable by anyone: fixed random seed, only numpy + soundfile from PyPI
(see scripts/requirements-dev.txt) and the Debian `lame` encoder for MP3
(`apt-get install -y lame`). Run from the repository root:

    python3 scripts/gen-audio-fixtures.py

The content is a sequence of distinct 5-second "units" of whale-like sounds
(up-sweeps, down-sweeps, pulsed grunts, tonal moans with harmonics, background
noise only) so later clustering tests have structure to find. FIXTURE_UNITS
below documents which unit sits where in each file; the script also writes that ground truth to
fixtures/audio/units.json. Float WAVs differ byte-wise between runs only in libsndfile's PEAK
chunk timestamp.
"""

import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import soundfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fixtures", "audio")
UNIT_SECONDS = 5.0
SEED = 20260524


def fade(signal, rate, seconds=0.05):
    n = min(len(signal) // 2, int(rate * seconds))
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))
    signal[:n] *= ramp
    signal[-n:] *= ramp[::-1]
    return signal


def sweep(rate, seconds, f_start, f_end, harmonics=(1.0, 0.4, 0.15)):
    t = np.arange(int(rate * seconds)) / rate
    # exponential sweep: instantaneous frequency f_start * (f_end/f_start)^(t/T)
    k = np.log(f_end / f_start) / seconds
    phase = 2 * np.pi * f_start * (np.exp(k * t) - 1.0) / k
    out = np.zeros_like(t)
    for order, amplitude in enumerate(harmonics, start=1):
        out += amplitude * np.sin(order * phase)
    return fade(out, rate)


def unit_up_sweep(rate, rng):
    call = sweep(rate, 2.5, 180.0, 900.0)
    return place(rate, rng, call, 1.0)


def unit_down_sweep(rate, rng):
    call = sweep(rate, 3.0, 1400.0, 250.0, harmonics=(1.0, 0.3))
    return place(rate, rng, call, 0.8)


def unit_pulsed_grunts(rate, rng):
    n = int(rate * UNIT_SECONDS)
    out = np.zeros(n)
    t = np.arange(int(rate * 0.18)) / rate
    for start in np.arange(0.4, 4.6, 0.55):
        f0 = 90.0 + 30.0 * rng.random()
        pulse = np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(2 * np.pi * 2 * f0 * t)
        pulse *= np.exp(-t / 0.05)
        i = int(start * rate)
        out[i : i + len(pulse)] += pulse
    return out + noise(rate, rng, 0.01)


def unit_tonal_moan(rate, rng):
    seconds = 3.6
    t = np.arange(int(rate * seconds)) / rate
    f0 = 220.0 + 12.0 * np.sin(2 * np.pi * 0.8 * t)  # slow vibrato
    phase = 2 * np.pi * np.cumsum(f0) / rate
    call = np.sin(phase) + 0.6 * np.sin(2 * phase) + 0.35 * np.sin(3 * phase) + 0.2 * np.sin(4 * phase)
    return place(rate, rng, fade(call, rate, 0.3), 0.7)


def unit_background_noise(rate, rng):
    return noise(rate, rng, 0.05)


def noise(rate, rng, amplitude):
    # brown-ish ocean noise: integrated white noise, high-passed by removing the running mean
    n = int(rate * UNIT_SECONDS)
    white = rng.standard_normal(n)
    brown = np.cumsum(white)
    brown -= np.convolve(brown, np.ones(256) / 256, mode="same")
    brown /= np.max(np.abs(brown)) + 1e-12
    return amplitude * brown + 0.3 * amplitude * white / 3.0


def place(rate, rng, call, start_seconds):
    out = noise(rate, rng, 0.01)
    i = int(start_seconds * rate)
    out[i : i + len(call)] += call
    return out


UNITS = {
    "up": unit_up_sweep,
    "down": unit_down_sweep,
    "grunts": unit_pulsed_grunts,
    "moan": unit_tonal_moan,
    "noise": unit_background_noise,
}


def song(rate, unit_names, seed, peak=0.5):
    rng = np.random.default_rng(seed)
    audio = np.concatenate([UNITS[name](rate, rng) for name in unit_names])
    return peak * audio / np.max(np.abs(audio))


def stereo(mono, rng):
    # second channel: same content, slightly delayed and quieter (two hydrophone elements)
    delayed = np.concatenate([np.zeros(7), mono[:-7]])
    return np.stack([mono, 0.6 * delayed + 0.002 * rng.standard_normal(len(mono))], axis=1)


# file name -> (sample rate, units, channels, writer settings)
FIXTURE_UNITS = {
    "wav_pcm16_mono_16k.wav": (16000, ["up", "down", "grunts", "moan"], 1, ("WAV", "PCM_16")),
    "wav_pcm24_mono_8k.wav": (8000, ["moan", "up"], 1, ("WAV", "PCM_24")),
    "wav_pcm32_mono_8k.wav": (8000, ["grunts", "down"], 1, ("WAV", "PCM_32")),
    "wav_u8_mono_8k.wav": (8000, ["down", "grunts"], 1, ("WAV", "PCM_U8")),
    "wav_f32_mono_8k.wav": (8000, ["noise", "moan"], 1, ("WAV", "FLOAT")),
    "wav_f64_mono_8k.wav": (8000, ["up"], 1, ("WAV", "DOUBLE")),
    "wav_pcm16_stereo_11k.wav": (11025, ["grunts", "moan"], 2, ("WAV", "PCM_16")),
    "wav_extensible_pcm16_stereo_8k.wav": (8000, ["down", "up"], 2, ("WAVEX", "PCM_16")),
    "flac16_mono_16k.flac": (16000, ["moan", "grunts", "up"], 1, ("FLAC", "PCM_16")),
    "flac24_mono_22k.flac": (22050, ["down", "moan"], 1, ("FLAC", "PCM_24")),
}

# MP3s: name -> (sample rate, units, channels, lame arguments)
MP3_FIXTURES = {
    "mp3_cbr_stereo_44k.mp3": (44100, ["up", "grunts", "moan"], 2, ["-b", "128", "--cbr", "--resample", "44.1"]),
    "mp3_vbr_id3_mono_22k.mp3": (
        22050,
        ["down", "moan", "noise"],
        1,
        ["-V", "5", "--vbr-new", "--add-id3v2", "--tt", "humpback fixture", "--ta", "humpback tests"],
    ),
}


def write_mp3(path, rate, audio, lame_args):
    lame = shutil.which("lame")
    if lame is None:
        sys.exit("lame not found: install it with `apt-get install -y lame`")
    wav_path = path + ".tmp.wav"
    soundfile.write(wav_path, audio, rate, subtype="PCM_16")
    try:
        subprocess.run([lame, "--quiet", "--noreplaygain", *lame_args, wav_path, path], check=True)
    finally:
        os.remove(wav_path)


def wav_header(channels, rate, bits, data_bytes, format_tag=1):
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, rate * block_align, block_align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_bytes)
    return b"RIFF" + struct.pack("<I", len(body) + data_bytes) + body


def main():
    os.makedirs(OUT, exist_ok=True)
    seed = SEED
    for name, (rate, units, channels, (container, subtype)) in FIXTURE_UNITS.items():
        seed += 1
        audio = song(rate, units, seed)
        if channels == 2:
            audio = stereo(audio, np.random.default_rng(seed + 1000))
        soundfile.write(os.path.join(OUT, name), audio.astype(np.float64), rate, subtype=subtype, format=container)

    for name, (rate, units, channels, lame_args) in MP3_FIXTURES.items():
        seed += 1
        audio = song(rate, units, seed)
        if channels == 2:
            audio = stereo(audio, np.random.default_rng(seed + 1000))
        write_mp3(os.path.join(OUT, name), rate, audio, lame_args)

    # Truncated MP3: the CBR file cut at 60 % of its bytes, in the middle of a frame
    # (a recorder that lost power). The good part must stay usable.
    with open(os.path.join(OUT, "mp3_cbr_stereo_44k.mp3"), "rb") as f:
        data = f.read()
    with open(os.path.join(OUT, "truncated.mp3"), "wb") as f:
        f.write(data[: int(len(data) * 0.6) + 37])

    # Truncated WAV: header says 10 s of 16-bit mono 8 kHz, file holds 4.5 s and half a sample.
    rng = np.random.default_rng(seed + 1)
    pcm = (song(8000, ["up"], seed + 2)[: int(8000 * 4.5)] * 32767).astype("<i2").tobytes() + b"\x01"
    with open(os.path.join(OUT, "truncated.wav"), "wb") as f:
        f.write(wav_header(1, 8000, 16, 8000 * 2 * 10) + pcm)

    # Corrupt MP3: valid start, then a run of random bytes in the middle, then valid frames again.
    corrupt = bytearray(data)
    middle = len(corrupt) // 2
    corrupt[middle : middle + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    with open(os.path.join(OUT, "corrupt_middle.mp3"), "wb") as f:
        f.write(bytes(corrupt))

    # Broken headers and things that are not audio at all.
    with open(os.path.join(OUT, "empty.wav"), "wb"):
        pass
    with open(os.path.join(OUT, "not_audio.wav"), "wb") as f:
        f.write(b"station,date,depth_m\nPt Reyes,2024-01-02,120\n" * 40)
    with open(os.path.join(OUT, "corrupt_header.wav"), "wb") as f:
        f.write(b"RIFF\xff\xff\x00\x00WAVEfmt " + rng.integers(0, 256, 600, dtype=np.uint8).tobytes())
    with open(os.path.join(OUT, "zero_channels.wav"), "wb") as f:
        f.write(wav_header(0, 16000, 16, 3200) + bytes(3200))
    with open(os.path.join(OUT, "absurd_rate.wav"), "wb") as f:
        f.write(wav_header(1, 200, 16, 4000) + bytes(4000))

    # Ground truth for later clustering tests: which call type sits in which 5 s unit of each file.
    labels = {
        name: [{"start_seconds": index * UNIT_SECONDS, "unit": unit} for index, unit in enumerate(units)]
        for name, (_, units, _, _) in {**FIXTURE_UNITS, **MP3_FIXTURES}.items()
    }
    with open(os.path.join(OUT, "units.json"), "w") as f:
        json.dump(labels, f, indent=1)
        f.write("\n")

    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} fixtures to {OUT}, {total / 1e6:.2f} MB in total")


if __name__ == "__main__":
    main()
