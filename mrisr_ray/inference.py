"""Running a generator on whole slices: the one code path of validation, `report` and `predict`.

`SliceRunner` prepares G once (an eval-mode, channels-last copy; the trained module is left as
it is) and runs it over (n, H, W) slices. Why it is shaped the way it is (measured on 2 shared
CPU cores, benchmarks/predict.py):

- CPU: one slice per forward, the slices spread over one thread each. torch's own threading
  splits every layer across cores and waits for the slowest at each layer's end; on a busy
  machine that wait dominated (2-4× slower than one thread per slice; on an idle one the two
  are close, docs/predict.md). One slice per forward also keeps a layer's output (8 MB for a
  256×256 CPCE slice) small.
- CPU: the `predict` and `report` commands (processes that only run generators) keep freed
  memory in the process (`retain_freed_memory`): glibc otherwise hands every large activation back to the
  kernel when it is freed, and the next layer's buffer page-faults in again, 24 000 faults per
  CPCE slice, ~40% of its CPU time. Training processes keep glibc's defaults (a process-wide
  allocator setting is not for a Ray worker that trains).
- GPU: chunks of slices (default 16) in one forward.
- All-zero slices (outside the head) give one and the same output: it is computed once.
"""

from __future__ import annotations

import copy
import ctypes
import platform
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import torch
from torch import nn

from mrisr_ray.data.degrade import degrade

GPU_BATCH = 16  # slices per forward on a GPU; a CPU runs one per thread


@cache
def retain_freed_memory() -> bool:
    """Keep freed memory in the heap instead of returning it to the kernel (glibc only; once per
    process). True when it took effect."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8  # glibc's mallopt parameters
    # No mmap'd chunks (they are unmapped on free, whatever their size), no trimming of the
    # heap's top, and one arena for every thread (another thread's arena maps a large chunk
    # whatever M_MMAP_MAX says): a forward pass then reuses the previous one's pages.
    return all(libc.mallopt(param, value) for param, value in (
        (m_mmap_max, 0), (m_trim_threshold, 2**31 - 1), (m_arena_max, 1)))


class SliceRunner:
    """G prepared once for inference on `device` (default: where G's parameters are), in float32
    everywhere (validation, report, predict): the scores that select a model and those reported
    come from the same arithmetic."""

    def __init__(self, generator: nn.Module, device: torch.device | str | None = None,
                 batch_size: int | None = None):
        self.device = torch.device(device) if device is not None else next(generator.parameters()).device
        gpu = self.device.type == "cuda"
        self.batch_size = batch_size or (GPU_BATCH if gpu else 1)
        self.net = copy.deepcopy(generator).eval().requires_grad_(False).to(
            self.device, memory_format=torch.channels_last)

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        """G(lr) for (n, H, W) slices: (n, H, W) float32 on this runner's device."""
        lr = lr.to(self.device, torch.float32)
        nonzero = lr.flatten(1).any(dim=1)
        if bool(nonzero.all()) or len(lr) < 2:
            return self._run(lr)
        # Every all-zero slice has the output of the first one.
        first_zero = int((~nonzero).nonzero()[0, 0])
        keep = nonzero.clone()
        keep[first_zero] = True
        computed = self._run(lr[keep])
        out = computed[int(keep[:first_zero].sum())].expand_as(lr).clone()
        out[keep] = computed
        return out

    def _run(self, lr: torch.Tensor) -> torch.Tensor:
        chunks = [lr[s : s + self.batch_size] for s in range(0, len(lr), self.batch_size)]
        threads = torch.get_num_threads()
        if self.device.type == "cuda" or threads == 1 or len(chunks) == 1:
            outputs = [self._forward(chunk) for chunk in chunks]
        else:
            outputs = self._forward_threads(chunks, threads)
        return torch.cat(outputs) if outputs else torch.zeros_like(lr)

    def _forward(self, chunk: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = chunk[:, None].contiguous(memory_format=torch.channels_last)
            return self.net(x)[:, 0]

    def _forward_threads(self, chunks: list[torch.Tensor], threads: int) -> list[torch.Tensor]:
        """Chunks on `threads` threads of one torch thread each (torch's count is per thread for
        OpenMP, global for MKL: set in every worker, restored in the caller afterwards)."""
        try:
            torch.set_num_threads(1)
            with ThreadPoolExecutor(min(threads, len(chunks)),
                                    initializer=torch.set_num_threads, initargs=(1,)) as pool:
                return list(pool.map(self._forward, chunks))
        finally:
            torch.set_num_threads(threads)


def ensemble(runners: list[SliceRunner], lr: torch.Tensor) -> torch.Tensor:
    """Mean of the generators' outputs on (n, H, W) LR slices (nnU-Net-style fold ensemble)."""
    total = runners[0](lr)
    for runner in runners[1:]:
        total += runner(lr)
    return total / len(runners)


def super_resolve(generator: nn.Module, lr: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """G applied to (n, H, W) LR slices on G's device; returns (n, H, W) float32 (`SliceRunner`
    made for one call)."""
    return SliceRunner(generator, batch_size=batch_size)(lr)


def degrade_and_super_resolve(generator: nn.Module, hr: np.ndarray, keep: float,
                              batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(LR, SR) numpy arrays for (n, H, W) HR slices."""
    device = next(generator.parameters()).device
    lr = degrade(torch.from_numpy(np.ascontiguousarray(hr)).to(device), keep)
    sr = super_resolve(generator, lr, batch_size)
    return lr.cpu().numpy(), sr.cpu().numpy()
