"""Procedural sounds: tones, rising and falling chirps, noise bursts and click trains at three pitches, two
lengths and two loudness levels, captioned from their parameters ("a short loud high rising chirp").

Zero-shot classes are sound x pitch (5 x 3 = 15); length and loudness are in the captions but not in the class
(as size is for the shapes). 16 kHz mono float32; every clip fits the 1 s window of the zoo teacher.
"""
from __future__ import annotations

import numpy as np

from mmcompress.data.base import Split

SAMPLE_RATE = 16000
SOUNDS = ["tone", "rising chirp", "falling chirp", "noise burst", "click train"]
PITCHES = {"low": (220.0, 420.0), "mid": (800.0, 1500.0), "high": (2400.0, 3800.0)}  # Hz: the pitch's centre
LENGTHS = {"short": (0.25, 0.45), "long": (0.6, 0.95)}  # seconds
LOUDNESS = {"quiet": (0.04, 0.1), "loud": (0.35, 0.8)}  # peak amplitude
TEMPLATES = [f"a {n} {q} {{pitch}} {{sound}}" for n in LENGTHS for q in LOUDNESS]
CLASSES = [(s, p) for s in SOUNDS for p in PITCHES]  # class id = sound_index * 3 + pitch_index
WORDS = ["a", *LENGTHS, *LOUDNESS, *PITCHES, "tone", "rising", "falling", "chirp", "noise", "burst", "click",
         "train", "sound", "of", "the", "recording"]


def class_names() -> list[str]:
    return [f"{p} {s}" for s, p in CLASSES]


def class_prompts(templates: list[str] | None = None) -> list[list[str]]:
    return [[t.format(pitch=p, sound=s) for t in templates or TEMPLATES] for s, p in CLASSES]


def captions() -> list[str]:
    """Every distinct caption (60): the text side of contrastive training."""
    return [t.format(pitch=p, sound=s) for s, p in CLASSES for t in TEMPLATES]


def _band_noise(rng, n: int, centre: float, rate: int) -> np.ndarray:
    """White noise kept to centre / 1.4 .. centre * 1.4 (a mask on its spectrum)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    spec[(f < centre / 1.4) | (f > centre * 1.4)] = 0
    return np.fft.irfft(spec, n)


def synthesize(sound: str, centre: float, seconds: float, peak: float, rng, rate: int = SAMPLE_RATE) -> np.ndarray:
    n = int(seconds * rate)
    t = np.arange(n) / rate
    if sound == "tone":
        x = np.sin(2 * np.pi * centre * t + rng.uniform(0, 2 * np.pi))
    elif sound in ("rising chirp", "falling chirp"):  # two octaves around the centre, exponential sweep
        f0, f1 = centre / 2, centre * 2  # high: at most 7.6 kHz, under the 8 kHz Nyquist limit
        if sound == "falling chirp":
            f0, f1 = f1, f0
        k = np.log(f1 / f0) / seconds
        x = np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    elif sound == "noise burst":
        x = _band_noise(rng, n, centre, rate)
    elif sound == "click train":  # 5 ms decaying clicks ringing at the centre, 8-20 per second
        x = np.zeros(n)
        ring = np.arange(int(0.005 * rate)) / rate
        click = np.sin(2 * np.pi * centre * ring) * np.exp(-ring / 0.0015)
        for start in np.arange(rng.uniform(0, 0.03), seconds - 0.005, 1 / rng.uniform(8, 20)):
            i = int(start * rate)
            x[i:i + len(click)] += click[: n - i]
    else:
        raise ValueError(f"unknown sound {sound!r}")
    fade = min(n // 2, int(0.01 * rate))  # 10 ms ramps: no clicks at the edges
    env = np.ones(n)
    env[:fade], env[n - fade:] = np.linspace(0, 1, fade), np.linspace(1, 0, fade)
    x = x * env / (np.abs(x).max() + 1e-9) * peak
    x += rng.standard_normal(n) * peak * rng.uniform(0.005, 0.03)  # a little background noise
    return x.astype(np.float32)


# independent streams as in data/shapes.py: the zoo teacher's clips and a recipe's splits never coincide
STREAM_OTHER, STREAM_TEACHER, STREAM_SPLITS = 0, 1, 2


def generate(n: int, seed: int, stream: int = STREAM_OTHER, part: int = 0) -> Split:
    """n seeded clips: Split.audio holds (waveform, 16000) pairs; the same arguments give the same samples on
    every machine."""
    rng = np.random.default_rng([stream, seed, part, 7])  # 7: not the shapes' sequence for the same seed
    clips, texts = [], []
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        si, pi = rng.integers(len(SOUNDS)), rng.integers(len(PITCHES))
        length, loud = list(LENGTHS)[rng.integers(2)], list(LOUDNESS)[rng.integers(2)]
        pitch = list(PITCHES)[pi]
        lo, hi = PITCHES[pitch]
        centre = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        seconds, peak = rng.uniform(*LENGTHS[length]), rng.uniform(*LOUDNESS[loud])
        clips.append((synthesize(SOUNDS[si], centre, seconds, peak, rng), SAMPLE_RATE))
        texts.append(f"a {length} {loud} {pitch} {SOUNDS[si]}")
        labels[i] = si * len(PITCHES) + pi
    return Split(None, texts, labels, audio=clips)
