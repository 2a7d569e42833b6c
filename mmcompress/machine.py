"""The machine a measurement ran on: int8 speed depends on AVX2 / AVX-512 VNNI / AMX, so every report says."""
from __future__ import annotations

import os
import platform
from functools import lru_cache

INT8_FLAGS = ["avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16"]


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
                if flags and model:
                    break
    except OSError:
        pass
    return model, flags


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ["mmcompress", "torch", "onnx", "onnxruntime", "transformers", "numpy"]:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


@lru_cache(maxsize=1)
def fingerprint() -> dict:
    model, flags = _cpuinfo()
    isa = [f for f in INT8_FLAGS if f in flags]
    if "avx512_vnni" in flags or "avx_vnni" in flags or "amx_int8" in flags:
        int8 = "vnni" + ("+amx" if "amx_int8" in flags else "")
    elif "avx2" in flags:
        int8 = "avx2 (no VNNI: int8 gains are several times smaller)"
    else:
        int8 = "unknown"
    return {"cpu": model, "arch": platform.machine(), "cores": os.cpu_count(), "isa": isa, "int8_path": int8,
            "os": platform.platform(), "versions": versions()}
