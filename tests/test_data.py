from __future__ import annotations

import numpy as np

from mmcompress.data import digits, load_data, shapes
from mmcompress.recipe import DataConfig


def test_shapes_are_seeded_and_captions_match_labels():
    a, b = shapes.generate(50, seed=3), shapes.generate(50, seed=3)
    assert np.array_equal(a.images, b.images) and a.texts == b.texts
    assert not np.array_equal(a.images, shapes.generate(50, seed=4).images)
    names = shapes.class_names()
    for text, label in zip(a.texts, a.labels):
        assert text.endswith(names[label])  # "a small red circle" ends with "red circle"
    assert a.images.shape == (50, 64, 64, 3) and a.images.dtype == np.uint8


def test_shapes_draws_the_colour_it_names():
    img = shapes.draw("square", shapes.COLOURS["blue"], 20, 32, 32, 0.0, (0, 0, 0))
    assert tuple(img[32, 32]) == shapes.COLOURS["blue"] and tuple(img[0, 0]) == (0, 0, 0)
    ring = shapes.draw("ring", shapes.COLOURS["red"], 20, 32, 32, 0.0, (0, 0, 0))
    assert tuple(ring[32, 32]) == (0, 0, 0)  # a ring is hollow, a circle is not


def test_shapes_prompts_follow_the_caption_wording():
    prompts = shapes.class_prompts()
    assert len(prompts) == 30 and prompts[0] == ["a small red circle", "a large red circle"]
    assert set(p for ps in prompts for p in ps) == set(shapes.captions())


def test_splits_have_the_asked_sizes_and_do_not_overlap():
    ds = load_data(DataConfig.model_validate({"source": "shapes", "splits": {"train": 20, "calibration": 10, "eval": 30}}), seed=0)
    assert {k: len(v) for k, v in ds.splits.items()} == {"eval": 30, "calibration": 10, "train": 20}
    ev = {im.tobytes() for im in ds.split("eval").images}
    assert not any(im.tobytes() in ev for im in ds.split("calibration").images)


def test_eval_split_does_not_change_when_other_splits_grow():
    small = load_data(DataConfig.model_validate({"source": "shapes", "splits": {"calibration": 4, "eval": 8}}), 0)
    big = load_data(DataConfig.model_validate({"source": "shapes", "splits": {"calibration": 64, "eval": 8}}), 0)
    assert np.array_equal(small.split("eval").images, big.split("eval").images)


def test_digits_split_and_captions():
    ds = load_data(DataConfig.model_validate({"source": "digits", "splits": {"calibration": 100, "eval": 200}}), seed=1)
    ev = ds.split("eval")
    assert ev.images.shape == (200, 64, 64, 3)
    assert all(t == f"a handwritten digit {digits.NAMES[y]}" for t, y in zip(ev.texts, ev.labels))
    assert ds.class_prompts[7] == ["a handwritten digit seven"]


def test_shapes_eval_never_overlaps_the_zoo_teachers_training_images():
    """Any recipe seed, against the zoo teachers' training seeds: no eval image is a training image. (With the
    old `seed * 100 + k` derivation, recipe seed 10 evaluated on the teacher's first training images.)"""
    from mmcompress.models.zoo import REGISTRY

    train = set()
    for entry in REGISTRY.values():
        if "audio" in entry.towers:
            continue  # trained on sounds: tests/test_audio.py checks those
        cfg = entry.config  # a fusion teacher trains on its base teacher's images
        size = cfg.image_size if hasattr(cfg, "image_size") else REGISTRY[cfg.base].config.image_size
        imgs = shapes.generate(300, seed=cfg.seed, size=size, stream=shapes.STREAM_TEACHER).images
        train |= {im.tobytes() for im in imgs}
    for seed in [0, 1, 10, 1000, 10 ** 6]:
        for source in ("shapes", "shapes-vqa"):
            data = load_data(DataConfig(source=source, splits={"calibration": 20, "eval": 100, "train": 20}), seed)
            for name, split in data.splits.items():
                assert not train & {im.tobytes() for im in split.images}, (seed, source, name)
    # and the splits of one recipe never share an image
    data = load_data(DataConfig(source="shapes", splits={"calibration": 50, "eval": 200, "train": 200}), 10)
    seen = [{im.tobytes() for im in s.images} for s in data.splits.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
