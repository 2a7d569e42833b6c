"""Artifacts on disk: files written atomically, with a manifest.json that makes them reusable.

A stage folder is valid only when its manifest.json exists, carries the expected cache key and every file it
lists still has the recorded sha256. The manifest is written last (temp file + rename), so a stage killed
mid-write leaves a folder without a valid manifest, and the next run recomputes it.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

MANIFEST = "manifest.json"


def owns(variant, tower: str) -> bool:
    """A variant owns a tower when it lists it and converts something (quantize is not none); other towers are
    the fp32 export's, shown beside it but not gated by it."""
    return tower in variant.towers and variant.quantize != "none"


@dataclass(frozen=True)
class Artifact:
    """One variant as made: what crosses from export/ to the checks, the bundles and the report. Evaluation
    results are a separate record (checks.evaluate.Evaluation), never written into it."""

    name: str                      # the variant's name
    variant: Any                   # its recipe config (recipe.Variant)
    model: str                     # what it was made from: 'teacher' or a torch stage's name
    towers: dict[str, Path]        # tower -> the file its runtime runs (graph, engine, or weights.pt)
    sha256: dict[str, str]         # tower -> that file's sha256 (what its evaluation is keyed by)
    manifest: dict                 # the variant stage's manifest (a plan's details, ...)
    graphs: dict[str, Path] = field(default_factory=dict)  # tower -> its ONNX graph ({} for PyTorch runtimes)
    int8: dict = field(default_factory=dict)               # the int8 settings it was made with (target, ...)
    precision: dict[str, str] = field(default_factory=dict)  # tower -> the arithmetic asked of its runtime where it
                                                             # has a choice ('bf16' on OpenVINO); absent: the graph's
    bundle: Any = None             # the PyTorch model, for runtimes that run it (runs == "torch")

    @property
    def runtime(self) -> str:
        return self.variant.runtime

    def owns(self, tower: str) -> bool:
        return owns(self.variant, tower)

    def key(self, tower: str) -> str:
        """The latency rows' name for this tower's file (runtimes.Runtime.key)."""
        from mmcompress import runtimes

        return runtimes.get(self.runtime).key(self, tower)

    def replace(self, **changes) -> "Artifact":
        return replace(self, **changes)
MANIFEST_SCHEMA = 1


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 of the package's own source files: part of every cache key, so a changed mmcompress recomputes."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def stable_hash(obj: Any) -> str:
    """sha256 of a JSON-able object with sorted keys: cache keys for configs."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block finishes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_manifest(folder: Path, *, stage: str, cache_key: str, files: dict[str, dict], config: Any,
                   parents: dict[str, str], extra: dict | None = None) -> dict:
    """files: {relative name: extra facts (inputs spec, parity, ...)}; sha256 and size are added here."""
    from mmcompress.machine import versions

    entries = {}
    for name, facts in files.items():
        p = folder / name
        entries[name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size, **facts}
    manifest = {"schema_version": MANIFEST_SCHEMA, "stage": stage, "cache_key": cache_key, "config": config,
                "parents": parents, "files": entries, "versions": versions(), **(extra or {})}
    write_json(folder / MANIFEST, manifest)
    return manifest


def save_npz(path: Path, **arrays) -> None:
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_npz(path: Path) -> dict:
    import numpy as np

    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def read_valid_manifest(folder: Path, cache_key: str) -> dict | None:
    """The manifest if the folder holds a complete result for this cache key, else None."""
    mpath = folder / MANIFEST
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("schema_version") != MANIFEST_SCHEMA or manifest.get("cache_key") != cache_key:
        return None
    for name, facts in manifest.get("files", {}).items():
        p = folder / name
        if not p.is_file() or p.stat().st_size != facts.get("bytes") or sha256_file(p) != facts.get("sha256"):
            return None
    return manifest
