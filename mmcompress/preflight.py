"""Everything a run needs that the schema cannot see: installed backends, the teacher's files or module, which
recipe keys apply to this teacher and data, the data files (every line parsed, every image header read) and
whether they fit the teacher (captions for a text tower; a fusion head's answers and text positions).
`mmcompress validate` and `mmcompress run` both call it before any stage runs, so a recipe that can never work
exits 2 with file:line before anything is written. Zoo and hf teachers are checked without loading weights; a
python entrypoint is built here (its towers are known no other way), and the run reuses what it built."""
from __future__ import annotations

import importlib.util

from mmcompress.errors import BackendMissing, RecipeError
from mmcompress.models.bundle import QUERY_TOWERS
from mmcompress.recipe import Recipe

# import name -> (pip name, what needs it)
CORE = {"torch": ("torch", "the teacher"), "transformers": ("transformers", "the teacher's towers"),
        "onnx": ("onnx", "export.onnx"), "onnxruntime": ("onnxruntime", "export.variants and checks")}


def needed(recipe: Recipe) -> dict[str, tuple[str, str]]:
    need = dict(CORE)
    if recipe.export.onnx.exporter == "dynamo":
        need["onnxscript"] = ("onnxscript", "export.onnx.exporter: dynamo")
    return need


def available() -> dict[str, bool]:
    names = {**CORE, "onnxscript": None, "sklearn": None, "tensorrt": None, "soundfile": None, "soxr": None}
    return {n: importlib.util.find_spec(n) is not None for n in names}


def teacher_towers(recipe: Recipe) -> tuple[str, ...] | None:
    """The towers the teacher's model has (before teacher.towers picks some), known without loading weights
    (None for a python entrypoint); also checks teacher.towers and teacher.max_length against the model."""
    t = recipe.teacher
    limit = None
    if t.zoo is not None:
        from mmcompress.models.zoo import REGISTRY

        have, limit = REGISTRY[t.zoo].towers, REGISTRY[t.zoo].max_length
    elif t.hf is not None:
        from mmcompress.models import hf

        config = hf.check_dir(t.hf, recipe.base, recipe.where("teacher", "hf"))
        have, limit = hf.towers_of(config), hf.text_positions(config)
    else:
        return None
    if t.max_length and limit and t.max_length > limit:
        raise RecipeError(f"{recipe.where('teacher', 'max_length')}: {t.max_length} tokens is more than the "
                          f"model's {limit} text positions; use at most {limit}")
    if have is None:
        return None
    if t.towers:
        for i, name in enumerate(t.towers):
            if name not in have:
                raise RecipeError(f"{recipe.where('teacher', 'towers', i)}: the teacher has no {name} tower (it has "
                                  f"{', '.join(have)}); list only those")
    return have


def teacher_head(recipe: Recipe, model_towers: tuple[str, ...] | None):
    """A zoo or hf teacher as the data checks see it (checks.evaluate.check_fits), without its weights: a Bundle
    with tower names but no modules, its task, and for a fusion teacher the head's answers and tokenizer. None
    when the towers are not known before loading."""
    from mmcompress.models.bundle import Bundle, TextPreprocess

    t = recipe.teacher
    if model_towers is None:
        return None
    towers = tuple(x for x in model_towers if not t.towers or x in t.towers)
    if "fusion" not in towers:
        return Bundle(towers=dict.fromkeys(towers), specs={}, image_preprocess=None, text_preprocess=None,
                      task=Bundle.task_for(towers))
    if t.zoo is not None:  # shapes-vqa: its answers and the tokenizer it is saved with are fixed by the code
        from mmcompress.data import shapes_vqa as questions
        from mmcompress.models import shapes_vqa
        from mmcompress.models.zoo import REGISTRY

        n = REGISTRY[t.zoo].max_length
        return Bundle(towers={"fusion": None}, specs={}, image_preprocess=None, task="vqa",
                      text_preprocess=TextPreprocess(shapes_vqa.make_tokenizer(n), t.max_length or n),
                      outputs=list(questions.ANSWERS))
    from mmcompress.models import hf

    where = recipe.where("teacher", "hf")
    return hf.head(t, recipe.base, hf.read_config(t.hf, recipe.base, where), where)


def _not_for(recipe: Recipe, path: tuple, why: str) -> RecipeError:
    return RecipeError(f"{recipe.where(*path)}: {why}; remove the key")


def check_applicable(recipe: Recipe, model_towers: tuple[str, ...] | None) -> None:
    """Keys that are valid on their own but can never act with this teacher and data source.
    model_towers: the towers the teacher's model has (teacher_towers), before teacher.towers picks some."""
    t, d, set_ = recipe.teacher, recipe.data, recipe.teacher.model_fields_set
    single_hf = t.hf is not None and model_towers is not None and len(model_towers) == 1
    towers = model_towers
    if towers is not None and t.towers:
        towers = tuple(x for x in towers if x in t.towers)
    for key in ("pooling", "normalize"):
        if key in set_ and getattr(t, key) is not None and not (t.hf is not None and (model_towers is None or single_hf)):
            kind = "a zoo teacher" if t.zoo else ("a python entrypoint" if t.python else "a dual encoder")
            raise _not_for(recipe, ("teacher", key), f"{key} applies to single-tower hf encoders, not to {kind}")
    fusion = towers is not None and "fusion" in towers
    if fusion and "prompts" in d.model_fields_set:
        raise _not_for(recipe, ("data", "prompts"), "class prompts are for dual and text encoders; a fusion "
                                                    "teacher answers with its own head")
    question_data = d.source == "shapes-vqa"
    if fusion and d.source in ("shapes", "digits", "imagefolder"):
        raise RecipeError(f"{recipe.where('data', 'source')}: the teacher is a fusion model (image + question -> "
                          f"answer, or image + text -> match) and {d.source} has no questions or match labels; use "
                          f"data.source shapes-vqa, or jsonl lines with image, question and answer (image, text and "
                          f"match for matching models)")
    if question_data and towers is not None and not fusion:
        raise RecipeError(f"{recipe.where('data', 'source')}: shapes-vqa holds questions for a fusion teacher "
                          f"(teacher.zoo: shapes-vqa) and this teacher has {', '.join(towers)} tower(s); use "
                          f"data.source shapes")
    if towers is not None and "text" not in towers and not fusion:
        for key in ("max_length", "text_padding"):
            if getattr(t, key) is not None:
                raise _not_for(recipe, ("teacher", key), f"the teacher has no text tower, so {key} does nothing")
        if recipe.checks.text_lengths:
            raise _not_for(recipe, ("checks", "text_lengths"), "the teacher has no text tower to time at these lengths")
        if "prompts" in d.model_fields_set:
            raise _not_for(recipe, ("data", "prompts"), "class prompts need a text tower and the teacher has none")
    if recipe.checks.audio_seconds and towers is not None and "audio" not in towers:
        raise _not_for(recipe, ("checks", "audio_seconds"), "the teacher has no audio tower to time at these lengths")
    if recipe.checks.audio_seconds and towers is not None:
        from mmcompress.models.audio import FIXED_WINDOW

        kind = getattr(_teacher_config(recipe), "model_type", None)
        if kind in FIXED_WINDOW:
            raise _not_for(recipe, ("checks", "audio_seconds"), f"a {kind} audio tower sees a fixed window (its "
                                                                f"feature extractor pads or cuts every clip to it), "
                                                                f"so it is timed at that window only")
    if d.source in ("shapes", "shapes-vqa", "digits", "sounds"):
        for key in ("path", "classes", "classes_file"):
            if getattr(d, key) is not None:
                raise _not_for(recipe, ("data", key), f"data.source {d.source} is built in: it has no files and "
                                                       f"fixed classes")
    if towers is not None:
        for i, v in enumerate(recipe.export.variants):
            explicit = "towers" in v.model_fields_set
            missing = [x for x in v.towers if x not in towers]
            if explicit and missing:
                raise RecipeError(f"{recipe.where('export', 'variants', i, 'towers')}: the teacher has no "
                                  f"{' or '.join(missing)} tower (it has {', '.join(towers)}); list only those")
        for j, budgets in recipe._all_budgets():
            for name in (budgets.max_latency_ms or {}) if budgets else {}:
                if name not in towers:
                    raise RecipeError(f"{recipe.where(*j, 'max_latency_ms', name)}: the teacher has no {name} tower "
                                      f"(it has {', '.join(towers)}); budget only those")
    if d.source in ("shapes", "digits", "imagefolder") and not {"image", "fusion"} & set(towers or ("image",)):
        has = "an audio tower" if "audio" in (towers or ()) else "only a text tower"
        fix = "data.source sounds, audiofolder or jsonl with audio lines" if "audio" in (towers or ()) else \
            "data.source jsonl with texts"
        raise RecipeError(f"{recipe.where('data', 'source')}: {d.source} is image data but the teacher has {has}; "
                          f"use {fix}")
    if recipe.export.jetson is not None and "audio" in (towers or ()):
        raise _not_for(recipe, ("export", "jetson"), "Jetson bundles carry image and text eval samples; bundles for "
                                                     "audio towers are not built yet (docs/audio.md)")
    if d.source in ("sounds", "audiofolder") and "audio" not in (towers or ("audio",)):
        raise RecipeError(f"{recipe.where('data', 'source')}: {d.source} is audio data but the teacher has no audio "
                          f"tower (it has {', '.join(towers)}); use an audio teacher (zoo: sounds-clap, a CLAP or AST "
                          f"directory) or image/text data")


def _teacher_config(recipe: Recipe):
    """The teacher's transformers-like config without loading weights (zoo: from its registry entry), or None."""
    t = recipe.teacher
    if t.zoo is not None:
        from types import SimpleNamespace

        from mmcompress.models.zoo import REGISTRY

        c = REGISTRY[t.zoo].config
        if hasattr(c, "audio_layers"):  # sounds-clap: an AST audio tower and a text tower
            sub = lambda n: SimpleNamespace(num_hidden_layers=n, num_attention_heads=c.heads)
            return SimpleNamespace(model_type="sounds-clap", audio_config=sub(c.audio_layers),
                                   text_config=sub(c.text_layers))
        if not hasattr(c, "layers"):  # a fusion teacher: no distillation students yet
            return None
        sub = lambda: SimpleNamespace(num_hidden_layers=c.layers, num_attention_heads=c.heads)
        return SimpleNamespace(model_type="clip", vision_config=sub(), text_config=sub())
    if t.hf is not None:
        from mmcompress.models import hf

        return hf.read_config(t.hf, recipe.base, recipe.where("teacher", "hf"))
    return None


def check_stages(recipe: Recipe, model_towers: tuple[str, ...] | None) -> None:
    """Torch-side stages against the teacher: distilled towers it has, students it can give, losses that apply,
    python students that import."""
    from mmcompress.compress import students

    towers = model_towers
    if towers is not None and recipe.teacher.towers:
        towers = tuple(x for x in towers if x in recipe.teacher.towers)
    if recipe.stages and towers is not None and "fusion" in towers:
        raise RecipeError(f"{recipe.where('stages', 0)}: distillation and pruning of fusion teachers are not built "
                          f"yet (export, int8/fp16 and checks are); remove `stages:` and convert the teacher itself")
    for i, entry in enumerate(recipe.stages):
        c, kind = entry.config, entry.kind
        at = lambda *keys, i=i, kind=kind: recipe.where("stages", i, kind, *keys)
        if kind == "prune" and towers is not None and "audio" in towers:
            raise RecipeError(f"{at()}: pruning of audio teachers is not built yet (distillation is: fewer audio "
                              f"layers, docs/audio.md); use a distill stage, or remove this one")
        for t, s in c.towers.items():
            if towers is not None and t not in towers:
                raise RecipeError(f"{at('towers', t)}: the teacher has no {t} tower (it has {', '.join(towers)}); "
                                  f"{'distil' if kind == 'distill' else 'prune'} only those")
            if kind == "prune":
                if s.layers:
                    from mmcompress.patterns import select

                    select([], s.layers, at("towers", t, "layers"))  # the patterns compile
            elif s.python:
                from mmcompress.models import entrypoint

                entrypoint.check(s.python, recipe.base, at("towers", t, "python"))
            elif i == 0 and (config := _teacher_config(recipe)) is not None:
                try:
                    students.check(config, t, s.layers, s.width)
                except ValueError as e:
                    raise RecipeError(f"{at('towers', t)}: {e}") from None
        if towers is not None and not ("text" in towers and set(QUERY_TOWERS) & set(towers)):
            for key in ("contrastive", "contrastive_kd"):
                if getattr(c.losses, key):
                    raise RecipeError(f"{at('losses', key)}: {key} compares images (or clips) with texts and the "
                                      f"teacher has only a {towers[0]} tower; use cosine or mse")


def check(recipe: Recipe, recipe_path: str = "recipe") -> None:
    missing = [(mod, pip, why) for mod, (pip, why) in needed(recipe).items() if importlib.util.find_spec(mod) is None]
    if missing:
        lines = [f"{recipe_path}: backend '{mod}' is not installed (needed by {why}); install it: pip install {pip}"
                 for mod, pip, why in missing]
        raise BackendMissing("\n".join(lines))
    check_runtimes(recipe)
    built = None
    if recipe.teacher.python is not None:
        from mmcompress.models import entrypoint

        # built now, as the run would build it first thing: its towers, head and tokenizer are known no other
        # way, and validate checks the recipe keys and the data against them (the run reuses this Bundle)
        built = entrypoint.load(recipe.teacher, recipe.base, recipe.where("teacher", "python"))
    have = tuple(built.towers) if built is not None else teacher_towers(recipe)
    check_applicable(recipe, have)
    check_stages(recipe, have)
    from mmcompress.data import check_data

    found = check_data(recipe.data, recipe.base, recipe.where)
    head = built if built is not None else teacher_head(recipe, have) if found is not None else None
    if found is not None and head is not None:  # every line, not only the splits' rows
        from mmcompress.checks.evaluate import check_fits

        data, rows = found
        check_fits(head, data, (rows,), recipe.where("data", "path"))
    check_plans(recipe)


def check_runtimes(recipe: Recipe) -> None:
    """Every variant's runtime can run here (a CUDA device for torch-cuda, the ONNX Runtime provider for
    onnxruntime-cuda/-tensorrt): exit 4 naming the variant before anything runs, not a silent CPU fallback."""
    from mmcompress import runtimes

    for i, v in enumerate(recipe.export.variants):
        why = runtimes.get(v.runtime).unavailable()
        if why:
            raise BackendMissing(f"{recipe.where('export', 'variants', i, 'runtime')}: {why}")
        if "nncf" in getattr(v, "methods", ()) and importlib.util.find_spec("nncf") is None:
            raise BackendMissing(f"{recipe.where('export', 'variants', i, 'methods')}: the nncf method needs NNCF: "
                                 f"pip install 'mmcompress[openvino]' (or pip install nncf), or leave nncf out")


def check_plans(recipe: Recipe) -> None:
    """quantize: auto variants that reuse a plan: the file exists and is a plan.json (node names are checked
    against the graph when it is exported)."""
    from mmcompress.export.planner import read_plan

    for i, v in enumerate(recipe.export.variants):
        if getattr(v, "plan", None):
            where = recipe.where("export", "variants", i, "plan")
            path = (recipe.base / v.plan).expanduser()
            if not path.is_file():
                raise RecipeError(f"{where}: {path} does not exist; give the plan.json an earlier run wrote "
                                  f"(RUN_DIR/variants/<name>/plan.json), relative to the recipe")
            read_plan(path, where)
