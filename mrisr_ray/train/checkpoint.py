"""The self-describing full-state checkpoint (nanoGPT-style dict) every epoch writes."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mrisr_ray.config import Config, to_dict
from mrisr_ray.errors import UserInputError

STATE_FILE = "state.pt"  # networks, optimizers, epoch, best, RNG states, config
GENERATOR_FILE = "generator.pt"  # this epoch's LR → HR generator state_dict (for reports)


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


def save(folder: Path, epoch: int, steps_state: dict, generator_state: dict, best: Best,
         config: Config) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # Each file is written beside its final name and renamed: a crash mid-write leaves the
    # previous epoch's file whole.
    for name, payload in ((GENERATOR_FILE, generator_state),
                          (STATE_FILE, {"epoch": epoch, "steps": steps_state, "best": asdict(best),
                                        "rng": rng_state(), "config": to_dict(config)})):
        partial = folder / f".{name}.partial"
        torch.save(payload, partial)
        partial.replace(folder / name)


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
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserInputError(f"{path}: not a mrisr-ray checkpoint ({reason[:200]})") from None
    state["best"] = Best(**state["best"])
    return state
