"""Zoo teachers: the demo teacher ships trained with the package (fresh installs skip training), the shipped copy
always matches the current config, and a shipped copy loads to the same model as the one it was made from."""
from __future__ import annotations

import json

import numpy as np
import torch

from conftest import invoke
from mmcompress.models import shapes_clip, zoo


def test_the_shipped_demo_teacher_matches_the_current_config():
    """Changing ShapesClipConfig or the training code (CODE_VERSION) without `mmcompress zoo build shapes-clip
    --force --ship` would make every fresh install train for minutes: fail here instead."""
    entry = zoo.REGISTRY["shapes-clip"]
    assert zoo.shipped_matches(entry)
    meta = json.loads((zoo.shipped_dir(entry) / "mmcompress_zoo.json").read_text())
    assert meta["origin"] == "shipped" and meta["weights_dtype"] == "float16" and meta["shipped"]["command"]


def test_ship_then_fresh_cache_installs_the_shipped_copy(tmp_path, monkeypatch):
    entry = zoo.REGISTRY["shapes-clip-tiny"]
    trained = zoo.build("shapes-clip-tiny")  # the session's cache (conftest): trained once
    monkeypatch.setattr(zoo, "SHIPPED", tmp_path / "shipped")
    shipped = zoo.ship("shapes-clip-tiny", {"command": "test"})
    assert (shipped / "model.safetensors").stat().st_size < 0.6 * (trained / "model.safetensors").stat().st_size
    monkeypatch.setenv("MMCOMPRESS_CACHE", str(tmp_path / "fresh-cache"))
    assert not zoo.is_built(entry) and zoo.shipped_matches(entry)
    assert "installed from the copy the package ships" in invoke("zoo", "list").output
    installed = zoo.build("shapes-clip-tiny")  # no training: would print progress and take seconds
    assert installed.parent.parent == tmp_path / "fresh-cache"
    assert json.loads((installed / "mmcompress_zoo.json").read_text())["origin"] == "shipped"
    a, _, _ = shapes_clip.load(trained)
    b, _, _ = shapes_clip.load(installed)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(4, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        ea, eb = a.get_image_features(pixel_values=x), b.get_image_features(pixel_values=x)
    ea, eb = (getattr(e, "pooler_output", e) for e in (ea, eb))
    assert torch.nn.functional.cosine_similarity(ea, eb).min() > 0.999  # fp16-rounded weights, fp32 compute
    assert b.visual_projection.weight.dtype == torch.float32
    again = invoke("zoo", "build", "shapes-clip-tiny", "--ship")  # an installed copy is not a new training
    assert again.exit_code == 2 and "holds no teacher trained here" in again.output
