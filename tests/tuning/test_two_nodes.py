"""A study on a two-node Ray cluster on this machine (a head and a second node started with
`ray start`, their own ports, temp dirs and CPUs): its folds run on the second node, which is
killed (SIGKILL of every process it started) in the middle of a fold and started again; then the
study's driver is killed and the study resumed. Nothing finished is lost or trained twice."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from helpers import TINY_RUN

from mrisr_ray.ray_runtime import NO_TRACKING_ENV
from mrisr_ray.tracking import Tracking
from mrisr_ray.train.fault_injection import FAIL_ONCE_ENV
from mrisr_ray.workdir import Workdir

pytestmark = pytest.mark.ray
RAY = Path(sys.executable).parent / "ray"
EPOCHS = 8  # of ~1.5 s each (64 patches): room to kill the driver in the middle of a fold
FOLD_RESOURCE = "fold_node"  # only the second node has it; --worker-resource puts folds there
SPACE = """parameters:
  train.lr: {type: categorical, choices: [1.0e-4, 2.0e-4]}
"""


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def session_members(session: int) -> list[int]:
    """Every process whose session id is `session` (each node is started in its own)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[3]) == session:
            members.append(int(stat.parent.name))
    return members


class Started:
    """A process started in its own session; `kill` SIGKILLs it and everything it started."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        with log.open("a") as out:
            self.process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def members(self) -> list[int]:
        return session_members(self.process.pid)

    def kill(self) -> list[int]:
        killed = self.members()
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        return killed


def wait_for(condition, what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def start_node(args: list[str], env: dict[str, str], log: Path) -> Started:
    node = Started([str(RAY), "start", "--block", "--disable-usage-stats", *args], env, log)

    def up() -> bool:
        assert node.process.poll() is None, f"ray start failed: {log.read_text()[-2000:]}"
        return "block forever" in log.read_text()

    wait_for(up, f"the Ray node of {log.name}", timeout=120)
    return node


@pytest.fixture
def short_tmp() -> Path:
    """Ray's socket paths under its temp dir must stay under 108 bytes: pytest's are too long."""
    folder = Path(tempfile.mkdtemp(prefix="mrisr-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(1500)
def test_study_survives_losing_its_fold_node_and_its_driver(tiny_synthetic_cache, tmp_path, short_tmp):
    gcs, dashboard, client, agent_head, agent_second = free_ports(5)
    address = f"127.0.0.1:{gcs}"
    marker = tmp_path / "paused"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0",
           FAIL_ONCE_ENV: f"1:{marker}:pause:0"}  # trial drivers (head) read it: fold 0 pauses once
    head_args = ["--head", f"--port={gcs}", "--num-cpus=1", f"--temp-dir={short_tmp / 'head'}",
                 f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
                 f"--dashboard-agent-listen-port={agent_head}"]
    # The second node's processes cannot reach MLflow at all: only the head logs.
    second_env = {**env, NO_TRACKING_ENV: "the second node of the two-node test"}
    second_args = [f"--address={address}", "--num-cpus=1", f"--resources={{\"{FOLD_RESOURCE}\": 1}}",
                   f"--temp-dir={short_tmp / 'second'}", f"--dashboard-agent-listen-port={agent_second}"]
    workdir, storage = tmp_path / "work", tmp_path / "shared-storage"
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    tune = [sys.executable, "-m", "mrisr_ray", "tune", "--model", "circle",
            "--data", str(tiny_synthetic_cache), "--space", str(space), "--trials", "2", "--folds", "2",
            "--name", "two-nodes", "--workdir", str(workdir), "--storage-path", str(storage),
            "--address", address, "--worker-resource", FOLD_RESOURCE]
    tune += [arg for item in [*TINY_RUN, f"train.epochs={EPOCHS}", "train.max_patches_per_epoch=64"]
             for arg in ("--set", item)]
    t = Tracking.for_workdir(Workdir(workdir))
    started: list[Started] = []
    try:
        started.append(start_node(head_args, env, tmp_path / "head.log"))
        second = start_node(second_args, second_env, tmp_path / "second.log")
        started.append(second)
        driver = Started(tune, env, tmp_path / "tune-1.log")
        started.append(driver)

        def fold_runs(trial_number: int, fold: int) -> list:
            if not (workdir / "mlflow.db").is_file():
                return []
            return t.client().search_runs(
                [t.experiment_id("mrisr-ray")],
                f"tags.kind = 'fold' and tags.trial_number = '{trial_number}' and tags.fold = '{fold}'")

        def epochs_logged(run) -> list[int]:
            return sorted(m.step for m in t.client().get_metric_history(run.info.run_id, "val_psnr"))

        def logged(trial_number: int, fold: int) -> list[int]:
            found = fold_runs(trial_number, fold)
            return epochs_logged(found[0]) if found else []

        # 1. Trial 0's fold 0 pauses on the second node after epoch 1, whose metrics MLflow holds
        # (logged once Ray registered its checkpoint); then the node is lost.
        wait_for(lambda: marker.exists() and logged(0, 0) == [1], "trial 0 fold 0 to pause after epoch 1")
        paused_pid = int(marker.read_text().split("pid ")[1].rstrip(")\n"))
        assert paused_pid in second.members()  # the fold ran on the second node
        second.kill()
        started.append(start_node(second_args, second_env, tmp_path / "second-restarted.log"))

        # 2. Trial 0 ends; the driver is killed while trial 1's fold 0 trains, then resumed.
        wait_for(lambda: logged(1, 0)[-1:] >= [1], "trial 1 fold 0 to log an epoch", timeout=420)
        trial_0 = {k: fold_runs(0, k)[0] for k in (0, 1)}
        driver.kill()
        seen = logged(1, 0)[-1]
        assert seen < EPOCHS, "the driver was killed after trial 1's fold 0 had ended"
        resumed = subprocess.run([*tune, "--resume"], env=env, capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    finally:
        for process in reversed(started):
            process.kill()

    for trial_number, fold in [(0, 0), (0, 1), (1, 0)]:
        (run,) = fold_runs(trial_number, fold)  # one MLflow run per fold: none was started twice
        assert epochs_logged(run) == list(range(1, EPOCHS + 1)), (trial_number, fold)  # each once
        assert run.info.status == "FINISHED" and run.data.tags["ray_storage_path"] == str(storage)
        samples = {a.path for a in t.client().list_artifacts(run.info.run_id, "samples")}
        assert samples == {f"samples/epoch_{e:03d}.png" for e in range(1, EPOCHS + 1)}
    assert fold_runs(0, 0)[0].data.tags["resumed_from_epoch"] == "1"  # node lost after epoch 1
    assert "resumed_from_epoch" not in fold_runs(0, 1)[0].data.tags
    assert seen <= int(fold_runs(1, 0)[0].data.tags["resumed_from_epoch"]) < EPOCHS  # driver lost
    for k in (0, 1):  # trial 0 had finished: the resumed study left its folds alone
        assert fold_runs(0, k)[0].info.end_time == trial_0[k].info.end_time
    study = optuna.load_study(study_name="two-nodes", storage=f"sqlite:///{workdir / 'optuna.db'}")
    assert len(study.trials) == 2 and all(trial.state.is_finished() for trial in study.trials)
    (study_run,) = t.client().search_runs([t.experiment_id("mrisr-ray")], "tags.kind = 'study'")
    assert study_run.info.status == "FINISHED"
    assert (storage / "tune" / "two-nodes").is_dir() and not (workdir / "ray").exists()
