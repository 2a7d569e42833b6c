"""Audio clips -> a model's input features, computed on the host by the teacher's own transformers feature
extractor (ClapFeatureExtractor, ASTFeatureExtractor, WhisperFeatureExtractor, Wav2Vec2FeatureExtractor).

Clips arrive as (mono float32 waveform, its sample rate); any other rate is resampled to the extractor's with
soxr (its HQ setting). What the extractor does with a clip longer than its window (cut, random crop) or
shorter (zero padding, repeat padding) is the extractor's own behaviour, described in `long_clips` /
`short_clips` and written into the manifest and the report.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def audio_backend(name: str, why: str):
    """soundfile or soxr (the `audio` extra), or exit 4 saying how to install them."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        from mmcompress.errors import BackendMissing

        raise BackendMissing(f"{name} is not installed (needed for {why}); install the audio extra: "
                             f"pip install 'mmcompress[audio]'") from None


@dataclass
class AudioPreprocess:
    """extractor: a transformers SequenceFeatureExtractor. input_name: the features the tower takes
    ('input_features' log-mels for CLAP/Whisper, 'input_values' for AST's fbank frames or wav2vec2's raw samples).
    window_s: the longest stretch of a clip the model sees (None: any length). seed: ClapFeatureExtractor crops
    long clips at a random offset (numpy's global generator); it is seeded for each call so that the teacher and
    every artifact, in every run, see the same crop."""

    extractor: Any
    input_name: str
    window_s: float | None
    long_clips: str
    short_clips: str
    seed: int = 0
    min_samples: int | None = None  # models of any length: the fewest samples (at sampling_rate) they can take

    def check_lengths(self, split) -> None:
        """Clips shorter than the model can take (min_samples: a wav2vec2 conv encoder's receptive field) are
        refused naming the first one's file:line (or split row): the model would fail on it alone."""
        if not self.min_samples or not split.audio:
            return
        short = [i for i, (w, sr) in enumerate(split.audio) if len(w) * self.sampling_rate / sr < self.min_samples]
        if short:
            from mmcompress.errors import RecipeError

            i = short[0]
            w, sr = split.audio[i]
            where = split.origin[i] if split.origin else f"data: row {i}"
            need = self.min_samples / self.sampling_rate * 1e3
            raise RecipeError(f"{where}: the clip is {len(w) / sr * 1e3:.1f} ms long ({len(w)} samples at {sr} Hz); "
                              f"the teacher's convolutional feature encoder needs at least {need:.1f} ms "
                              f"({self.min_samples} samples at {self.sampling_rate} Hz) ({len(short)} clip(s) "
                              f"shorter); remove those lines or pad the clips")

    @property
    def sampling_rate(self) -> int:
        return int(self.extractor.sampling_rate)

    def resample(self, wave: np.ndarray, rate: int) -> np.ndarray:
        if rate == self.sampling_rate:
            return wave
        soxr = audio_backend("soxr", "resampling audio")
        return soxr.resample(wave, rate, self.sampling_rate, quality="HQ").astype(np.float32)

    def __call__(self, clips) -> dict[str, np.ndarray]:
        """clips: list of (waveform (S,) float32, sample rate) -> {input_name: (N, ...) float32}."""
        waves = [self.resample(np.asarray(w, np.float32), int(sr)) for w, sr in clips]
        state = np.random.get_state()
        np.random.seed(self.seed)
        # no window: clips keep their lengths, padded to the longest of the call, with the mask saying which
        # samples are real (int64, as text masks); runs then cut each batch to its own longest clip
        extra = {} if self.window_s else {"padding": "longest", "return_attention_mask": True}
        try:
            out = self.extractor(waves, sampling_rate=self.sampling_rate, return_tensors="np", **extra)
        finally:
            np.random.set_state(state)
        feeds = {self.input_name: np.ascontiguousarray(np.asarray(out[self.input_name], dtype=np.float32))}
        if not self.window_s:
            feeds["attention_mask"] = np.ascontiguousarray(np.asarray(out["attention_mask"], dtype=np.int64))
        return feeds

    def clips(self, seconds: np.ndarray) -> dict:
        """The clips' lengths against the window, and what the extractor did with them (report, manifests)."""
        w = self.window_s
        longer, shorter = (int((seconds > w).sum()), int((seconds < w).sum())) if w else (0, 0)
        return {"n": int(len(seconds)), "seconds_min": round(float(seconds.min()), 3),
                "seconds_median": round(float(np.median(seconds)), 3), "seconds_max": round(float(seconds.max()), 3),
                "window_s": w, "longer_than_window": longer, "shorter_than_window": shorter,
                "longer_clips": self.long_clips, "shorter_clips": self.short_clips,
                "graph_input": "the window (every clip padded or cut to it)" if w else "each clip's own length"}

    def to_dict(self) -> dict:
        settings = {k: v for k, v in self.extractor.to_dict().items()
                    if isinstance(v, (int, float, str, bool)) or v is None}  # not the mel filter bank arrays
        return {"extractor": type(self.extractor).__name__, "sampling_rate": self.sampling_rate,
                "input": self.input_name, "window_s": self.window_s, "long_clips": self.long_clips,
                "short_clips": self.short_clips, "resampler": "soxr HQ", "settings": settings}


def for_extractor(extractor, seed: int = 0) -> AudioPreprocess:
    """The AudioPreprocess of a transformers feature extractor, with its window and what it does with clips
    longer and shorter than it, read from its settings."""
    kind = type(extractor).__name__
    sr = int(extractor.sampling_rate)
    if kind == "ClapFeatureExtractor":
        w = float(extractor.max_length_s)
        trunc, pad = extractor.truncation, extractor.padding
        long = (f"a {w:g} s crop at a random offset (ClapFeatureExtractor truncation rand_trunc; seeded, so every "
                f"run crops alike)" if trunc == "rand_trunc" else f"ClapFeatureExtractor truncation {trunc}")
        short = {"repeatpad": "repeated to fill the window, then zero-padded (repeatpad)",
                 "repeat": "repeated to fill the window (repeat)"}.get(pad, f"zero-padded to {w:g} s ({pad})")
        return AudioPreprocess(extractor, "input_features", w, long, short, seed)
    if kind == "ASTFeatureExtractor":
        frames = int(extractor.max_length)
        w = round(frames * 0.010 + 0.015, 3)  # Kaldi fbank: 25 ms frames every 10 ms -> frames * 10 ms + 15 ms
        return AudioPreprocess(extractor, "input_values", w,
                               f"cut to the first {frames} frames ({w:g} s; ASTFeatureExtractor max_length)",
                               f"zero frames appended up to {frames} frames", seed)
    if kind == "WhisperFeatureExtractor":
        w = float(extractor.n_samples) / sr
        return AudioPreprocess(extractor, "input_features", w, f"cut to the first {w:g} s (WhisperFeatureExtractor)",
                               f"zero-padded to {w:g} s", seed)
    if kind == "Wav2Vec2FeatureExtractor":
        return AudioPreprocess(extractor, "input_values", None, "taken whole: the model takes any length",
                               "padded with zeros to the longest clip of its batch (attention_mask 0 there)", seed)
    raise ValueError(f"{kind} is not an audio feature extractor mmcompress knows (ClapFeatureExtractor, "
                     f"ASTFeatureExtractor, WhisperFeatureExtractor, Wav2Vec2FeatureExtractor)")
