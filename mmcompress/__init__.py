"""mmcompress: compress multimodal models for the edge, with proof that they still work.

Importing the package is cheap: torch, onnxruntime and transformers are imported by the modules that use them.
"""
__version__ = "0.1.0"
