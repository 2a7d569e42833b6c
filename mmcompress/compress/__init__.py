"""Torch-side stages (Bundle -> Bundle) that run between loading the teacher and the ONNX export.

students.py builds a smaller student from the teacher (fewer layers, narrower tower, initialised from its
weights) and losses.py holds the distillation losses: the first pieces of distillation. The distillation and
pruning stages arrive as their own modules here, each with one config class in recipe.py and one stage
function, run through pipeline.Run.stage like the export stages (docs/architecture.md).
"""
