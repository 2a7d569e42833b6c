"""`mmcompress check BUNDLE` and `mmcompress bench BUNDLE`: a Jetson bundle's engines (export/jetson.py) checked
on the board that built them, against the teacher's outputs shipped in the bundle.

The check itself is checks/board_check.py, the same file every bundle ships as its check.py (it runs on
JetPack's own Python without mmcompress): per variant the task metric on the eval sample (towers the variant
does not build take the teacher's outputs), cosine to the teacher per tower, top-1 agreement, latency per tower,
every budget the recipe gave that variant, and with a DLA core the share of layers that fell back to the GPU.
`--onnxruntime` runs the bundle's ONNX graphs on ONNX Runtime's CPU instead (int8 Q/DQ as written): a check of
the bundle itself before it goes to a board. Here its errors become mmcompress's, with the same exit codes.
"""
from __future__ import annotations

from pathlib import Path

from mmcompress.checks import board_check
from mmcompress.checks.board_check import decode_version, engine_manifest, parse_build_log  # noqa: F401
from mmcompress.errors import BackendMissing, MMCompressError, RecipeError, StageError

_ERRORS = {board_check.BundleError: RecipeError, board_check.Missing: BackendMissing, board_check.CheckError: StageError}


def _ours(e: board_check.CheckError) -> MMCompressError:
    return next(ours for theirs, ours in _ERRORS.items() if isinstance(e, theirs))(str(e))


def load(folder: Path) -> tuple[dict, dict]:
    """-> (bundle.json, eval.npz arrays)."""
    try:
        return board_check.load(Path(folder))
    except board_check.CheckError as e:
        raise _ours(e) from None


def _inputs(m: dict, arrays: dict) -> board_check.Sample:
    return board_check.Sample(m, arrays)


def sessions(folder: Path, m: dict, use_onnxruntime: bool, threads: int) -> dict:
    """(variant, tower) -> session for every engine built (or every graph, with use_onnxruntime)."""
    try:
        return board_check.sessions(Path(folder), m, use_onnxruntime, threads)
    except board_check.CheckError as e:
        raise _ours(e) from None


def check(folder: Path, use_onnxruntime: bool = False, threads: int = 1, rounds: int = 20) -> dict:
    try:
        return board_check.check(Path(folder), use_onnxruntime, threads, rounds)
    except board_check.CheckError as e:
        raise _ours(e) from None


def table(result: dict):
    from rich.table import Table

    t = Table(title=f"{result['bundle']} on {result['runtime']} (JetPack {result.get('jetpack')}, TensorRT "
                    f"{result.get('tensorrt')})", title_justify="left",
              caption=("not built: " + ", ".join(result["not_built"])) if result["not_built"] else None)
    for h in ("variant", "towers", "metric", "Δ pts", "agreement", "cos min", "DLA→GPU", "verdict"):
        t.add_column(h)
    for name, r in result["variants"].items():
        p = r["accuracy"]["primary"]
        cos = ", ".join(f"{k} {v['min']:.4f}" for k, v in r["fidelity"].items())
        dla = ", ".join(f"{k}: {v['gpu_share']:.0%}" for k, v in result["dla_fallback"].items() if k.startswith(f"{name}/"))
        agree = r.get("top1_agreement")
        t.add_row(name, ", ".join(r["towers"]), f"{p['metric']} {p['value']:.1f}" if p else "-",
                  "-" if r["delta"] is None else f"{r['delta']:+.1f}", "-" if agree is None else f"{agree:.1f}%",
                  cos, dla or "-", "pass" if not r["failures"] else "FAIL: " + "; ".join(r["failures"]))
    return t
