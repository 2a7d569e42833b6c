"""Runtimes other than ONNX Runtime on the CPU: PyTorch eager on the CPU or CUDA in fp32/fp16/bf16, ONNX Runtime's
GPU providers. What needs a GPU is marked `gpu` and skips without one; the refusals are tested where the runtime
is missing (every CPU machine)."""
from __future__ import annotations

import json

import pytest
import yaml

from conftest import TINY, invoke


def _recipe(tmp_path, variants, **checks):
    r = yaml.safe_load(TINY.read_text())
    r["export"]["variants"] = variants
    r["checks"].update(checks)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    return path


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_torch_cpu_runtime_checks_the_model_cast_to_bf16_and_fp16(tmp_path):
    from mmcompress.runtimes import torch as torch_runtime

    bf16 = torch_runtime.bf16_here()  # bf16 runs where the CPU computes it; elsewhere it is refused (next test)
    path = _recipe(tmp_path, [{"name": "fp32", "quantize": "none"},
                              {"name": "pt-fp32", "quantize": "none", "runtime": "torch-cpu"},
                              *([{"name": "pt-bf16", "quantize": "bf16", "runtime": "torch-cpu"}] if bf16 else []),
                              {"name": "pt-fp16-image", "quantize": "fp16", "runtime": "torch-cpu",
                               "towers": ["image"]}])
    result = invoke("run", str(path), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    arts = rep["artifacts"]
    assert arts["pt-fp32"]["kind"] == "torch-cpu-fp32" and arts["pt-fp16-image"]["kind"] == "torch-cpu-fp16"
    assert arts["pt-fp16-image"]["towers"]["text"]["gated"] is False
    assert arts["pt-fp16-image"]["fidelity"]["text"]["min"] > 0.99999  # the unlisted tower stays fp32
    assert arts["pt-fp32"]["size_mb"] == pytest.approx(arts["teacher"]["size_mb"], abs=0.1)  # + pickle's keys
    assert arts["pt-fp32"]["fidelity"]["image"]["min"] > 0.99999  # fp32 eager is the teacher itself
    # every artifact is its own row in the timing, also when two share a file's bytes on different runtimes
    lat = arts["pt-fp32"]["latency"]["image"]["4"]
    assert lat["median_ms"] != arts["fp32"]["latency"]["image"]["4"]["median_ms"] and "fp32" in lat["vs"]
    if not bf16:
        return
    assert arts["pt-bf16"]["kind"] == "torch-cpu-bf16"
    assert arts["pt-bf16"]["runtime"]["device"] == "cpu" and arts["fp32"]["runtime"]["runtime"] == "onnxruntime"
    # no ONNX for torch variants: their weights at the precision, one file shared by the towers
    assert sorted(p.name for p in (tmp_path / "run" / "variants" / "pt-bf16").iterdir()) == ["manifest.json", "weights.pt"]
    assert arts["pt-bf16"]["size_mb"] < 0.65 * arts["pt-fp32"]["size_mb"]
    assert 0.99 < arts["pt-bf16"]["fidelity"]["image"]["min"] < 0.999999  # bf16: close, not identical
    assert "pt-bf16" in lat["vs"]


def test_torch_cpu_bf16_is_refused_on_a_cpu_without_bf16_naming_why(tmp_path, monkeypatch):
    from mmcompress.runtimes import torch as torch_runtime

    monkeypatch.setattr(torch_runtime, "bf16_here", lambda: False)  # this CPU as one without AVX-512 BF16 / AMX
    path = _recipe(tmp_path, [{"name": "fp32", "quantize": "none"},
                              {"name": "pt-bf16", "quantize": "bf16", "runtime": "torch-cpu"}])
    result = invoke("validate", str(path))
    assert result.exit_code == 2, result.output
    assert "export.variants[1]" in result.output and "AVX-512 BF16 or AMX" in result.output


@pytest.mark.skipif(_cuda(), reason="this machine has CUDA: the refusal is for machines without it")
def test_torch_cuda_without_a_gpu_exits_4_naming_the_variant_before_any_stage(tmp_path):
    path = _recipe(tmp_path, [{"name": "fp32", "quantize": "none"},
                              {"name": "gpu", "quantize": "fp16", "runtime": "torch-cuda"}])
    result = invoke("run", str(path), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 4, result.output
    assert "recipe.yaml:" in result.output and "export.variants[1].runtime" in result.output
    assert "CUDA device" in result.output
    assert not (tmp_path / "run" / "teacher").exists()


def test_onnxruntime_gpu_provider_missing_exits_4_instead_of_running_on_the_cpu(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    path = _recipe(tmp_path, [{"name": "gpu", "quantize": "none", "runtime": "onnxruntime-cuda"}])
    result = invoke("run", str(path), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 4, result.output
    assert "export.variants[0].runtime" in result.output and "CUDAExecutionProvider" in result.output
    assert "onnxruntime-gpu" in result.output


def test_session_refuses_a_provider_onnxruntime_would_silently_drop(tiny_run):
    import onnxruntime as ort

    from mmcompress.errors import BackendMissing
    from mmcompress.runtimes.onnxruntime import OrtSession

    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the TensorRT provider")
    with pytest.raises(BackendMissing, match="TensorrtExecutionProvider"):
        OrtSession(tiny_run[1] / "export-onnx" / "image.onnx", 1, runtime="onnxruntime-tensorrt")


@pytest.mark.parametrize("variant,message", [
    ({"name": "x", "quantize": "bf16"}, "quantize bf16 is for PyTorch runtimes"),
    ({"name": "x", "quantize": "dynamic", "runtime": "torch-cuda"}, "quantize none, fp16 or bf16"),
    ({"name": "x", "quantize": "none", "runtime": "cuda"}, "runtime"),
])
def test_a_runtime_that_cannot_take_the_precision_is_a_recipe_error(tmp_path, variant, message):
    path = _recipe(tmp_path, [variant])
    result = invoke("validate", str(path))
    assert result.exit_code == 2, result.output
    assert "recipe.yaml:" in result.output and message in result.output


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA device")
def test_torch_cuda_runtime_runs_the_tiny_recipe_in_fp16_and_bf16(tmp_path):
    path = _recipe(tmp_path, [{"name": "cuda-fp32", "quantize": "none", "runtime": "torch-cuda"},
                              {"name": "cuda-fp16", "quantize": "fp16", "runtime": "torch-cuda"},
                              {"name": "cuda-bf16", "quantize": "bf16", "runtime": "torch-cuda"}])
    result = invoke("run", str(path), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    import torch

    for name in ("cuda-fp32", "cuda-fp16", "cuda-bf16"):
        a = rep["artifacts"][name]
        assert a["runtime"]["device"] == torch.cuda.get_device_name()
        assert a["runtime"]["compute_capability"]
        assert min(a["fidelity"][t]["min"] for t in ("image", "text")) > 0.99
    assert rep["machine"]["gpu"]["name"] == torch.cuda.get_device_name()


def test_tensorrt_runtime_without_tensorrt_exits_4_and_int8_for_cpus_is_refused(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        path = _recipe(tmp_path, [{"name": "trt", "quantize": "fp16", "target": "tensorrt", "runtime": "tensorrt"}])
        result = invoke("validate", str(path))
        assert result.exit_code == 4 and "export.variants[0].runtime" in result.output
        assert "TensorRT's Python bindings" in result.output and "export.jetson" in result.output
    path = _recipe(tmp_path, [{"name": "trt", "quantize": "dynamic", "runtime": "tensorrt"}])
    result = invoke("validate", str(path))
    assert result.exit_code == 2 and "runtime tensorrt builds engines" in result.output, result.output
