"""Every MLflow call of mrisr-ray, through an explicit `MlflowClient` and explicit run ids (no
global "active run" state: it does not cross Ray processes). What the runs mean, their tags and
the queries that find them, is `runs.py`.

Local default store: `sqlite:///<workdir>/mlflow.db` with artifacts under `<workdir>/mlartifacts`;
a `--tracking-uri sqlite:///…/x.db` keeps its artifacts in `mlartifacts/` beside the file
(absolute paths: Ray workers change their working directory).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mrisr_ray.errors import UserInputError, describe
from mrisr_ray.ray_runtime import NO_TRACKING_ENV
from mrisr_ray.workdir import Workdir, ensure_folder

DEFAULT_EXPERIMENT = "mrisr-ray"
MAX_PARAM_LENGTH = 6000
SQLITE_FILE = "sqlite:///"
# MLflow 3's UI opens an experiment on its GenAI overview (traces, tokens) unless this tag says
# that it holds model-development runs: then it opens on the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# A view of the runs table (columns, sort) that the UI opens from `?viewStateShareKey=KEY` when
# the experiment has the tag `mlflow.sharedViewState.KEY` holding it as JSON (MLflow's "share view").
SHARED_VIEW_TAG, SHARED_VIEW_PARAMETER, VIEW_KEY = "mlflow.sharedViewState.", "viewStateShareKey", "mrisr-ray"


# The stores MLflow's tracking client opens (a database URI may name its driver: postgresql+psycopg2),
# beside those of installed plugins (the `mlflow.tracking_store` entry points).
STORE_SCHEMES = ("", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks",
                 "databricks-uc")
# One worker process and no job runner (it serves GenAI jobs: five more processes importing
# MLflow, minutes to start on a busy laptop) suffice for one user's runs table.
UI_ENVIRONMENT = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def check_store_uri(uri: str) -> None:
    """Refuse a `--tracking-uri` whose kind of store MLflow cannot open (one line, before MLflow's
    own exception)."""
    scheme = uri.partition("://")[0] if "://" in uri else ""
    if scheme.split("+")[0] in STORE_SCHEMES:
        return
    plugins = {entry.name for entry in importlib.metadata.entry_points(group="mlflow.tracking_store")}
    if scheme not in plugins:
        raise UserInputError(f"--tracking-uri {uri}: MLflow has no store of kind {scheme!r} (use "
                             "sqlite:///FILE.db, a folder, http(s)://HOST, postgresql:// or mysql://)")


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None: another kind of store, or in memory)."""
    if not uri.startswith(SQLITE_FILE):
        return None
    path = uri[len(SQLITE_FILE):].partition("?")[0]
    return None if path in ("", ":memory:") else Path(path)


def local_store(uri: str) -> str:
    """A `--tracking-uri` as every process can use it: a SQLite file's path made absolute (Ray
    workers run in other directories) and its folder created, as the work directory is (the
    default store's folder); any other URI as it is."""
    db = sqlite_file(uri)
    if db is None:
        return uri
    db = db.resolve()
    ensure_folder(db.parent, f"--tracking-uri {uri}")
    _, sep, query = uri.partition("?")
    return f"{SQLITE_FILE}{db}{sep}{query}"


@functools.cache
def quiet_mlflow() -> None:
    """Silence MLflow in this process, once, before its first client: artifact downloads draw
    progress bars into the console and every new store logs its schema migrations. Done here,
    not at import, so importing mrisr-ray leaves the caller's environment and logging alone; it
    runs in each process that logs (driver, trial and rank-0 worker alike)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Tracking:
    """Where runs are logged: the store URI and (for a local store) the artifact root."""

    uri: str
    artifact_root: Path | None = None

    @classmethod
    def for_workdir(cls, workdir: Workdir, uri: str | None = None) -> Tracking:
        """The store `uri` (`--tracking-uri`, see `local_store`), else the work directory's."""
        if uri:
            check_store_uri(uri)
            # A SQLite store's artifacts go to `mlartifacts/` beside its file (MLflow's default
            # would be `./mlruns` under whichever directory each process runs in).
            store = local_store(uri)
            db = sqlite_file(store)
            return cls(uri=store, artifact_root=db.parent / "mlartifacts" if db else None)
        return cls(uri=workdir.mlflow_uri, artifact_root=workdir.mlflow_artifacts)

    def exists(self) -> bool:
        """False for a local store that was never written (no runs can be found there)."""
        db = sqlite_file(self.uri)
        return not self.uri.startswith(SQLITE_FILE) or (db is not None and db.is_file())

    def client(self) -> MlflowClient:
        if os.environ.get(NO_TRACKING_ENV):
            raise RuntimeError(f"no MLflow calls in this process ({NO_TRACKING_ENV}: "
                               f"{os.environ[NO_TRACKING_ENV]})")
        quiet_mlflow()
        if self.artifact_root is not None:  # a local store lives in the work directory
            self.artifact_root.parent.mkdir(parents=True, exist_ok=True)
        return MlflowClient(tracking_uri=self.uri)

    def find_experiment(self, name: str) -> str | None:
        """The id of the experiment `name`, or None where there is none (nothing is created). An
        experiment without the kind tag (made by an earlier version, or by hand) gets it."""
        client = self.client()
        found = client.get_experiment_by_name(name)
        if found is None:
            return None
        if EXPERIMENT_KIND_TAG not in found.tags:
            client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return found.experiment_id

    def experiment_id(self, name: str) -> str:
        """The id of the experiment `name`, created (with the kind tag) where there is none."""
        found = self.find_experiment(name)
        if found is not None:
            return found
        location = (self.artifact_root / name).as_uri() if self.artifact_root else None
        return self.client().create_experiment(name, artifact_location=location,
                                               tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})

    def runs_url(self, port: int, experiment: str, columns: list[str] | None = None) -> str:
        """The MLflow UI's address on 127.0.0.1:`port`: the runs table of `experiment` where the
        store has it (tagged on the way), else the UI's home page. `columns` (`metrics.psnr`,
        `tags.kind`, …) are stored as a view of the experiment that the address opens, newest
        runs first (the UI otherwise shows no metric column until one is picked)."""
        home = f"http://127.0.0.1:{port}"
        found = self.find_experiment(experiment) if self.exists() else None
        if found is None:
            return home
        if not columns:
            return f"{home}/#/experiments/{found}/runs"
        selected = [f"{kind}.`{key}`" for kind, _, key in (column.partition(".") for column in columns)]
        view = {"orderByKey": "attributes.start_time", "orderByAsc": False, "selectedColumns": selected}
        self.client().set_experiment_tag(found, SHARED_VIEW_TAG + VIEW_KEY, json.dumps(view))
        return f"{home}/#/experiments/{found}/runs?{SHARED_VIEW_PARAMETER}={VIEW_KEY}"


def ui_command(tracking: Tracking, port: int) -> list[str]:
    """The MLflow UI server on 127.0.0.1:`port` for `tracking`'s store (with `UI_ENVIRONMENT`),
    checked to be able to bind there (a port out of range or in use: one line, not the server's
    traceback)."""
    if not 1 <= port <= 65535:
        raise UserInputError(f"--port {port}: must be in 1..65535")
    with socket.socket() as probe:
        # As the server binds: a port that the last server's closed connections still hold
        # (TIME_WAIT) is free to it; one that something listens on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise UserInputError(f"--port {port}: 127.0.0.1:{port} is not free ({exc.strerror}); "
                                 "pick another --port") from None
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking.uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if tracking.artifact_root:
        command += ["--default-artifact-root", tracking.artifact_root.as_uri()]
    return command


def start_run(tracking: Tracking, experiment: str, name: str, tags: dict[str, str],
              parent_run_id: str | None = None) -> str:
    """Create a new run (never reused by name) and return its id."""
    all_tags = {"mlflow.runName": name, **tags}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = tracking.client().create_run(tracking.experiment_id(experiment), run_name=name,
                                       tags=all_tags)
    return run.info.run_id


def log_params(tracking: Tracking, run_id: str, params: dict[str, Any]) -> None:
    items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
    client = tracking.client()
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


def set_tags(tracking: Tracking, run_id: str, tags: dict[str, Any]) -> None:
    tracking.client().log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_metrics(tracking: Tracking, run_id: str, metrics: dict[str, float], step: int) -> None:
    now = int(time.time() * 1000)
    tracking.client().log_batch(
        run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def log_file(tracking: Tracking, run_id: str, path: str | Path, folder: str | None = None) -> None:
    tracking.client().log_artifact(run_id, str(path), folder)


def log_bytes(tracking: Tracking, run_id: str, data: bytes, artifact_file: str) -> None:
    """Log `data` as the artifact `artifact_file` (e.g. "samples/epoch_003.png")."""
    folder, _, name = artifact_file.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        log_file(tracking, run_id, path, folder or None)


def end_run(tracking: Tracking, run_id: str, status: str = "FINISHED") -> None:
    tracking.client().set_terminated(run_id, status=status)


def existing_run(tracking: Tracking, run_id: str, option: str) -> Run:
    """The run `run_id` that `option` (e.g. "--resume ID") names, or one line: no such run, or a
    store that did not answer (a locked or damaged database, a server that is down)."""
    try:
        return tracking.client().get_run(run_id)
    except Exception as exc:  # MLflow's own, or the database driver's for a locked or damaged file
        unknown = isinstance(exc, MlflowException) and exc.error_code in (
            "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # an unknown or a malformed id
        if unknown:
            raise UserInputError(f"{option}: no such MLflow run in {tracking.uri}") from None
        raise UserInputError(f"{option}: {tracking.uri} did not answer ({describe(exc)})") from None


def mark_running(tracking: Tracking, run_id: str) -> None:
    """Mark a resumed run as running again."""
    tracking.client().update_run(run_id, status="RUNNING")
