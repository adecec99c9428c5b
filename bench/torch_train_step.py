"""Reference timing for `make bench` (optional; bench/bench.sh runs it when a Python with torch is found,
TORCH_PYTHON=/path/to/python or python3): one training step of the published VoxelMorph architecture
(vxm_dense_brain_T1_3D_mse.h5: VxmDense with a half-resolution U-Net) written in PyTorch the way
voxelmorph's torch port builds it (bench/torch_vxm.py), at the given shape, on the CPU with $THREADS threads
(default 2), or with --device cuda on the GPU (float32; --tf32 lets cuDNN use TF32).
Loss as train.py: MSE + 0.01 * Grad('l2', loss_mult=2) of the pre-integration field; Adam lr 1e-4 (Keras eps).
Prints the median of 3 steps after a warm-up and the process's peak RSS (on the GPU: torch.cuda.max_memory_allocated
over the timed steps) as one row of bench/train_bench.c's table.
The model has the published file's 313,507 parameters.  Debian's python3-torch (1.13) runs the convolutions
that oneDNN does not take through the system libblas.so.3: with the reference BLAS the step is ~3x slower, so
install libopenblas0-pthread first (the numbers in `make bench` assume it).
Dev tool only: never used at run time or by the tests.
  python3 bench/torch_train_step.py A B C [--device cpu|cuda] [--tf32]"""
import argparse
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

from torch_vxm import VxmDenseHalfRes  # the model, shared with torch_register.py


def grad_l2(f, loss_mult=2.0):
    d = [(f[:, :, 1:] - f[:, :, :-1]).pow(2).mean(),
         (f[:, :, :, 1:] - f[:, :, :, :-1]).pow(2).mean(),
         (f[:, :, :, :, 1:] - f[:, :, :, :, :-1]).pow(2).mean()]
    return sum(d) / 3 * loss_mult


def main():
    ap = argparse.ArgumentParser(usage=__doc__.rsplit("\n", 1)[-1].strip())
    ap.add_argument("shape", type=int, nargs=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--tf32", action="store_true", help="cuda: let cuDNN and cuBLAS use TF32 (default: float32)")
    args = ap.parse_args()
    threads = int(os.environ.get("THREADS", "2"))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cuda = args.device == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            sys.exit("torch_train_step.py: --device cuda: this PyTorch has no CUDA device")
        # PyTorch lets cuDNN use TF32 by default: plain float32 unless --tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.benchmark = True
    dev = torch.device(args.device)
    shape = tuple(args.shape)
    model = VxmDenseHalfRes(shape).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-7)
    moving = torch.rand(1, 1, *shape).to(dev)
    fixed = torch.rand(1, 1, *shape).to(dev)

    def step():
        opt.zero_grad(set_to_none=True)
        moved, svf = model(moving, fixed)
        loss = F.mse_loss(moved, fixed) + 0.01 * grad_l2(svf)
        loss.backward()
        opt.step()
        return loss.item()  # .item() waits for the GPU

    step()  # warm-up (and cuDNN's algorithm search)
    if cuda:
        step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    version = torch.__version__.split("+")[0]
    if cuda:
        mem = torch.cuda.max_memory_allocated() / 2**20
        who = f"PyTorch {version} CUDA {'TF32' if args.tf32 else 'fp32'} ({torch.cuda.get_device_name()})"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        mem_col = f"{mem:.0f} MB (max_memory_allocated) | {rss:.0f} MB"
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        who = f"PyTorch {version} CPU, {threads} threads"
        mem_col = f"| {rss:.0f} MB"  # no device memory column on the CPU
    print(f"| {who} | published (half-res U-Net) | "
          f"{'x'.join(map(str, shape))} | mse | {sorted(times)[1]:.3f} s | {mem_col} |", flush=True)


if __name__ == "__main__":
    main()
