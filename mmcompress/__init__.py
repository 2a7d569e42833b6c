"""mmcompress: compress multimodal models for the edge, with proof that they still work.

    import mmcompress
    report = mmcompress.run("recipes/clip-shapes.yaml", run_dir="runs/demo")
    report.passed, report.artifacts["int8-dynamic"].files

Importing the package is cheap: torch, onnxruntime and transformers are imported by the modules that use them
(the names below are looked up on first use). docs/api.md has the API, docs/deploy.md how to use what a run
made in an application.
"""
__version__ = "0.1.0"

# public name -> the module that defines it
_API = {"run": "mmcompress.api", "load_recipe": "mmcompress.api", "Report": "mmcompress.api",
        "ArtifactReport": "mmcompress.api",
        "Bundle": "mmcompress.models.bundle", "TowerSpec": "mmcompress.models.bundle",
        "FUSION_SPEC": "mmcompress.models.bundle", "ImagePreprocess": "mmcompress.models.bundle",
        "TextPreprocess": "mmcompress.models.bundle", "AudioPreprocess": "mmcompress.models.audio_preprocess",
        "MMCompressError": "mmcompress.errors", "RecipeError": "mmcompress.errors", "StageError": "mmcompress.errors",
        "BackendMissing": "mmcompress.errors"}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'mmcompress' has no attribute {name!r}")
