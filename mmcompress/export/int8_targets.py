"""int8 settings per target CPU kind (machine.INT8_KINDS), from measurements in docs/quantization.md.

Without VNNI (AVX2, AVX-512F/BW), ONNX Runtime's U8S8 kernels multiply u8 x s8 with vpmaddubsw, which adds
pairs of products in int16 and saturates at 32767: 255 * 127 * 2 = 64770 overflows. ORT's quantization docs
name two ways out: 7-bit weights (`reduce_range`: 255 * 63 * 2 = 32130 fits) or U8U8. Measured on an AVX2
EPYC (docs/quantization.md): reduce_range keeps min cosine >= 0.999 at the same speed (dynamic and static, demo
and ViT-B/32-shaped towers); U8U8 is as accurate but 6-13% slower (ViT-B/32-shaped tower). With VNNI (and AMX)
the products accumulate in int32, nothing saturates, and full 8-bit weights keep more precision. ARM64
kernels do not saturate either (ORT docs; not measured here).
"""
from __future__ import annotations

from mmcompress import machine

# kind -> quantizer settings the variant does not set itself
DEFAULTS: dict[str, dict] = {
    "avx2": {"reduce_range": True},
    "avx512": {"reduce_range": True},
    "vnni": {"reduce_range": False},
    "amx": {"reduce_range": False},
    "arm64": {"reduce_range": False},
}
TARGETS = ["auto", *machine.INT8_KINDS]


def resolve(target: str) -> str:
    """'auto' -> this machine's int8 kind; an unknown x86 CPU is treated as AVX2 (the safe settings)."""
    kind = machine.int8_kind() if target == "auto" else target
    return kind if kind in DEFAULTS else "avx2"


def settings(variant, target: str) -> dict:
    """{'target': kind, 'reduce_range': bool, ...}: the target's defaults, then what the variant sets."""
    if getattr(variant, "target", "cpu") == "tensorrt":  # TensorRT's int8 is symmetric 8-bit, no saturation
        return {"target": "tensorrt", "reduce_range": False}
    kind = resolve(target)
    out = {"target": kind, **DEFAULTS[kind]}
    if getattr(variant, "reduce_range", None) is not None:
        out["reduce_range"] = variant.reduce_range
    return out
