"""The work directory: one folder for everything that runs produce (docs/architecture.md §4.11)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

WORKDIR_ENV = "MRISR_RAY_WORKDIR"
DEFAULT_WORKDIR = "mrisr-work"


@dataclass(frozen=True)
class Workdir:
    root: Path

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def ray_storage(self) -> Path:
        return self.root / "ray"

    @property
    def optuna_db(self) -> Path:
        return self.root / "optuna.db"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def data(self) -> Path:
        return self.root / "data"


def resolve_workdir(option: str | Path | None = None) -> Workdir:
    """`--workdir`, else `$MRISR_RAY_WORKDIR`, else `./mrisr-work`; always absolute."""
    chosen = option or os.environ.get(WORKDIR_ENV) or DEFAULT_WORKDIR
    return Workdir(Path(chosen).expanduser().resolve())
