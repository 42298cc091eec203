"""Models (docs/architecture.md): one adapter per family behind the `ModelAdapter` Protocol (base.py);
`load_adapter` (loading.py) loads any supported model by name or path; built-ins by entry point (registry.py)."""

from sea_align.models.base import BaseAdapter, Item, ModelAdapter, ModelError
from sea_align.models.loading import load_adapter
from sea_align.models.registry import adapter_class, builtin_names

__all__ = ["BaseAdapter", "Item", "ModelAdapter", "ModelError", "adapter_class", "builtin_names", "load_adapter"]
