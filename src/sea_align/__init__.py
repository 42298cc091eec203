"""sea-align: SEA (Synthetic Embedding augmented safety Alignment) for multimodal LLMs."""

__version__ = "0.1.0"

from pathlib import Path as _Path

PKG_DIR = _Path(__file__).parent  # the installed package: presets in configs/, shipped data in data/
PKG_DATA = PKG_DIR / "data"
