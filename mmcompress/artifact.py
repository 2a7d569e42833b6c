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
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

MANIFEST = "manifest.json"
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
