"""TensorRT engines and Jetson bundles: the version adapter's flags per TensorRT (8.5 to 11.4), engine manifests
and their mismatch errors, the bundles one recipe writes for JetPack 5.1.2, 6.2, 7.1 and 7.2.2 (contents, build.sh
under bash -n and shellcheck with its exact trtexec lines, its own guards), the refusals at validate, and
`mmcompress check` on a bundle (the board-side checker itself: tests/test_board_check.py). TensorRT cannot be
installed on these machines: tests that execute it skip without it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import TINY, TRT_JETPACKS, TRT_VARIANTS as VARIANTS, invoke
from mmcompress.checks import bundle as checks_bundle
from mmcompress.runtimes import tensorrt_adapter as trt_adapter

def _recipe(tmp_path, jetson, variants=VARIANTS):
    r = yaml.safe_load(TINY.read_text())
    r["export"]["variants"] = variants
    r["export"]["jetson"] = jetson
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    return path


@pytest.fixture
def bundles(trt_run):
    """The tiny recipe's run with Jetson bundles for JetPack 5.1.2, 6.2, 7.1 and 7.2.2 (conftest.trt_run)."""
    return trt_run


def _args(bundle_dir: Path, variant: str, tower: str) -> list[str]:
    m = json.loads((bundle_dir / "bundle.json").read_text())
    return next(e["trtexec"] for e in m["engines"] if (e["variant"], e["tower"]) == (variant, tower))


def test_a_bundle_per_jetpack_with_the_graphs_tensorrt_can_build(bundles):
    run, rep = bundles
    assert [b["jetpack"] for b in rep["bundles"]] == list(TRT_JETPACKS)
    boards = {"5.1.2": ["orin-nano", "orin-nx", "agx-orin"], "6.2": ["orin-nano", "orin-nx", "agx-orin"],
              "7.1": ["thor"], "7.2.2": ["agx-orin", "thor"]}
    for jp, trt in TRT_JETPACKS.items():
        d = run / "bundles" / f"jetson-jp{jp}"
        m = json.loads((d / "bundle.json").read_text())
        assert m["jetpack"] == jp and m["tensorrt"] == trt and m["task"] == "dual-encoder"
        assert m["boards"] == boards[jp] and m["cuda"] == ("13" if jp.startswith("7") else m["cuda"])
        # each variant's own budgets: the recipe-wide ones merged with the variant's
        assert m["variants"]["trt-int8"]["budgets"]["max_accuracy_drop"] == 100
        assert m["variants"]["trt-int8"]["budgets"]["min_cosine"] == 0.5
        assert (d / "check.py").read_bytes() == Path(checks_bundle.board_check.__file__).read_bytes()
        shipped = {(e["variant"], e["tower"], e["precision"]) for e in m["engines"]}
        assert shipped == {(v, t, p) for v, p in (("fp32", "fp32"), ("trt-int8", "int8-qdq"), ("trt-fp16", "fp16"))
                           for t in ("image", "text")}  # dynamic int8 has ORT-only ops: not shipped
        for e in m["engines"]:
            from mmcompress.artifact import sha256_file

            assert sha256_file(d / e["onnx"]) == e["onnx_sha256"]
            assert e["profile"]  # min/opt/max per input
        z = np.load(d / "eval.npz")
        assert z["feed/image/pixel_values"].shape[0] == 32 and z["teacher/image"].shape[0] == 32
        assert z["labels"].shape == (32,)
        assert (d / "README.md").read_text().count("./build.sh") >= 1


def test_build_script_passes_bash_n_and_shellcheck(bundles):
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    for jp in TRT_JETPACKS:
        script = bundles[0] / "bundles" / f"jetson-jp{jp}" / "build.sh"
        subprocess.run(["bash", "-n", str(script)], check=True)
        r = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


# The precision flags build.sh passes per TensorRT (after the profile and the workspace): fp16 graphs with fp32
# islands are strongly typed from TensorRT 9 (types kept), --fp16 hints before; int8 Q/DQ graphs --int8 --fp16
# up to 10.x; TensorRT 11 has no precision flags at all (strongly typed always: the graph says).
PRECISION_FLAGS = {"5.1.2": {"fp32": [], "trt-fp16": ["--fp16"], "trt-int8": ["--int8", "--fp16"]},
                   "6.2": {"fp32": [], "trt-fp16": ["--stronglyTyped"], "trt-int8": ["--int8", "--fp16"]},
                   "7.1": {"fp32": [], "trt-fp16": ["--stronglyTyped"], "trt-int8": ["--int8", "--fp16"]},
                   "7.2.2": {"fp32": [], "trt-fp16": [], "trt-int8": []}}


def _tuner(d: Path, variant: str, tower: str, jetpack: str) -> list[str]:
    """The accuracy tuner's flags the fixture's recipe asks for, on the one TensorRT here that has it (11.4):
    the first opt-batch (4) eval rows, text cut to the columns they use, against the teacher's outputs."""
    if jetpack != "7.2.2":
        return []
    import onnx

    z = np.load(d / "eval.npz")
    feeds = {k.split("/")[2]: z[k][:4] for k in z.files if k.startswith(f"feed/{tower}/")}
    if tower == "text":
        used = np.flatnonzero(feeds["attention_mask"].any(0))
        feeds = {k: v[:, :used[-1] + 1] for k, v in feeds.items()}
    out = onnx.load(str(d / "onnx" / variant / f"{tower}.onnx")).graph.output[0].name
    ref = f"ref/{variant}-{tower}"
    return [f"--loadInputs={','.join(f'{k}:{ref}/{k}.bin' for k in feeds)}",
            f"--shapes={','.join(f'{k}:' + 'x'.join(map(str, v.shape)) for k, v in feeds.items())}",
            f"--loadRefOutputs={out}:{ref}/{out}.teacher.bin", "--accuracyThreshold=0.01", "--accuracyAlgorithm=cosine"]


@pytest.mark.parametrize("jetpack", list(TRT_JETPACKS))
def test_build_script_has_the_exact_trtexec_lines_of_its_tensorrt(bundles, jetpack):
    d = bundles[0] / "bundles" / f"jetson-jp{jetpack}"
    m = json.loads((d / "bundle.json").read_text())
    lines = (d / "build.sh").read_text().splitlines()
    assert f'WANT="{".".join(TRT_JETPACKS[jetpack].split(".")[:2])}"' in lines
    seen = 0
    for variant, flags in PRECISION_FLAGS[jetpack].items():
        for tower in ("image", "text"):
            prof = next(e["profile"] for e in m["engines"] if (e["variant"], e["tower"]) == (variant, tower))
            shapes = [f"--{k}Shapes=" + ",".join(f"{n}:{'x'.join(map(str, s[k]))}" for n, s in prof.items())
                      for k in ("min", "opt", "max")]
            name = f"{variant}-{tower}"
            want = " ".join([f"build {variant}/{tower} logs/{name}.log --onnx=onnx/{variant}/{tower}.onnx",
                             f"--saveEngine=engines/{variant}/{tower}.engine", *shapes, "--memPoolSize=workspace:1024",
                             *flags, *_tuner(d, variant, tower, jetpack), "--timingCacheFile=timing.cache",
                             f"--exportLayerInfo=logs/{name}.layers.json", "--profilingVerbosity=detailed", "--verbose"])
            assert want in lines, (want, [x for x in lines if x.startswith(f"build {variant}/{tower} ")])
            seen += 1
    assert seen == len([x for x in lines if x.startswith("build ")]) == 6  # nothing else is built
    if jetpack == "7.2.2":  # TensorRT 11: none of the removed flags anywhere
        assert not any(f in (d / "build.sh").read_text() for f in ("--fp16", "--int8", "--best", "--stronglyTyped", "--calib"))
    else:  # the tuner only where its TensorRT has it
        assert "--accuracyThreshold" not in (d / "build.sh").read_text() and not (d / "ref").exists()


def test_the_tuners_reference_is_the_teachers_outputs_for_its_inputs(bundles):
    """The files fed to --loadInputs/--loadRefOutputs: raw arrays the fp32 graph, run on them, turns into the
    teacher's outputs shipped beside them (so the tuner judges routes against the teacher)."""
    from mmcompress.runtimes.onnxruntime import OrtSession

    d = bundles[0] / "bundles" / "jetson-jp7.2.2"
    z = np.load(d / "eval.npz")
    for tower in ("image", "text"):
        flags = dict(a[2:].split("=", 1) for a in _tuner(d, "fp32", tower, "7.2.2"))
        shapes = dict(x.split(":") for x in flags["shapes"].split(","))
        feeds = {}
        for spec in flags["loadInputs"].split(","):
            name, path = spec.split(":")
            dtype = z[f"feed/{tower}/{name}"].dtype
            feeds[name] = np.fromfile(d / path, dtype).reshape([int(x) for x in shapes[name].split("x")])
        out, path = flags["loadRefOutputs"].split(":")
        ref = np.fromfile(d / path, np.float32).reshape(4, -1)
        assert np.array_equal(ref, z[f"teacher/{tower}"][:4])
        got = OrtSession(d / "onnx" / "fp32" / f"{tower}.onnx", 1).run(feeds)
        cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
        assert cos.min() > 0.9999, (tower, cos)


def test_build_script_refuses_a_trtexec_without_the_tuners_flags(bundles, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(bundles[0] / "bundles" / "jetson-jp7.2.2", d)
    r = subprocess.run(["bash", str(d / "build.sh")], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "TRTEXEC": str(_stub_trtexec(tmp_path, 110401))})
    assert r.returncode == 4 and "does not list --loadRefOutputs" in r.stderr and "accuracy_tuner" in r.stderr


@pytest.mark.parametrize("version,flags", [
    ("8.5.2", ["--useDLACore=0", "--allowGPUFallback"]), ("10.3.0", ["--useDLACore=0", "--allowGPUFallback"]),
    ("10.13", ["--useDLACore=1"]), ("11.4.1", ["--useDLACore=0", "--allowGPUFallback"]), ("11.2.0", None)])
def test_dla_flags_per_tensorrt_and_none_where_it_has_no_dla(version, flags):
    prof = trt_adapter.profile_for({"x": [None, 3]}, (1, 2, 4), None)
    core = 1 if version == "10.13" else 0

    def args():
        return trt_adapter.trtexec_args(version, "int8-qdq", "m.onnx", "m.engine", prof, workspace_mb=256,
                                        dla_core=core, gpu_fallback=version != "10.13")
    if flags is None:  # TensorRT 11.0-11.3: no DLA at all
        with pytest.raises(ValueError, match="no DLA"):
            args()
        return
    a = args()
    i = a.index(flags[0])
    assert a[i:i + len(flags)] == flags and ("--allowGPUFallback" in a) == (len(flags) == 2)
    f = trt_adapter.features(version)
    assert f.dla("agx-orin") and not f.dla("thor") and not f.dla("orin-nano")
    assert f.dla("orin-nx") == (not version.startswith("11"))  # 11.4: AGX Orin only


def _stub_trtexec(tmp_path, banner_code: int, rc: int = 0) -> Path:
    """A stand-in for trtexec that prints its version banner and exits with rc: what build.sh's own guards
    (version check, out-of-memory message) read. No engine is built."""
    stub = tmp_path / "trtexec"
    stub.write_text(f"#!/usr/bin/env bash\necho '&&&& RUNNING TensorRT.trtexec [TensorRT v{banner_code}] # trtexec'\n"
                    f"exit {rc}\n")
    stub.chmod(0o755)
    return stub


def test_build_script_refuses_another_tensorrt_and_names_an_out_of_memory_kill(bundles, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(bundles[0] / "bundles" / "jetson-jp6.2", d)
    run = lambda stub: subprocess.run(["bash", str(d / "build.sh")], capture_output=True, text=True,
                                      env={"PATH": "/usr/bin:/bin", "TRTEXEC": str(stub)})
    r = run(tmp_path / "missing")
    assert r.returncode == 4 and "no trtexec" in r.stderr
    r = run(_stub_trtexec(tmp_path, 8502))  # a JetPack 5 board given the JetPack 6.2 bundle
    assert r.returncode == 4 and "for TensorRT 10.3" in r.stderr and "has TensorRT 8.5" in r.stderr
    oom = tmp_path / "oom"
    oom.mkdir()
    r = run(_stub_trtexec(oom, 100300, rc=137))
    assert r.returncode == 3 and "out of memory" in r.stderr and "workspace_mb" in r.stderr
    # TensorRT 11's banner (v110400) read right: a JetPack 7.1 board (10.13) given the 7.2.2 bundle, and back
    d11 = tmp_path / "b11"
    shutil.copytree(bundles[0] / "bundles" / "jetson-jp7.2.2", d11)
    (tmp_path / "t10").mkdir()
    r = subprocess.run(["bash", str(d11 / "build.sh")], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "TRTEXEC": str(_stub_trtexec(tmp_path / "t10", 101300))})
    assert r.returncode == 4 and "for TensorRT 11.4" in r.stderr and "has TensorRT 10.13" in r.stderr
    (tmp_path / "t11").mkdir()
    r = run(_stub_trtexec(tmp_path / "t11", 110401))
    assert r.returncode == 4 and "for TensorRT 10.3" in r.stderr and "has TensorRT 11.4" in r.stderr


def test_check_runs_the_bundles_graphs_on_onnxruntime_against_the_shipped_teacher_outputs(bundles):
    run, rep = bundles
    d = run / "bundles" / "jetson-jp6.2"
    result = invoke("check", str(d), "--onnxruntime", "--json", "--rounds", "5")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["runtime"] == "onnxruntime-cpu" and out["passed"] and not out["not_built"]
    assert out["variants"]["fp32"]["delta"] == 0 and out["variants"]["fp32"]["fidelity"]["image"]["min"] > 0.99999
    # the int8 graph as the run checked it: same cosine floor on the shipped rows as on the whole eval split
    assert out["variants"]["trt-int8"]["fidelity"]["image"]["min"] >= rep["artifacts"]["trt-int8"]["fidelity"]["image"]["min"] - 1e-6
    assert set(out["latency"]) == {"image", "text"}
    assert (d / "check-onnxruntime.json").is_file()


def test_check_without_engines_or_tensorrt_says_what_to_do(bundles, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(bundles[0] / "bundles" / "jetson-jp5.1.2", d)
    r = invoke("check", str(d))
    assert r.exit_code == 2 and "./build.sh" in r.output
    if shutil.which("trtexec") is None:
        import importlib.util

        if importlib.util.find_spec("tensorrt") is None:
            (d / "engines" / "fp32").mkdir(parents=True)
            (d / "engines" / "fp32" / "image.engine").write_bytes(b"built elsewhere")
            r = invoke("check", str(d))
            assert r.exit_code == 4 and "TensorRT's Python bindings" in r.output and "--onnxruntime" in r.output


BUILD_LOG = """&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # /usr/src/tensorrt/bin/trtexec --onnx=onnx/fp32/image.onnx
[11/26/2026-10:00:00] [I] === Device Information ===
[11/26/2026-10:00:00] [I] Selected Device: Orin
[11/26/2026-10:00:00] [I] Compute Capability: 8.7
[11/26/2026-10:00:09] [I] [TRT] ---------- Layers Running on DLA ----------
[11/26/2026-10:00:09] [I] [TRT] [DlaLayer] {ForeignNode[/conv/Conv.../encoder/Add]}
[11/26/2026-10:00:09] [I] [TRT] [DlaLayer] {ForeignNode[/mlp/fc1...]}
[11/26/2026-10:00:09] [I] [TRT] ---------- Layers Running on GPU ----------
[11/26/2026-10:00:09] [I] [TRT] [GpuLayer] SHUFFLE: /Reshape
[11/26/2026-10:00:09] [I] [TRT] [GpuLayer] SOFTMAX: /attn/Softmax
[11/26/2026-10:00:09] [I] [TRT] [GpuLayer] MATRIX_MULTIPLY: /attn/MatMul
[11/26/2026-10:00:10] [I] [TRT] [MemUsageChange] Init cuBLAS/cuBLASLt: CPU +0, GPU +0, now: CPU 0, GPU 0 (MiB)
"""


def test_build_log_gives_version_device_and_the_share_that_fell_back_from_dla():
    info = checks_bundle.parse_build_log(BUILD_LOG)
    assert info["tensorrt"] == "8.5.2" and info["gpu"] == "Orin" and info["compute_capability"] == "8.7"
    assert info["layers"] == {"dla": 2, "gpu": 3, "gpu_share": 0.6}
    assert checks_bundle.decode_version(100300) == "10.3.0" and checks_bundle.decode_version(8601) == "8.6.1"
    assert checks_bundle.decode_version(101300) == "10.13.0" and checks_bundle.decode_version(110401) == "11.4.1"
    assert "layers" not in checks_bundle.parse_build_log(BUILD_LOG.split("[I] [TRT] ----------")[0])


def test_an_engine_for_another_tensorrt_or_gpu_is_refused_with_where_to_rebuild():
    built = {"tensorrt": "8.5.2", "gpu": "Orin", "compute_capability": "8.7", "os": "Linux", "arch": "aarch64"}
    trt_adapter.check_manifest(built, dict(built), "e.engine", "./build.sh")  # same machine: no error
    with pytest.raises(trt_adapter.EngineMismatch) as e:
        trt_adapter.check_manifest(built, {**built, "tensorrt": "10.3.0"}, "engines/fp32/image.engine", "./build.sh")
    assert "TensorRT 8.5.2" in str(e.value) and "10.3.0" in str(e.value) and "rebuild it on this machine: ./build.sh" in str(e.value)
    with pytest.raises(trt_adapter.EngineMismatch, match="built for Orin .*this GPU is NVIDIA H100"):
        trt_adapter.check_manifest(built, {**built, "gpu": "NVIDIA H100", "compute_capability": "9.0"}, "e", "x")
    with pytest.raises(trt_adapter.EngineMismatch, match="arch aarch64"):
        trt_adapter.check_manifest(built, {**built, "arch": "x86_64"}, "e", "x")
    with pytest.raises(trt_adapter.EngineMismatch, match="no manifest"):
        trt_adapter.read_manifest(Path("/nonexistent/e.engine"))


@pytest.mark.parametrize("version,network,fp16_flags,workspace", [
    ("8.5.2", ["EXPLICIT_BATCH"], ["FP16"], "set_memory_pool_limit"),
    ("8.2.1", ["EXPLICIT_BATCH"], ["FP16"], "max_workspace_size"),
    ("8.6.2", ["EXPLICIT_BATCH"], ["FP16"], "set_memory_pool_limit"),
    ("10.3.0", ["STRONGLY_TYPED"], [], "set_memory_pool_limit"),
    ("10.13", ["STRONGLY_TYPED"], [], "set_memory_pool_limit"),
    ("11.4.1", [], [], "set_memory_pool_limit"),  # strongly typed is the only mode: no flag says it
])
def test_builder_settings_per_tensorrt_version(version, network, fp16_flags, workspace):
    s = trt_adapter.builder_settings(version, "fp16")
    assert s["network_flags"] == network and s["builder_flags"] == fp16_flags and s["workspace"] == workspace
    int8 = trt_adapter.builder_settings(version, "int8-qdq")
    assert int8["builder_flags"] == ([] if version.startswith("11") else ["INT8", "FP16"])
    assert int8["network_flags"] == ([] if version[:2] in ("10", "11") else ["EXPLICIT_BATCH"])
    if version[:2] in ("10", "11"):
        with pytest.raises(ValueError, match="deprecated from TensorRT 10"):
            trt_adapter.builder_settings(version, "int8-calibrated")
    else:
        assert trt_adapter.builder_settings(version, "int8-calibrated")["calibrator"] is True
        prof = trt_adapter.profile_for({"x": [None, 3]}, (1, 2, 4), None)
        args = trt_adapter.trtexec_args(version, "int8-calibrated", "m.onnx", "m.engine", prof, workspace_mb=512,
                                        calib_cache="c.cache")
        assert "--calib=c.cache" in args
        assert ("--workspace=512" if version == "8.2.1" else "--memPoolSize=workspace:512") in args


def test_calibration_cache_is_keyed_by_graph_data_tensorrt_and_gpu_and_batches_are_fixed_size():
    base = ("a" * 64, "data1", "8.5.2", "Orin")
    names = {trt_adapter.calibration_cache_name(*base)}
    for i, other in enumerate(("b" * 64, "data2", "8.6.2", "Xavier")):
        names.add(trt_adapter.calibration_cache_name(*[other if j == i else x for j, x in enumerate(base)]))
    assert len(names) == 5 and trt_adapter.calibration_cache_name(*base) in names
    feeds = {"pixel_values": np.zeros((70, 3, 4, 4), np.float32)}
    batches = list(trt_adapter.calibration_batches(feeds, 32))
    assert [b["pixel_values"].shape[0] for b in batches] == [32, 32]
    with pytest.raises(ValueError, match="fewer than the calibration batch"):
        list(trt_adapter.calibration_batches(feeds, 128))


@pytest.mark.parametrize("jetson,message,key", [
    ({"jetpack": ["6.2"], "variants": ["int8-dynamic"]}, "ONNX Runtime-only int8 ops", "export.jetson.variants[0]"),
    ({"jetpack": ["6.2"], "variants": ["nope"]}, "not a variant of this recipe", "export.jetson.variants[0]"),
    ({"jetpack": ["7.3"]}, "is not one of", "export.jetson.jetpack[0]"),
    ({"jetpack": ["6.2"], "batch": [8, 4, 16]}, "min <= opt <= max", "export.jetson.batch"),
    # refused combinations, each at the line of the key to change
    ({"jetpack": ["6.2", "7.1"], "dla_core": 0}, "Jetson AGX Thor has no DLA", "export.jetson.dla_core"),
    ({"jetpack": ["7.2.2"], "boards": ["thor"], "dla_core": 0}, "Jetson AGX Thor has no DLA", "export.jetson.dla_core"),
    ({"jetpack": ["6.2"], "boards": ["orin-nano"], "dla_core": 0}, "no DLA", "export.jetson.dla_core"),
    ({"jetpack": ["6.2"], "tensorrt": {"6.2": "11.4.1"}}, "Orin on JetPack 6.x stays on TensorRT 10.x",
     "export.jetson.tensorrt.6.2"),
    ({"jetpack": ["7.1"], "tensorrt": {"6.2": "10.7.0"}}, "not in export.jetson.jetpack", "export.jetson.tensorrt.6.2"),
    ({"jetpack": ["6.2"], "tensorrt": {"6.2": 10.7}}, "in quotes", "export.jetson.tensorrt"),
    ({"jetpack": ["7.1"], "boards": ["agx-orin"]}, "runs on thor", "export.jetson.boards"),
    ({"jetpack": ["6.2", "7.1"], "accuracy_tuner": {"threshold": 0.01, "algorithm": "cosine"}}, "TensorRT >= 11.1",
     "export.jetson.accuracy_tuner"),
])
def test_jetson_mistakes_name_the_key_and_its_line(tmp_path, jetson, message, key):
    path = _recipe(tmp_path, jetson)
    r = invoke("validate", str(path))
    assert r.exit_code == 2 and message in r.output, r.output
    lines = path.read_text().splitlines()
    top = key.split(".")[2].split("[")[0]  # the line of that key inside export.jetson in the YAML written above
    start = next(i for i, x in enumerate(lines, 1) if x.strip() == "jetson:")
    line = next(i for i, x in enumerate(lines, 1) if i > start and x.strip().startswith(f"{top}:"))
    assert f"recipe.yaml:{line} {key}" in r.output or f"recipe.yaml:{line + 1} {key}" in r.output, r.output


def test_dla_where_a_board_has_one_and_another_tensorrt_the_jetpack_takes_validate(tmp_path):
    ok = {"jetpack": ["6.2", "7.2.2"], "dla_core": 0, "tensorrt": {"6.2": "10.7.0"}}
    r = invoke("validate", str(_recipe(tmp_path, ok)))
    assert r.exit_code == 0, r.output
    assert trt_adapter.refusal("7.2.2", None, None, 0) is None  # AGX Orin's DLA on TensorRT 11.4
    key, why = trt_adapter.refusal("7.2.2", "11.2.0", None, None)  # below the 11.4 JetPack 7.2.2 ships
    assert key == "tensorrt" and "TensorRT 11.4 up to below 12.0" in why


def test_a_cpu_shaped_static_graph_is_not_shipped_to_tensorrt(tmp_path):
    r = invoke("validate", str(_recipe(tmp_path, {"jetpack": ["6.2"], "variants": ["s"]},
                                       [{"name": "s", "quantize": "static"}])))
    assert r.exit_code == 2 and "target: tensorrt" in r.output


def test_tensorrt_builds_and_runs_an_engine_checked_against_onnxruntime(bundles, tmp_path):
    """Needs TensorRT and a GPU (skips elsewhere): the fp32 image graph built through the Python API, its
    manifest written, and the engine's outputs equal ONNX Runtime's on the eval sample."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA device")
    from mmcompress.runtimes.onnxruntime import OrtSession
    from mmcompress.runtimes.tensorrt import TrtSession

    d = bundles[0] / "bundles" / "jetson-jp6.2"
    onnx = d / "onnx" / "fp32" / "image.onnx"
    prof = trt_adapter.profile_for({"pixel_values": [None, 3, 64, 64]}, (1, 4, 4), None)
    m = trt_adapter.build_engine(onnx, tmp_path / "image.engine", "fp32", prof, workspace_mb=512)
    from mmcompress.artifact import sha256_file

    assert m["onnx_sha256"] == sha256_file(onnx)
    x = np.load(d / "eval.npz")["feed/image/pixel_values"][:4]
    got = TrtSession(tmp_path / "image.engine").run({"pixel_values": x})
    ref = OrtSession(onnx, 1).run({"pixel_values": x})
    assert np.allclose(got, ref, atol=1e-3)


def test_a_latency_budget_outside_the_engines_profile_is_refused_at_its_line(tmp_path):
    variants = [{"name": "fp32", "quantize": "none", "budgets": {"max_latency_ms": {"image": {4: 50.0}}}}]
    path = _recipe(tmp_path, {"jetpack": ["6.2"], "batch": [1, 2, 2]}, variants)
    r = invoke("validate", str(path))
    lines = path.read_text().splitlines()
    line = next(i for i, x in enumerate(lines, 1) if x.strip().startswith("4: 50")) - 1  # its tower's line
    assert lines[line - 1].strip() == "image:"
    assert r.exit_code == 2 and f"recipe.yaml:{line} export.variants[0].budgets.max_latency_ms.image[4]" in r.output
    assert "outside export.jetson.batch [1, 2, 2]" in r.output, r.output
