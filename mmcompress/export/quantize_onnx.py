"""int8 (dynamic, static QDQ) and fp16 conversions of the exported fp32 graphs, with ONNX Runtime's tools.

Defaults come from measurements (docs/quantization.md): U8S8 QDQ on MatMul/Gemm only, per-channel weights.
ORT's own static defaults (S8S8 on every op) were slower than fp32 and cost accuracy on ViT towers.
Settings that depend on the target CPU kind (reduce_range) come from export/int8_targets.py.
"""
from __future__ import annotations

import io
import logging
import tempfile
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Callable

import numpy as np

from mmcompress.recipe import DynamicVariant, Fp16Variant, StaticVariant

_QTYPE = {"int8": "QInt8", "uint8": "QUInt8"}

# target: tensorrt (TensorRT's explicit quantization; the settings Optimum's TensorRT config and ORT's TensorRT EP
# docs name): symmetric int8 activations and weights (zero point 0), a dedicated Q/DQ pair per consumer so that
# TensorRT can fuse each one, per-channel weights of MatMul along the output axis
TENSORRT_QDQ = {"ActivationSymmetric": True, "WeightSymmetric": True, "DedicatedQDQPair": True, "QuantizeBias": False,
                "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}}
# fp16 for TensorRT: the reductions that overflow or lose precision in half (variance, softmax sums) stay fp32
TENSORRT_FP32_OPS = ("LayerNormalization", "Softmax", "Pow", "ReduceMean", "Sqrt")


@contextmanager
def _quiet():
    """ORT's quantizer logs and prints per node: silence it for this call only (root logger restored)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def quantize_dynamic(src: Path, dst: Path, cfg: DynamicVariant, int8: dict, feeds=None, progress=None,
                     include: list[str] | None = None, exclude: list[str] | None = None) -> dict:
    """include: only these nodes (None: every node of cfg.op_types); exclude: these stay float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic as ort_quantize_dynamic

    with _quiet():
        ort_quantize_dynamic(str(src), str(dst), per_channel=cfg.per_channel, op_types_to_quantize=cfg.op_types,
                             weight_type=getattr(QuantType, _QTYPE[cfg.weight_type]),
                             reduce_range=int8["reduce_range"], nodes_to_quantize=include or [],
                             nodes_to_exclude=exclude or [])
    return {"method": "ort.quantize_dynamic", "op_types": cfg.op_types, "per_channel": cfg.per_channel,
            "weight_type": cfg.weight_type, **int8, **({"excluded": list(exclude)} if exclude else {})}


def activation_matmuls(path: Path) -> list[str]:
    """Names of MatMul nodes with no weight (initializer) input: attention's Q.K^T and scores.V."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and not any(i in weights for i in n.input)]


class _Reader:
    """Feeds the calibration rows to ORT in batches of 32, reporting progress."""

    def __init__(self, feeds: dict[str, np.ndarray], progress: Callable[[int], None] | None, batch: int = 32):
        self.feeds, self.progress, self.batch = feeds, progress, batch
        self.n = len(next(iter(feeds.values())))
        self.i = 0

    def get_next(self):
        if self.i >= self.n:
            return None
        out = {k: v[self.i:self.i + self.batch] for k, v in self.feeds.items()}
        self.i += self.batch
        if self.progress:
            self.progress(min(self.i, self.n))
        return out

    def rewind(self):
        self.i = 0


def quantize_static(src: Path, dst: Path, cfg: StaticVariant, int8: dict, feeds: dict[str, np.ndarray],
                    progress: Callable[[int], None] | None = None, exclude: list[str] | None = None) -> dict:
    """QDQ int8 calibrated on `feeds` (preprocessed calibration rows). exclude: node names that stay float
    (names of src: with cfg.preprocess ORT's optimiser may rename nodes, so planners turn it off)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[cfg.calibration.method]
    extra = {"CalibPercentile": cfg.calibration.percentile} if cfg.calibration.method == "percentile" else {}
    trt = getattr(cfg, "target", "cpu") == "tensorrt"
    op_types, activation_type = cfg.op_types, cfg.activation_type  # op types: MatMul/Gemm, as for CPUs (docs/gpu.md)
    if trt:  # TensorRT's explicit quantization: symmetric S8S8, zero points 0, a Q/DQ pair per consumer
        activation_type = "int8"
        extra.update(TENSORRT_QDQ)
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        model_in = src
        if cfg.preprocess:
            model_in = Path(tmp) / "pre.onnx"
            quant_pre_process(str(src), str(model_in), skip_symbolic_shape=True)
        if exclude and model_in != src:
            import onnx

            present = {n.name for n in onnx.load(str(model_in), load_external_data=False).graph.node}
            lost = sorted(set(exclude) - present)
            if lost:
                from mmcompress.errors import RecipeError

                raise RecipeError(f"export.variants[{cfg.name}]: ORT's pre-processing renamed or fused node(s) "
                                  f"{', '.join(lost[:3])} that should stay float; set preprocess: false on this "
                                  f"variant")
        exclude = (exclude or []) + ([] if cfg.activation_matmuls else activation_matmuls(model_in))
        ort_quantize_static(str(model_in), str(dst), _Reader(feeds, progress), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=op_types, per_channel=cfg.per_channel, nodes_to_exclude=exclude,
                            activation_type=getattr(QuantType, _QTYPE[activation_type]),
                            weight_type=getattr(QuantType, _QTYPE[cfg.weight_type]), calibrate_method=method,
                            reduce_range=int8["reduce_range"], extra_options=extra)
    n = len(next(iter(feeds.values())))
    return {"method": "ort.quantize_static", "format": "QDQ", "op_types": op_types,
            "excluded_nodes": len(exclude), "per_channel": cfg.per_channel, "activation_type": activation_type,
            "weight_type": cfg.weight_type, **int8, **({"tensorrt": TENSORRT_QDQ} if trt else {}),
            "calibration": {"method": cfg.calibration.method, "samples": n,
                            **({"percentile": cfg.calibration.percentile} if extra else {})}}


def fp32_ops(cfg: Fp16Variant) -> list[str]:
    """The op types an fp16 variant leaves in float32."""
    if cfg.keep_fp32_ops is not None:
        return list(cfg.keep_fp32_ops)
    return list(TENSORRT_FP32_OPS) if cfg.target == "tensorrt" else []


def convert_fp16(src: Path, dst: Path, cfg: Fp16Variant, int8: dict, feeds=None, progress=None) -> dict:
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    keep = fp32_ops(cfg)
    with _quiet():
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=cfg.keep_io_types,
                                         op_block_list=list(DEFAULT_OP_BLOCK_LIST) + keep)
        onnx.save(model, str(dst))
    kept = sorted({n.op_type for n in model.graph.node if n.op_type in keep})
    return {"method": "onnxruntime.transformers.float16", "keep_io_types": cfg.keep_io_types, "target": cfg.target,
            "fp32_ops": keep, "fp32_ops_in_graph": kept}


def float_nodes(src: Path, patterns: list[str], where: str) -> list[str]:
    """Names of the quantizable nodes of `src` whose PyTorch module a keep_float pattern chooses; a graph
    without module names, or patterns that choose nothing, are errors naming `where`."""
    from mmcompress.errors import RecipeError
    from mmcompress.export.sensitivity import quantizable
    from mmcompress.patterns import select

    if not patterns:
        return []
    nodes = quantizable(src)
    named = [n for n in nodes if n.module]
    if not named:
        raise RecipeError(f"{where}: {src} records no PyTorch module names (they come with export.onnx.exporter: "
                          f"dynamo); use the dynamo exporter or remove keep_float")
    chosen = set(select([n.module for n in named], patterns, where))
    if not chosen:
        raise RecipeError(f"{where}: {patterns} choose none of the {len(named)} quantizable modules of {src.name} "
                          f"(e.g. {', '.join(n.module for n in named[:3])})")
    return [n.name for n in named if n.module in chosen]


def stage(variant, src_dir: Path, inputs, folder: Path, int8: dict) -> tuple[dict, dict]:
    """Convert each tower the variant names from src_dir/<tower>.onnx into folder/<tower>.onnx.

    int8: int8_targets.settings(variant, export.target), resolved by the caller (part of the cache key)."""
    from mmcompress.artifact import atomic_path
    from mmcompress.export.onnx import input_spec
    from mmcompress.progress import bar

    files = {}
    if variant.quantize == "none":
        return files, {"note": "fp32: the export-onnx graphs, unchanged"}
    for tower in variant.towers:
        src, out = src_dir / f"{tower}.onnx", folder / f"{tower}.onnx"
        if not src.exists():
            continue
        feeds, n = None, 0
        if isinstance(variant, StaticVariant):
            n = variant.calibration.samples or len(next(iter(inputs.calib[tower].values())))
            feeds = {k: v[:n] for k, v in inputs.calib[tower].items()}
        keep = float_nodes(src, getattr(variant, "keep_float", []), f"export.variants[{variant.name}].keep_float")
        with atomic_path(out) as tmp, bar(f"converting {tower} tower ({variant.quantize})", n) as update:
            facts = CONVERTERS[type(variant)](src, tmp, variant, int8, feeds, update, **({"exclude": keep} if keep else {}))
        files[out.name] = {"tower": tower, "format": "onnx", "precision": variant.quantize, "io": input_spec(out),
                           "parent": f"export-onnx/{tower}.onnx", "quantizer": facts}
    return files, {}


def quantize_nncf(src: Path, dst: Path, feeds: dict[str, np.ndarray], exclude: list[str] | None = None) -> dict:
    """NNCF's post-training quantization of the ONNX graph (nncf.quantize with ModelType.TRANSFORMER: SmoothQuant
    on MatMul inputs, then min-max ranges and bias correction), calibrated on `feeds` one row at a time (text
    rows cut to their own length); exclude: node names that stay float (NNCF's ignored scope). A QDQ graph
    that ONNX Runtime and OpenVINO both run as int8. pip install nncf (in mmcompress[openvino])."""
    import nncf
    import onnx

    from mmcompress.runtimes.base import trim_padding

    n = len(next(iter(feeds.values())))
    rows = [trim_padding({k: v[i:i + 1] for k, v in feeds.items()}) for i in range(n)]
    nncf_log = logging.getLogger("nncf")
    level, nncf_log.level = nncf_log.level, logging.ERROR  # its INFO lines per node would break into our progress
    with _quiet():
        model = nncf.quantize(onnx.load(str(src)), nncf.Dataset(rows), subset_size=n,
                              model_type=nncf.ModelType.TRANSFORMER,
                              ignored_scope=nncf.IgnoredScope(names=list(exclude or []), validate=False))
        onnx.save(model, str(dst))
    nncf_log.setLevel(level)
    return {"method": "nncf.quantize", "format": "QDQ", "preset": "transformer", "calibration_rows": n,
            "excluded_nodes": len(exclude or []), "nncf": nncf.__version__}


# one converter per variant config type: (src, dst, cfg, int8 settings, calibration feeds or None, progress) -> facts
CONVERTERS = {DynamicVariant: quantize_dynamic, StaticVariant: quantize_static, Fp16Variant: convert_fp16}


def handle_bf16(variant, ctx) -> "Artifact":
    """The variant handler for quantize: bf16 on an ONNX runtime (openvino): no new graph, the runtime runs the
    fp32 export's graphs at bf16 precision (the variant still owns, and gates, its towers)."""
    from mmcompress.artifact import Artifact, owns
    from mmcompress.export import variant_config

    m = ctx.run.stage(f"variant {variant.name}", ctx.folder,
                      {"config": variant_config(variant), "parents": {"export-onnx": ctx.export_manifest["cache_key"]}},
                      lambda d: ({}, {"note": "bf16: the export-onnx graphs, run at bf16 by the runtime"}))
    towers = {t: ctx.export_dir / f"{t}.onnx" for t in ctx.bundle.towers}
    shas = {t: ctx.export_manifest["files"][p.name]["sha256"] for t, p in towers.items()}
    return Artifact(name=variant.name, variant=variant, model=ctx.model, towers=towers, sha256=shas, manifest=m,
                    graphs=dict(towers), precision={t: "bf16" for t in towers if owns(variant, t)})


def handle(variant, ctx) -> "Artifact":
    """The variant handler (export.handlers) for fp32, dynamic, static and fp16 graphs on an ONNX runtime."""
    from mmcompress.export import graph_artifact, int8_targets, variant_config

    int8 = int8_targets.settings(variant, ctx.recipe.export.target) if isinstance(
        variant, (DynamicVariant, StaticVariant)) else {}
    cfg = variant_config(variant, int8=int8)
    parents = {"export-onnx": ctx.export_manifest["cache_key"],
               **({"data": ctx.inputs.key} if isinstance(variant, StaticVariant) else {})}
    m = ctx.run.stage(f"variant {variant.name}", ctx.folder, {"config": cfg, "parents": parents},
                      lambda d: stage(variant, ctx.export_dir, ctx.inputs, d, int8))
    return graph_artifact(variant, ctx, m, int8)
