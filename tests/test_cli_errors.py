"""No tracebacks, no boxes (issue 12 item 4): every command run in a fresh folder without
--workdir (the default ./mrisr-work is created) and with only --tracking-uri, and usage errors as
one `error: ...` line on stderr with exit code 2, through the real entry point."""

import importlib
import json
import os
import re
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import pytest
from helpers import TINY_RUN, run_cli
from test_cli_prepare import assert_one_line_error

from mrisr_ray.cli import main
from mrisr_ray.workdir import DEFAULT_WORKDIR, WORKDIR_ENV


@pytest.fixture
def fresh(tmp_path, monkeypatch) -> Path:
    """An empty current directory, no $MRISR_RAY_WORKDIR: the work directory is ./mrisr-work."""
    monkeypatch.delenv(WORKDIR_ENV, raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return cwd


def run_main(monkeypatch, capsys, *args: str, execv_raises: BaseException = SystemExit(0),
             ) -> tuple[int, str, str, list[str] | None]:
    """`mrisr-ray ARGS` in this process (the real `main`): (exit code, stdout, stderr, the command
    line `ui` would have become: os.execv is replaced, so that the MLflow server never starts)."""
    became: list[list[str]] = []

    def fake_execv(path, argv):
        became.append(list(argv))
        raise execv_raises

    monkeypatch.setattr(os, "execv", fake_execv)
    monkeypatch.setattr(sys, "argv", ["mrisr-ray", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err, became[0] if became else None


def assert_one_line(code: int, err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def tiny(*extra: str) -> list[str]:
    return [arg for item in [*TINY_RUN, *extra] for arg in ("--set", item)]


def sqlite_uri(path: Path | str) -> str:
    return f"sqlite:///{path}"


def stored_runs(db: Path) -> dict[str, int]:
    """{kind tag: number of runs} in an MLflow SQLite store."""
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT value, COUNT(*) FROM tags WHERE key = 'kind' GROUP BY value").fetchall()
    return dict(rows)


def no_traceback(result) -> None:
    """No traceback on the console: Ray's own output, a harmless ConnectionError traceback of
    Ray Train's placement-group cleaner among it when another Ray instance runs on the machine,
    goes to the command's log."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]


# ---------------------------------------------------------------- the default work directory


def test_prepare_without_workdir(fresh, ixi_dir):
    result = run_cli("prepare", "--data-dir", ixi_dir, "--folds", "3", cwd=fresh)
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert (fresh / DEFAULT_WORKDIR / "data" / "IXI-T2" / "manifest.json").is_file()


@pytest.mark.ray
def test_tune_without_workdir_creates_it_and_finishes(fresh, tiny_synthetic_cache):
    """The reported crash: Optuna's SQLite storage (<workdir>/optuna.db) could not be opened
    because nothing had created ./mrisr-work. A relative SQLite URI in a folder that does not
    exist yet is also the one store that the driver and the Ray trials (other working
    directories) all log to."""
    result = run_cli("tune", "--model", "circle", "--data", tiny_synthetic_cache, "--trials", "1",
                     "--folds", "1", *tiny("train.epochs=1"), "--tracking-uri",
                     sqlite_uri("store/mlflow.db"), cwd=fresh)
    no_traceback(result)
    assert result.returncode == 0, result.stderr[-3000:]
    workdir = fresh / DEFAULT_WORKDIR
    assert (workdir / "optuna.db").is_file() and (workdir / "reports" / "best_circle.yaml").is_file()
    # A redirected console holds the product's lines only, without colour codes (issue 14); Ray's
    # and Tune's output is in the command's log.
    console = result.stdout + result.stderr
    for noise in ("\x1b[", "TrainingReport(", "core_worker.cc", "Trial status", "Token authentication"):
        assert noise not in console, noise
    assert "circle t00 f0 best epoch: " in result.stdout and "(LR " in result.stdout
    assert "best configuration: " in result.stdout and "next:" in result.stdout
    (log,) = (workdir / "logs").glob("tune-*.log")
    assert result.stdout.strip().splitlines()[-1] == f"log: {log}"
    text = log.read_text()
    assert "TrainingReport(" in text and "circle t00 f0 best epoch: " in text
    assert stored_runs(fresh / "store" / "mlflow.db") == {"study": 1, "trial": 1, "fold": 1}
    assert not (workdir / "mlflow.db").exists()
    # Artifacts beside the store, not in a ./mlruns of whichever directory a process ran in.
    assert list((fresh / "store" / "mlartifacts").rglob("best_generator.pt"))
    assert not list(fresh.rglob("mlruns"))


def test_train_without_workdir_gets_a_clean_error(fresh, tiny_synthetic_cache, tmp_path):
    """`--resume` of a run the new store does not hold: one line, after the work directory was
    made and the store opened (a real training without --workdir: the tune test's folds)."""
    db = tmp_path / "new" / "store" / "mlflow.db"
    result = run_cli("train", "--resume", "0123abc", "--data", tiny_synthetic_cache, "--tracking-uri",
                     sqlite_uri(db), cwd=fresh)
    assert_one_line_error(result, "--resume 0123abc: no such MLflow run in", str(db))
    assert (fresh / DEFAULT_WORKDIR).is_dir() and db.parent.is_dir()


def test_report_without_workdir_gets_a_clean_error(fresh, tiny_synthetic_cache, tmp_path):
    """No study in a new store: one line, after the work directory was made."""
    db = tmp_path / "new" / "mlflow.db"
    result = run_cli("report", "--data", tiny_synthetic_cache, "--tracking-uri", sqlite_uri(db), cwd=fresh)
    assert_one_line_error(result, "study")
    assert (fresh / DEFAULT_WORKDIR).is_dir()


def test_demo_without_workdir_refuses_bad_counts_before_its_cohort(fresh, tmp_path):
    """./mrisr-work is made, and --trials 0 is refused before minutes go into the cohort."""
    result = run_cli("demo", "--subjects", "10", "--trials", "0", "--tracking-uri",
                     sqlite_uri(tmp_path / "new" / "mlflow.db"), cwd=fresh)
    assert_one_line_error(result, "--trials must be at least 1, got 0")
    assert (fresh / DEFAULT_WORKDIR).is_dir() and not (fresh / DEFAULT_WORKDIR / "data").exists()


def test_ui_without_workdir_hands_the_given_store_to_mlflow(fresh, monkeypatch, capsys):
    """A relative SQLite URI whose folder does not exist: made absolute, its folder created, and
    handed to `mlflow ui` (serving itself: test_cli_misc.py)."""
    monkeypatch.chdir(fresh)
    code, out, err, command = run_main(monkeypatch, capsys, "ui", "--tracking-uri", "sqlite:///new/mlflow.db")
    assert code == 0 and err == "", err
    store = sqlite_uri(fresh / "new" / "mlflow.db")
    assert command[command.index("--backend-store-uri") + 1] == store and store in out
    assert (fresh / "new").is_dir() and (fresh / DEFAULT_WORKDIR).is_dir()


def test_ui_prints_the_runs_table_of_an_existing_store(fresh, monkeypatch, capsys):
    from mrisr_ray.tracking import EXPERIMENT_KIND_TAG, Tracking

    store = sqlite_uri(fresh / "mlflow.db")
    tracking = Tracking.for_workdir(None, store)
    made = tracking.client().create_experiment("mrisr-ray")  # as an earlier version made it: no kind tag
    code, out, err, command = run_main(monkeypatch, capsys, "ui", "--tracking-uri", store, "--port", "5123")
    assert code == 0 and err == "" and command is not None, err
    assert f"http://127.0.0.1:5123/#/experiments/{made}/runs?viewStateShareKey=mrisr-ray" in out
    tags = tracking.client().get_experiment(made).tags
    assert EXPERIMENT_KIND_TAG in tags
    # The address opens a view with the headline columns (MLflow UI's shared-view tag).
    view = json.loads(tags["mlflow.sharedViewState.mrisr-ray"])
    assert view["selectedColumns"][:2] == ["metrics.`psnr`", "metrics.`psnr_sd`"]
    assert "tags.`kind`" in view["selectedColumns"]


def test_a_store_folder_that_cannot_be_made_is_one_line(fresh, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.chdir(fresh)
    code, _, err, command = run_main(monkeypatch, capsys, "ui", "--tracking-uri",
                                     sqlite_uri(blocker / "sub" / "mlflow.db"))
    assert_one_line(code, err, "--tracking-uri", "a file is in the way")
    assert command is None


def test_a_port_the_server_cannot_bind_and_an_unknown_store_are_one_line(fresh, monkeypatch, capsys):
    monkeypatch.chdir(fresh)
    code, _, err, command = run_main(monkeypatch, capsys, "ui", "--port", "99999")
    assert_one_line(code, err, "--port 99999: must be in 1..65535")
    assert command is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err, command = run_main(monkeypatch, capsys, "ui", "--port", str(port))
    assert_one_line(code, err, f"--port {port}: 127.0.0.1:{port} is not free")
    assert command is None
    code, _, err, command = run_main(monkeypatch, capsys, "ui", "--tracking-uri", "bogus://x")
    assert_one_line(code, err, "--tracking-uri bogus://x: MLflow has no store of kind 'bogus'")
    assert command is None


@pytest.mark.parametrize("how", ["option", "env"])
def test_a_workdir_that_cannot_be_made_is_one_line(fresh, tmp_path, monkeypatch, capsys, how):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.chdir(fresh)
    if how == "option":
        args, fragments = ["--workdir", blocker / "work"], ["--workdir", "a file is in the way"]
    else:
        monkeypatch.setenv(WORKDIR_ENV, str(blocker))
        args, fragments = [], [WORKDIR_ENV, "a file is in the way"]
    code, _, err, command = run_main(monkeypatch, capsys, "ui", *args)
    assert_one_line(code, err, *fragments)
    assert command is None


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize("args,message", [
    (["tune", "--model", "circle", "--data", "x", "--folds", "abc"], "Invalid value for '--folds'"),
    (["tune", "--model", "circle", "--data", "x", "--bogus"], "No such option: --bogus"),
    (["tune", "--data", "x"], "Missing option '--model'"),
    (["prepare", "--subjects"], "Option '--subjects' requires an argument"),
    (["frobnicate"], "No such command 'frobnicate'"),
])
def test_usage_errors_are_one_line(fresh, args, message):
    result = run_cli(*args, cwd=fresh)
    assert_one_line_error(result, message)
    assert result.stdout == ""
    assert not any(box in result.stderr for box in "╭│╰")
    assert not (fresh / DEFAULT_WORKDIR).exists()


def test_ctrl_c_exits_130_without_a_traceback(fresh, monkeypatch, capsys):
    monkeypatch.chdir(fresh)
    code, _, err, _ = run_main(monkeypatch, capsys, "ui", execv_raises=KeyboardInterrupt())
    assert code == 130 and "Traceback" not in err


@pytest.mark.parametrize("command,library,function,interrupted", [
    (["train", "--model", "cpce", "--data", "x"], "mrisr_ray.train.run", "train", "TrainInterrupted"),
    (["tune", "--model", "cpce", "--data", "x"], "mrisr_ray.tuning.study", "run_study", "StudyInterrupted"),
    (["report", "--data", "x"], "mrisr_ray.report.run", "make_report", "ReportInterrupted"),
    (["demo"], "mrisr_ray.demo", "run_demo", "DemoInterrupted"),
])
def test_ctrl_c_part_way_says_how_to_go_on(fresh, monkeypatch, capfd, command, library, function,
                                           interrupted):
    """A command's Interrupted (its library function caught Ctrl-C): its message is the last line
    on stderr, then the log's path, exit code 130, no traceback."""
    module = importlib.import_module(library)
    hint = f"{command[0]} interrupted; continue it with: mrisr-ray {command[0]} --resume"

    def stopped(*args, **kwargs):
        raise getattr(module, interrupted)(hint)

    monkeypatch.setattr(module, function, stopped)
    monkeypatch.chdir(fresh)
    on_sigterm = signal.getsignal(signal.SIGTERM)
    code, out, err, _ = run_main(monkeypatch, capfd, *command)
    assert signal.getsignal(signal.SIGTERM) is on_sigterm  # the session's handler was put back
    assert code == 130 and "Traceback" not in err, (code, err)
    assert err.strip().splitlines()[-1] == hint and err.count(hint) == 1
    (log,) = (fresh / DEFAULT_WORKDIR / "logs").glob(f"{command[0]}-*.log")
    assert out.strip().splitlines()[-1] == f"log: {log}"
    assert hint in log.read_text()


def test_ctrl_c_in_prepare_says_the_same_command_continues(fresh, monkeypatch, capsys):
    """prepare has no session: it says its Interrupted itself (exit code 130, no traceback)."""
    from mrisr_ray.data import synthetic
    from mrisr_ray.data.cache import PrepareInterrupted

    hint = "prepare interrupted; the same command continues it (3 subject(s) kept in x.partial)"

    def stopped(*args, **kwargs):
        raise PrepareInterrupted(hint)

    monkeypatch.setattr(synthetic, "prepare_synthetic_cache", stopped)
    monkeypatch.chdir(fresh)
    code, out, err, _ = run_main(monkeypatch, capsys, "prepare", "--synthetic")
    assert code == 130 and err.strip().splitlines() == [hint] and out == "", (code, out, err)


def test_ctrl_c_while_the_demo_prepares_says_run_it_again(fresh, monkeypatch, capfd):
    """Before its first study there is no demo for --resume to find (or an older one): the same
    command continues."""
    from mrisr_ray import demo
    from mrisr_ray.data.cache import PrepareInterrupted

    def stopped(*args, **kwargs):
        raise PrepareInterrupted("prepare interrupted")

    monkeypatch.setattr(demo, "prepare_synthetic_cache", stopped)
    monkeypatch.chdir(fresh)
    code, _, err, _ = run_main(monkeypatch, capfd, "demo")
    assert code == 130 and err.strip().splitlines()[-1] == \
        "demo interrupted before its first study; the same command continues it", (code, err)


@pytest.mark.parametrize("started", [False, True])
def test_an_interrupted_demo_names_the_command_that_continues_it(tmp_path, monkeypatch, started):
    """`demo --resume` only once this demo's first study is in the store: before, it would find no
    demo, or continue an older one."""
    from mrisr_ray import demo
    from mrisr_ray.tracking import Tracking
    from mrisr_ray.workdir import Workdir

    stamps = []

    def stopped(request, stamp, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "demo_steps", stopped)
    monkeypatch.setattr(demo, "demo_studies", lambda tracking, stamp=None: stamps.append(stamp) or
                        ([object()] if started else []))
    wd = Workdir(tmp_path)
    with pytest.raises(demo.DemoInterrupted) as stop:
        demo.run_demo(demo.DemoRequest(workdir=wd, tracking=Tracking.for_workdir(wd)))
    assert len(stamps) == 1 and re.fullmatch(r"\d{8}-\d{6}", stamps[0])  # this demo's own studies
    assert ("continue it with: mrisr-ray demo --resume --workdir" in str(stop.value)) == started
    assert ("before its first study; the same command continues it" in str(stop.value)) != started


def test_help_still_works(fresh):
    for args in (["--help"], ["tune", "--help"]):
        result = run_cli(*args, cwd=fresh)
        assert result.returncode == 0 and "Usage:" in result.stdout and result.stderr == "", args
    bare = run_cli(cwd=fresh)  # no arguments: the help, as a usage error (click's exit code 2)
    assert bare.returncode == 2 and "Usage:" in bare.stdout and "tune" in bare.stdout
    assert "error" not in bare.stderr.lower()
