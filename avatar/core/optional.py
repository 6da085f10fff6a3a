"""Is an optional package installed, and where: answered without importing it.

Why without importing: the CLI, the web console and each engine's `load()` ask this before anything
heavy runs, and importing torch or funasr just to learn that it exists costs seconds and memory.
`importlib.util.find_spec` reads the import system's finders only. One copy of the rule, so a
package whose parent fails to import (or that has a broken `__spec__`) counts as missing everywhere.
"""

from __future__ import annotations

from importlib import util as importlib_util
from pathlib import Path


def module_available(name: str) -> bool:
    """True when `import name` would find the module; nothing is imported (except, for a dotted
    name, its parent packages, which is how Python finds submodules)."""
    try:
        return importlib_util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package that fails, or a broken __spec__
        return False


def package_dir(name: str) -> Path | None:
    """The folder of an installed package (or of a plain module's file), None when not installed."""
    try:
        spec = importlib_util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec.origin else None
