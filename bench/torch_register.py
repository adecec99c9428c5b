"""PyTorch reference of registration with the published model (issue 10's table, "PyTorch + cuDNN, same model"):
vxm_dense_brain_T1_3D_mse.h5's weights (h5py) in bench/torch_vxm.py's VxmDenseHalfRes, the U-Net, the flow
convolution, 7 scaling-and-squaring steps, x2 + align-corners resize, and the final linear transform, on one pair
(float32 NIfTI read with gzip + struct).  Times, on the GPU with torch.cuda.synchronize around each run (or on the
CPU with torch threads = $THREADS, default 2), the median of --runs runs after warm-ups:
  torch registration compute fp32: X ms                 the whole inference, inputs already on the device
  torch largest conv fp32 (64->32 at AxBxC, G GFLOP): X ms = T TFLOP/s   that convolution alone
  (the same two with tf32 when --tf32: cuDNN may then use TF32 tensor cores), and the peak memory
  (torch.cuda.max_memory_allocated over the registration runs; on the CPU the process's peak RSS).
PyTorch lets cuDNN use TF32 by default: the fp32 rows switch it off.  cudnn.benchmark picks the fastest algorithm.
--runs 0 registers once and prints nothing (for timing the whole process).
--check-warp / --check-moved compare with another tool's output (.npy, .nii or .nii.gz; e.g. vxm register's).
Dev tool only: never used at run time or by the tests.
  python3 bench/torch_register.py --device cuda|cpu --model M.h5 --moving A --fixed B [--runs N] [--tf32]
                                  [--check-warp W] [--check-moved D]"""
import argparse
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch

from torch_vxm import VxmDenseHalfRes, load_keras_h5, read_nifti


def median_time(fn, runs, cuda, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rate(gflops):
    return f"{gflops / 1e3:.2f} TFLOP/s" if gflops >= 1000 else f"{gflops:.1f} GFLOP/s"


def read_any(path):
    return np.load(path) if path.endswith(".npy") else read_nifti(path)


def check(name, ours, path):
    ref = read_any(path).astype(np.float32)
    if ref.shape != ours.shape:
        ref = ref.reshape(ours.shape) if ref.size == ours.size else None
    if ref is None:
        print(f"torch {name} vs {path}: shapes differ ({read_any(path).shape} vs {ours.shape})")
    else:
        print(f"torch {name} max |diff| vs {path}: {np.abs(ours - ref).max():.3e}")


def main():
    ap = argparse.ArgumentParser(usage=__doc__.rsplit("\n", 2)[-2].strip() + " ...")
    ap.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--moving", required=True)
    ap.add_argument("--fixed", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--tf32", action="store_true", help="also time with TF32 (cuda)")
    ap.add_argument("--check-warp")
    ap.add_argument("--check-moved")
    args = ap.parse_args()
    threads = int(os.environ.get("THREADS", "2"))
    torch.set_num_threads(threads)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("torch_register.py: --device cuda: this PyTorch has no CUDA device")
    dev = torch.device(args.device)
    moving, fixed = read_nifti(args.moving), read_nifti(args.fixed)
    if moving.shape != fixed.shape or moving.ndim != 3 or any(s % 16 for s in moving.shape):
        sys.exit(f"torch_register.py: moving {moving.shape} and fixed {fixed.shape} must be one 3-D shape, "
                 "each size a multiple of 16 (four poolings)")
    shape = moving.shape
    model = VxmDenseHalfRes(shape)
    load_keras_h5(model, args.model)
    model = model.eval().to(dev)
    mov = torch.from_numpy(moving)[None, None].to(dev)
    fix = torch.from_numpy(fixed)[None, None].to(dev)

    version = torch.__version__.split("+")[0]
    if cuda:
        torch.backends.cudnn.benchmark = args.runs > 0  # --runs 0 times PyTorch as a user meets it
        where = (f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}, "
                 f"cuDNN {torch.backends.cudnn.version()}, cudnn.benchmark")
    else:
        where = f"CPU, {threads} threads"
    if args.runs > 0:
        print(f"PyTorch {version} on {where}; {'x'.join(map(str, shape))}; median of {args.runs} runs after warm-ups",
              flush=True)

    if args.runs == 0:  # one registration, results on the host: for timing the whole process from outside
        with torch.no_grad():
            moved, warp, _ = model.register(mov, fix)
            moved, warp = moved.cpu().numpy(), warp.cpu().numpy()
        return

    big = model.unet.dec[-1][0]  # 64 -> 32 at half resolution: the largest convolution of the model
    half = [s // 2 for s in shape]
    x = torch.randn(1, big.in_channels, *half, device=dev)
    gflop = 2 * 27 * big.in_channels * big.out_channels * float(np.prod(half)) / 1e9
    warmup = 3 if cuda else 1
    modes = ["fp32", "tf32"] if args.tf32 and cuda else ["fp32"]
    peak_mb = None
    with torch.no_grad():
        for mode in modes:
            if cuda:
                torch.backends.cudnn.allow_tf32 = mode == "tf32"
                torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
            if mode == "fp32":
                moved, warp, _ = model.register(mov, fix)
                if args.check_warp:
                    check("warp", warp[0].permute(1, 2, 3, 0).cpu().numpy(), args.check_warp)
                if args.check_moved:
                    check("moved", moved[0, 0].cpu().numpy(), args.check_moved)
                del moved, warp
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
            t = median_time(lambda: model.register(mov, fix), args.runs, cuda, warmup)
            if mode == "fp32" and cuda:
                peak_mb = torch.cuda.max_memory_allocated() / 2**20
            print(f"torch registration compute {mode}: {t * 1e3:.2f} ms", flush=True)
            t = median_time(lambda: big(x), args.runs, cuda, warmup)
            print(f"torch largest conv {mode} ({big.in_channels}->{big.out_channels} at {'x'.join(map(str, half))}, "
                  f"{gflop:.1f} GFLOP): {t * 1e3:.2f} ms = {rate(gflop / t)}", flush=True)
    if cuda:
        print(f"torch peak GPU memory (registration): {peak_mb:.0f} MB")
    else:
        print(f"torch peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
