"""The runtimes registry: every way mmcompress runs an artifact's towers, by the name a recipe gives it
(`export.variants[].runtime`). Preflight, the pipeline, the checks, latency, the gate and the report ask the
registry; no other module compares runtime names.

An entry is a `Runtime` (runtimes/base.py): what it runs (the ONNX graphs or the PyTorch module), which
`quantize` values, whether it is available here and why not, the device its figures describe, an optional
`prepare` (TensorRT builds its engines there) and `session(artifact, tower, threads)`. The built-in entries
live beside their sessions and are imported on first use (the names are known without importing onnxruntime,
torch or tensorrt); a new runtime is one class and one `register(...)` call:

    from mmcompress.runtimes import Runtime, register

    class MyRuntime(Runtime):
        name = "my-runtime"
        def session(self, artifact, tower, threads, name=None):
            return MySession(artifact.towers[tower], threads)

    register(MyRuntime())
"""
from __future__ import annotations

import importlib

from mmcompress.runtimes.base import Runtime, Session

# name -> the module (under mmcompress.runtimes) that registers it; imported when the runtime is first asked for
_BUILTIN = {"onnxruntime": "onnxruntime", "onnxruntime-cuda": "onnxruntime", "onnxruntime-tensorrt": "onnxruntime",
            "openvino": "openvino", "tensorrt": "tensorrt", "torch-cuda": "torch", "torch-cpu": "torch",
            "auto": "auto"}
RUNTIMES: dict[str, Runtime] = {}
DEFAULT = "onnxruntime"  # a variant's runtime when the recipe names none: ONNX Runtime on this CPU


def register(runtime: Runtime) -> Runtime:
    """Add (or replace) a runtime under its name."""
    if not runtime.name:
        raise ValueError(f"{type(runtime).__name__} has no name")
    RUNTIMES[runtime.name] = runtime
    return runtime


def names() -> list[str]:
    """Every runtime a recipe may name: the built-in ones and those registered since."""
    return list(dict.fromkeys([*_BUILTIN, *RUNTIMES]))


def get(name: str) -> Runtime:
    if name not in RUNTIMES and name in _BUILTIN:
        importlib.import_module(f"mmcompress.runtimes.{_BUILTIN[name]}")
    if name not in RUNTIMES:
        raise KeyError(f"no runtime {name!r}; the runtimes are {', '.join(names())}")
    return RUNTIMES[name]


__all__ = ["DEFAULT", "RUNTIMES", "Runtime", "Session", "get", "names", "register"]
