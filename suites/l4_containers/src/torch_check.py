"""PyTorch inside the container, one process per Slurm task: import, a matmul checked against
a reference, and a torch.distributed all-reduce whose ranks come from Slurm (SLURM_PROCID,
SLURM_NTASKS). Rendezvous through a file on the shared directory (argv[1]), so no address is
needed; NCCL where CUDA is available, gloo otherwise.

Prints (one line each, for probes/containers.parse_torch):
  TORCH <version> RANK <r> OF <n> ON <host> CUDA <True|False> PYTHON <x.y.z>
  MATMUL ok|<max abs error>
  ALLREDUCE <sum> EXPECTED <n(n+1)/2>          (every rank)
"""

import os
import platform
import socket
import sys

import torch
import torch.distributed as dist

rank = int(os.environ["SLURM_PROCID"])
world = int(os.environ["SLURM_NTASKS"])
cuda = torch.cuda.is_available()
print(f"TORCH {torch.__version__.split('+')[0]} RANK {rank} OF {world} ON {socket.gethostname()} CUDA {cuda} "
      f"PYTHON {platform.python_version()}", flush=True)

device = torch.device("cuda", 0) if cuda else torch.device("cpu")
torch.manual_seed(rank)
a = torch.randn(128, 128, dtype=torch.float64)
b = torch.randn(128, 128, dtype=torch.float64)
ref = [[sum(a[i, k].item() * b[k, j].item() for k in range(128)) for j in range(4)] for i in range(4)]
got = (a.to(device) @ b.to(device)).cpu()
err = max(abs(got[i, j].item() - ref[i][j]) for i in range(4) for j in range(4))
print("MATMUL ok" if err < 1e-9 else f"MATMUL {err}", flush=True)

dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{sys.argv[1]}", rank=rank, world_size=world)
t = torch.tensor([rank + 1.0], device=device)
dist.all_reduce(t)
print(f"ALLREDUCE {int(t.item())} EXPECTED {world * (world + 1) // 2}", flush=True)
dist.destroy_process_group()
