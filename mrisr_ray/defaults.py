"""Where the default `configs/` and `search_spaces/` live.

In a source checkout (or an editable install) they are the repository's top-level folders; a
wheel installs the same files as the packages `mrisr_ray.configs` and `mrisr_ray.search_spaces`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def defaults_dir(kind: str) -> Path:
    """Folder of the packaged defaults: kind is "configs" or "search_spaces"."""
    checkout = Path(__file__).resolve().parents[1] / kind
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files(f"mrisr_ray.{kind}")))
