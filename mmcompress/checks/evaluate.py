"""Runs the teacher and each artifact over the eval inputs once (cached per stage) and times them interleaved.

All text a check needs goes through the text tower in one pass, as named blocks of rows:
  captions  distinct eval captions (dual encoders: retrieval)
  texts     every eval text (text encoders)
  pairs     every eval pair text (text encoders with pairs: retrieval)
  prompts   class prompts, class-major, T templates per class (zero-shot / nearest class prompt)
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmcompress.data.base import Dataset
from mmcompress.models.bundle import Bundle


@dataclass
class EvalInputs:
    feeds: dict[str, dict[str, np.ndarray]]   # tower -> preprocessed eval inputs
    calib: dict[str, dict[str, np.ndarray]]   # tower -> preprocessed calibration inputs
    blocks: dict[str, tuple[int, int]]        # text rows: block name -> (start, stop)
    labels: np.ndarray | None                 # (N,) class ids of the eval rows
    caption_of_image: np.ndarray | None       # (N,) index into the 'captions' block
    n_classes: int
    n_templates: int
    key: str                                  # hash of the raw data and preprocessing: part of cache keys
    trim: dict[str, bool]                     # tower -> batches are cut to their longest row (text, 'longest';
                                              # audio of any length)
    clip_seconds: np.ndarray | None = None    # (N,) duration of each eval clip (audio data), before the window

    def text_lengths(self) -> np.ndarray:
        """(N,) token count of every eval text row (attention mask sums); empty without a text tower."""
        tower = "text" if "text" in self.feeds else "fusion" if "fusion" in self.feeds else None
        if tower is None:
            return np.zeros(0, dtype=np.int64)
        return self.feeds[tower]["attention_mask"].sum(1)


def _text_blocks(bundle: Bundle, data: Dataset, split: str = "eval") -> tuple[list[str], dict[str, tuple[int, int]], np.ndarray | None]:
    ev = data.split(split)
    texts: list[str] = []
    blocks: dict[str, tuple[int, int]] = {}

    def add(name: str, rows: list[str]) -> None:
        blocks[name] = (len(texts), len(texts) + len(rows))
        texts.extend(rows)

    caption_of_image = None
    if bundle.task == "dual-encoder":
        captions = list(dict.fromkeys(ev.texts))
        index = {c: i for i, c in enumerate(captions)}
        caption_of_image = np.array([index[t] for t in ev.texts], dtype=np.int64)
        add("captions", captions)
    elif bundle.task == "text-encoder":
        add("texts", list(ev.texts))
        if ev.pairs is not None:
            add("pairs", list(ev.pairs))
    if data.has_labels and "text" in bundle.towers:
        add("prompts", [p for prompts in data.class_prompts for p in prompts])
    return texts, blocks, caption_of_image


def prepare_inputs(bundle: Bundle, data: Dataset, split: str = "eval") -> EvalInputs:
    """The `split` rows (and the calibration rows) preprocessed for the checks. split='calibration' gives the
    precision planner its own rows to judge plans on, apart from the eval rows the checks report."""
    ev, cal = data.split(split), data.split("calibration")
    check_fits(bundle, data, (cal, ev))  # every row the checks use
    if bundle.audio_preprocess is not None:  # and every clip any stage feeds the model (train rows too)
        for rows in data.splits.values():
            bundle.audio_preprocess.check_lengths(rows)
    labels = ev.labels
    if bundle.is_fusion and bundle.task != "itm":
        labels = answer_ids(bundle.outputs, data.class_names, ev.labels, ev.origin)
    texts, blocks, caption_of_image = _text_blocks(bundle, data, split)
    feeds, calib = {}, {}
    h = hashlib.sha256()
    if "image" in bundle.towers:
        feeds["image"] = {"pixel_values": bundle.image_preprocess(ev.images)}
        if len(cal):
            calib["image"] = {"pixel_values": bundle.image_preprocess(cal.images)}
    if "audio" in bundle.towers:  # the teacher's feature extractor, on the host
        feeds["audio"] = bundle.audio_preprocess(ev.audio)
        if len(cal):
            calib["audio"] = bundle.audio_preprocess(cal.audio)
    if "text" in bundle.towers:
        feeds["text"] = bundle.text_preprocess(texts)
        if len(cal):
            calib["text"] = bundle.text_preprocess(cal.texts)
    if "fusion" in bundle.towers:  # image and question in one call
        for split_rows, into in ((ev, feeds), (cal, calib)):
            if len(split_rows):
                into["fusion"] = {"pixel_values": bundle.image_preprocess(split_rows.images),
                                  **bundle.text_preprocess(split_rows.texts)}
    for tower in feeds:  # every input of every tower, eval then calibration
        for d in (feeds[tower], calib.get(tower, {})):
            for k in sorted(d):
                h.update(d[k].tobytes())
    text_trims = bool(bundle.text_preprocess and bundle.text_preprocess.trims)
    # audio without a window (wav2vec2: any length) is cut per batch to its longest clip, as text to its longest row
    audio_trims = bool(bundle.audio_preprocess and not bundle.audio_preprocess.window_s)
    trim = {"image": False, "audio": audio_trims, "text": text_trims, "fusion": text_trims}
    h.update(repr((texts, blocks, None if labels is None else labels.tolist(), trim)).encode())
    seconds = None if ev.audio is None else np.array([len(w) / sr for w, sr in ev.audio])
    return EvalInputs(feeds=feeds, calib=calib, blocks=blocks, labels=labels, caption_of_image=caption_of_image,
                      n_classes=len(data.class_prompts), n_templates=len(data.class_prompts[0]) if data.class_prompts else 0,
                      key=h.hexdigest()[:16], trim={t: trim[t] for t in feeds}, clip_seconds=seconds)


# fusion task -> (the data kind it needs, what that is in words)
FUSION_DATA = {"vqa": ("image-question", "images with questions and answers (data.source shapes-vqa, or jsonl "
                                         "lines with image, question and answer)"),
               "classification": ("image-question", "images with texts and class labels (jsonl lines with image, "
                                                    "text and label)"),
               "itm": ("image-text-match", "images with texts and whether they match (jsonl lines with image, text "
                                           "and match)")}


def check_fits(bundle: Bundle, data: Dataset, parts, at: str | None = None) -> None:
    """The data against the teacher: images for an image tower, the kind of rows its task reads, captions for a
    text tower; for fusion teachers, questions that fit its text positions and answers its head has. On every row
    of `parts` (Splits): at run time the calibration and eval splits; in preflight (validate) every line of a
    data file, against the teacher read without weights (zoo, hf) or built (python). at: what names the data in
    errors ('recipe.yaml:7 data.path'); default 'data' / 'data.source'."""
    from mmcompress.errors import RecipeError

    if ("image" in bundle.towers or bundle.is_fusion) and data.kind in ("text", "audio-text"):
        raise RecipeError(f"{at or 'data'}: the teacher has an image tower but data.source {data.name} has no images")
    if "audio" in bundle.towers and data.kind != "audio-text":
        raise RecipeError(f"{at or 'data'}: the teacher has an audio tower but data.source {data.name} has no audio "
                          f"clips; use data.source sounds, audiofolder, or jsonl lines with \"audio\"")
    if bundle.is_fusion:
        want = FUSION_DATA[bundle.task]
        if data.kind != want[0]:
            raise RecipeError(f"{at or 'data.source'}: the teacher is a {bundle.task} fusion model and needs "
                              f"{want[1]}; {data.name} has {data.kind} rows")
        for rows in parts:  # questions that fit, answers the head has
            check_lengths(bundle.text_preprocess, rows)
            if bundle.task != "itm":
                answer_ids(bundle.outputs, data.class_names, rows.labels, rows.origin)
    elif data.kind in ("image-question", "image-text-match"):
        raise RecipeError(f"{at or 'data'}: {data.name} holds {'questions with answers' if data.kind == 'image-question' else 'image-text pairs with match labels'}, "
                          f"for fusion teachers; this teacher is a {bundle.task} (use lines with image and caption, "
                          f"or text)")
    elif "text" in bundle.towers and data.kind in ("image-text", "audio-text"):
        for rows in parts:  # image and audio lines may leave captions out (data.files); a text tower reads them
            if None in rows.texts:
                i = rows.texts.index(None)
                where = rows.origin[i] if rows.origin else f"data: row {i}"
                what = "audio" if data.kind == "audio-text" else "image"
                raise RecipeError(f"{where}: missing key 'caption'; the teacher's text tower reads the captions "
                                  f"({what}-text retrieval, the text tower's calibration), so {what} lines need "
                                  f"\"{what}\" and \"caption\" (or keep only the {what} tower: teacher.towers: [{what}])")


def check_lengths(text, rows) -> None:
    """Questions longer than the model's text positions would be cut (and change meaning): refused, naming the
    first one's file:line (or split row)."""
    from mmcompress.errors import RecipeError

    if not len(rows):
        return
    counts = [len(ids) for ids in text.tokenizer(list(rows.texts), truncation=False)["input_ids"]]
    long = [i for i, n in enumerate(counts) if n > text.max_length]
    if long:
        i = long[0]
        where = rows.origin[i] if rows.origin else f"data: row {i}"
        raise RecipeError(f"{where}: the question {rows.texts[i]!r} is {counts[i]} tokens, more than the teacher's "
                          f"{text.max_length} ({len(long)} question(s) too long); shorten them (or raise "
                          f"teacher.max_length if the model has more positions)")


def answer_ids(outputs: list[str] | None, names: list[str], labels: np.ndarray | None,
               origin: list[str] | None = None) -> np.ndarray | None:
    """The data's label ids (indices into its class names) as indices into the model head's classes."""
    from mmcompress.errors import RecipeError

    if labels is None or outputs is None:
        return labels
    index = {a: i for i, a in enumerate(outputs)}
    missing = sorted({names[i] for i in set(labels.tolist())} - set(index))
    if missing:
        first = next(j for j, y in enumerate(labels.tolist()) if names[y] == missing[0])
        where = f"{origin[first]}: " if origin else ""
        raise RecipeError(f"{where}data: answers {missing[:5]} are not among the model's {len(outputs)} answers "
                          f"({', '.join(outputs[:12])}{', ...' if len(outputs) > 12 else ''}); fix the data or "
                          f"the teacher's answer list")
    return np.array([index[names[i]] for i in labels.tolist()], dtype=np.int64)


def _embed_all(sessions: dict, inputs: EvalInputs, label: str) -> dict[str, np.ndarray]:
    from mmcompress.progress import bar
    from mmcompress.runtimes.base import run_batched

    out = {}
    total = sum(len(next(iter(inputs.feeds[t].values()))) for t in sessions)
    with bar(f"evaluating {label}", total) as update:
        done = 0
        for tower, sess in sessions.items():
            feeds = inputs.feeds[tower]
            out[tower] = run_batched(sess, feeds, progress=lambda n, base=done: update(base + n),
                                     trim=inputs.trim[tower])
            done += len(next(iter(feeds.values())))
    return out


def _save(emb: dict[str, np.ndarray], folder: Path) -> tuple[dict, dict]:
    from mmcompress.artifact import save_npz

    save_npz(folder / "embeddings.npz", **emb)
    return {"embeddings.npz": {"arrays": {k: list(v.shape) for k, v in emb.items()}}}, {}


def embed_teacher(bundle: Bundle, inputs: EvalInputs, folder: Path) -> tuple[dict, dict]:
    from mmcompress.runtimes.torch import TorchSession

    sessions = {t: TorchSession(m, list(bundle.specs[t].inputs), f"teacher-{t}") for t, m in bundle.towers.items()}
    return _save(_embed_all(sessions, inputs, "teacher (PyTorch fp32)"), folder)


@dataclass(frozen=True)
class Evaluation:
    """What the checks measured of one artifact (kept apart from the Artifact itself): its outputs on the eval
    inputs and what it ran on."""

    embeddings: dict[str, np.ndarray]  # tower -> (N, D)
    runtime: dict                      # runtimes.Runtime.device(): runtime, device, versions


def _open_and_run(runtime, artifact, feeds: dict, threads: int) -> dict:
    """Opens every tower's session and runs it once (in runtimes.contain's child process) -> {tower: shape}.
    The runtime goes along: one registered by the user's code is not in the child's registry."""
    return {t: list(runtime.session(artifact, t, threads).run(f).shape) for t, f in feeds.items()}


def embed_artifact(artifact, inputs: EvalInputs, threads: int, folder: Path) -> tuple[dict, dict]:
    """Every tower of the artifact over the eval inputs, on its runtime (runtimes registry). A runtime that
    probes (Runtime.probe) first opens the graphs and runs two eval rows in a child process (runtimes.contain):
    one that segfaults there is a RuntimeCrash naming the variant, the signal and the runtime."""
    from mmcompress import runtimes
    from mmcompress.runtimes.base import trim_padding
    from mmcompress.runtimes.contain import contained

    runtime = runtimes.get(artifact.runtime)
    if runtime.probe:
        first = {t: {k: v[:2] for k, v in inputs.feeds[t].items()} for t in artifact.towers}
        first = {t: trim_padding(f) if inputs.trim[t] else f for t, f in first.items()}
        files = ", ".join(Path(p).name for p in artifact.towers.values())
        contained(_open_and_run, runtime, artifact.replace(bundle=None), first, threads,
                  what=f"variant {artifact.name} (opening and running {files})", runtime=artifact.runtime)
    sessions = {t: runtime.session(artifact, t, threads) for t in artifact.towers}
    files, extra = _save(_embed_all(sessions, inputs, folder.name), folder)
    facts = {t: s.facts for t, s in sessions.items() if getattr(s, "facts", None)}  # e.g. OpenVINO's precision
    return files, {**extra, "runtime": {**runtime.device(), **({"towers": facts} if facts else {})}}
