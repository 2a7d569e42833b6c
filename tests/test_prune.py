"""Pruning: the surgery against a zeroed reference on every layout, the patterns' precedence rule, how many
heads and channels stay, and the stage through the real CLI on the tiny zoo teacher (recovery, int8 of the
pruned tower, reload in a fresh process, errors)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import invoke
from mmcompress import examples
from mmcompress.compress import prune
from mmcompress.errors import RecipeError
from mmcompress.patterns import select

TINY_PRUNE = {
    "name": "tiny-prune",
    "seed": 0,
    "teacher": {"zoo": "shapes-clip-tiny"},
    "data": {"source": "shapes", "splits": {"train": 256, "calibration": 32, "eval": 96},
             "prompts": {"templates": ["a small {colour} {shape}", "a large {colour} {shape}"]}},
    "stages": [{"prune": {"towers": {"image": {"heads": 0.5, "mlp": 0.5}}, "importance_batches": 2, "steps": 20,
                          "batch": 16, "warmup": 2, "eval_every": 10, "checkpoint_every": 10, "precision": "fp32"}}],
    "export": {"variants": [{"name": "teacher-fp32", "model": "teacher", "quantize": "none", "towers": ["image"]},
                            {"name": "pruned-fp32", "quantize": "none", "towers": ["image"]},
                            {"name": "pruned-int8", "quantize": "dynamic", "towers": ["image"]}]},
    "checks": {"batch_sizes": [1], "rounds": 5, "warmup": 1, "threads": 2,
               "budgets": {"min_cosine": 0.5, "max_accuracy_drop": 100}},
}


def _features(model, tower: str):
    cfg = model.config
    if tower == "image":
        size = getattr(getattr(cfg, "vision_config", cfg), "image_size")
        x = {"pixel_values": torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))}
        fn = getattr(model, "get_image_features", None)
    else:
        x = {"input_ids": torch.randint(5, 20, (2, 7), generator=torch.Generator().manual_seed(0)),
             "attention_mask": torch.tensor([[1] * 7, [1] * 4 + [0] * 3])}
        fn = getattr(model, "get_text_features", None)
    with torch.no_grad():
        out = fn(**x) if fn else model(**x).last_hidden_state
    return getattr(out, "pooler_output", out)


@pytest.mark.parametrize("maker,tower", [("tiny-clip", "image"), ("tiny-clip", "text"), ("tiny-siglip", "image"),
                                         ("tiny-bert", "text"), ("tiny-vit", "image")])
def test_a_pruned_model_computes_what_the_unpruned_one_does_with_those_heads_and_channels_zeroed(tmp_path, maker, tower):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(examples.MAKERS[maker](tmp_path / maker)).eval()
    found = prune.find_layers(model, tower)
    assert len(found) == 2  # the tower's own layers only (a dual encoder has the other tower's too)
    layers = {n: (model.get_submodule(n), prune.LAYOUTS[k]) for n, k in found.items()}
    shapes = prune.choose(prune.magnitude(layers), heads=0.5, mlp=0.4, scope="global", round_to=8)
    pruned = copy.deepcopy(model)
    prune.apply(pruned, shapes)
    before, after = prune.count(model, tower), prune.count(pruned, tower)
    assert after["heads"] == before["heads"] // 2 and after["parameters"] < before["parameters"]
    reference = _features(prune.zeroed(model, shapes), tower)
    assert torch.equal(_features(pruned, tower), reference)  # exactly: the cut removes only zeroed paths
    assert not torch.allclose(_features(model, tower), reference, atol=1e-3)  # and the zeroing did change it


def test_heads_and_channels_kept_per_layer_and_across_layers():
    scores = {"a": (torch.tensor([4.0, 3, 2, 1]), torch.arange(64.0)),
              "b": (torch.tensor([1.0, 1, 1, 1]), torch.ones(64))}
    layer = prune.choose(scores, heads=0.25, mlp=0.4, scope="layer", round_to=8)
    assert layer["a"]["heads"] == [0, 1, 2] and len(layer["b"]["heads"]) == 3
    assert len(layer["a"]["channels"]) == 40 and layer["a"]["channels"] == list(range(24, 64))  # 38.4 -> 40
    heads_only = prune.choose(scores, heads=0.75, mlp=0.0, scope="layer", round_to=8)
    assert all(len(s["heads"]) == 1 and len(s["channels"]) == 64 for s in heads_only.values())
    glob = prune.choose({"a": (torch.tensor([8.0, 1, 1, 1]), torch.ones(16)), "b": (torch.ones(4), torch.ones(16))},
                        heads=0.5, mlp=0.0, scope="global", round_to=8)
    # normalised per layer, layer a's three weak heads rank lowest: it loses them all but its strongest
    assert glob["a"]["heads"] == [0] and len(glob["b"]["heads"]) >= 3


def test_the_last_matching_pattern_decides():
    names = [f"vision_model.encoder.layers.{i}" for i in range(4)]
    assert select(names, ["*.layers.*", "!*.layers.0"], "k") == names[1:]
    assert select(names, ["!*.layers.0", "*.layers.*"], "k") == names  # the include comes last: it wins
    assert select(names, ["!*.layers.3"], "k") == names[:3]  # only exclusions: everything else is chosen
    assert select(names, [r"re:.*layers\.[12]"], "k") == names[1:3]
    with pytest.raises(RecipeError, match=r"stages\[0\]: 're:\[' is not a valid regular expression"):
        select(names, ["re:["], "stages[0]")


def _write(tmp_path: Path, recipe: dict) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return p


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prune")
    run_dir = tmp / "run"
    result = invoke("run", str(_write(tmp, TINY_PRUNE)), "--run-dir", str(run_dir))
    return result, tmp, run_dir, json.loads((run_dir / "report.json").read_text())


def test_the_pruned_tower_is_smaller_recovers_and_is_checked_beside_the_teacher(pruned_run):
    result, _, run_dir, rep = pruned_run
    assert result.exit_code == 0, result.output
    arts = rep["artifacts"]
    assert [arts[n]["model"] for n in ("teacher-fp32", "pruned-fp32", "pruned-int8")] == ["teacher", "prune", "prune"]
    model = rep["models"]["prune"]
    t = model["pruning"]["towers"]["image"]
    assert t["after"]["heads"] == t["before"]["heads"] // 2
    assert t["after"]["mlp_channels"] == t["before"]["mlp_channels"] // 2
    assert t["after"]["macs"] < 0.75 * t["before"]["macs"] and t["after"]["parameters"] < t["before"]["parameters"]
    steps = [h["step"] for h in model["history"]]
    assert steps == [10, 20] and model["history"][-1]["loss"] < model["history"][0]["loss"]
    before = model["pruning"]["eval_pruned"]["image cos"]
    after = model["history"][-1]["eval"]["image cos"]
    assert after > before  # recovery brought the pruned tower back towards the teacher
    assert arts["pruned-fp32"]["fidelity"]["image"]["mean"] == pytest.approx(after, abs=2e-4)
    assert arts["pruned-int8"]["verdict"] == "pass"
    size = lambda n: arts[n]["size_mb"]
    assert size("pruned-fp32") < size("teacher-fp32")
    files = sorted(p.name for p in (run_dir / "stages" / "prune" / "model").iterdir())
    assert "model.safetensors" in files and "pruning.json" in files and not any(f.endswith((".pt", ".bin", ".pkl")) for f in files)
    page = (run_dir / "report.html").read_text()
    assert "M MACs per sample" in page and "before recovery" in page
    # latency before/after: the pruned fp32 graph against the unpruned fp32 graph, from the same rounds
    pairs = {(c["after"], c["before"], c["point"]) for c in model["pruning"]["latency"]}
    assert pairs == {("pruned-fp32", "teacher-fp32", str(b)) for b in rep["checks"]["batch_sizes"]}
    for c in model["pruning"]["latency"]:
        vs = arts["pruned-fp32"]["latency"]["image"][c["point"]]["vs"]["teacher-fp32"]
        assert c["speedup"] == vs["speedup"] and c["speedup_ci95"][0] <= c["speedup"] <= c["speedup_ci95"][1]
        mine, theirs = (arts[n]["latency"]["image"][c["point"]]["median_ms"] for n in ("pruned-fp32", "teacher-fp32"))
        assert vs["speedup"] == pytest.approx(theirs / mine)
    assert "against teacher-fp32 (the unpruned model" in page
    shapes = json.loads((run_dir / "stages" / "prune" / "model" / "pruning.json").read_text())
    assert set(shapes) == {"layers", "dropped"} and shapes["dropped"] == {"image": []}


def test_a_pruned_model_reloads_in_a_fresh_process_with_identical_outputs(pruned_run):
    _, tmp, run_dir, _ = pruned_run
    script = f"""
import numpy as np, torch
from mmcompress import compress, recipe
from mmcompress.data import shapes
bundle = compress.load_model(recipe.load({str(tmp / 'recipe.yaml')!r}), {str(run_dir)!r})
x = bundle.image_preprocess(shapes.generate(4, seed=9).images)
with torch.no_grad():
    np.save({str(tmp / 'reloaded.npy')!r}, bundle.towers['image'](torch.from_numpy(x)).numpy())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    import onnxruntime as ort
    from mmcompress.data import shapes
    from mmcompress.models import load_teacher
    from mmcompress import recipe as r

    rec = r.load(tmp / "recipe.yaml")
    x = load_teacher(rec.teacher, rec.base).image_preprocess(shapes.generate(4, seed=9).images)
    onnx_out = ort.InferenceSession(str(run_dir / "export-onnx-prune" / "image.onnx")).run(None, {"pixel_values": x})[0]
    reloaded = np.load(tmp / "reloaded.npy")
    assert reloaded.shape == onnx_out.shape
    np.testing.assert_allclose(reloaded, onnx_out, atol=1e-4)  # the fresh process's model is the exported one


def test_whole_layers_dropped_2_4_sparsity_and_hidden_state_recovery_reload_the_same(tmp_path):
    from safetensors.torch import load_file

    r = copy.deepcopy(TINY_PRUNE)
    r["stages"][0]["prune"].update(towers={"image": {"mlp": 0.5, "drop_layers": ["*.layers.0"], "sparsity": "2:4"}},
                                   importance="magnitude", steps=10, eval_every=None, losses={"cosine": 1.0, "hidden": 1.0})
    r["export"]["variants"] = [{"name": "pruned-fp32", "quantize": "none", "towers": ["image"]}]
    r["checks"]["budgets"] = {"max_accuracy_drop": 100}  # half the layers gone after 10 steps: far from the teacher
    run_dir = tmp_path / "run"
    result = invoke("run", str(_write(tmp_path, r)), "--run-dir", str(run_dir))
    assert result.exit_code == 0, result.output
    t = json.loads((run_dir / "report.json").read_text())["models"]["prune"]["pruning"]["towers"]["image"]
    assert t["dropped_layers"] == ["vision_model.encoder.layers.0"] and t["after"]["heads"] == t["before"]["heads"] // 2
    assert list(t["layers"]) == ["vision_model.encoder.layers.1"]  # the dropped layer is not also cut
    assert "dense speed" in t["after"]["sparsity"]["note"] and "2:4 sparse" in (run_dir / "report.html").read_text()
    state = load_file(run_dir / "stages" / "prune" / "model" / "model.safetensors")
    sparse = {n: w for n, w in state.items() if n.startswith("vision_model.encoder.layers.")
              and n.endswith(("proj.weight", "fc1.weight", "fc2.weight"))}
    assert len(sparse) == 6  # q, k, v, out, fc1, fc2 of the one layer left
    for name, w in sparse.items():  # 10 recovery steps later, still at most 2 non-zero of every 4 inputs
        assert int((w.reshape(w.shape[0], -1, 4) != 0).sum(-1).max()) <= 2, name
    from mmcompress import compress, recipe

    bundle = compress.load_model(recipe.load(tmp_path / "recipe.yaml"), run_dir)
    model = bundle.towers["image"].model
    assert len(model.vision_model.encoder.layers) == 1 and model.config.vision_config.num_hidden_layers == 1
    import onnxruntime as ort
    from mmcompress.data import shapes

    x = bundle.image_preprocess(shapes.generate(4, seed=3).images)
    with torch.no_grad():
        torch_out = bundle.towers["image"](torch.from_numpy(x)).numpy()
    onnx_out = ort.InferenceSession(str(run_dir / "export-onnx-prune" / "image.onnx")).run(None, {"pixel_values": x})[0]
    np.testing.assert_allclose(torch_out, onnx_out, atol=1e-4)


def test_a_macs_target_is_met_by_one_share_of_heads_and_channels(tmp_path):
    r = copy.deepcopy(TINY_PRUNE)
    r["stages"][0]["prune"].update(towers={"image": {"macs": 0.7}}, importance="magnitude", steps=0)
    r["export"]["variants"] = [{"name": "pruned-fp32", "quantize": "none", "towers": ["image"]}]
    r["checks"]["budgets"] = {"max_accuracy_drop": 100}
    run_dir = tmp_path / "run"
    result = invoke("run", str(_write(tmp_path, r)), "--run-dir", str(run_dir))
    assert result.exit_code == 0, result.output
    t = json.loads((run_dir / "report.json").read_text())["models"]["prune"]["pruning"]["towers"]["image"]
    kept = t["after"]["macs"] / t["before"]["macs"]
    assert kept <= 0.7 and t["after"]["macs_target"]["kept"] == pytest.approx(kept, abs=1e-4)
    assert kept > 0.55  # the smallest share that meets it, not an overshoot
    assert 0 < t["after"]["macs_target"]["share_removed"] < 0.95


def test_pruning_mistakes_name_the_key(tmp_path):
    bad = copy.deepcopy(TINY_PRUNE)
    bad["stages"][0]["prune"]["towers"]["image"] = {"heads": 0.5, "mlp": 0.5, "layers": ["re:("]}
    result = invoke("validate", str(_write(tmp_path, bad)))
    assert result.exit_code == 2 and "stages[0].prune.towers.image.layers" in result.output
    bad["stages"][0]["prune"]["towers"] = {"image": {}}
    result = invoke("validate", str(_write(tmp_path, bad)))
    assert result.exit_code == 2 and "nothing to prune" in result.output
    bad["stages"][0]["prune"]["towers"] = {"image": {"mlp": 0.5, "macs": 0.7}}
    result = invoke("validate", str(_write(tmp_path, bad)))
    assert result.exit_code == 2 and "not both" in result.output
    bad["stages"][0]["prune"]["towers"] = {"image": {"mlp": 0.5}}
    bad["data"]["splits"]["train"] = 0
    result = invoke("validate", str(_write(tmp_path, bad)))
    assert result.exit_code == 2 and "data.splits.train" in result.output and "recovery" in result.output
