"""Latency of the teacher and every candidate, interleaved in one process so that they share the machine's state.

Per (tower, batch): every session gets `warmup` untimed calls, then `rounds` rounds in which each session runs
once, in an order that rotates each round. Reported: median and p90 in ms, and per candidate the speedup
(teacher median / candidate median) with a 95% bootstrap interval over the paired rounds.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from mmcompress.runtimes.base import Session


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def measure(sessions: dict[str, Session], feeds: dict[str, np.ndarray], *, rounds: int, warmup: int,
            progress: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
    """sessions: name -> Session (the first is the reference). Returns name -> (rounds,) seconds."""
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
        if progress:
            progress()
    return times


def summarize(times: dict[str, np.ndarray], reference: str, seed: int = 0) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    ref = times[reference]
    out = {}
    for name, t in times.items():
        row = {"median_ms": float(np.median(t) * 1e3), "p90_ms": float(np.percentile(t, 90) * 1e3),
               "rounds": int(len(t))}
        if name != reference:
            idx = rng.integers(0, len(t), size=(1000, len(t)))  # resample paired rounds
            ratios = np.median(ref[idx], axis=1) / np.median(t[idx], axis=1)
            row["speedup"] = float(np.median(ref) / np.median(t))
            row["speedup_ci95"] = [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))]
        out[name] = row
    return out
