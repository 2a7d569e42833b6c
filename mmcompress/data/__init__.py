"""Data sources by name -> Dataset with train / calibration / eval splits that never overlap."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmcompress.data.base import Dataset, Split
from mmcompress.errors import RecipeError

SPLIT_ORDER = ["eval", "calibration", "train"]  # eval first: its content does not change when others grow


def _generated(generate, stream: int, cfg, seed: int) -> dict[str, Split]:
    """The splits of a synthesised source: one generator seed per split (distinct streams), so a split's content
    depends only on (seed, its size)."""
    sizes = cfg.splits.model_dump()
    return {name: generate(sizes[name], seed=seed, stream=stream, part=k) for k, name in enumerate(SPLIT_ORDER)}


def _shapes(cfg, seed: int, base: Path) -> Dataset:
    from mmcompress.data import shapes

    splits = _generated(shapes.generate, shapes.STREAM_SPLITS, cfg, seed)
    return Dataset("shapes", "image-text", splits, shapes.class_names(), shapes.class_prompts(cfg.prompts.templates),
                   {"templates": cfg.prompts.templates or shapes.TEMPLATES})


def _shapes_vqa(cfg, seed: int, base: Path) -> Dataset:
    from mmcompress.data import shapes, shapes_vqa

    splits = _generated(shapes_vqa.generate, shapes.STREAM_SPLITS, cfg, seed)
    return Dataset("shapes-vqa", "image-question", splits, list(shapes_vqa.ANSWERS), [], {"templates": None})


def _sounds(cfg, seed: int, base: Path) -> Dataset:
    from mmcompress.data import sounds

    splits = _generated(sounds.generate, sounds.STREAM_SPLITS, cfg, seed)
    return Dataset("sounds", "audio-text", splits, sounds.class_names(), sounds.class_prompts(cfg.prompts.templates),
                   {"templates": cfg.prompts.templates or sounds.TEMPLATES})


def _check_sizes(n: int, sizes: dict[str, int], what: str, where: str = "data.splits") -> None:
    need = sum(sizes.values())
    if need > n:
        raise RecipeError(f"{where}: {what} has {n} rows but the splits ask for {need} "
                          f"({', '.join(f'{k} {v}' for k, v in sizes.items() if v)}); make them smaller")


def split_rows(full: Split, sizes: dict[str, int], seed: int, what: str) -> dict[str, Split]:
    """Seeded, disjoint splits drawn from one pool of rows."""
    _check_sizes(len(full), sizes, what)
    order = np.random.default_rng(seed).permutation(len(full))
    out, start = {}, 0
    for name in SPLIT_ORDER:
        out[name] = full.select(order[start:start + sizes[name]])
        start += sizes[name]
    return out


def _digits(cfg, seed: int, base: Path) -> Dataset:
    from mmcompress.data import digits

    splits = split_rows(digits.load_all(), cfg.splits.model_dump(), seed, "digits")
    return Dataset("digits", "image-text", splits, digits.NAMES, digits.class_prompts(cfg.prompts.templates),
                   {"templates": cfg.prompts.templates or digits.TEMPLATES})


def _classes(cfg, base: Path, labels: list[str] | None, where: str = "data", origin: list[str] | None = None,
             kind: str | None = None, file_where: str = "data.classes_file") -> list[str]:
    from mmcompress.data.files import MATCH_CLASSES

    if cfg.classes_file:
        path = base / cfg.classes_file
        if not path.is_file():
            raise RecipeError(f"{file_where}: {path} does not exist; set data.classes_file to a JSON list of class "
                              f"names (relative to the recipe)")
        try:
            classes = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise RecipeError(f"{file_where}: {path}: cannot read the classes file ({e}); it must be a JSON list of "
                              f"class names") from None
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise RecipeError(f"{file_where}: {path}: the classes file must be a JSON list of class names")
        where = file_where  # labels missing from it: the file the key names is what to fix
    elif labels and set(labels) <= set(MATCH_CLASSES) and kind == "match":
        classes = list(MATCH_CLASSES)  # fixed order: id 1 is a match
    else:
        classes = list(cfg.classes or sorted(set(labels or [])))
    unknown = sorted(set(labels or []) - set(classes))
    if unknown:
        line = f"{origin[labels.index(unknown[0])]}: " if origin else ""
        raise RecipeError(f"{line}{where}: labels {unknown[:5]} are not among the classes {classes[:10]}; add them "
                          f"to {'the classes file' if cfg.classes_file else 'data.classes'} or fix the labels")
    return classes


AUDIO_TEMPLATE = "the sound of a {label}"  # audio data's default prompt ('a photo of a ...' for images)


def _read_files(cfg, base: Path, where=None):
    """-> (path, templates, rows, classes): every line parsed and every image header read, classes checked.
    where(*key path) -> 'recipe.yaml:12 data.classes' for errors about recipe keys."""
    from mmcompress.data import files

    path = base / cfg.path
    templates = cfg.prompts.templates or [AUDIO_TEMPLATE if cfg.source == "audiofolder" else "a photo of a {label}"]
    at = where("data", "path") if where else "data.path"
    if cfg.source == "jsonl":
        rows = files.read_jsonl(path, at)
        if rows.kind == "audio" and not cfg.prompts.templates:
            templates = [AUDIO_TEMPLATE]
    elif cfg.source == "audiofolder":
        from mmcompress.data import audio_files

        rows = audio_files.read_folder(path, templates[0], at)
    else:
        rows = files.read_imagefolder(path, templates[0], at)
    return path, templates, rows, _classes(cfg, base, rows.labels, where("data", "classes") if where else "data",
                                           rows.origin, rows.kind,
                                           where("data", "classes_file") if where else "data.classes_file")


# a file's kind of lines -> the Dataset kind the checks see
KIND_OF_ROWS = {"image": "image-text", "audio": "audio-text", "question": "image-question", "match": "image-text-match",
                "text": "text"}
FILE_SOURCES = ("jsonl", "imagefolder", "audiofolder")


def _files(cfg, seed: int, base: Path) -> Dataset:
    from mmcompress.data import files

    path, templates, rows, classes = _read_files(cfg, base)
    index = {c: i for i, c in enumerate(classes)}
    labels = None if rows.labels is None else np.array([index[x] for x in rows.labels], dtype=np.int64)
    full = Split(list(range(len(rows))) if rows.images is not None else None, rows.texts, labels, rows.pairs,
                 audio=list(range(len(rows))) if rows.audio is not None else None)
    splits = split_rows(full, cfg.splits.model_dump(), seed, str(path))
    if rows.images is not None:  # decode only the rows the splits use
        for s in splits.values():
            idx = s.images
            s.origin = [rows.origin[i] for i in idx]  # file:line of each row, for errors found later
            s.images = files.decode([rows.images[i] for i in idx], s.origin)
    if rows.audio is not None:  # the same for clips: rows.audio holds their paths until now
        from mmcompress.data import audio_files

        for s in splits.values():
            s.origin = [rows.origin[i] for i in s.audio]
            s.audio = audio_files.decode([rows.audio[i] for i in s.audio], s.origin)
    prompts = ([[t.format(label=c) for t in templates] for c in classes]
               if classes and rows.kind in ("image", "text", "audio") else [])
    kind = KIND_OF_ROWS[rows.kind]
    return Dataset(cfg.source, kind, splits, classes, prompts, {"templates": templates, "path": str(path)})


SOURCES = {"shapes": _shapes, "shapes-vqa": _shapes_vqa, "digits": _digits, "sounds": _sounds, "jsonl": _files,
           "imagefolder": _files, "audiofolder": _files}


def load_data(cfg, seed: int, base: Path | str = ".") -> Dataset:
    """cfg: recipe.DataConfig; relative paths are resolved against `base` (the recipe's folder)."""
    return SOURCES[cfg.source](cfg, seed, Path(base))


def check_data(cfg, base: Path | str = ".", where=None) -> tuple[Dataset, Split] | None:
    """What `validate` can check without decoding: files, lines, keys, image headers, classes, split sizes.
    where(*key path) -> 'recipe.yaml:12 data.splits' (Recipe.where) so errors name the recipe line.
    -> for file sources, the data (no splits) and every row as one Split (images: their paths, not decoded), for
    the checks against the teacher (checks.evaluate.check_fits); None for the built-in sources."""
    if cfg.source not in FILE_SOURCES:
        return None
    path, _, rows, classes = _read_files(cfg, Path(base), where)
    _check_sizes(len(rows), cfg.splits.model_dump(), str(path), where("data", "splits") if where else "data.splits")
    index = {c: i for i, c in enumerate(classes)}
    labels = None if rows.labels is None else np.array([index[x] for x in rows.labels], dtype=np.int64)
    every = Split(rows.images, rows.texts, labels, rows.pairs, rows.origin, rows.audio)
    return Dataset(cfg.source, KIND_OF_ROWS[rows.kind], {}, classes, [], {"path": str(path)}), every
