"""The work directory: one folder for everything that runs produce (docs/architecture.md §4.11)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mrisr_ray.errors import UserInputError

WORKDIR_ENV = "MRISR_RAY_WORKDIR"
DEFAULT_WORKDIR = "mrisr-work"


@dataclass(frozen=True)
class Workdir:
    root: Path
    storage: Path | None = None  # --storage-path: a folder every Ray node sees (default root/ray)

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def ray_storage(self) -> Path:
        """Ray Train's checkpoints and Tune's results: on a cluster, workers write checkpoints
        there and the head reads them, so it must be storage every node mounts."""
        return self.storage or self.root / "ray"

    @property
    def optuna_db(self) -> Path:
        return self.root / "optuna.db"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def data(self) -> Path:
        return self.root / "data"


def ensure_folder(folder: Path, what: str) -> Path:
    """Create `folder` (and its parents) unless it exists; one clear error if that cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        in_the_way = isinstance(exc, (FileExistsError, NotADirectoryError))
        reason = "a file is in the way" if in_the_way else exc.strerror or str(exc)
        raise UserInputError(f"{what}: cannot create the folder {folder} ({reason})") from None
    return folder


def resolve_workdir(option: str | Path | None = None, storage: str | Path | None = None) -> Workdir:
    """`--workdir`, else `$MRISR_RAY_WORKDIR`, else `./mrisr-work`; always absolute, and created
    here for every command: what lives in it (optuna.db, mlflow.db, Ray storage) is opened
    without creating its folder. `storage`: `--storage-path`, a POSIX folder (created)."""
    if option:
        chosen, source = option, f"--workdir {option}"
    elif os.environ.get(WORKDIR_ENV):
        chosen, source = os.environ[WORKDIR_ENV], f"{WORKDIR_ENV}={os.environ[WORKDIR_ENV]}"
    else:
        chosen, source = DEFAULT_WORKDIR, "the default work directory"
    root = ensure_folder(Path(chosen).expanduser().resolve(), source)
    if storage is None:
        return Workdir(root)
    if "://" in str(storage):
        raise UserInputError(f"--storage-path {storage}: give a folder that every Ray node mounts "
                             "(a local path, or an NFS/EFS mount on a cluster), not a URI")
    path = Path(storage).expanduser().resolve()
    return Workdir(root, ensure_folder(path, f"--storage-path {storage}"))
