"""Latency of the teacher and every candidate, interleaved in one process so that they share the machine's state.

Per (tower, batch, text length): every session gets `warmup` untimed calls, then `rounds` rounds in which each
session runs once, in an order that rotates each round. Reported: median and p90 in ms, and per candidate the
speedup (teacher median / candidate median) with a 95% bootstrap interval over the paired rounds, and the
distribution's quantiles (report.html draws them).

Text is timed at the lengths the eval data has (median and p90 token counts, rounded up to a multiple of 8)
and at any fixed lengths the recipe lists (checks.text_lengths); a model that always pads to its maximum
(teacher.text_padding: max_length) is timed at that maximum. Images have no length: one point per batch size.
Audio towers with a fixed window (every clip padded or cut to it by the feature extractor: CLAP, AST, Whisper)
are timed at that window, and the point's key names it ('16@1.015s'); audio towers that take any length
(wav2vec2) at the eval clips' median and p90 durations (rounded up to 0.1 s) and at any the recipe lists
(checks.audio_seconds): '16@0.8s'.

A session may ask for an untimed pause after its calls (`settle_s`): PyTorch's OpenMP threads (libgomp, the
default wait policy) keep spinning for about 10 ms after each call (measured on the 2-core AVX2 EPYC: 10 ms of
CPU burned in the first 10 ms after a call, 0.1 ms in each 10 ms after that), and in a rotation they took a core
from whichever ONNX Runtime session came next: the demo's pruned image tower measured 1.15-1.19x faster than
the unpruned one with the teacher in the rotation, 1.31x with ONNX Runtime sessions alone. TorchSession on the
CPU pauses 50 ms; the teacher itself is timed as it runs, with its default wait policy.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mmcompress.runtimes.base import Session

# one implementation for the run and for the board-side check (checks/board_check.py ships in every bundle)
from mmcompress.checks.board_check import QUANTILES, budget_point, feeds_at, measure, summarize  # noqa: F401


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def pair(times: dict[str, np.ndarray], name: str, reference: str) -> dict:
    """`name`'s speedup over `reference` from the same paired rounds, with its 95% bootstrap interval."""
    row = summarize({reference: times[reference], name: times[name]}, reference)[name]
    return {"speedup": row["speedup"], "speedup_ci95": row["speedup_ci95"]}


def _round8(n: float) -> int:
    return int(-(-int(np.ceil(n)) // 8) * 8)


def text_lengths(token_counts: np.ndarray, max_length: int, fixed: list[int], padding: str) -> dict[int, str]:
    """{length: where it comes from} for timing text. token_counts: (N,) of the eval texts."""
    if padding == "max_length":
        return {max_length: "model's fixed length"}
    out: dict[int, list[str]] = {}
    if len(token_counts):
        for label, q in (("eval median", 50), ("eval p90", 90)):
            n = min(max_length, max(8, _round8(np.percentile(token_counts, q))))
            out.setdefault(n, []).append(label)
    for n in fixed:
        out.setdefault(min(n, max_length), []).append("recipe")
    return {n: ", ".join(v) for n, v in sorted(out.items())}


def audio_seconds(clip_seconds: np.ndarray | None, fixed: list[float]) -> dict[float, str]:
    """{seconds: where it comes from} for timing an audio tower that takes any length: the eval clips' median and
    p90 durations rounded up to 0.1 s, and the recipe's checks.audio_seconds."""
    out: dict[float, list[str]] = {}
    if clip_seconds is not None and len(clip_seconds):
        for label, q in (("eval median", 50), ("eval p90", 90)):
            s = max(0.1, float(np.ceil(np.percentile(clip_seconds, q) * 10 - 1e-9) / 10))
            out.setdefault(round(s, 1), []).append(label)
    for s in fixed:
        out.setdefault(float(s), []).append("recipe")
    return {s: ", ".join(v) for s, v in sorted(out.items())}


def points(tower: str, batch_sizes: list[int], lengths: dict[int, str] | None, window_s: float | None = None,
           seconds: dict[float, str] | None = None, sampling_rate: int | None = None) -> list[dict]:
    """The (batch, length) points a tower is timed at, each with its report key ('16', '16@24' for text,
    '16@1.015s' for audio at its window, '16@0.8s' for audio of any length at `seconds`; seq_len is then in
    samples at sampling_rate)."""
    if tower == "audio" and window_s:
        return [{"key": f"{b}@{window_s:g}s", "batch": b, "seq_len": None, "clip_s": window_s,
                 "seq_len_from": "the model's window: every clip is padded or cut to it"} for b in batch_sizes]
    if tower == "audio" and seconds:
        return [{"key": f"{b}@{s:g}s", "batch": b, "seq_len": int(round(s * sampling_rate)), "clip_s": s,
                 "seq_len_from": src} for s, src in seconds.items() for b in batch_sizes]
    if tower not in ("text", "fusion") or not lengths:
        return [{"key": str(b), "batch": b, "seq_len": None, "seq_len_from": None} for b in batch_sizes]
    return [{"key": f"{b}@{n}", "batch": b, "seq_len": n, "seq_len_from": src}
            for n, src in lengths.items() for b in batch_sizes]


def measure_artifacts(bundle, artifacts: dict, inputs, cfg, threads: int) -> dict:
    """-> {tower: {point key: {session key: summary + batch/seq_len}}}; sessions: 'teacher' and each distinct
    (runtime, file) of the artifacts, keyed by the artifacts' `keys` (the graph path for ONNX Runtime on the CPU,
    'runtime:path' for the others)."""
    from mmcompress import runtimes
    from mmcompress.progress import bar
    from mmcompress.runtimes.torch import TorchSession

    text = bundle.text_preprocess
    lengths = (text_lengths(inputs.text_lengths(), text.max_length, cfg.text_lengths, text.padding)
               if text is not None and ({"text", "fusion"} & set(bundle.towers)) else None)
    audio = bundle.audio_preprocess
    window = audio.window_s if audio is not None else None
    seconds = audio_seconds(inputs.clip_seconds, cfg.audio_seconds) if audio is not None and not window else None
    rate = audio.sampling_rate if audio is not None else None
    plan = {t: points(t, cfg.batch_sizes, lengths, window, seconds, rate) for t in bundle.towers}
    out: dict = {}
    with bar("timing (interleaved with the teacher)", sum(map(len, plan.values())) * cfg.rounds) as update:
        done = 0

        def tick():
            nonlocal done
            done += 1
            update(done)
        for tower in bundle.towers:
            # one session per distinct graph: files with the same bytes (a plan that came out as plain dynamic
            # int8, say) are timed once and share the row; two sessions of one graph measured 13% apart
            first: dict[tuple, str] = {}  # Runtime.timing_id (runtime, sha256, ...) -> the first key with it
            alias, owner = {}, {}
            for a in artifacts.values():
                key = a.key(tower)
                alias[key] = first.setdefault(runtimes.get(a.runtime).timing_id(a, tower), key)
                owner.setdefault(key, a)
            files = sorted(set(alias.values()))
            sessions = {"teacher": TorchSession(bundle.towers[tower], list(bundle.specs[tower].inputs))}
            sessions.update({f: runtimes.get(owner[f].runtime).session(owner[f], tower, threads,
                                                                       Path(owner[f].towers[tower]).stem)
                             for f in files})
            out[tower] = {}
            for p in plan[tower]:
                feeds = feeds_at(inputs.feeds[tower], p["batch"], p["seq_len"], text.pad_id if text else 0)
                times = measure(sessions, feeds, rounds=cfg.rounds, warmup=cfg.warmup, progress=tick)
                where = {"batch": p["batch"], "seq_len": p["seq_len"], "seq_len_from": p["seq_len_from"],
                         **({"clip_s": p["clip_s"]} if "clip_s" in p else {})}
                rows = {name: {**row, **where} for name, row in summarize(times, "teacher").items()}
                for f in files:  # each graph against every other graph path of the same rounds (pruned vs not)
                    vs = {g: pair(times, f, g) for g in files if g != f}
                    rows[f]["vs"] = {p: vs[same] for p, same in alias.items() if same != f}
                rows.update({path: rows[same] for path, same in alias.items() if path != same})
                out[tower][p["key"]] = rows
    return out


def measure_adaptive(sessions: dict[str, Session], feeds: dict[str, np.ndarray], *, warmup: int = 3,
                     min_rounds: int = 10, max_rounds: int = 300, max_seconds: float = 20.0,
                     rel_width: float = 0.04, block: int = 10) -> tuple[dict[str, np.ndarray], str]:
    """Interleaved rounds (as `measure`), added `block` at a time until every candidate's 95% interval of its
    speedup over the first session is narrower than rel_width (relative to the speedup), or max_rounds or
    max_seconds is reached. -> (name -> seconds per round, why it stopped)."""
    t_end = time.perf_counter() + max_seconds
    times = measure(sessions, feeds, rounds=max(min_rounds, block), warmup=warmup)
    reference = next(iter(sessions))
    while True:
        rows = summarize(times, reference)
        widths = [(r["speedup_ci95"][1] - r["speedup_ci95"][0]) / r["speedup"] for n, r in rows.items() if n != reference]
        n = len(times[reference])
        if not widths or max(widths) <= rel_width:
            return times, f"interval within {rel_width:.0%} after {n} rounds"
        if n >= max_rounds:
            return times, f"stopped at max_rounds {max_rounds} (widest interval {max(widths):.1%})"
        if time.perf_counter() >= t_end:
            return times, f"stopped at max_seconds {max_seconds:g} after {n} rounds (widest interval {max(widths):.1%})"
        more = measure(sessions, feeds, rounds=block, warmup=0)
        times = {k: np.concatenate([times[k], more[k]]) for k in times}
