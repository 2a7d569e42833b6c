"""The machine a measurement ran on: int8 speed and accuracy depend on AVX2 / AVX-512 VNNI / AMX, so every
report says, and the int8 kind is part of the cache key of anything measured."""
from __future__ import annotations

import os
import platform
from functools import lru_cache

INT8_FLAGS = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16"]

# The CPU kinds whose int8 kernels differ in ONNX Runtime (MLAS), and what the difference is.
INT8_KINDS = {
    "avx2": "AVX2 without VNNI: U8S8 products are summed in int16 (vpmaddubsw) and saturate",
    "avx512": "AVX-512 without VNNI: the same int16 saturation as AVX2, wider registers",
    "vnni": "AVX-512 VNNI or AVX-VNNI: int8 dot products accumulate in int32, no saturation",
    "amx": "AMX (with VNNI): int8 tile matrix multiply",
    "arm64": "ARM64: int8 dot-product kernels, no int16 saturation",
}


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith(("flags", "Features")) and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
                if flags and model:
                    break
    except OSError:
        pass
    return model, flags


def int8_kind_of(flags: set[str], arch: str) -> str:
    """One of INT8_KINDS (or 'unknown') from /proc/cpuinfo flags and the machine architecture."""
    if arch.lower() in ("aarch64", "arm64"):
        return "arm64"
    if "amx_int8" in flags:
        return "amx"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "vnni"
    if "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "unknown"


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPUs that compute bf16 natively (AVX-512 BF16, AMX)


def cpu_bf16() -> bool:
    """This CPU computes bf16 natively (AVX-512 BF16 or AMX): bf16 on the CPU pays here, not elsewhere."""
    return bool(set(BF16_FLAGS) & _cpuinfo()[1])


def cpu_model() -> str:
    return _cpuinfo()[0]


@lru_cache(maxsize=1)
def int8_kind() -> str:
    return int8_kind_of(_cpuinfo()[1], platform.machine())


def usable_cores() -> int:
    """Cores this process may use: the affinity mask and a cgroup CPU quota, not the host's core count
    (os.cpu_count() overcounts inside CI containers)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ["mmcompress", "torch", "onnx", "onnxruntime", "onnxscript", "transformers", "numpy"]:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


@lru_cache(maxsize=1)
def fingerprint() -> dict:
    model, flags = _cpuinfo()
    isa = [f for f in INT8_FLAGS if f in flags]
    kind = int8_kind()
    return {"cpu": model, "arch": platform.machine(), "cores": usable_cores(), "isa": isa, "int8_kind": kind,
            "int8_path": f"{kind}: {INT8_KINDS.get(kind, 'no known int8 kernel path')}",
            "os": platform.platform(), "versions": versions()}
