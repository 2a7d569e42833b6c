"""Shared fixtures. The zoo cache goes to a per-session temp dir, so tests never touch the user's cache and the
tiny teacher (shapes-clip-tiny, registered like the real one) is trained once per session."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "recipes" / "clip-shapes-tiny.yaml"


def pytest_configure(config):
    """MMCOMPRESS_TEST_AS_KIND=amx (or avx2, vnni, ...): the suite sees this machine as that int8 kind, in this
    process and in the mmcompress processes the tests start. A stand-in for a kind the developer was not given:
    it shows that no test assumes the kind it runs on (the kernels are still this CPU's)."""
    kind = os.environ.get("MMCOMPRESS_TEST_AS_KIND")
    if kind:
        from mmcompress import machine

        assert kind in machine.INT8_KINDS, f"MMCOMPRESS_TEST_AS_KIND={kind}: one of {', '.join(machine.INT8_KINDS)}"
        machine.int8_kind = lambda: kind
        sitecustomize = Path(config.rootpath) / ".pytest-kind"
        sitecustomize.mkdir(exist_ok=True)
        (sitecustomize / "sitecustomize.py").write_text(
            f"from mmcompress import machine\nmachine.int8_kind = lambda: {kind!r}\n")
        os.environ["PYTHONPATH"] = os.pathsep.join([str(sitecustomize), os.environ.get("PYTHONPATH", "")])


@pytest.fixture(scope="session", autouse=True)
def _zoo_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("zoo-cache")
    old = os.environ.get("MMCOMPRESS_CACHE")
    os.environ["MMCOMPRESS_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MMCOMPRESS_CACHE", None)
    else:
        os.environ["MMCOMPRESS_CACHE"] = old


def invoke(*args: str):
    from mmcompress.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny recipe run once: (result, run_dir, report)."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    result = invoke("run", str(TINY), "--run-dir", str(run_dir))
    return result, run_dir, json.loads((run_dir / "report.json").read_text())


@pytest.fixture(scope="session")
def recipes_dir(tmp_path_factory):
    """A copy of recipes/ (with tiny_teacher.py) plus the tiny models and data that `mmcompress examples`
    writes into its examples/ folder: the bring-your-own recipes run here exactly as a user would run them."""
    from mmcompress import examples

    dst = tmp_path_factory.mktemp("recipes")
    for p in (ROOT / "recipes").iterdir():
        if p.is_file():
            shutil.copy(p, dst / p.name)
    examples.write_all(dst / "examples")
    return dst


@pytest.fixture
def tiny_copy(tiny_run, tmp_path):
    """A private copy of the tiny run directory, for tests that damage or rerun it."""
    dst = tmp_path / "run"
    shutil.copytree(tiny_run[1], dst)
    return dst


TRT_VARIANTS = [{"name": "fp32", "quantize": "none"},
                {"name": "int8-dynamic", "quantize": "dynamic"},
                {"name": "trt-int8", "quantize": "static", "target": "tensorrt"},
                {"name": "trt-fp16", "quantize": "fp16", "target": "tensorrt"}]


TRT_JETPACKS = {"5.1.2": "8.5.2", "6.2": "10.3.0", "7.1": "10.13", "7.2.2": "11.4"}  # JetPack -> its TensorRT


@pytest.fixture(scope="session")
def trt_run(tmp_path_factory):
    """The tiny recipe with graphs shaped for TensorRT and Jetson bundles for JetPack 5.1.2, 6.2, 7.1 and 7.2.2
    (TensorRT 8.5, 10.3, 10.13, 11.4) from the one recipe, run once: (run_dir, report)."""
    import yaml

    tmp = tmp_path_factory.mktemp("trt")
    r = yaml.safe_load(TINY.read_text())
    r["export"]["variants"] = TRT_VARIANTS
    r["export"]["jetson"] = {"jetpack": list(TRT_JETPACKS), "eval_rows": 32,  # the tuner: on 7.2.2 (TensorRT 11.4)
                             "accuracy_tuner": {"threshold": 0.01, "algorithm": "cosine"}}
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    result = invoke("run", str(path), "--run-dir", str(tmp / "run"))
    assert result.exit_code == 0, result.output
    return tmp / "run", json.loads((tmp / "run" / "report.json").read_text())

