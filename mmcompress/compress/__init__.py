"""Torch-side stages (Bundle -> Bundle) that run between loading the teacher and the ONNX export.

None ships yet: distillation and structured pruning arrive as their own modules here, each with one config
class in recipe.py and one stage function, run through pipeline.Run.stage like the export stages
(docs/architecture.md).
"""
