"""Moved to ``textsiamese.inference.onnx``; kept so documented imports keep working."""

from textsiamese.inference.onnx import *  # noqa: F403
