"""The self-describing full-state checkpoint (nanoGPT-style dict) every epoch writes."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mrisr_ray.config import Config, to_dict

STATE_FILE = "state.pt"  # networks, optimizers, epoch, best, RNG states, config
GENERATOR_FILE = "generator.pt"  # this epoch's LR → HR generator state_dict (for reports)


@dataclass
class Best:
    score: float = -float("inf")  # validation PSNR (or the epoch with --all-train)
    epoch: int = 0
    psnr: float = float("nan")
    ssim: float = float("nan")


def rng_state() -> dict:
    state = {"torch": torch.random.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.random.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
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
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
    state["best"] = Best(**state["best"])
    return state
