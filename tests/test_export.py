"""Export and quantization on a real (tiny) CLIP tower through ONNX Runtime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from mmcompress.checks.fidelity import cosine_rows
from mmcompress.errors import StageError
from mmcompress.export import onnx as onnx_export
from mmcompress.export import quantize_onnx
from mmcompress.recipe import DynamicVariant, Fp16Variant, StaticVariant
from mmcompress.runtimes.onnxruntime import OrtSession
from mmcompress.runtimes.torch import TorchSession


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    from mmcompress.models import clip, shapes_clip
    from mmcompress.models.zoo import REGISTRY

    import torch

    torch.manual_seed(0)
    cfg = REGISTRY["shapes-clip-tiny"].config
    tok = shapes_clip.make_tokenizer(cfg.max_length)
    model = shapes_clip.build_model(cfg, len(tok)).eval()
    mods, specs = clip.split_towers(model)
    rng = np.random.default_rng(0)
    feeds = {"image": {"pixel_values": rng.standard_normal((6, 3, 64, 64)).astype(np.float32)},
             "text": {k: v.astype(np.int64) for k, v in tok(["a small red circle", "a large blue bar"] * 3,
                                                             padding="max_length", max_length=8, return_tensors="np").items()
                      if k in ("input_ids", "attention_mask")}}
    out = tmp_path_factory.mktemp("export")
    for t in mods:
        onnx_export.export_tower(mods[t], specs[t], feeds[t], out / f"{t}.onnx", opset=18, exporter="dynamo")
    return mods, specs, feeds, out


@pytest.mark.parametrize("tower", ["image", "text"])
def test_export_matches_pytorch_at_other_batch_size(towers, tower):
    mods, specs, feeds, out = towers
    f = {k: np.concatenate([v, v[:1]]) for k, v in feeds[tower].items()}  # batch 7, exported with batch 2
    ref = TorchSession(mods[tower], list(specs[tower].inputs)).run(f)
    got = OrtSession(out / f"{tower}.onnx", threads=1).run(f)
    facts = onnx_export.parity(got, ref, max_abs=1e-4, min_cosine=0.99999, what=tower)
    assert facts["samples"] == 7 and facts["max_abs_diff"] < 1e-4


def test_parity_failure_is_a_stage_error():
    a = np.ones((2, 4), np.float32)
    with pytest.raises(StageError, match="max \\|diff\\| 1 .*Try export.onnx.exporter: torchscript"):
        onnx_export.parity(a, a + np.array([[1, 0, 0, 0], [0, 0, 0, 0]]), max_abs=1e-3, min_cosine=0.999, what="image")


def _ops(path):
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_dynamic_static_fp16_graphs(towers, tmp_path):
    mods, specs, feeds, out = towers
    src = out / "image.onnx"
    int8 = {"target": "vnni", "reduce_range": False}
    quantize_onnx.quantize_dynamic(src, tmp_path / "dyn.onnx", DynamicVariant(name="d", quantize="dynamic"), int8)
    assert "DynamicQuantizeLinear" in _ops(tmp_path / "dyn.onnx") or "MatMulInteger" in _ops(tmp_path / "dyn.onnx")
    done = []
    static = StaticVariant(name="s", quantize="static")
    facts = quantize_onnx.quantize_static(src, tmp_path / "qdq.onnx", static, int8, feeds["image"], done.append)
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(tmp_path / "qdq.onnx")
    assert facts["calibration"] == {"method": "minmax", "samples": 6} and done[-1] == 6
    quantize_onnx.convert_fp16(src, tmp_path / "fp16.onnx", Fp16Variant(name="h", quantize="fp16"), {})
    model = onnx.load(str(tmp_path / "fp16.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # io kept fp32
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    ref = OrtSession(src, 1).run(feeds["image"])
    for name in ["dyn", "qdq", "fp16"]:
        got = OrtSession(tmp_path / f"{name}.onnx", 1).run(feeds["image"])
        cos = cosine_rows(got, ref)
        assert cos.min() > 0.9, name


def _int8_weight_peak(path) -> int:
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return max(int(np.abs(numpy_helper.to_array(i).astype(np.int32)).max()) for i in model.graph.initializer
               if i.data_type == onnx.TensorProto.INT8 and i.dims and np.prod(i.dims) > 16)


@pytest.mark.parametrize("quantize", ["dynamic", "static"])
def test_target_without_vnni_quantizes_weights_to_7_bits(towers, tmp_path, quantize):
    """AVX2 / AVX-512 without VNNI: U8S8 pairs of products saturate int16 unless weights use 7 bits
    (255 * 63 * 2 = 32130 < 32767); VNNI keeps the full 8 bits."""
    from mmcompress.export import int8_targets

    mods, specs, feeds, out = towers
    variant = (DynamicVariant(name="d", quantize="dynamic") if quantize == "dynamic"
               else StaticVariant(name="s", quantize="static"))
    convert = quantize_onnx.CONVERTERS[type(variant)]
    peaks = {}
    for target in ["avx2", "avx512", "vnni"]:
        int8 = int8_targets.settings(variant, target)
        dst = tmp_path / f"{target}.onnx"
        facts = convert(out / "image.onnx", dst, variant, int8, feeds["image"], None)
        assert facts["target"] == target and facts["reduce_range"] == (target != "vnni")
        peaks[target] = _int8_weight_peak(dst)
    assert peaks["avx2"] <= 64 and peaks["avx512"] <= 64 and peaks["vnni"] == 127
    forced = variant.model_copy(update={"reduce_range": False})
    assert int8_targets.settings(forced, "avx2")["reduce_range"] is False  # the recipe's explicit value wins


def test_recipe_targets_are_the_cpu_kinds_with_settings():
    from typing import get_args

    from mmcompress.export import int8_targets
    from mmcompress.machine import INT8_KINDS, int8_kind, int8_kind_of
    from mmcompress.recipe import ExportConfig

    assert get_args(ExportConfig.model_fields["target"].annotation) == tuple(int8_targets.TARGETS)
    assert set(int8_targets.DEFAULTS) == set(INT8_KINDS)
    # /proc/cpuinfo flags -> kind, as on the two machine kinds here and the others
    assert int8_kind_of({"avx2", "fma"}, "x86_64") == "avx2"
    assert int8_kind_of({"avx2", "avx512f", "avx512bw"}, "x86_64") == "avx512"
    assert int8_kind_of({"avx2", "avx512f", "avx512bw", "avx512_vnni"}, "x86_64") == "vnni"
    assert int8_kind_of({"avx2", "avx_vnni"}, "x86_64") == "vnni"
    assert int8_kind_of({"avx512_vnni", "amx_int8"}, "x86_64") == "amx"
    assert int8_kind_of(set(), "aarch64") == "arm64"
    assert int8_targets.resolve("auto") == int8_targets.resolve(int8_kind())  # auto is this machine


def test_the_pooled_token_export_form_is_the_image_tower_exactly():
    from transformers import CLIPConfig, CLIPModel

    from mmcompress.models import clip

    torch.manual_seed(0)
    common = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64)
    model = CLIPModel(CLIPConfig(text_config=dict(vocab_size=40, max_position_embeddings=8, **common),
                                 vision_config=dict(image_size=32, patch_size=8, **common), projection_dim=16)).eval()
    tower = clip.ImageTower(model)
    fast = clip.export_form(tower, pooled_only=True)
    assert isinstance(fast, clip.PooledTokenImageTower)
    assert clip.export_form(tower, pooled_only=False) is tower
    assert clip.export_form(clip.TextTower(model), pooled_only=True).__class__ is clip.TextTower
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fast(x), tower(x), atol=1e-5)
