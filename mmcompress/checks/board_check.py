"""The check of a Jetson bundle's engines (or, with --onnxruntime, of its ONNX graphs on this CPU) against the
teacher's outputs shipped in the bundle, with every budget the recipe gave each variant.

This one file is both `mmcompress check BUNDLE` (mmcompress.checks.bundle calls it) and the bundle's own
`check.py`, copied into every bundle by export/jetson.py, which runs on the board's own Python: Python 3.8 on
JetPack 5.1.2, with no mmcompress and none of its dependencies there. So it is written for Python >= 3.8 and
imports only the standard library and numpy at the top; TensorRT's Python bindings and the CUDA bindings
(cuda-python) when engines are checked; onnxruntime only for --onnxruntime. It imports nothing of mmcompress.
The run's own checks import its metrics, latency statistics and budget rules from here, so the board and the
run judge a variant the same way (tests/test_board_check.py holds the imports and the Python 3.8 syntax). It
is one file, longer than the project's modules usually are, because a bundle ships it whole.

Usage on the board:  python3 check.py [BUNDLE] [--onnxruntime] [--threads N] [--rounds N] [--json]
Exit codes: 0 every budget met; 1 a budget missed; 2 a bad bundle or argument; 3 a failure (TensorRT could not
load or run an engine); 4 something missing (numpy, TensorRT's or CUDA's bindings, onnxruntime, a GPU, or an
engine built for another TensorRT/GPU).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

try:
    import numpy as np
except ImportError:  # the board's Python without numpy: main() says what to install (exit 4)
    np = None

EXIT_OK, EXIT_BUDGET, EXIT_INPUT, EXIT_FAILED, EXIT_MISSING = 0, 1, 2, 3, 4


class CheckError(Exception):
    """A failure the message explains (exit 3)."""

    exit_code = EXIT_FAILED


class BundleError(CheckError):
    """A bundle or argument that is not right (exit 2)."""

    exit_code = EXIT_INPUT


class Missing(CheckError):
    """A package, a GPU, or an engine for this machine is missing (exit 4)."""

    exit_code = EXIT_MISSING


# ---- metrics (numpy only; checks/accuracy.py, tasks.py and fidelity.py are these) ------------------------------
def normalize(x):
    x = x.astype(np.float64)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


def zero_shot_scores(image_emb, prompt_emb, ensemble: str = "max"):
    """image_emb (N, D); prompt_emb (C, T, D): T templates per class -> class scores (N, C)."""
    img = normalize(image_emb)
    prompts = normalize(prompt_emb)
    if ensemble == "max":
        return np.einsum("nd,ctd->nct", img, prompts).max(-1)
    return img @ normalize(prompts.mean(1)).T


def zero_shot(scores, labels) -> dict:
    """scores (N, C), labels (N,) -> top-1 and top-5 in %."""
    order = np.argsort(-scores, axis=1)
    top1 = float((order[:, 0] == labels).mean() * 100)
    top5 = float((order[:, :5] == labels[:, None]).any(1).mean() * 100)
    return {"top1": top1, "top5": top5, "n": int(len(labels))}


def recall(image_emb, caption_emb, caption_of_image, ks, query: str = "image") -> dict:
    """image_emb (N, D); caption_emb (M, D) for the M distinct captions; caption_of_image (N,) in [0, M).
    query: what the rows of image_emb are ('image', or 'audio' for audio-text models): it names the keys.
    image->text: is each image's caption among the k most similar distinct captions? text->image: for each
    image's caption as query, does any of the k most similar images carry that caption?"""
    sim = normalize(image_emb) @ normalize(caption_emb).T  # (N, M)
    out = {}
    i2t_rank = np.argsort(-sim, axis=1)  # (N, M)
    t2i_rank = np.argsort(-sim.T, axis=1)  # (M, N)
    for k in ks:
        out[f"{query}_to_text@{k}"] = float((i2t_rank[:, :k] == caption_of_image[:, None]).any(1).mean() * 100)
        hit_per_caption = (caption_of_image[t2i_rank[:, :k]] == np.arange(len(caption_emb))[:, None]).any(1)  # (M,)
        out[f"text_to_{query}@{k}"] = float(hit_per_caption[caption_of_image].mean() * 100)
    return out


def knn(emb, labels, k: int):
    """Leave-one-out k-NN on (N, D) embeddings by cosine; majority vote (ties: the smaller class id).
    -> ({'top1', 'k', 'n'}, predictions (N,))."""
    x = normalize(emb)
    sim = x @ x.T  # (N, N)
    np.fill_diagonal(sim, -np.inf)
    k = min(k, len(x) - 1)
    nn_idx = np.argsort(-sim, axis=1)[:, :k]  # (N, k)
    n_classes = int(labels.max()) + 1
    votes = np.stack([np.bincount(labels[row], minlength=n_classes) for row in nn_idx])  # (N, C)
    pred = votes.argmax(1)
    return {"top1": float((pred == labels).mean() * 100), "k": int(k), "n": int(len(x))}, pred


def pair_recall(queries, targets, ks) -> dict:
    """Row i of queries belongs with row i of targets: text->pair and pair->text recall@k in %."""
    sim = normalize(queries) @ normalize(targets).T  # (N, N)
    truth = np.arange(len(sim))[:, None]
    out = {}
    for k in ks:
        out[f"text_to_pair@{k}"] = float((np.argsort(-sim, axis=1)[:, :k] == truth).any(1).mean() * 100)
        out[f"pair_to_text@{k}"] = float((np.argsort(-sim.T, axis=1)[:, :k] == truth).any(1).mean() * 100)
    return out


def auc(score, labels) -> float:
    """ROC AUC of `score` for the positives in `labels` (0/1): the chance a random positive outscores a random
    negative, ties counting half (the Mann-Whitney U over average ranks; scikit-learn's roc_auc_score gives the
    same). 0.5 when one class is absent."""
    labels = np.asarray(labels).astype(bool)
    pos, n = int(labels.sum()), len(labels)
    if pos in (0, n):
        return 0.5
    s = np.asarray(score, np.float64)
    order = np.argsort(s, kind="mergesort")
    _, inverse, counts = np.unique(s[order], return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = np.empty(n)
    ranks[order] = ((ends - counts + 1 + ends) / 2.0)[inverse]  # 1-based, ties share their average rank
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * (n - pos)))


def match_score(logits):
    """An image-text matching head's score per row: the one logit (ViLT retrieval), or match minus no-match
    logits of a 2-way head (BLIP ITM: [no match, match])."""
    return logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]


def _rows(emb, inputs, block: str):
    start, stop = inputs.blocks[block]
    return emb[start:stop]


def _prompts(text_emb, inputs):
    return _rows(text_emb, inputs, "prompts").reshape(inputs.n_classes, inputs.n_templates, -1)  # (C, T, D)


def query(emb: dict) -> str:
    """The tower a dual encoder's texts are matched against: 'image' or 'audio'."""
    return "image" if "image" in emb else "audio"


def task_metrics(task: str, emb: dict, inputs, ensemble: str, ks, knn_k: int):
    """-> (accuracy dict with 'primary': {'metric', 'value'}, per-row predictions for agreement or None).
    inputs: anything with blocks, labels, caption_of_image, n_classes, n_templates (checks.evaluate.EvalInputs,
    or the bundle's Sample)."""
    out: dict = {}
    pred, primary = None, None
    has_prompts = "prompts" in inputs.blocks and inputs.labels is not None
    if task == "dual-encoder":
        q = query(emb)
        if has_prompts:
            scores = zero_shot_scores(emb[q], _prompts(emb["text"], inputs), ensemble)
            out["zero_shot"] = zero_shot(scores, inputs.labels)
            pred, primary = scores.argmax(1), ("zero_shot_top1", out["zero_shot"]["top1"])
        out["recall"] = recall(emb[q], _rows(emb["text"], inputs, "captions"), inputs.caption_of_image, ks, q)
        primary = primary or (q + "_to_text@1", out["recall"][q + "_to_text@" + str(ks[0])])
    elif task in ("vqa", "classification"):
        pred = emb["fusion"].argmax(1)
        if inputs.labels is not None:
            key, metric = ("answer", "accuracy") if task == "vqa" else ("classification", "top1")
            out[key] = {metric: round(float((pred == inputs.labels).mean() * 100), 2), "n": int(len(pred))}
            primary = ("answer_accuracy" if task == "vqa" else "top1", out[key][metric])
    elif task == "itm":
        logits = emb["fusion"]
        score = match_score(logits)
        pred = logits.argmax(1) if logits.shape[1] == 2 else None  # a 2-way ITM head decides; one score ranks
        if inputs.labels is not None:
            out["match"] = {"auc": round(auc(score, inputs.labels) * 100, 2), "n": int(len(score)),
                            "positives": int(inputs.labels.sum())}
            if pred is not None:
                out["match"]["accuracy"] = round(float((pred == inputs.labels).mean() * 100), 2)
            primary = ("match_auc", out["match"]["auc"])
    elif task in ("image-encoder", "audio-encoder") and inputs.labels is not None:
        out["knn"], pred = knn(emb[task.split("-")[0]], inputs.labels, knn_k)
        primary = ("knn_top1", out["knn"]["top1"])
    elif task == "text-encoder":
        texts = _rows(emb["text"], inputs, "texts")
        if "pairs" in inputs.blocks:
            out["recall"] = pair_recall(texts, _rows(emb["text"], inputs, "pairs"), ks)
            primary = ("text_to_pair@1", out["recall"][f"text_to_pair@{ks[0]}"])
        if has_prompts:
            scores = zero_shot_scores(texts, _prompts(emb["text"], inputs), ensemble)
            out["class_prompts"] = zero_shot(scores, inputs.labels)
            pred, primary = scores.argmax(1), ("class_prompt_top1", out["class_prompts"]["top1"])
    out["primary"] = {"metric": primary[0], "value": primary[1]} if primary else None
    return out, pred


def cosine_rows(a, b):
    """Per-row cosine between (N, D) arrays, computed in float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def cosine_to_teacher(candidate, teacher) -> dict:
    cos = cosine_rows(candidate, teacher)
    return {"mean": float(cos.mean()), "min": float(cos.min()), "p01": float(np.percentile(cos, 1)), "n": int(len(cos))}


def top1_agreement(candidate_pred, teacher_pred) -> float:
    """% of rows where the candidate's predicted class equals the teacher's: (N,) class ids, or (N, C) scores."""
    c = candidate_pred.argmax(1) if candidate_pred.ndim == 2 else candidate_pred
    t = teacher_pred.argmax(1) if teacher_pred.ndim == 2 else teacher_pred
    return float((c == t).mean() * 100)


# ---- feeds and latency (checks/latency.py and runtimes/base.py are these) -------------------------------------
EVAL_BATCH = 64  # rows per call when running a whole split


def trim_padding(feeds: dict) -> dict:
    """Text feeds cut to the columns any row uses (attention_mask): a batch padded to its own longest row.
    Works for right and left padding; feeds without an attention_mask are returned as they are."""
    mask = feeds.get("attention_mask")
    if mask is None or mask.ndim != 2 or mask.shape[1] == 0:
        return feeds
    used = np.flatnonzero(mask.any(0))
    if len(used) == 0:
        return feeds
    lo, hi = int(used[0]), int(used[-1]) + 1
    if (lo, hi) == (0, mask.shape[1]):
        return feeds
    return {k: np.ascontiguousarray(v[:, lo:hi]) if v.ndim == 2 and v.shape == mask.shape else v
            for k, v in feeds.items()}


def run_batched(session, feeds: dict, batch: int = EVAL_BATCH, progress=None, trim: bool = False):
    """Run over all rows of `feeds` in batches; progress(n) is called with the rows done so far.
    trim: cut each text batch to its longest row (trim_padding), as a serving stack pads."""
    n = len(next(iter(feeds.values())))
    outs = []
    for i in range(0, n, batch):
        part = {k: v[i:i + batch] for k, v in feeds.items()}
        outs.append(session.run(trim_padding(part) if trim else part))
        if progress:
            progress(min(i + batch, n))
    return np.concatenate(outs).astype(np.float32)


def feeds_at(feeds: dict, batch: int, seq_len, pad_id: int = 0) -> dict:
    """`batch` eval rows (tiled when there are fewer), text padded or cut to seq_len columns."""
    n = len(next(iter(feeds.values())))
    reps = -(-batch // n)  # ceil: tile when the eval set is smaller than the batch
    out = {k: np.concatenate([v] * reps)[:batch] for k, v in feeds.items()}
    if seq_len is not None:
        text_width = out["attention_mask"].shape[1] if "attention_mask" in out else None
        for k, v in out.items():
            if v.ndim != 2 or (text_width is not None and v.shape[1] != text_width):
                continue  # pixel values (a fusion tower's image input) have no length
            width = v.shape[1]
            if width >= seq_len:
                out[k] = v[:, :seq_len]
            else:
                fill = pad_id if k == "input_ids" else 0
                out[k] = np.concatenate([v, np.full((batch, seq_len - width), fill, v.dtype)], axis=1)
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def measure(sessions: dict, feeds: dict, rounds: int, warmup: int, progress=None) -> dict:
    """sessions: name -> Session (the first is the reference), each run `warmup` times untimed, then `rounds`
    rounds in which each runs once, in an order that rotates each round. -> name -> (rounds,) seconds."""
    names = list(sessions)
    for name in names:
        for _ in range(warmup):
            sessions[name].run(feeds)
    times = {n: np.empty(rounds) for n in names}
    for r in range(rounds):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            t0 = time.perf_counter()
            sessions[name].run(feeds)
            times[name][r] = time.perf_counter() - t0
            settle = getattr(sessions[name], "settle_s", 0.0)
            if settle:
                time.sleep(settle)
        if progress:
            progress()
    return times


QUANTILES = (0, 10, 25, 50, 75, 90, 100)  # the distribution report.html draws: min, p10, p25, median, p75, p90, max


def summarize(times: dict, reference: str, seed: int = 0) -> dict:
    """Per session: median and p90 ms, the median's 95% bootstrap interval, and against `reference` the speedup
    (reference median / its median) with its 95% interval over the paired rounds."""
    rng = np.random.default_rng(seed)
    ref = times[reference]
    out = {}
    for name, t in times.items():
        idx = rng.integers(0, len(t), size=(1000, len(t)))  # resample rounds (paired, for the speedup)
        medians = np.median(t[idx], axis=1)
        row = {"median_ms": float(np.median(t) * 1e3), "p90_ms": float(np.percentile(t, 90) * 1e3),
               "median_ci95_ms": [float(np.percentile(medians, 2.5) * 1e3), float(np.percentile(medians, 97.5) * 1e3)],
               "rounds": int(len(t)),
               "quantiles_ms": [round(float(q) * 1e3, 4) for q in np.percentile(t, QUANTILES)]}
        if name != reference:
            ratios = np.median(ref[idx], axis=1) / np.median(t[idx], axis=1)
            row["speedup"] = float(np.median(ref) / np.median(t))
            row["speedup_ci95"] = [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))]
        out[name] = row
    return out


def budget_point(latency: dict, batch: int):
    """The key `max_latency_ms` holds for at this batch: the image point, or for text the eval p90 length
    (else the longest length timed)."""
    rows = [(k, v) for k, v in latency.items() if v["batch"] == batch]
    if not rows:
        return None
    p90 = [k for k, v in rows if "p90" in (v.get("seq_len_from") or "")]
    return p90[0] if p90 else max(rows, key=lambda kv: kv[1].get("seq_len") or 0)[0]


# ---- budgets -> rows (checks/gate.py is this, for the run's report) -------------------------------------------
UNDECIDED = ("undecided: the 95% interval {lo:.4g}-{hi:.4g} straddles the limit, so it passes (a latency budget "
             "fails only when the whole interval misses); more rounds (checks.rounds) narrow it")
NOT_OWN = "not gated: this variant leaves the tower as the fp32 export (gate it with a `quantize: none` variant)"
NO_TEACHER = ("not gated here: the speedup is over the PyTorch teacher, which does not run on the board; the run "
              "judged it")
NO_SIZE = "not gated here: the size of the artifact's files is judged by the run"


def judged(value: float, interval, limit: float, higher_is_better: bool):
    """A latency figure against its budget on its 95% interval: fail only when the whole interval misses, pass
    when the whole interval meets it, undecided (passes, said so) when it straddles the limit. Without an
    interval (a report written before intervals were recorded): the median decides. -> (ok, why or None)."""
    ok = value >= limit if higher_is_better else value <= limit
    if not interval:
        return ok, None
    lo, hi = interval
    meets_all = lo >= limit if higher_is_better else hi <= limit
    misses_all = hi < limit if higher_is_better else lo > limit
    if meets_all or misses_all:
        return meets_all, None
    return True, UNDECIDED.format(lo=lo, hi=hi)


def _length(lat: dict):
    """What a budget row names its point's length by: tokens for text, '0.8 s' for audio clips."""
    return f"{lat['clip_s']:g} s" if lat.get("clip_s") else lat.get("seq_len")


def _row(budget, value, limit, ok, tower=None, batch=None, seq_len=None, note=None, interval=None,
         undecided=False) -> dict:
    row = {"budget": budget, "tower": tower, "batch": batch, "seq_len": seq_len, "value": value, "limit": limit,
           "passed": None if ok is None else bool(ok)}
    if interval:
        row["ci95"] = [float(x) for x in interval]
    if undecided:
        row["undecided"] = True
    if note:
        row["note"] = note
    return row


def evaluate(entry: dict, budgets: dict) -> list:
    """One budget row per figure it applies to (tower, batch, text length). entry: a candidate's accuracy
    ('delta'), fidelity (per tower, 'top1_agreement'), latency, size_mb and towers (each with 'gated');
    budgets: the recipe's Budgets fields as a dict (None: not set)."""
    b = {k: v for k, v in budgets.items() if v is not None}
    rows = []
    towers = entry["towers"]
    if "max_accuracy_drop" in b:
        if entry["accuracy"].get("delta") is None:  # no labels and no pairs: nothing to gate on
            rows.append(_row("max_accuracy_drop", None, b["max_accuracy_drop"], False))
        else:
            drop = -entry["accuracy"]["delta"] + 0.0  # + 0.0: a zero drop is 0, not -0
            rows.append(_row("max_accuracy_drop", round(drop, 3), b["max_accuracy_drop"],
                             drop <= b["max_accuracy_drop"] + 1e-9))
    if "min_top1_agreement" in b:
        v = entry["fidelity"].get("top1_agreement")
        rows.append(_row("min_top1_agreement", None if v is None else round(v, 3), b["min_top1_agreement"],
                         False if v is None else v >= b["min_top1_agreement"] - 1e-9))
    for tower, info in towers.items():
        gated = info.get("gated", info.get("converted"))
        note = None if gated else NOT_OWN
        if "min_cosine" in b:
            v = entry["fidelity"][tower]["min"]
            rows.append(_row("min_cosine", v, b["min_cosine"], (v >= b["min_cosine"]) if gated else None, tower,
                             note=note))
        if "min_speedup" in b:
            points = list(entry["latency"].get(tower, {}).values())
            if points and not any("speedup" in p for p in points):
                rows.append(_row("min_speedup", None, b["min_speedup"], None, tower, note=NO_TEACHER))
                continue
            for lat in points:
                ok, why = judged(lat["speedup"], lat.get("speedup_ci95"), b["min_speedup"], higher_is_better=True)
                rows.append(_row("min_speedup", lat["speedup"], b["min_speedup"], ok if gated else None, tower,
                                 lat.get("batch"), _length(lat), note or why, interval=lat.get("speedup_ci95"),
                                 undecided=bool(gated and why)))
    for tower, per_batch in (b.get("max_latency_ms") or {}).items():
        lat = entry["latency"].get(tower)
        if lat is None:
            continue  # a tower this candidate does not run (a recipe error before the run for the teacher's)
        for batch, limit in per_batch.items():
            key = budget_point(lat, int(batch))
            if key is None:
                rows.append(_row("max_latency_ms", None, limit, False, tower, int(batch), note="not timed"))
                continue
            v, interval = lat[key]["median_ms"], lat[key].get("median_ci95_ms")
            ok, why = judged(v, interval, limit, higher_is_better=False)
            rows.append(_row("max_latency_ms", v, limit, ok, tower, int(batch), _length(lat[key]), why,
                             interval=interval, undecided=bool(why)))
    if "max_size_mb" in b:
        v = entry.get("size_mb")
        rows.append(_row("max_size_mb", v, b["max_size_mb"], None if v is None else v <= b["max_size_mb"],
                         note=None if v is not None else NO_SIZE))
    return rows


def verdict(rows: list) -> str:
    """'fail' if any gated row failed, 'pass' if gated rows exist and all passed, else 'not gated'."""
    gated = [r["passed"] for r in rows if r["passed"] is not None]
    if not gated:
        return "not gated"
    return "pass" if all(gated) else "fail"


def describe(name: str, row: dict) -> str:
    where = "".join([f" {row['tower']} tower" if row["tower"] else "", f" at batch {row['batch']}" if row["batch"] else "",
                     (f", {row['seq_len']} clips" if isinstance(row["seq_len"], str) else f", {row['seq_len']} tokens")
                     if row.get("seq_len") else ""])
    op = "<=" if row["budget"].startswith("max") else ">="
    if row.get("ci95"):  # a latency budget: it failed because the whole interval missed
        lo, hi = row["ci95"]
        return f"{name}{where}: {row['budget']} {row['value']:.4g} (95% interval {lo:.4g}-{hi:.4g}) is not {op} {row['limit']:g}"
    if row["value"] is None:
        if row["budget"] == "max_latency_ms":
            return f"{name}{where}: {row['budget']} cannot be checked: nothing was timed at this batch"
        what = "class predictions to agree on" if row["budget"] == "min_top1_agreement" else "labels or pairs for an accuracy metric"
        return f"{name}{where}: {row['budget']} cannot be checked: the eval data has no {what}"
    return f"{name}{where}: {row['budget']} {row['value']:.4g} is not {op} {row['limit']:g}"


# ---- the bundle ---------------------------------------------------------------------------------------------
class Sample:
    """The bundle's eval sample as the metrics read it: feeds per tower, the text blocks, labels."""

    def __init__(self, m: dict, arrays: dict):
        e = m["eval"]
        self.feeds = {}
        for key, v in arrays.items():
            if key.startswith("feed/"):
                _, tower, name = key.split("/", 2)
                self.feeds.setdefault(tower, {})[name] = v
        self.blocks = {k: tuple(v) for k, v in e["blocks"].items()}
        self.labels, self.caption_of_image = arrays.get("labels"), arrays.get("caption_of_image")
        self.n_classes, self.n_templates, self.key = e["n_classes"], e["n_templates"], e["key"]
        self.trim = e["trim"]
        self.calib = {}


def load(folder: Path):
    """-> (bundle.json, eval.npz arrays)."""
    path = folder / "bundle.json"
    if not path.is_file():
        raise BundleError(f"{folder}: not a bundle (no bundle.json); give the folder `mmcompress run` wrote under "
                          f"RUN_DIR/bundles/")
    try:
        m = json.loads(path.read_text())
        with np.load(str(folder / "eval.npz")) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError) as e:  # truncated or hand-edited: the user's file, exit 2
        raise BundleError(f"{folder}: bundle.json or eval.npz cannot be read ({type(e).__name__}: {e}); copy the "
                          f"bundle again from RUN_DIR/bundles/ (or rerun the `mmcompress run` that wrote it)") from None
    if not isinstance(m, dict) or "engines" not in m or "eval" not in m:
        raise BundleError(f"{path}: not a bundle manifest (no 'engines' and 'eval'); give the folder `mmcompress "
                          f"run` wrote under RUN_DIR/bundles/")
    return m, arrays


_VERSION = re.compile(r"\[TensorRT v(\d+)\]")
_DEVICE = re.compile(r"Selected Device:\s*(.+?)\s*$", re.M)
_CC = re.compile(r"Compute Capability:\s*(\d+\.\d+)")


def decode_version(code: int) -> str:
    """trtexec's version tag: 8502 -> 8.5.2 (MAJOR*1000 + MINOR*100 + PATCH before 10), 100300 -> 10.3.0 and
    110400 -> 11.4.0 (MAJOR*10000 + MINOR*100 + PATCH from 10)."""
    if code >= 100000:
        return f"{code // 10000}.{(code // 100) % 100}.{code % 100}"
    return f"{code // 1000}.{(code // 100) % 10}.{code % 100}"


def parse_build_log(text: str) -> dict:
    """What a trtexec build log (--verbose) says: TensorRT version, device, compute capability, and the layers
    TensorRT placed on the DLA and on the GPU (its '---------- Layers Running on DLA/GPU ----------' lists)."""
    out: dict = {}
    m = _VERSION.search(text)
    if m:
        out["tensorrt"] = decode_version(int(m.group(1)))
    m = _DEVICE.search(text)
    if m:
        out["gpu"] = m.group(1)
    m = _CC.search(text)
    if m:
        out["compute_capability"] = m.group(1)
    section, dla, gpu = None, 0, 0
    for line in text.splitlines():
        if "Layers Running on DLA" in line:
            section = "dla"
        elif "Layers Running on GPU" in line:
            section = "gpu"
        elif section == "dla" and "[DlaLayer]" in line:
            dla += 1
        elif section == "gpu" and "[GpuLayer]" in line:
            gpu += 1
        elif section and "---------- " in line:
            section = None
    if dla or gpu:
        out["layers"] = {"dla": dla, "gpu": gpu, "gpu_share": round(gpu / (dla + gpu), 4)}
    return out


def _version_tuple(v: str):
    m = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", str(v))
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def manifest_problems(manifest: dict, machine: dict) -> list:
    """Why an engine built as `manifest` says cannot run on `machine` (TensorRT version, GPU model, OS,
    architecture): TensorRT would fail with 'Version tag does not match' or, across GPU models, load and then
    fail or run slowly. [] when it can."""
    problems = []
    want, have = manifest.get("tensorrt"), machine.get("tensorrt")
    if want and have and _version_tuple(want) != _version_tuple(have):
        problems.append(f"it was built with TensorRT {want} and this machine has {have}")
    if manifest.get("compute_capability") != machine.get("compute_capability") or manifest.get("gpu") != machine.get("gpu"):
        problems.append(f"it was built for {manifest.get('gpu')} (compute capability "
                        f"{manifest.get('compute_capability')}) and this GPU is {machine.get('gpu')} "
                        f"({machine.get('compute_capability')})")
    for key in ("os", "arch"):
        if manifest.get(key) and machine.get(key) and manifest[key] != machine[key]:
            problems.append(f"it was built on {key} {manifest[key]} and this machine is {machine[key]}")
    return problems


def engine_manifest(folder: Path, entry: dict) -> dict:
    """The engine's manifest, written beside it from its build log on first use (build.sh runs trtexec only)."""
    path = (folder / entry["engine"]).with_suffix(".json")
    if path.is_file():
        return json.loads(path.read_text())
    log = folder / entry["log"]
    info = parse_build_log(log.read_text(errors="replace")) if log.is_file() else {}
    import platform

    m = {"format": "tensorrt-engine", "tensorrt": info.get("tensorrt"), "gpu": info.get("gpu"),
         "compute_capability": info.get("compute_capability"), "os": platform.system(), "arch": platform.machine(),
         "precision": entry["precision"], "profiles": [entry["profile"]], "onnx": entry["onnx"],
         "onnx_sha256": entry["onnx_sha256"], "from_log": entry["log"]}
    if "layers" in info:
        m["layers"] = info["layers"]
    path.write_text(json.dumps(m, indent=2))
    return m


# ---- sessions -----------------------------------------------------------------------------------------------
class OrtSession:
    """--onnxruntime: a bundle graph on ONNX Runtime's CPU provider; int8 Q/DQ graphs with graph optimisation
    off, so their Q/DQ nodes run as written (TensorRT's explicit-quantization arithmetic), not fused into the
    CPU's int8 kernels. Intra-op spinning off: the sessions of one rotation share the cores."""

    def __init__(self, path: Path, threads: int, name: str, as_written: bool):
        try:
            import onnxruntime as ort
        except ImportError:
            raise Missing("--onnxruntime runs the bundle's graphs on ONNX Runtime's CPU: pip install onnxruntime "
                          "(or leave --onnxruntime out on the board, to check the built engines)") from None
        opts = ort.SessionOptions()
        if as_written:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        self.name = name
        if not path.is_file():
            raise BundleError(f"{path}: no such file; copy the bundle again from RUN_DIR/bundles/")
        try:
            self._sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # InvalidProtobuf, InvalidGraph, NotImplemented ...: the bundle's file
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise BundleError(f"{path}: ONNX Runtime cannot open this graph ({first}); copy the bundle again") from None
        self._inputs = [i.name for i in self._sess.get_inputs()]

    def run(self, feeds: dict):
        return self._sess.run(None, {k: feeds[k] for k in self._inputs})[0]


def _cudart():
    """The CUDA runtime bindings of cuda-python: cuda.bindings.runtime (12.6 and later), else cuda.cudart."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise Missing("checking engines needs the CUDA Python bindings: pip install cuda-python (the release "
                          "matching the board's CUDA, e.g. cuda-python==12.* on JetPack 6, 13.* on JetPack 7; "
                          "11.* on JetPack 5.1.2)") from None
    return cudart


def _ok(result):
    """cuda-python calls return (error, *values): the values, or CheckError on an error."""
    err, values = result[0], result[1:]
    if int(err) != 0:
        raise CheckError(f"CUDA call failed: {err}")
    return values[0] if len(values) == 1 else values


def machine() -> dict:
    """This board as an engine's manifest names it: TensorRT version, GPU, compute capability, OS, arch."""
    import platform

    import tensorrt as trt

    cudart = _cudart()
    if _ok(cudart.cudaGetDeviceCount()) < 1:
        raise Missing("no CUDA device visible: TensorRT engines need the GPU they were built for")
    p = _ok(cudart.cudaGetDeviceProperties(0))
    name = p.name.decode() if isinstance(p.name, bytes) else str(p.name)
    return {"tensorrt": trt.__version__, "gpu": name.rstrip("\x00"), "compute_capability": f"{p.major}.{p.minor}",
            "os": platform.system(), "arch": platform.machine()}


class TrtSession:
    """A built engine (TensorRT >= 8.5's named-tensor API, execute_async_v3) with device buffers from the CUDA
    bindings; host arrays in, the first output back as float32."""

    def __init__(self, path: Path, name: str, rebuild: str):
        import tensorrt as trt

        self.name, self._cudart = name, _cudart()
        self._engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise CheckError(f"{path}: TensorRT {trt.__version__} could not load the engine; rebuild it: {rebuild}")
        self._ctx = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        self._stream = _ok(self._cudart.cudaStreamCreate())

    def run(self, feeds: dict):
        rt = self._cudart
        h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        device, host = [], []  # kept until the stream is synchronised
        try:
            for n in self._inputs:
                a = np.ascontiguousarray(feeds[n], dtype=self._dtypes[n])
                ptr = _ok(rt.cudaMalloc(max(a.nbytes, 1)))
                device.append(ptr)
                host.append(a)
                _ok(rt.cudaMemcpyAsync(ptr, a.ctypes.data, a.nbytes, h2d, self._stream))
                self._ctx.set_input_shape(n, a.shape)
                self._ctx.set_tensor_address(n, int(ptr))
            outs = []
            for n in self._outputs:
                out = np.empty(tuple(self._ctx.get_tensor_shape(n)), self._dtypes[n])
                ptr = _ok(rt.cudaMalloc(max(out.nbytes, 1)))
                device.append(ptr)
                self._ctx.set_tensor_address(n, int(ptr))
                outs.append((out, ptr))
            if not self._ctx.execute_async_v3(int(self._stream)):
                raise CheckError(f"{self.name}: TensorRT execution failed")
            for out, ptr in outs:
                _ok(rt.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, d2h, self._stream))
            _ok(rt.cudaStreamSynchronize(self._stream))
            return outs[0][0].astype(np.float32)
        finally:
            for ptr in device:
                rt.cudaFree(ptr)


def sessions(folder: Path, m: dict, use_onnxruntime: bool, threads: int) -> dict:
    """(variant, tower) -> session for every engine built (or every graph, with use_onnxruntime)."""
    out = {}
    here = None
    for e in m["engines"]:
        key, name = (e["variant"], e["tower"]), f"{e['variant']}/{e['tower']}"
        if use_onnxruntime:
            out[key] = OrtSession(folder / e["onnx"], threads, name, as_written=e["precision"] == "int8-qdq")
            continue
        if not (folder / e["engine"]).is_file():
            continue
        if here is None:
            try:
                import tensorrt  # noqa: F401
            except ImportError:
                raise Missing(f"{folder}: checking engines needs TensorRT's Python bindings (JetPack's "
                              f"python3-libnvinfer, or pip install tensorrt) and the CUDA bindings (cuda-python); run "
                              f"this on the board, or add --onnxruntime to check the bundle's graphs on this CPU") from None
            here = machine()
        problems = manifest_problems(engine_manifest(folder, e), here)
        if problems:
            raise Missing(f"{folder / e['engine']}: cannot run here: {'; '.join(problems)}. Engines are not portable "
                          f"across TensorRT versions, GPU models or OSes; rebuild it on this board: cd {folder} && "
                          f"./build.sh")
        out[key] = TrtSession(folder / e["engine"], name, rebuild=f"cd {folder} && ./build.sh")
    return out


# ---- the check ----------------------------------------------------------------------------------------------
def _seq_len(profile: dict):
    """The text length a tower is timed at: the profile's opt length of its token inputs (the eval data's p90
    unless export.jetson.seq_len set it), None for towers without text."""
    return next((s["opt"][1] for n, s in profile.items() if n in ("input_ids", "attention_mask") and len(s["opt"]) == 2),
                None)


def _latency(sess: dict, m: dict, inputs: Sample, rounds: int, budgets: dict) -> dict:
    """Per tower, every engine of it interleaved, at batch 1, the profile's opt batch and each batch a
    max_latency_ms budget names: {tower: {key: {session name: summary + batch/seq_len}}}."""
    out: dict = {}
    for tower in sorted({t for _, t in sess}):
        group = {f"{v}/{t}": s for (v, t), s in sess.items() if t == tower}
        profile = next(e["profile"] for e in m["engines"] if e["tower"] == tower)
        seq = _seq_len(profile)
        batches = {1, next(iter(profile.values()))["opt"][0]}
        for b in budgets.values():
            batches.update(int(x) for x in ((b.get("max_latency_ms") or {}).get(tower) or {}))
        for batch in sorted(batches):
            times = measure(group, feeds_at(inputs.feeds[tower], batch, seq), rounds=rounds, warmup=3)
            key = f"{batch}@{seq}" if seq else str(batch)
            where = {"batch": batch, "seq_len": seq, "seq_len_from": "profile opt (eval p90)" if seq else None}
            out.setdefault(tower, {})[key] = {n: dict(r, **where) for n, r in summarize(times, next(iter(group))).items()}
    return out


def check(folder: Path, use_onnxruntime: bool = False, threads: int = 1, rounds: int = 20) -> dict:
    """Every variant of the bundle on its eval sample against the teacher's outputs, with its own budgets.
    Writes check.json (check-onnxruntime.json) into the bundle. -> the result."""
    if np is None:
        raise Missing("the bundle's check needs numpy: sudo apt install python3-numpy (or pip install numpy)")
    folder = Path(folder)
    m, arrays = load(folder)
    inputs = Sample(m, arrays)
    teacher = {t: arrays[f"teacher/{t}"] for t in inputs.feeds}
    task_args = (m.get("ensemble", "mean"), m.get("recall_k", [1, 5]), m.get("knn_k", 5))
    t_acc, t_pred = task_metrics(m["task"], teacher, inputs, *task_args)
    sess = sessions(folder, m, use_onnxruntime, threads)
    missing = [f"{e['variant']}/{e['tower']}" for e in m["engines"] if (e["variant"], e["tower"]) not in sess]
    if not sess:
        raise BundleError(f"{folder}: no engine is built yet; run ./build.sh in the bundle on the board first")
    by_variant: dict = {}
    for (variant, tower), s in sess.items():
        by_variant.setdefault(variant, {})[tower] = s
    # per variant: its own budgets (recipe-wide merged with the variant's); bundles before version 2: one set
    specs = m.get("variants") or {}
    budgets = {v: (specs.get(v) or {}).get("budgets", m.get("budgets") or {}) for v in by_variant}
    latency = _latency(sess, m, inputs, rounds, budgets)
    rows, passed = {}, True
    for variant, towers in by_variant.items():
        emb = dict(teacher)  # towers the variant does not ship take the teacher's outputs
        for tower, s in towers.items():
            emb[tower] = run_batched(s, inputs.feeds[tower], trim=inputs.trim.get(tower, False))
        acc, pred = task_metrics(m["task"], emb, inputs, *task_args)
        delta = acc["primary"]["value"] - t_acc["primary"]["value"] if acc["primary"] and t_acc["primary"] else None
        fid: dict = {t: cosine_to_teacher(emb[t], teacher[t]) for t in towers}
        if pred is not None and t_pred is not None:
            fid["top1_agreement"] = top1_agreement(pred, t_pred)
        lat = {t: {k: dict(p[f"{variant}/{t}"]) for k, p in points.items()} for t, points in latency.items()
               if t in towers}
        for points in lat.values():
            for p in points.values():  # a speedup over another variant of the rotation: no budget's
                p.pop("speedup", None)
                p.pop("speedup_ci95", None)
        entry = {"accuracy": {"delta": delta}, "fidelity": fid, "latency": lat, "size_mb": None,
                 "towers": {t: {"gated": True} for t in towers}}
        judged_rows = evaluate(entry, budgets[variant])
        failures = [describe(variant, r) for r in judged_rows if r["passed"] is False]
        passed = passed and not failures
        rows[variant] = {"accuracy": acc, "delta": delta, "fidelity": {t: fid[t] for t in towers},
                         "top1_agreement": fid.get("top1_agreement"), "towers": sorted(towers),
                         "budgets": judged_rows, "verdict": verdict(judged_rows), "failures": failures}
    layers = {}
    if not use_onnxruntime and m.get("dla_core") is not None:  # a DLA fallback exists only where a DLA does
        for e in m["engines"]:
            if (e["variant"], e["tower"]) in sess:
                info = engine_manifest(folder, e)
                if "layers" in info:
                    layers[f"{e['variant']}/{e['tower']}"] = info["layers"]
    result = {"bundle": str(folder), "runtime": "onnxruntime-cpu" if use_onnxruntime else "tensorrt",
              "jetpack": m.get("jetpack"), "tensorrt": m.get("tensorrt"), "teacher": t_acc, "variants": rows,
              "latency": latency, "dla_fallback": layers, "not_built": missing, "passed": passed}
    (folder / ("check-onnxruntime.json" if use_onnxruntime else "check.json")).write_text(json.dumps(result, indent=2))
    return result


def text(result: dict) -> str:
    """The result as plain lines (the board has no rich)."""
    lines = [f"{result['bundle']} on {result['runtime']} (JetPack {result.get('jetpack')}, TensorRT "
             f"{result.get('tensorrt')})"]
    for name, r in result["variants"].items():
        p = r["accuracy"]["primary"]
        cos = ", ".join(f"{k} {v['min']:.4f}" for k, v in r["fidelity"].items())
        acc = f"{p['metric']} {p['value']:.2f}" if p else "no task metric"
        delta = "" if r["delta"] is None else f" ({r['delta']:+.2f})"
        agree = "" if r.get("top1_agreement") is None else f"; agreement {r['top1_agreement']:.1f}%"
        lines.append(f"  {name}: {acc}{delta}{agree}; cos min {cos}; "
                     + ("pass" if not r["failures"] else "FAIL: " + "; ".join(r["failures"])))
    for k, v in result["dla_fallback"].items():
        lines.append(f"  {k}: {v['gpu_share']:.0%} of layers fell back from the DLA to the GPU")
    if result["not_built"]:
        lines.append("  not built: " + ", ".join(result["not_built"]))
    lines.append("all budgets met" if result["passed"] else "a budget was missed")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="check.py", description="Check this bundle's engines (or graphs) against the "
                                "teacher's outputs shipped with it, with each variant's budgets.")
    p.add_argument("bundle", nargs="?", default=str(Path(__file__).resolve().parent),
                   help="the bundle folder (default: the folder of this file)")
    p.add_argument("--onnxruntime", action="store_true", help="run the bundle's ONNX graphs on ONNX Runtime's CPU "
                   "instead of its engines (a check of the bundle before it goes to the board)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (with --onnxruntime)")
    p.add_argument("--rounds", type=int, default=20, help="timing rounds per tower and batch")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    folder = Path(a.bundle)
    if not (folder / "bundle.json").is_file():
        print(f"check.py: {folder}: not a bundle (no bundle.json)", file=sys.stderr)
        return EXIT_INPUT
    try:
        result = check(folder, a.onnxruntime, a.threads, a.rounds)
    except CheckError as e:
        print(f"check.py: {e}", file=sys.stderr)
        return e.exit_code
    print(json.dumps(result, indent=2) if a.json else text(result))
    return EXIT_OK if result["passed"] else EXIT_BUDGET


if __name__ == "__main__":
    sys.exit(main())
