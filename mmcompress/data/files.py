"""Users' own data: JSONL files and image folders. Errors name the file and line and say how to fix them.

JSONL, one object per line, all lines of one kind:
  image lines  {"image": "imgs/0001.png", "caption": "a photo of a cat", "label": "cat"}
               (label optional; caption too where no check reads it: a teacher without a text tower)
  text lines   {"text": "how do I reset it?", "pair": "Hold the button for 5 s.", "label": "support"}
               (pair and label optional)
  question lines {"image": "imgs/0001.png", "question": "what colour is the shape ?", "answer": "red"}
  match lines    {"image": "imgs/0001.png", "text": "a small red circle", "match": true}
               (image-text matching teachers: `caption` may stand for `text`; match: true/false, 1/0, yes/no)
               (for fusion teachers; `text` may stand for `question`, `label` for `answer`)
  audio lines  {"audio": "clips/0001.wav", "caption": "a dog barking", "label": "dog"} (data/audio_files.py)
Image and audio paths are relative to the JSONL file. An image folder is root/<class name>/<image files>.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmcompress.errors import RecipeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
IMAGE_KEYS, TEXT_KEYS = {"image", "caption", "label"}, {"text", "pair", "label"}
QUESTION_KEYS = {"image", "question", "answer"}
MATCH_KEYS = {"image", "text", "caption", "match"}
MATCH_CLASSES = ["no match", "match"]  # a match line's label id is 1 when the text describes the image
_TRUE, _FALSE = {True, 1, "1", "true", "yes", "match"}, {False, 0, "0", "false", "no", "no match"}


@dataclass
class Rows:
    """What a file source holds before splitting. images: paths (decoded later); labels: class names or None."""

    kind: str                      # 'image', 'audio', 'text', 'question' or 'match'
    images: list[Path] | None
    texts: list[str | None]        # image lines without captions: None (checks.evaluate.check_fits says who needs them)
    pairs: list[str] | None
    labels: list[str] | None
    origin: list[str]              # 'file:line' per row, for errors found later (decoding)
    audio: list[Path] | None = None  # audio lines: the clips' paths (decoded later)

    def __len__(self) -> int:
        return len(self.texts)


def _check_image(path: Path, where: str, shown: str) -> None:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise RecipeError(f"{where}: image '{shown}' not found (looked for {path}); image paths are relative to "
                          f"the JSONL file")
    try:
        with Image.open(path) as im:
            im.verify()  # reads the header and checks structure, without decoding all pixels
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise RecipeError(f"{where}: image '{shown}' cannot be decoded ({e}); replace the file or remove the line") from None


def _missing(path: Path, where: str, what: str) -> RecipeError:
    """data.path names nothing usable: the recipe's line is the one to fix. where: 'recipe.yaml:7 data.path'."""
    state = "does not exist" if not path.exists() else f"is a {'folder' if path.is_dir() else 'file'}"
    return RecipeError(f"{where}: {path} {state}; set data.path to {what} (relative to the recipe; given with "
                       f"--set, relative to where you run)")


def read_jsonl(path: Path, where: str = "data.path") -> Rows:
    """where: how errors name the recipe key ('recipe.yaml:7 data.path')."""
    if not path.is_file():
        raise _missing(path, where, "a JSONL file with one JSON object per line")
    from mmcompress.data import audio_files

    kind = None
    images, texts, pairs, labels, origin, clips = [], [], [], [], [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecipeError(f"{where}: not JSON ({e.msg} at column {e.colno}); each line must be one object "
                                  f'like {{"image": "a.png", "caption": "..."}} or {{"text": "..."}}') from None
            if not isinstance(obj, dict):
                raise RecipeError(f"{where}: a line must be a JSON object, got {type(obj).__name__}")
            if "image" in obj and "match" in obj:
                this = "match"  # image-text matching: does the text describe the image?
            elif "image" in obj and ("question" in obj or "answer" in obj or ("text" in obj and "caption" not in obj)):
                # a question line; `text` and `label` are accepted for `question` and `answer`
                obj = {"question" if k == "text" else "answer" if k == "label" else k: v for k, v in obj.items()}
                this = "question"
            else:
                this = "image" if "image" in obj else "audio" if "audio" in obj else "text" if "text" in obj else None
            if this is None:
                raise RecipeError(f"{where}: missing key 'image', 'audio' or 'text'; image lines need \"image\" "
                                  f"(and \"caption\" for a teacher with a text tower), audio lines \"audio\", text "
                                  f"lines \"text\"")
            kind = kind or this
            if this != kind:
                raise RecipeError(f"{where}: a {this} line in a file of {kind} lines; keep one kind per file")
            allowed = {"image": IMAGE_KEYS, "text": TEXT_KEYS, "question": QUESTION_KEYS, "match": MATCH_KEYS,
                       "audio": audio_files.AUDIO_KEYS}[kind]
            unknown = set(obj) - allowed
            if unknown:
                raise RecipeError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; {kind} lines take "
                                  f"{', '.join(sorted(allowed))}")
            if kind == "match":
                text = obj.get("text", obj.get("caption"))
                if text is None:
                    raise RecipeError(f"{where}: missing key 'text'; match lines need \"image\", \"text\" and "
                                      f"\"match\" (true when the text describes the image)")
                m = obj["match"].lower() if isinstance(obj["match"], str) else obj["match"]
                if m not in _TRUE and m not in _FALSE:
                    raise RecipeError(f"{where}: match {obj['match']!r} is not true/false (or 1/0, yes/no)")
                p = (path.parent / str(obj["image"])).resolve()
                _check_image(p, where, str(obj["image"]))
                images.append(p)
                texts.append(str(text))
                labels.append(MATCH_CLASSES[m in _TRUE])
                origin.append(where)
                continue
            if kind == "question":
                for key in ("question", "answer"):
                    if key not in obj:
                        raise RecipeError(f"{where}: missing key '{key}'; question lines need \"image\", "
                                          f"\"question\" and \"answer\"")
                p = (path.parent / str(obj["image"])).resolve()
                _check_image(p, where, str(obj["image"]))
                images.append(p)
                texts.append(str(obj["question"]))
                labels.append(str(obj["answer"]))
                origin.append(where)
                continue
            if kind in ("image", "audio"):
                p = (path.parent / str(obj[kind])).resolve()
                if kind == "image":
                    _check_image(p, where, str(obj["image"]))
                    images.append(p)
                else:
                    audio_files.check(p, where, str(obj["audio"]))
                    clips.append(p)
                # only a text tower reads captions (retrieval, its calibration): optional here, and refused
                # missing where that teacher reads them (checks.evaluate.check_fits)
                texts.append(str(obj["caption"]) if "caption" in obj else None)
            else:
                texts.append(str(obj["text"]))
                if "pair" in obj:
                    pairs.append(str(obj["pair"]))
            labels.append(None if "label" not in obj else str(obj["label"]))
            origin.append(where)
    if kind is None:
        raise RecipeError(f"{path}: the file has no lines; add one JSON object per line")
    _all_or_none(labels, origin, "label")
    if kind in ("image", "audio") and None in texts and any(t is not None for t in texts):
        i, j = texts.index(None), next(k for k, t in enumerate(texts) if t is not None)
        raise RecipeError(f"{origin[i]}: missing key 'caption' (line {origin[j].rsplit(':', 1)[-1]} has one); "
                          f"give every {kind} line a caption, or none (a teacher without a text tower reads none)")
    if pairs and len(pairs) != len(texts):
        raise RecipeError(f"{path}: some text lines have \"pair\" and some do not; give every line a pair or none")
    return Rows(kind, images if kind in ("image", "question", "match") else None, texts, pairs or None,
                labels if labels[0] is not None else None, origin, clips if kind == "audio" else None)


def _all_or_none(values: list, origin: list[str], key: str) -> None:
    have = [v is not None for v in values]
    if any(have) and not all(have):
        first = origin[have.index(False)] if have[0] else origin[have.index(True)]
        raise RecipeError(f"{first}: '{key}' is given on some lines and not on others; give it on every line or none")


def class_folders(root: Path, source: str, suffixes, what: str, check, where: str) -> tuple[list[Path], list[str]]:
    """root/<class>/<files> -> (files, class of each), every file passed through check(path, origin, name);
    RecipeError naming the folder when root, its class folders or one's files are missing. source: the
    data.source (imagefolder); what: the files (images)."""
    if not root.is_dir():
        raise _missing(root, where, f"a folder with one sub-folder of {what} per class ({source})")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise RecipeError(f"{root}: no class folders; put the {what} of each class in root/<class name>/")
    paths, labels = [], []
    for c in classes:
        files = sorted(p for p in (root / c).iterdir() if p.suffix.lower() in suffixes)
        if not files:
            raise RecipeError(f"{root / c}: no {what} ({', '.join(sorted(suffixes))}); remove the folder or "
                              f"add {what}")
        for p in files:
            check(p, str(p), p.name)
            paths.append(p)
            labels.append(c)
    return paths, labels


def read_imagefolder(root: Path, template: str, where: str = "data.path") -> Rows:
    images, labels = class_folders(root, "imagefolder", IMAGE_SUFFIXES, "images", _check_image, where)
    return Rows("image", images, [template.format(label=c) for c in labels], None, labels, [str(p) for p in images])


def decode(paths: list[Path], origin: list[str]) -> list[np.ndarray]:
    from PIL import Image

    out = []
    for p, where in zip(paths, origin):
        try:
            with Image.open(p) as im:
                out.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        except OSError as e:
            raise RecipeError(f"{where}: image '{p}' cannot be decoded ({e}); replace the file or remove the line") from None
    return out
