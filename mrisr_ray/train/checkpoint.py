"""The self-describing full-state checkpoint (nanoGPT-style dict) every epoch writes."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mrisr_ray.config import Config, from_dict, to_dict
from mrisr_ray.errors import UserInputError, describe
from mrisr_ray.registry import model_spec

if TYPE_CHECKING:
    from mrisr_ray.data.cache import Cache

STATE_FILE = "state.pt"  # networks, optimizers, epoch, best, every rank's RNG states, config
GENERATOR_FILE = "generator.pt"  # this epoch's LR → HR generator: {model, config, state_dict}
GENERATOR_KEYS = ("model", "config", "state_dict")  # what every generator file holds


@dataclass
class Best:
    score: float = -float("inf")  # validation PSNR (or the epoch with --all-train)
    epoch: int = 0
    psnr: float = float("nan")
    ssim: float = float("nan")


def rng_state() -> dict:
    """Every RNG's state as tensors and numbers, so the checkpoint loads with weights_only=True."""
    _, keys, pos, has_gauss, cached_gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.random.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gauss": float(cached_gauss)},
             "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                        "gauss_next": gauss_next}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.random.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gathered_rng_states(world_size: int) -> list[dict]:
    """Every rank's RNG state, in rank order (a collective under DDP: every rank calls it)."""
    own = rng_state()
    if world_size == 1:
        return [own]
    import torch.distributed as dist

    states: list[dict | None] = [None] * world_size
    dist.all_gather_object(states, own)
    return states


def restore_rng(rank_states: list[dict], rank: int, seed: int, epoch: int) -> None:
    """This rank's saved RNG state; a rank the checkpoint has none for (the world grew) draws
    fresh streams from (seed, rank, epoch), never a copy of another rank's."""
    if rank < len(rank_states):
        set_rng_state(rank_states[rank])
        return
    derived = int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])
    random.seed(derived)
    np.random.seed(derived)
    torch.manual_seed(derived)


@dataclass(frozen=True)
class Restored:
    """The checkpoint a session continued from."""

    epoch: int
    metrics: dict[str, float]  # that epoch's metrics, as the sink first saw them
    generator_sha256: str


def save(folder: Path, epoch: int, steps_state: dict, generator_state: dict, best: Best,
         config: Config, rank_rng: list[dict], metrics: dict[str, float]) -> None:
    """`rank_rng`: every rank's RNG state (`gathered_rng_states`); `metrics`: the epoch's."""
    folder.mkdir(parents=True, exist_ok=True)
    # A crash mid-write leaves the previous epoch's files whole (`save_atomically`).
    save_atomically(generator_payload(config, generator_state), folder / GENERATOR_FILE)
    save_atomically({"epoch": epoch, "steps": steps_state, "best": asdict(best), "rng": rank_rng,
                     "config": to_dict(config), "metrics": {k: float(v) for k, v in metrics.items()}},
                    folder / STATE_FILE)


def save_atomically(payload: dict, path: Path) -> None:
    """Written beside `path` and renamed: a reader never sees half a file."""
    partial = path.parent / f".{path.name}.partial"
    torch.save(payload, partial)
    partial.replace(path)


def state_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """A fingerprint of a state_dict's tensors (to prove which weights a run resumed from)."""
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(state_dict):
        digest.update(key.encode())
        digest.update(state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load(folder: Path) -> dict:
    """The checkpoint in `folder`, unpickled with weights_only=True: checkpoints may sit on shared
    storage, and a full unpickler would run whatever code a crafted file carries."""
    path = folder / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or damaged files
        raise UserInputError(f"{path}: not a mrisr-ray checkpoint ({_load_failure(exc)})") from None
    missing = {"epoch", "steps", "best", "rng"} - set(state) if isinstance(state, dict) else {"a dict"}
    if missing:
        raise UserInputError(f"{path}: not a mrisr-ray checkpoint (no {', '.join(sorted(missing))})")
    state["best"] = Best(**state["best"])
    if isinstance(state["rng"], dict):  # written before per-rank states: rank 0's only
        state["rng"] = [state["rng"]]
    return state


# Generator files: `generator.pt` in every checkpoint and `best_generator.pt` in MLflow. They
# describe themselves: widths differ between configs, and a residual and a non-residual CPCE
# have the same weights, so a state_dict alone does not say which network it fills.


@dataclass(frozen=True)
class TrainingData:
    """What a generator was trained on (`best_generator.pt` only; a checkpoint's per-epoch file
    has no cache at hand): `predict` takes `keep` and the normalisation from it, and says which
    grid the model knows."""

    keep: float  # fraction of each k-space axis kept for LR
    slice_shape: tuple[int, int]  # in-plane voxels of the training slices (canonical)
    spacing: tuple[float, float]  # in-plane voxel size, mm
    origin: str  # "synthetic" or "ixi" (the runs' `data_origin` tag)
    clip_percentiles: tuple[float, float] | None = None  # the cache's robust min-max, if any

    @classmethod
    def of(cls, cache: Cache) -> TrainingData:
        first = cache.manifest.subjects[0]
        protocol = cache.manifest.protocol
        return cls(keep=protocol.keep, slice_shape=(first.shape[0], first.shape[1]),
                   spacing=(first.spacing[0], first.spacing[1]),
                   origin="synthetic" if "synthetic" in cache.manifest.origin else "ixi",
                   clip_percentiles=protocol.clip_percentiles)

    def grid(self) -> str:
        """e.g. "256×256 slices of 0.94×0.94 mm, k-space keep 0.5 (ixi)"."""
        (h, w), (dy, dx) = self.slice_shape, self.spacing
        return f"{h}×{w} slices of {dy:.2f}×{dx:.2f} mm, k-space keep {self.keep:g} ({self.origin})"


@dataclass(frozen=True)
class GeneratorFile:
    config: Config  # the run's configuration: which network, with which widths
    state_dict: dict[str, torch.Tensor]
    data: TrainingData | None = None

    @property
    def model(self) -> str:
        return self.config.model

    def module(self, name: Path | str = "generator") -> torch.nn.Module:
        """The generator in eval mode, its weights loaded (`name`: the file, for errors)."""
        net = model_spec(self.model).generator(self.config)
        try:
            net.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise UserInputError(f"{name}: its weights do not fit its {self.model} config "
                                 f"({describe(exc)})") from None
        return net.eval()


def generator_payload(config: Config, state_dict: dict[str, torch.Tensor],
                      data: TrainingData | None = None) -> dict:
    """What a generator file holds: plain types and tensors, so it loads with weights_only=True."""
    payload = {"model": config.model, "config": to_dict(config), "state_dict": state_dict}
    if data is not None:
        payload["data"] = {**asdict(data), "slice_shape": list(data.slice_shape),
                           "spacing": list(data.spacing)}
    return payload


def write_generator(path: Path, generator: GeneratorFile) -> None:
    save_atomically(generator_payload(generator.config, generator.state_dict, generator.data), path)


def read_generator(path: Path | str, legacy_config: Config | None = None) -> GeneratorFile:
    """A generator file, unpickled with weights_only=True; anything else is refused in one line.

    `legacy_config`: the config of the MLflow run a file came from, which makes a bare
    state_dict (what runs logged before generator files described themselves) readable.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or damaged files
        raise UserInputError(f"{path}: not a mrisr-ray generator file ({_load_failure(exc)})") from None
    if not isinstance(payload, dict):
        raise UserInputError(f"{path}: not a mrisr-ray generator file (holds a {type(payload).__name__})")
    if legacy_config is not None and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return GeneratorFile(config=legacy_config, state_dict=payload)
    missing = [k for k in GENERATOR_KEYS if k not in payload]
    if missing:
        keys = ", ".join(sorted(map(str, payload))[:5]) or "none"
        raise UserInputError(f"{path}: not a mrisr-ray generator file (keys {keys}; expected "
                             f"{', '.join(GENERATOR_KEYS)})")
    try:
        config = from_dict(payload["config"])
    except UserInputError as exc:
        raise UserInputError(f"{path}: its config is invalid ({exc})") from None
    state = payload["state_dict"]
    if config.model != payload["model"] or not isinstance(state, dict) or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise UserInputError(f"{path}: not a mrisr-ray generator file (model {payload['model']!r}, "
                             f"config {config.model!r}, or its state_dict is not tensors)")
    data = payload.get("data")
    if data is not None:
        try:
            data = TrainingData(**{**data, "keep": _number(data["keep"]),
                                   "slice_shape": tuple(int(n) for n in data["slice_shape"]),
                                   "spacing": tuple(_number(mm) for mm in data["spacing"]),
                                   "clip_percentiles": _pair(data.get("clip_percentiles"))})
        except (TypeError, KeyError, ValueError) as exc:
            raise UserInputError(f"{path}: its training-data entry is damaged ({describe(exc)})") from None
        if not (0 < data.keep <= 1 and len(data.slice_shape) == 2 and len(data.spacing) == 2):
            raise UserInputError(f"{path}: its training-data entry is damaged (keep {data.keep:g}, "
                                 f"slices {data.slice_shape}, spacing {data.spacing})")
    return GeneratorFile(config=config, state_dict=state, data=data)


def _pair(value: list | tuple | None) -> tuple[float, float] | None:
    return None if value is None else (_number(value[0]), _number(value[1]))


def _number(value: object) -> float:
    """A stored number as a float; anything else (a string, a bool) is a damaged entry."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _load_failure(exc: Exception) -> str:
    """torch's weights_only refusal, shortened to its cause (its message is a page long)."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker not in text:
        return describe(exc)
    cause = next((line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()), "")
    cause = cause.split(". ")[0]
    return f"holds more than tensors and plain data, so it was not unpickled: {cause[:120]}"
