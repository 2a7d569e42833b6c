"""Users' audio: files decoded with soundfile (WAV, FLAC, OGG/Vorbis, MP3 where libsndfile has it), checked at
read time so that a bad file is an error naming its file and line before any stage runs.

JSONL audio lines: {"audio": "clips/0001.wav", "caption": "a dog barking", "label": "dog"} (paths relative to
the JSONL file; caption optional where no text tower reads it, label optional). An audio folder is
root/<class name>/<audio files>. Clips are mixed down to mono here and resampled to the teacher's rate by its
AudioPreprocess (soxr).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mmcompress.errors import RecipeError
from mmcompress.models.audio_preprocess import audio_backend

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif"}
AUDIO_KEYS = {"audio", "caption", "label"}


def check(path: Path, where: str, shown: str) -> None:
    """The file exists, soundfile reads its header, and it holds at least one sample."""
    soundfile = audio_backend("soundfile", "reading audio files")

    if not path.is_file():
        raise RecipeError(f"{where}: audio '{shown}' not found (looked for {path}); audio paths are relative to "
                          f"the JSONL file")
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as e:
        raise RecipeError(f"{where}: audio '{shown}' cannot be decoded ({_first(e)}); it must be a sound file "
                          f"soundfile reads (WAV, FLAC, OGG); replace the file or remove the line") from None
    if info.frames == 0:
        raise RecipeError(f"{where}: audio '{shown}' has no samples (a zero-length clip); replace the file or remove "
                          f"the line")
    if info.samplerate <= 0:
        raise RecipeError(f"{where}: audio '{shown}' says its sample rate is {info.samplerate} Hz, which cannot be "
                          f"resampled; re-encode the file")


def _first(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def decode(paths: list[Path], origin: list[str]) -> list[tuple[np.ndarray, int]]:
    """-> [(mono float32 waveform, sample rate)] in the order given; origin: 'file:line' of each, for errors."""
    soundfile = audio_backend("soundfile", "reading audio files")

    out = []
    for p, where in zip(paths, origin):
        try:
            wave, rate = soundfile.read(str(p), dtype="float32", always_2d=True)  # (S, channels)
        except (soundfile.LibsndfileError, RuntimeError, OSError) as e:
            raise RecipeError(f"{where}: audio '{p}' cannot be decoded ({_first(e)}); replace the file or remove "
                              f"the line") from None
        if len(wave) == 0:
            raise RecipeError(f"{where}: audio '{p}' has no samples (a zero-length clip); replace the file or remove "
                              f"the line")
        out.append((np.ascontiguousarray(wave.mean(1)), int(rate)))
    return out


def read_folder(root: Path, template: str, where: str = "data.path"):
    """root/<class>/<clips> -> files.Rows of kind 'audio' (captions from the first prompt template)."""
    from mmcompress.data.files import Rows, class_folders

    clips, labels = class_folders(root, "audiofolder", AUDIO_SUFFIXES, "audio files", check, where)
    return Rows("audio", None, [template.format(label=c) for c in labels], None, labels, [str(p) for p in clips],
                audio=clips)
