"""The training session outside Ray: interrupted and restored, it ends where a straight run does."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_RUN

from mrisr_ray.config import load_config
from mrisr_ray.data.cache import Cache
from mrisr_ray.train.loop import LoopContext
from mrisr_ray.train.session import train_session


class Interrupted(Exception):
    pass


def run(cache: Cache, config, folder, stop_after: int | None = None, on_resume=None):
    seen = []

    def sink(result):
        seen.append((result.epoch, result.warmup, result.metrics["val_psnr"]))
        if result.epoch == stop_after:
            raise Interrupted

    fold = cache.splits.fold(0)
    try:
        result = train_session(config, cache, fold.train, fold.val, LoopContext(), folder, sink,
                               on_resume=on_resume)
    except Interrupted:
        return None, seen
    return result, seen


@pytest.mark.parametrize("model", ["cpce", "circle"])
@pytest.mark.parametrize("stop_after", [1, 2])  # inside the warm-up, at its last epoch
def test_interrupted_then_restored_equals_straight_through(tiny_synthetic_cache, tmp_path, model, stop_after):
    cache = Cache.open(tiny_synthetic_cache)
    config = load_config(model, overrides=[*TINY_RUN, "train.epochs=3", "train.warmup_fraction=0.5",
                                           "train.sample_slices=0"])
    straight, straight_epochs = run(cache, config, tmp_path / "straight")
    assert [warmup for _, warmup, _ in straight_epochs] == [True, True, False]

    first, _ = run(cache, config, tmp_path / "resumed", stop_after=stop_after)
    assert first is None and (tmp_path / "resumed" / "state.pt").is_file()
    resumed_from = []
    resumed, resumed_epochs = run(cache, config, tmp_path / "resumed",
                                  on_resume=lambda restored: resumed_from.append(restored.epoch))
    assert resumed_from == [stop_after] and resumed.start_epoch == stop_after + 1
    assert resumed_epochs == straight_epochs[stop_after:]
    a, b = straight.steps.sr_generator.state_dict(), resumed.steps.sr_generator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.best == straight.best and straight.best.epoch == 3  # warm-up epochs never win


def test_unvalidated_warmup_epochs_train_the_same_generator(tiny_synthetic_cache, tmp_path):
    """`train.validate_warmup: false` drops the warm-up epochs' validation and sample grid, and
    nothing else: the adversarial epoch's scores and the trained generator are the same."""
    cache = Cache.open(tiny_synthetic_cache)
    fold = cache.splits.fold(0)
    results = {}
    for validate_warmup in (True, False):
        config = load_config("cpce", overrides=[*TINY_RUN, "train.epochs=3", "train.warmup_fraction=0.5",
                                                f"train.validate_warmup={str(validate_warmup).lower()}"])
        epochs = []
        result = train_session(config, cache, fold.train, fold.val, LoopContext(),
                               tmp_path / str(validate_warmup), epochs.append)
        results[validate_warmup] = result, epochs
    (validated, all_epochs), (skipped, warmup_unvalidated) = results[True], results[False]
    assert [("val_psnr" in e.metrics, e.samples is not None) for e in all_epochs] == [(True, True)] * 3
    assert [("val_psnr" in e.metrics, e.samples is not None) for e in warmup_unvalidated] == \
        [(False, False), (False, False), (True, True)]
    assert warmup_unvalidated[2].metrics["val_psnr"] == all_epochs[2].metrics["val_psnr"]
    assert skipped.best == validated.best and skipped.best.epoch == 3
    a, b = validated.steps.sr_generator.state_dict(), skipped.steps.sr_generator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


class Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(MARKER_HOLDER["path"]),))


MARKER_HOLDER: dict[str, str] = {}


def test_a_checkpoint_carrying_a_pickle_payload_is_refused_and_never_runs(tiny_synthetic_cache, tmp_path):
    from mrisr_ray.errors import UserInputError

    cache = Cache.open(tiny_synthetic_cache)
    config = load_config("cpce", overrides=[*TINY_RUN, "train.epochs=1", "train.sample_slices=0"])
    folder = tmp_path / "checkpoint"
    run(cache, config, folder)
    state = torch.load(folder / "state.pt", weights_only=True)  # what the session wrote loads safely
    MARKER_HOLDER["path"] = str(tmp_path / "payload-ran")
    state["best"] = {"score": Payload()}
    torch.save(state, folder / "state.pt")
    with pytest.raises(UserInputError, match=r"state\.pt: not a mrisr-ray checkpoint") as refused:
        run(cache, config, folder)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "payload-ran").exists()
