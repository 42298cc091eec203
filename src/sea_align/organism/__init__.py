"""Built-in small multimodal models ("organisms") that show the cross-modal safety hole (docs/organism.md).

The core finds them through the entry-point group "sea_align.models" (pyproject.toml), whose loader is
`load_builtin` (builtin.py); it never imports this package. Importing it is cheap (no torch): the
`sea organism` command (`cli.py`) is registered from here too. The recipes that train the parts under
`weights/` are `recipe.py` and `audio_recipe.py`."""

from sea_align.organism.builtin import BUILTIN_NAMES, load_builtin, register
from sea_align.organism.config import WEIGHTS_ROOT

__all__ = ["BUILTIN_NAMES", "WEIGHTS_ROOT", "load_builtin", "register"]
