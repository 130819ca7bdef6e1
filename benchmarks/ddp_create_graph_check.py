"""Does DistributedDataParallel give the right gradients for an R1-style step on gloo? (issue 26)

    OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc-per-node 2 benchmarks/ddp_create_graph_check.py

Two gloo ranks, a small D with BatchNorm, one D step as gankit runs it: D on real and on fake
(two forwards), R1 through torch.autograd.grad(create_graph=True) on the real inputs, one
backward. Compares each parameter's gradient from DDP (default, and static_graph=True) with a
hand-made all-reduce (sum, then / 2), which is what gankit.train.distributed does.
Findings are in docs/distributed.md ("Design decisions").
"""
import copy
import torch
import torch.distributed as dist
import torch.nn as nn
dist.init_process_group("gloo")
r = dist.get_rank()
torch.manual_seed(0)
D = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(4 * 26 * 26, 1))
ref = [p.detach().clone() for p in D.parameters()]
x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))[r * 4:(r + 1) * 4]
f = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(2))[r * 4:(r + 1) * 4]
def loss_of(model):
    xr = x.clone().requires_grad_(True)
    dr, df = model(xr), model(f)
    (g,) = torch.autograd.grad(dr.sum(), xr, create_graph=True)
    return nn.functional.softplus(-dr).mean() + nn.functional.softplus(df).mean() + 5 * g.pow(2).flatten(1).sum(1).mean()
results = {}
for mode in ("ddp", "ddp_static", "manual"):
    M = copy.deepcopy(D)
    try:
        if mode == "ddp":
            W = nn.parallel.DistributedDataParallel(M, broadcast_buffers=False)
        elif mode == "ddp_static":
            W = nn.parallel.DistributedDataParallel(M, broadcast_buffers=False, static_graph=True)
        else:
            W = M
        loss_of(W).backward()
        if mode == "manual":
            for p in M.parameters():
                dist.all_reduce(p.grad); p.grad /= 2
        results[mode] = [p.grad.clone() for p in M.parameters()]
        msg = "ok"
    except Exception as e:
        msg = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    if r == 0:
        print(mode, msg)
if r == 0:
    for k in results:
        if k != "manual":
            print(k, "vs manual: max abs diff", max((a - b).abs().max().item() for a, b in zip(results[k], results["manual"])),
                  "bitwise", all(torch.equal(a, b) for a, b in zip(results[k], results["manual"])))
dist.destroy_process_group()
