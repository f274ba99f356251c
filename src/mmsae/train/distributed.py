"""Data-parallel training across the processes `torchrun` starts (gloo on CPU, NCCL on GPU).

Every rank draws the same global batch of row ids and reads only its slice (`StreamConfig.part`);
gradients are averaged across ranks before clipping and the optimizer step, and "fired"
masks are OR-ed, so W ranks with local batch B/W take the same steps as one process with batch B
(to float tolerance: the sum is reduced in another order). Two terms see only the local batch:
BatchTopK's batch-wide selection (B·k/W winners among the rank's rows) and AuxK's normalisation
by the residual's variance, so those are close to, not equal to, the single-process step.
Rank 0 alone writes logs, checkpoints and the SAE. Without torchrun's environment everything
here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel run."""

    rank: int = 0
    """This process's rank (0 writes everything)."""
    world: int = 1
    """Number of processes."""
    local_rank: int = 0
    """Rank on this machine: picks the GPU."""

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def device_for(self, requested: str) -> str:
        """Under torchrun, `auto`/`cuda` mean this rank's own GPU (`cuda:LOCAL_RANK`)."""
        if self.active and requested in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return requested

    def average_grads_(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Mean of every gradient over ranks, in one flat all-reduce."""
        if not self.active:
            return
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(self.world)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    def any_(self, mask: torch.Tensor) -> torch.Tensor:
        """Elementwise OR of a bool mask over ranks."""
        return self._reduce(mask, torch.int32, "MAX").bool()

    def sum_(self, counts: torch.Tensor) -> torch.Tensor:
        """Elementwise sum of integer counts over ranks."""
        return self._reduce(counts, torch.int64, "SUM")

    def _reduce(self, t: torch.Tensor, dtype: torch.dtype, op: str) -> torch.Tensor:
        """`t` as `dtype`, all-reduced over ranks with `op` (a `ReduceOp` name); `t` itself alone."""
        if not self.active:
            return t
        import torch.distributed as dist

        out = t.to(dtype)
        dist.all_reduce(out, op=getattr(dist.ReduceOp, op))
        return out

    def broadcast_(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers everywhere."""
        if not self.active:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                buf = t.data.contiguous()  # collectives need contiguous tensors (W_enc is column-major)
                dist.broadcast(buf, src=0)
                if buf.data_ptr() != t.data.data_ptr():
                    t.data.copy_(buf)

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def shutdown(self) -> None:
        """Wait for every rank, then end the process group: a gloo group left to the interpreter's
        exit can abort the process ("terminate called without an active exception")."""
        if not self.active:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def from_env() -> DistContext:
    """The context torchrun's environment describes; starts the process group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
