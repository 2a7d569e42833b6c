"""Audio towers end to end through the CLI: a tiny ClapModel (audio + text) on JSONL clips, a tiny ASTModel
(audio alone) on an audio folder and a tiny Wav2Vec2Model (raw samples of any length) on JSONL clips, all from
save_pretrained directories; the host preprocessing against the
transformers feature extractor; bad audio files named by file and line; the sounds zoo teacher."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile

from conftest import ROOT, invoke


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    """recipes/hf-clap.yaml and hf-ast-audiofolder.yaml beside the examples they read (examples_audio)."""
    from mmcompress import examples_audio

    root = tmp_path_factory.mktemp("audio")
    for name in ("hf-clap.yaml", "hf-ast-audiofolder.yaml", "hf-wav2vec2.yaml"):
        shutil.copy(ROOT / "recipes" / name, root / name)
    for name, make in examples_audio.MAKERS.items():
        make(root / "examples" / name)
    return root


def _run(path, run_dir, *extra):
    result = invoke("run", str(path), "--run-dir", str(run_dir), *extra)
    report = json.loads((run_dir / "report.json").read_text()) if (run_dir / "report.json").exists() else None
    return result, report


def _finished(audio_dir, tmp_path_factory, recipe: str, *extra):
    """A module's shared run of one of the audio recipes, which must pass: (run_dir, report)."""
    run_dir = tmp_path_factory.mktemp(recipe.removesuffix(".yaml"))
    result, report = _run(audio_dir / recipe, run_dir, *extra)
    assert result.exit_code == 0, result.output
    return run_dir, report


@pytest.fixture(scope="module")
def clap_run(audio_dir, tmp_path_factory):
    # torchscript here (3 s for the HTSAT tower against 27 s with dynamo on 2 busy cores); the AST test below and
    # the demo export with dynamo, the default
    return _finished(audio_dir, tmp_path_factory, "hf-clap.yaml", "--set", "export.onnx.exporter=torchscript")


def test_clap_directory_runs_end_to_end(clap_run):
    run_dir, report = clap_run
    assert report["teacher"]["architecture"] == "ClapModel" and report["teacher"]["towers"] == ["audio", "text"]
    assert report["teacher"]["task"] == "dual-encoder" and report["data"]["kind"] == "audio-text"
    for name in ("int8-dynamic", "int8-static", "fp16"):
        a = report["artifacts"][name]
        assert {"zero_shot", "recall", "mixed"} <= set(a["accuracy"])
        assert "audio_to_text@1" in a["accuracy"]["recall"] and "audio_only" in a["accuracy"]["mixed"]
        assert a["fidelity"]["audio"]["min"] > 0.95 and a["fidelity"]["text"]["min"] > 0.95
        assert a["towers"]["audio"]["path"] == f"variants/{name}/audio.onnx"
    # latency rows name the clip length the model sees: its 1 s window
    assert set(report["artifacts"]["teacher"]["latency"]["audio"]) == {"1@1s", "4@1s"}


def test_clap_export_parity_and_the_preprocessing_in_the_manifest(clap_run):
    run_dir, report = clap_run
    m = json.loads((run_dir / "export-onnx" / "manifest.json").read_text())
    audio = m["files"]["audio.onnx"]
    assert audio["parity"]["max_abs_diff"] < 1e-4 and m["files"]["text.onnx"]["parity"]["max_abs_diff"] < 1e-4
    shape = audio["io"]["input_features"]["shape"]  # (batch, 1, frames, mel bins): batch named, the window fixed
    assert shape == ["batch", 1, 101, 32]
    pre = audio["preprocess"]
    assert pre["extractor"] == "ClapFeatureExtractor" and pre["sampling_rate"] == 16000 and pre["window_s"] == 1.0
    assert "random offset" in pre["long_clips"] and pre["resampler"] == "soxr HQ"
    # sounds_jsonl writes every 8th clip 1.6 s long: those are the ones cut to the window
    clips = audio["parity"]["clips"]
    assert clips["seconds_max"] == pytest.approx(1.6, abs=0.01) and clips["longer_than_window"] >= 1
    # and the report says it: how many eval clips were longer than the window, and what the extractor did
    said = report["data"]["audio"]
    assert said["longer_than_window"] == clips["longer_than_window"] and "random offset" in said["longer_clips"]


@pytest.fixture(scope="module")
def ast_run(audio_dir, tmp_path_factory):
    return _finished(audio_dir, tmp_path_factory, "hf-ast-audiofolder.yaml")


def test_ast_directory_is_one_audio_tower_checked_by_knn(ast_run):
    run_dir, report = ast_run
    assert report["teacher"]["architecture"] == "ASTModel" and report["teacher"]["task"] == "audio-encoder"
    a = report["artifacts"]["int8-dynamic"]
    assert a["accuracy"]["primary"]["metric"] == "knn_top1" and a["fidelity"]["audio"]["min"] > 0.95
    audio = json.loads((run_dir / "export-onnx" / "manifest.json").read_text())["files"]["audio.onnx"]
    assert audio["parity"]["max_abs_diff"] < 1e-4 and audio["preprocess"]["extractor"] == "ASTFeatureExtractor"
    assert isinstance(audio["io"]["input_values"]["shape"][0], str)  # dynamo: a symbolic batch axis
    assert audio["parity"]["clips"]["longer_than_window"] == 0
    planned = report["artifacts"]["planned"]  # the precision planner searched the audio tower's plans
    assert planned["plan"]["audio"]["plans"] and planned["plan"]["audio"]["chosen"]["cosine"]["min"] >= 0.95
    assert planned["fidelity"]["audio"]["min"] > 0.95


@pytest.fixture(scope="module")
def wav2vec2_run(audio_dir, tmp_path_factory):
    return _finished(audio_dir, tmp_path_factory, "hf-wav2vec2.yaml", "--set", "export.onnx.exporter=torchscript")


def test_wav2vec2_takes_clips_of_any_length_and_is_timed_at_their_lengths(wav2vec2_run):
    """Raw samples with dynamic batch and length axes and an attention mask; parity batched (each batch cut to
    its longest clip) and each clip alone at its own length; latency at the eval median and p90 durations and
    at checks.audio_seconds, the rows keyed and captioned by the length."""
    run_dir, report = wav2vec2_run
    assert report["teacher"]["architecture"] == "Wav2Vec2Model" and report["teacher"]["task"] == "audio-encoder"
    audio = json.loads((run_dir / "export-onnx" / "manifest.json").read_text())["files"]["audio.onnx"]
    for name in ("input_values", "attention_mask"):  # (batch, samples), both dynamic
        shape = audio["io"][name]["shape"]
        assert len(shape) == 2 and all(isinstance(d, str) for d in shape), shape
    parity = audio["parity"]
    assert parity["max_abs_diff"] < 1e-4 and parity["lengths"] == [25600]  # the 1.6 s clips at 16 kHz
    alone = parity["each_at_own_length"]
    assert alone["max_abs_diff"] < 1e-4 and alone["samples_range"][0] < alone["samples_range"][1]
    assert audio["preprocess"]["window_s"] is None and "any length" in audio["preprocess"]["long_clips"]
    said = report["data"]["audio"]
    assert said["window_s"] is None and said["seconds_min"] < said["seconds_median"] < said["seconds_max"]
    timed = report["checks"]["audio_seconds"]
    assert [t["from"] for t in timed][-1] == "recipe" and timed[-1]["seconds"] == 2.0
    assert any("eval median" in t["from"] for t in timed) and any("eval p90" in t["from"] for t in timed)
    median = next(t["seconds"] for t in timed if "eval median" in t["from"])
    assert said["seconds_median"] <= median < said["seconds_median"] + 0.1 + 1e-9  # rounded up to 0.1 s
    keys = {f"{b}@{t['seconds']:g}s" for t in timed for b in (1, 4)}
    for name in ("teacher", "int8-dynamic", "int8-static", "fp16"):
        assert set(report["artifacts"][name]["latency"]["audio"]) == keys
    row = report["artifacts"]["int8-dynamic"]["latency"]["audio"]["4@2s"]
    assert row["seq_len"] == 32000 and row["clip_s"] == 2.0 and row["speedup"] > 0
    for name in ("int8-dynamic", "int8-static", "fp16"):
        assert report["artifacts"][name]["fidelity"]["audio"]["min"] > 0.95
    assert report["artifacts"]["int8-dynamic"]["accuracy"]["primary"]["metric"] == "knn_top1"


def test_a_clip_shorter_than_the_conv_encoder_takes_exits_2_naming_file_and_line(audio_dir, tmp_path):
    """The tiny wav2vec2's three convolutions see 105 samples per frame: a 60-sample clip would fail inside the
    model when run alone; it is refused before any stage, naming its line."""
    data = tmp_path / "data"
    shutil.copytree(audio_dir / "examples" / "sounds-jsonl", data)
    lines = (data / "sounds.jsonl").read_text().splitlines()
    soundfile.write(data / json.loads(lines[4])["audio"], np.full(60, 0.1, np.float32), 16000)
    recipe = tmp_path / "r.yaml"
    recipe.write_text((audio_dir / "hf-wav2vec2.yaml").read_text()
                      .replace("examples/tiny-wav2vec2", str(audio_dir / "examples" / "tiny-wav2vec2"))
                      .replace("examples/sounds-jsonl/sounds.jsonl", str(data / "sounds.jsonl")))
    result, report = _run(recipe, tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert f"{data / 'sounds.jsonl'}:5:" in result.output and "at least 6.6 ms (105 samples" in result.output
    assert report is None and not (tmp_path / "run" / "export-onnx").exists()


def test_synthetic_feeds_for_a_raw_audio_graph(wav2vec2_run):
    """bench and the regression gate time a graph that takes any clip length at a length in samples."""
    from mmcompress.bench import feeds_for
    from mmcompress.runtimes.onnxruntime import open_file

    run_dir, _ = wav2vec2_run
    sess = open_file(run_dir / "variants" / "int8-dynamic" / "audio.onnx", 1)
    feeds = feeds_for(sess, 2, 16, samples=8000)
    assert feeds["input_values"].shape == (2, 8000) and feeds["attention_mask"].shape == (2, 8000)
    assert sess.run(feeds).shape == (2, 32)


@pytest.mark.parametrize("kind", ["Wav2Vec2", "Hubert"])
def test_wav2vec2_without_a_mask_in_its_extractor_pools_over_real_frames_only(tmp_path, kind):
    """Group-norm wav2vec2 (the base kind) and HuBERT (its layout): the extractor returns no attention mask, so
    the model is run on the zero-padded batch without one, as its model card says; the pooling still leaves
    padding frames out."""
    import torch
    import transformers
    from transformers import Wav2Vec2FeatureExtractor

    from mmcompress.models import audio

    Config, Model = getattr(transformers, f"{kind}Config"), getattr(transformers, f"{kind}Model")
    cfg = Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                         conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
                         num_conv_pos_embedding_groups=2, feat_extract_norm="group")
    Model(cfg).save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(return_attention_mask=False, do_normalize=False).save_pretrained(tmp_path)
    model = Model.from_pretrained(tmp_path).eval()
    towers, specs, pre = audio.split(model, model.config, tmp_path, "teacher.hf")
    tower = towers["audio"]
    assert not tower.model_takes_mask and list(specs["audio"].inputs) == ["input_values", "attention_mask"]
    feeds = pre([(np.ones(4000, np.float32) * 0.1, 16000), (np.ones(8000, np.float32) * 0.1, 16000)])
    assert feeds["input_values"].shape == (2, 8000) and feeds["attention_mask"][0].sum() == 4000
    with torch.no_grad():
        h = model(torch.from_numpy(feeds["input_values"][:1])).last_hidden_state  # frames of the padded row
        frames = model._get_feature_vector_attention_mask(h.shape[1], torch.from_numpy(feeds["attention_mask"][:1]))
        want = h[0, frames[0]].mean(0)
        got = tower(torch.from_numpy(feeds["input_values"][:1]), torch.from_numpy(feeds["attention_mask"][:1]))[0]
    assert 0 < int(frames.sum()) < h.shape[1]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("recipe,says", [("hf-clap.yaml", "fixed window"), ("hf-ast-audiofolder.yaml", "fixed window")])
def test_audio_seconds_is_refused_where_the_model_sees_a_fixed_window(audio_dir, recipe, says):
    result = invoke("validate", str(audio_dir / recipe), "--set", "checks.audio_seconds=[2]")
    assert result.exit_code == 2 and "checks.audio_seconds" in result.output and says in result.output, result.output


def test_audio_seconds_is_refused_without_an_audio_tower():
    result = invoke("validate", str(ROOT / "recipes" / "clip-shapes-tiny.yaml"), "--set", "checks.audio_seconds=[2]")
    assert result.exit_code == 2 and "checks.audio_seconds" in result.output and "no audio tower" in result.output


def test_host_preprocessing_is_the_extractor_after_soxr_resampling(audio_dir):
    """A clip written at 22.05 kHz reaches the extractor resampled to its 16 kHz: the features equal the
    extractor's own on the same clip resampled by soxr, and a 16 kHz clip is passed through untouched."""
    import soxr
    from transformers import AutoFeatureExtractor

    from mmcompress.models.audio_preprocess import for_extractor

    fe = AutoFeatureExtractor.from_pretrained(audio_dir / "examples" / "tiny-ast")
    pre = for_extractor(fe)
    t = np.arange(int(0.5 * 22050)) / 22050
    wave = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    got = pre([(wave, 22050)])["input_values"]
    want = fe([soxr.resample(wave, 22050, 16000, quality="HQ")], sampling_rate=16000, return_tensors="np")["input_values"]
    np.testing.assert_array_equal(got, want)
    w16 = wave[:8000]
    np.testing.assert_array_equal(pre([(w16, 16000)])["input_values"],
                                  fe([w16], sampling_rate=16000, return_tensors="np")["input_values"])
    # CLAP's random crop of a long clip is seeded: every call sees the same crop
    clap = for_extractor(AutoFeatureExtractor.from_pretrained(audio_dir / "examples" / "tiny-clap"))
    long = (np.random.default_rng(0).standard_normal(48000) * 0.1).astype(np.float32)
    a, b = clap([(long, 16000)]), clap([(long, 16000)])
    np.testing.assert_array_equal(a["input_features"], b["input_features"])


def _jsonl_with(audio_dir, tmp_path, line: int, write) -> tuple:
    """The CLAP recipe on a copy of the sounds JSONL whose clip on `line` was replaced by write(path)."""
    src = audio_dir / "examples" / "sounds-jsonl"
    data = tmp_path / "data"
    shutil.copytree(src, data)
    lines = (data / "sounds.jsonl").read_text().splitlines()
    clip = data / json.loads(lines[line - 1])["audio"]
    write(clip)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((audio_dir / "hf-clap.yaml").read_text()
                      .replace("examples/tiny-clap", str(audio_dir / "examples" / "tiny-clap"))
                      .replace("examples/sounds-jsonl/sounds.jsonl", str(data / "sounds.jsonl")))
    return _run(recipe, tmp_path / "run") + (data / "sounds.jsonl",)


@pytest.mark.parametrize("line,write,says", [
    (3, lambda p: p.write_bytes(bytes(range(256)) * 4), "cannot be decoded"),             # unreadable bytes
    (5, lambda p: p.write_text("this is a text file, not a sound\n"), "cannot be decoded"),  # text named .wav
    (7, lambda p: soundfile.write(p, np.zeros(0, np.float32), 16000), "has no samples"),    # zero samples
])
def test_bad_audio_exits_2_naming_file_and_line(audio_dir, tmp_path, line, write, says):
    result, report, jsonl = _jsonl_with(audio_dir, tmp_path, line, write)
    assert result.exit_code == 2, result.output
    assert f"{jsonl}:{line}:" in result.output and says in result.output
    assert report is None  # refused before any stage ran


def test_sounds_zoo_teacher_trains_once_and_loads_as_audio_and_text_towers():
    from mmcompress.models import load_teacher, zoo
    from mmcompress.recipe import TeacherConfig

    entry = zoo.REGISTRY["sounds-clap-tiny"]
    assert entry.towers == ("audio", "text") and zoo.REGISTRY["sounds-clap"].towers == ("audio", "text")
    bundle = load_teacher(TeacherConfig(zoo="sounds-clap-tiny"))
    assert bundle.source["trained_now"] and bundle.task == "dual-encoder"
    meta = json.loads((zoo.cache_dir(entry) / "mmcompress_zoo.json").read_text())
    assert meta["origin"] == "trained" and meta["train_seconds"] > 0
    again = load_teacher(TeacherConfig(zoo="sounds-clap-tiny"))  # cached: not trained again
    assert not again.source["trained_now"] and again.source["weights_sha256"] == bundle.source["weights_sha256"]
    from mmcompress.data import sounds

    clips = sounds.generate(3, seed=0).audio
    feats = bundle.audio_preprocess(clips)["input_values"]  # (3, 100 frames, 32 mel bins)
    assert feats.shape == (3, 100, 32) and bundle.audio_preprocess.to_dict()["extractor"] == "ASTFeatureExtractor"


def test_sounds_eval_never_overlaps_the_zoo_teachers_training_clips():
    from mmcompress.data import load_data, sounds
    from mmcompress.models.zoo import REGISTRY
    from mmcompress.recipe import DataConfig

    train = set()
    for entry in REGISTRY.values():
        if "audio" in entry.towers:
            train |= {w.tobytes() for w, _ in sounds.generate(200, entry.config.seed, stream=sounds.STREAM_TEACHER).audio}
    for seed in [0, 1, 10]:
        data = load_data(DataConfig(source="sounds", splits={"calibration": 20, "eval": 100, "train": 20}), seed)
        for split in data.splits.values():
            assert not train & {w.tobytes() for w, _ in split.audio}
    assert data.kind == "audio-text" and len(data.class_names) == 15 and len(data.class_prompts[0]) == 4


ENTRYPOINT = '''
from pathlib import Path

from transformers import ASTModel, AutoFeatureExtractor

from mmcompress import Bundle, TowerSpec
from mmcompress.models.audio import PooledAudioTower
from mmcompress.models.audio_preprocess import for_extractor

HERE = Path(__file__).parent / "examples" / "tiny-ast"


def build(with_preprocess=True):
    tower = PooledAudioTower(ASTModel.from_pretrained(HERE), normalize=True)
    pre = for_extractor(AutoFeatureExtractor.from_pretrained(HERE)) if with_preprocess else None
    return Bundle(towers={"audio": tower}, specs={"audio": TowerSpec(inputs={"input_values": {0: "batch"}})},
                  image_preprocess=None, text_preprocess=None, audio_preprocess=pre)


def without_preprocess():
    return build(False)
'''


@pytest.mark.parametrize("function,code,says", [("build", 0, "ok"), ("without_preprocess", 2, "audio_preprocess")])
def test_python_entrypoint_with_an_audio_tower(audio_dir, function, code, says):
    (audio_dir / "audio_teacher.py").write_text(ENTRYPOINT)
    recipe = audio_dir / f"entry-{function}.yaml"
    recipe.write_text((audio_dir / "hf-ast-audiofolder.yaml").read_text()
                      .replace("hf: examples/tiny-ast", f"python: audio_teacher:{function}"))
    result = invoke("validate", str(recipe))
    assert result.exit_code == code, result.output
    assert says in result.output.lower()


def _with_stage(audio_dir, name: str, stage: str) -> "Path":
    recipe = audio_dir / f"{name}.yaml"
    recipe.write_text((audio_dir / "hf-ast-audiofolder.yaml").read_text()
                      .replace("export:", f"stages:\n  - {stage}\nexport:")
                      .replace("{calibration: 4, eval: 14}", "{train: 6, calibration: 4, eval: 8}"))
    return recipe


def test_an_ast_audio_tower_distils_to_fewer_layers_and_is_checked(audio_dir, tmp_path):
    """ASTModel (a single audio tower, 2 layers) -> a 1-layer student of its class, initialised from the
    teacher's last layer; saved with save_pretrained (transformers loads it), exported and checked."""
    from transformers import ASTModel

    recipe = _with_stage(audio_dir, "distill", "distill: {towers: {audio: {layers: 1}}, steps: 6, batch: 2, warmup: 1, "
                                               "checkpoint_every: 3, eval_every: 3}")
    result, report = _run(recipe, tmp_path / "run", "--set", "export.variants=[{name: student, quantize: none}]",
                          "--set", "checks.budgets={}")
    assert result.exit_code == 0, result.output
    d = report["models"]["distill"]
    assert d["student"]["towers"]["audio"] == {"kind": "hf", "class": "ASTModel", "layers": 1, "width": 1.0,
                                                "init": "teacher"}
    assert d["student"]["parameters"]["audio"] < d["student"]["teacher_parameters"]["audio"]
    assert [h["step"] for h in d["history"]] == [3, 6]
    student = ASTModel.from_pretrained(tmp_path / "run" / "stages" / "distill" / "student")
    assert student.config.num_hidden_layers == 1
    assert report["artifacts"]["student"]["fidelity"]["audio"]["n"] == 8  # the student's graph, on the eval clips


def test_a_wav2vec2_tower_distils_to_fewer_layers(audio_dir, tmp_path):
    """Wav2Vec2Model (raw samples of any length, 2 layers) -> 1 layer, trained on clips of their own lengths
    (the mask through the student as through the teacher), saved with save_pretrained and checked."""
    from transformers import Wav2Vec2Model

    recipe = audio_dir / "distill-wav2vec2.yaml"
    recipe.write_text((audio_dir / "hf-wav2vec2.yaml").read_text()
                      .replace("export:", "stages:\n  - distill: {towers: {audio: {layers: 1}}, steps: 4, batch: 2, "
                                          "warmup: 1, checkpoint_every: 2, eval_every: 2}\nexport:")
                      .replace("{calibration: 8, eval: 32}", "{train: 6, calibration: 4, eval: 8}"))
    result, report = _run(recipe, tmp_path / "run", "--set", "export.variants=[{name: student, quantize: none}]",
                          "--set", "checks.budgets={}", "--set", "export.onnx.exporter=torchscript")
    assert result.exit_code == 0, result.output
    assert report["models"]["distill"]["student"]["towers"]["audio"]["class"] == "Wav2Vec2Model"
    assert Wav2Vec2Model.from_pretrained(tmp_path / "run" / "stages" / "distill" / "student").config.num_hidden_layers == 1
    assert report["artifacts"]["student"]["fidelity"]["audio"]["n"] == 8


def test_a_zoo_audio_text_teacher_distils_its_audio_tower_with_contrastive_losses(tmp_path):
    """sounds-clap-tiny: the audio tower narrowed to half its width (1 of 2 heads) learns the teacher's clip
    embeddings and their similarities to the captions (contrastive_kd); the text tower stays the teacher's."""
    import yaml

    r = yaml.safe_load((ROOT / "recipes" / "audio-shapes-distill.yaml").read_text())  # the demo, at test size
    r["teacher"]["zoo"] = "sounds-clap-tiny"
    r["data"]["splits"] = {"train": 64, "calibration": 16, "eval": 48}
    r["stages"][0]["distill"].update(towers={"audio": {"layers": 1, "width": 0.5}}, steps=8, batch=16, warmup=2,
                                     eval_every=4, checkpoint_every=4)
    r["checks"].update(rounds=5, batch_sizes=[1], budgets={})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(r, sort_keys=False))
    fast = ("--set", "export.onnx.exporter=torchscript")  # seconds, where dynamo takes tens of them on 2 cores
    result, report = _run(recipe, tmp_path / "run", *fast)
    assert result.exit_code == 0, result.output
    d = report["models"]["distill"]
    assert d["student"]["parameters"]["audio"] < 0.5 * d["student"]["teacher_parameters"]["audio"]
    assert d["history"][-1]["eval"]["audio cos"] > 0  # the evaluator ran on the audio tower
    arts = report["artifacts"]
    assert set(arts) >= {"teacher-int8", "student-fp32", "student-int8"}
    assert arts["student-fp32"]["accuracy"]["primary"]["metric"] == "zero_shot_top1"
    assert arts["student-fp32"]["towers"]["text"]["converted"] is False  # the teacher's text tower, as it was
    again, _ = _run(recipe, tmp_path / "run", *fast)  # the saved student reloads: nothing is trained again
    assert again.exit_code == 0 and "distilling audio" not in again.output


def test_the_contrastive_losses_match_audio_with_the_captions_as_they_match_images():
    """total_loss on an audio-text teacher's targets: the audio tower gets contrastive_kd (its similarities to
    the anchor captions, against the teacher's) and the caption cross-entropy; a distilled text tower is
    contrasted with the teacher's clips."""
    import torch

    from mmcompress.compress.training import total_loss
    from mmcompress.recipe import DistillConfig

    cfg = DistillConfig(towers={"audio": {"layers": 1}}, losses={"cosine": 1, "contrastive_kd": 1, "contrastive": 1})
    rng = np.random.default_rng(0)
    targets = {"audio": rng.normal(size=(8, 4)).astype(np.float32), "text": rng.normal(size=(8, 4)).astype(np.float32),
               "anchors": rng.normal(size=(3, 4)).astype(np.float32), "caption_anchor": np.arange(8) % 3}
    rows = np.arange(8)
    out = {"audio": torch.from_numpy(targets["audio"]) + 0.1, "text": torch.from_numpy(targets["text"]) + 0.1}
    total, parts = total_loss(cfg, out, targets, rows, 10.0, "cpu")
    assert {"audio.cosine", "audio.contrastive_kd", "audio.contrastive", "text.contrastive_kd", "text.contrastive"} <= set(parts)
    assert torch.isfinite(total) and total > 0


@pytest.mark.parametrize("stage,says", [
    ("prune: {towers: {audio: {heads: 0.5}}, steps: 30}", "pruning of audio teachers is not built yet"),
    ("distill: {towers: {image: {layers: 1}}, steps: 30}", "the teacher has no image tower"),
])
def test_audio_stages_that_cannot_run_are_refused_before_anything_runs(audio_dir, stage, says):
    result = invoke("validate", str(_with_stage(audio_dir, "bad-stage", stage)))
    assert result.exit_code == 2 and says in result.output and "bad-stage.yaml:" in result.output, result.output


def test_distilling_clap_htsat_audio_layers_is_refused_naming_why(audio_dir):
    recipe = audio_dir / "clap-distill.yaml"
    recipe.write_text((audio_dir / "hf-clap.yaml").read_text()
                      .replace("export:", "stages:\n  - distill: {towers: {audio: {layers: 1}}, steps: 30}\nexport:")
                      .replace("{calibration: 8, eval: 40}", "{train: 8, calibration: 8, eval: 32}"))
    result = invoke("validate", str(recipe))
    assert result.exit_code == 2 and "HTSAT" in result.output and "clap-distill.yaml:" in result.output, result.output


def test_an_audio_model_it_does_not_load_is_refused_at_validate(audio_dir, tmp_path):
    """A WavLM directory (wav2vec2's inputs, relative position buckets) is named as not loaded, not mistaken for a
    text encoder because its config has a vocab_size."""
    from transformers import WavLMConfig

    WavLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path / "wavlm")
    result = invoke("validate", str(audio_dir / "hf-wav2vec2.yaml"), "--set", f"teacher.hf={tmp_path / 'wavlm'}")
    assert result.exit_code == 2 and "wavlm audio model" in result.output and "Wav2Vec2Model" in result.output, result.output
