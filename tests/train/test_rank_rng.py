"""Under DDP every rank keeps its own random streams across a checkpoint (gradient-penalty α,
patch positions): two real gloo processes save through `gathered_rng_states` and restore."""

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mrisr_ray.train import checkpoint

WORLD = 2


def draws() -> tuple[list[float], float]:
    return torch.rand(4).tolist(), float(np.random.random())


def rank_process(rank: int, folder: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=WORLD)
    torch.manual_seed(1000 + rank)  # as `seed_everything(seed + rank)` does
    np.random.seed(1000 + rank)
    states = checkpoint.gathered_rng_states(WORLD)
    uninterrupted = draws()
    if rank == 0:
        torch.save({"rng": states}, f"{folder}/state.pt")
    dist.barrier()
    saved = torch.load(f"{folder}/state.pt", weights_only=True)["rng"]  # what a restart reads
    torch.manual_seed(12345)  # the restarted process starts from its own seed…
    checkpoint.restore_rng(saved, rank, seed=0, epoch=3)  # …and continues its own streams
    torch.save({"uninterrupted": uninterrupted, "restored": draws()}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_each_rank_restores_its_own_streams_and_a_new_rank_gets_fresh_ones(tmp_path):
    folder, out = tmp_path / "pg", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    mp.spawn(rank_process, args=(str(folder), str(out)), nprocs=WORLD, join=True)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for r in ranks:
        assert r["restored"] == r["uninterrupted"]
    assert ranks[0]["restored"] != ranks[1]["restored"]  # not rank 0's streams copied everywhere

    # The world grew to 3: rank 2 has no saved state and reseeds from (seed, rank, epoch).
    saved = torch.load(folder / "state.pt", weights_only=True)["rng"]
    checkpoint.restore_rng(saved, 2, seed=0, epoch=3)
    third = draws()
    checkpoint.restore_rng(saved, 2, seed=0, epoch=3)
    assert draws() == third and third not in [r["restored"] for r in ranks]
    checkpoint.restore_rng(saved, 2, seed=0, epoch=4)
    assert draws() != third
