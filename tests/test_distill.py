"""Distillation: the stage through the real CLI on the tiny zoo teacher and on a Hugging Face CLIP directory;
resume after SIGKILL; 2 processes under torchrun against 1 process with the same global batch."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import invoke
from mmcompress.compress import training

TINY_DISTILL = {
    "name": "tiny-distill",
    "seed": 0,
    "teacher": {"zoo": "shapes-clip-tiny"},
    "data": {"source": "shapes", "splits": {"train": 512, "calibration": 32, "eval": 96},
             "prompts": {"templates": ["a small {colour} {shape}", "a large {colour} {shape}"]}},
    "stages": [{"distill": {"towers": {"image": {"layers": 1, "width": 0.5}}, "steps": 60, "batch": 16,
                            "lr": 2e-3, "warmup": 5, "eval_every": 30, "checkpoint_every": 10,
                            "precision": "fp32"}}],
    "export": {"variants": [{"name": "teacher-fp32", "model": "teacher", "quantize": "none"},
                            {"name": "student-fp32", "quantize": "none", "towers": ["image"]},
                            {"name": "student-int8", "quantize": "dynamic", "towers": ["image"]}]},
    "checks": {"batch_sizes": [1], "rounds": 5, "warmup": 1, "threads": 2,
               "budgets": {"min_cosine": 0.5, "max_accuracy_drop": 100}},
}


def _training_only(recipe: dict) -> dict:
    """The recipe with one variant and the fewest timing rounds: for tests about the training loop, whose runs
    need not export and time the teacher's variants again."""
    r = json.loads(json.dumps(recipe))
    r["export"]["variants"] = [v for v in r["export"]["variants"] if v["name"] == "student-fp32"]
    r["checks"].update(rounds=5, warmup=0)
    return r


def _write(tmp_path: Path, recipe: dict, name: str = "recipe.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return p


def _cli(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, **kw)


def _student_state(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / "stages" / "distill" / "student" / "model.safetensors")


def _distil_example(recipes_dir, recipe: str, train: int, stage: str, run_dir: Path) -> dict:
    """Run one of recipes/ with a train split and a distill stage (--set, as a user would); -> report.json."""
    result = invoke("run", str(recipes_dir / recipe), "--run-dir", str(run_dir), "--set", f"data.splits.train={train}",
                    "--set", stage, "--set", "checks.budgets.min_cosine=null")
    assert result.exit_code == 0, result.output
    return json.loads((run_dir / "report.json").read_text())


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """The tiny distillation, one process, uninterrupted: (exit code, run_dir, report)."""
    tmp = tmp_path_factory.mktemp("distill")
    run_dir = tmp / "run"
    result = invoke("run", str(_write(tmp, TINY_DISTILL)), "--run-dir", str(run_dir))
    return result.exit_code, run_dir, json.loads((run_dir / "report.json").read_text())


def test_batches_are_a_function_of_the_step_and_cover_every_row_once_per_epoch():
    n, b = 50, 16
    rows = np.concatenate([training.batch_rows(s, b, n, seed=3) for s in range(25)])  # 400 rows = 8 epochs
    for e in range(8):
        assert sorted(rows[e * n:(e + 1) * n]) == list(range(n))
    assert np.array_equal(training.batch_rows(7, b, n, 3), training.batch_rows(7, b, n, 3))
    assert not np.array_equal(training.batch_rows(7, b, n, 3), training.batch_rows(7, b, n, 4))


def test_learning_rate_warms_up_then_decays_to_zero():
    f = [training.lr_factor(s, 10, 100) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and f[-1] < 0.001


def test_the_student_is_checked_against_the_teacher_beside_the_teachers_own_artifacts(distilled):
    code, run_dir, rep = distilled
    assert code == 0
    arts = rep["artifacts"]
    assert [arts[n]["model"] for n in ("teacher-fp32", "student-fp32", "student-int8")] == ["teacher", "distill", "distill"]
    # the teacher's own export matches the teacher; the student's does not (it is another model) ...
    assert arts["teacher-fp32"]["fidelity"]["image"]["min"] > 0.9999
    assert arts["student-fp32"]["fidelity"]["image"]["mean"] < 0.9999
    # ... but its text tower is the teacher's, untouched
    assert arts["student-fp32"]["fidelity"]["text"]["min"] > 0.9999
    assert arts["student-int8"]["towers"]["image"]["path"].startswith("variants/student-int8/")
    assert arts["student-fp32"]["towers"]["image"]["path"] == "export-onnx-distill/image.onnx"
    model = rep["models"]["distill"]
    assert model["student"]["towers"]["image"] == {"kind": "hf", "class": "CLIPModel", "layers": 1, "width": 0.5,
                                                      "init": "teacher"}
    assert model["student"]["parameters"]["image"] < 0.3 * model["student"]["teacher_parameters"]["image"]
    steps = [h["step"] for h in model["history"]]
    assert steps == [10, 20, 30, 40, 50, 60]
    assert [h["step"] for h in model["history"] if "eval" in h] == [30, 60]
    assert model["history"][-1]["loss"] < model["history"][0]["loss"]
    # the ONNX student, evaluated by the checks, agrees with what training measured in PyTorch at the end
    final = model["history"][-1]["eval"]
    assert arts["student-fp32"]["fidelity"]["image"]["mean"] == pytest.approx(final["image cos"], abs=2e-4)
    assert not (run_dir / "stages" / "distill" / "checkpoint.pt").exists()  # done: the checkpoint is gone


def test_a_second_run_reuses_the_student(distilled, tmp_path):
    import shutil

    _, run_dir, _ = distilled
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = (copy / "stages" / "distill" / "manifest.json").read_text()
    result = invoke("run", str(_write(tmp_path, TINY_DISTILL)), "--run-dir", str(copy))
    assert result.exit_code == 0
    assert (copy / "stages" / "distill" / "manifest.json").read_text() == before
    stages = {s["name"]: s["status"] for s in json.loads((copy / "report.json").read_text())["stages"]}
    assert stages["distill distill"] == "cached" and stages["teacher-train-outputs"] == "cached"


def test_sigkill_mid_training_then_rerun_resumes_from_the_last_checkpoint(distilled, tmp_path):
    _, ref_dir, _ = distilled
    recipe = _write(tmp_path, _training_only(TINY_DISTILL))
    run_dir = tmp_path / "run"
    ckpt = run_dir / "stages" / "distill" / "checkpoint.pt"
    p = _cli("-m", "mmcompress", "run", str(recipe), "--run-dir", str(run_dir))
    deadline = time.monotonic() + 300
    while not ckpt.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-training"
    saved = torch.load(ckpt, weights_only=True)["step"]
    assert 10 <= saved < 60 and saved % 10 == 0
    again = _cli("-m", "mmcompress", "run", str(recipe), "--run-dir", str(run_dir))
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    assert f"resuming distill from its checkpoint at step {saved}/60" in out
    history = json.loads((run_dir / "report.json").read_text())["models"]["distill"]["history"]
    assert [h["step"] for h in history] == [10, 20, 30, 40, 50, 60]  # no finished interval lost or redone
    # the resumed student is the uninterrupted one: batches and dropout are functions of the step
    got, ref = _student_state(run_dir), _student_state(ref_dir)
    assert got.keys() == ref.keys()
    assert all(torch.allclose(got[k], ref[k], atol=1e-5) for k in ref)


def test_two_processes_under_torchrun_follow_the_one_process_run(distilled, tmp_path):
    """Same global batch (16 = 2 x 8): the loss of every interval matches within 0.1% (float summation order
    differs: two shards, gradients averaged by DistributedDataParallel). Measured on an AVX2 EPYC: equal to
    6 decimals."""
    _, ref_dir, ref = distilled
    recipe = _write(tmp_path, _training_only(TINY_DISTILL))
    run_dir = tmp_path / "run"
    p = _cli("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
             "-m", "mmcompress", "run", str(recipe), "--run-dir", str(run_dir), env={"OMP_NUM_THREADS": "1"})
    out, _ = p.communicate(timeout=900)
    assert p.returncode == 0, out
    got = json.loads((run_dir / "report.json").read_text())["models"]["distill"]
    assert got["processes"] == 2
    want = ref["models"]["distill"]["history"]
    assert [h["step"] for h in got["history"]] == [h["step"] for h in want]
    for a, b in zip(got["history"], want):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3), (a, b)


def test_a_distill_recipe_with_mistakes_is_refused_before_any_work(tmp_path):
    bad = json.loads(json.dumps(TINY_DISTILL))
    bad["stages"][0]["distill"]["towers"] = {"image": {"layers": 5}}
    result = invoke("run", str(_write(tmp_path, bad)), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert "recipe.yaml:" in result.output and "stages[0].distill.towers.image" in result.output
    assert "has 2 layers" in result.output
    assert not (tmp_path / "run" / "teacher").exists()  # refused before the teacher's outputs were computed
    bad = json.loads(json.dumps(TINY_DISTILL))
    bad["export"]["variants"][0]["model"] = "distil"
    result = invoke("run", str(_write(tmp_path, bad)), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 2 and "'distil' is not a model of this recipe" in result.output


SMALL_CNN = '''
import torch
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.GELU(), nn.Conv2d(16, 32, 3, 2, 1), nn.GELU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, dim))

    def forward(self, pixel_values):
        return self.net(pixel_values)


def build(teacher_tower):
    return SmallCNN(teacher_tower.model.config.projection_dim)
'''


def test_a_python_student_module_is_trained_saved_exported_and_checked(tmp_path):
    (tmp_path / "small_cnn.py").write_text(SMALL_CNN)
    recipe = json.loads(json.dumps(TINY_DISTILL))
    recipe["stages"][0]["distill"].update(towers={"image": {"python": "small_cnn:build"}}, steps=20, eval_every=None,
                                          precision="bf16")  # forced: autocast runs on any CPU, emulated without AVX-512 BF16
    recipe["export"]["variants"] = [{"name": "cnn-int8", "quantize": "dynamic", "towers": ["image"]}]
    recipe["checks"]["budgets"] = {}  # 20 steps from scratch: a plumbing test, not a quality one
    run_dir = tmp_path / "run"
    result = invoke("run", str(_write(tmp_path, recipe)), "--run-dir", str(run_dir))
    assert result.exit_code == 0, result.output
    rep = json.loads((run_dir / "report.json").read_text())
    assert rep["models"]["distill"]["student"]["towers"]["image"] == {"kind": "python", "entrypoint": "small_cnn:build"}
    assert (run_dir / "stages" / "distill" / "student" / "image.safetensors").is_file()
    assert not (run_dir / "stages" / "distill" / "student" / "model.safetensors").exists()
    assert rep["artifacts"]["cnn-int8"]["model"] == "distill"
    assert rep["models"]["distill"]["student"]["parameters"]["image"] < 10_000  # the CNN, not the teacher tower
    assert rep["models"]["distill"]["precision"] == "bf16"
    assert all(np.isfinite(h["loss"]) for h in rep["models"]["distill"]["history"])



def test_a_hugging_face_clip_distils_both_towers_into_a_directory_transformers_loads(recipes_dir, tmp_path):
    import onnxruntime as ort
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    stage = ("stages=[{distill: {towers: {image: {layers: 1, width: 0.5}, text: {layers: 1}}, steps: 10, batch: 8, "
             "losses: {cosine: 1, hidden: 0.5}, "
             "warmup: 2, eval_every: 5, checkpoint_every: 5, precision: fp32}}]")
    run_dir = tmp_path / "run"
    rep = _distil_example(recipes_dir, "hf-clip.yaml", 24, stage, run_dir)
    assert {a["model"] for n, a in rep["artifacts"].items() if n != "teacher"} == {"distill"}
    student_dir = run_dir / "stages" / "distill" / "student"
    model = CLIPModel.from_pretrained(student_dir).eval()  # no mmcompress needed to use the student
    assert model.config.vision_config.hidden_size == 16 and model.config.text_config.num_hidden_layers == 1
    AutoTokenizer.from_pretrained(student_dir)
    AutoImageProcessor.from_pretrained(student_dir)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        from mmcompress.models.clip import embedding

        want = embedding(model.get_image_features(pixel_values=x)).numpy()
    onnx = ort.InferenceSession(str(run_dir / "export-onnx-distill" / "image.onnx"), providers=["CPUExecutionProvider"])
    got = onnx.run(None, {"pixel_values": x.numpy()})[0]
    assert np.allclose(got, want, atol=1e-4)


def test_a_sentence_transformer_drops_layers_and_keeps_its_pooling(recipes_dir, tmp_path):
    stage = ("stages=[{distill: {towers: {text: {layers: 1}}, losses: {cosine: 1, mse: 1}, steps: 8, batch: 8, "
             "warmup: 2, eval_every: 4, checkpoint_every: 4}}]")
    run_dir = tmp_path / "run"
    rep = _distil_example(recipes_dir, "hf-sentence-transformer.yaml", 16, stage, run_dir)
    history = rep["models"]["distill"]["history"]
    assert [h["step"] for h in history] == [4, 8] and "class_prompt_top1" in history[-1]["eval"]
    # mean pooling + Normalize kept: the student's embeddings are unit vectors like the teacher's
    emb = np.load(run_dir / "stages" / "distill" / "embeddings.npz")["text"]
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # the student directory has the sentence-transformers layout: it loads as a teacher itself, same pooling
    from mmcompress.models import hf
    from mmcompress.recipe import TeacherConfig

    student_dir = run_dir / "stages" / "distill" / "student"
    assert (student_dir / "modules.json").is_file() and (student_dir / "1_Pooling" / "config.json").is_file()
    again = hf.load(TeacherConfig(hf=str(student_dir)), tmp_path)
    assert again.source["pooling"] == "mean" and again.source["normalize"] is True
    assert again.towers["text"].model.config.num_hidden_layers == 1


def test_contrastive_losses_are_refused_for_a_single_tower_teacher(recipes_dir, tmp_path):
    stage = "stages=[{distill: {towers: {text: {layers: 1}}, losses: {contrastive_kd: 1}}}]"
    result = invoke("run", str(recipes_dir / "hf-sentence-transformer.yaml"), "--run-dir", str(tmp_path / "r"),
                    "--set", "data.splits.train=16", "--set", stage)
    assert result.exit_code == 2
    assert "stages[0].distill.losses.contrastive_kd" in result.output and "use cosine or mse" in result.output


def test_stages_chain_each_from_the_previous_model_and_learn_from_the_teacher(tmp_path):
    from mmcompress.models import shapes_clip

    recipe = json.loads(json.dumps(TINY_DISTILL))
    common = {"steps": 10, "batch": 16, "warmup": 2, "eval_every": None, "checkpoint_every": 10}
    recipe["stages"] = [{"distill": {"name": "fewer", "towers": {"image": {"layers": 1}}, **common}},
                        {"distill": {"name": "narrower", "towers": {"image": {"width": 0.5}}, **common}}]
    recipe["export"]["variants"] = [{"name": "fp32", "quantize": "none", "towers": ["image"]}]
    recipe["checks"]["budgets"] = {}
    run_dir = tmp_path / "run"
    result = invoke("run", str(_write(tmp_path, recipe)), "--run-dir", str(run_dir))
    assert result.exit_code == 0, result.output
    rep = json.loads((run_dir / "report.json").read_text())
    assert list(rep["models"]) == ["fewer", "narrower"] and rep["artifacts"]["fp32"]["model"] == "narrower"
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(run_dir / "stages" / "narrower" / "student")
    assert (cfg.vision_config.num_hidden_layers, cfg.vision_config.hidden_size) == (1, 32)  # 2 -> 1 layer, 64 -> 32
    model = shapes_clip.from_config(cfg)  # the zoo class, conv stem included, all the way down the chain
    assert isinstance(model.vision_model.embeddings.patch_embedding, shapes_clip.ConvStem)


def test_a_vit_image_encoder_on_an_image_folder_drops_layers(recipes_dir, tmp_path):
    from transformers import ViTModel

    stage = "stages=[{distill: {towers: {image: {layers: 1}}, steps: 6, batch: 4, warmup: 1, checkpoint_every: 3, eval_every: 3}}]"
    run_dir = tmp_path / "run"
    rep = _distil_example(recipes_dir, "hf-vit-imagefolder.yaml", 4, stage, run_dir)
    assert "knn_top1" in rep["models"]["distill"]["history"][-1]["eval"]
    student = ViTModel.from_pretrained(run_dir / "stages" / "distill" / "student")
    assert student.config.num_hidden_layers == 1
    assert (run_dir / "stages" / "distill" / "student" / "preprocessor_config.json").is_file()


def test_a_siglip_distils_both_towers_with_every_loss(recipes_dir, tmp_path):
    from transformers import SiglipModel

    stage = ("stages=[{distill: {towers: {image: {layers: 1}, text: {layers: 1, width: 0.5}}, steps: 6, batch: 8, "
             "warmup: 1, checkpoint_every: 3, eval_every: 6, "
             "losses: {cosine: 1, mse: 1, contrastive_kd: 1, contrastive: 1, hidden: 1}}}]")
    run_dir = tmp_path / "run"
    history = _distil_example(recipes_dir, "hf-siglip.yaml", 24, stage, run_dir)["models"]["distill"]["history"]
    assert all(np.isfinite(h["loss"]) for h in history) and "zero_shot_top1" in history[-1]["eval"]
    student = SiglipModel.from_pretrained(run_dir / "stages" / "distill" / "student")
    assert student.config.vision_config.num_hidden_layers == 1 and student.config.text_config.hidden_size == 16
