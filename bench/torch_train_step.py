"""Reference timing for `make bench` (optional; bench/bench.sh runs it when a Python with torch is found,
TORCH_PYTHON=/path/to/python or python3): one training step of the published VoxelMorph architecture
(vxm_dense_brain_T1_3D_mse.h5: VxmDense with a half-resolution U-Net) written in PyTorch the way
voxelmorph's torch port builds it, at the given shape, on the CPU with $THREADS threads (default 2).
Loss as train.py: MSE + 0.01 * Grad('l2', loss_mult=2) of the pre-integration field; Adam lr 1e-4 (Keras eps).
Prints the median of 3 steps after a warm-up and the process's peak RSS as one row of bench/train_bench.c's table.
The model has the published file's 313,507 parameters.  Debian's python3-torch (1.13) runs the convolutions
that oneDNN does not take through the system libblas.so.3: with the reference BLAS the step is ~3x slower, so
install libopenblas0-pthread first (the numbers in `make bench` assume it).
Dev tool only: never used at run time or by the tests.
  python3 bench/torch_train_step.py A B C"""
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ENC = [16, 32, 32, 32]
DEC = [32, 32, 32, 32, 32, 16, 16]
INT_STEPS = 7


def conv(cin, cout):
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2))


class HalfResUnet(nn.Module):
    """voxelmorph Unet(half_res=True): 4 max-pooled encoder levels; the decoder upsamples (nearest) and
    concatenates the skip three times, stops at 1/2 resolution, then runs the remaining DEC convolutions."""

    def __init__(self):
        super().__init__()
        self.enc = nn.ModuleList()
        c = 2
        for nf in ENC:
            self.enc.append(conv(c, nf))
            c = nf
        self.dec = nn.ModuleList()
        for level, nf in enumerate(DEC[:len(ENC)]):
            self.dec.append(conv(c, nf))
            c = nf + (ENC[-1 - level] if level < len(ENC) - 1 else 0)
        self.extra = nn.ModuleList()
        for nf in DEC[len(ENC):]:
            self.extra.append(conv(c, nf))
            c = nf
        self.out_channels = c

    def forward(self, x):
        skips = []
        for layer in self.enc:
            x = layer(x)
            skips.append(x)
            x = F.max_pool3d(x, 2)
        skips.pop(0)  # the full-resolution skip is not used by a half-resolution decoder
        for level, layer in enumerate(self.dec):
            x = layer(x)
            if level < len(self.dec) - 1:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
                x = torch.cat([x, skips.pop()], dim=1)
        for layer in self.extra:
            x = layer(x)
        return x


def identity_grid(shape):
    vectors = [torch.arange(0, s, dtype=torch.float32) for s in shape]
    return torch.stack(torch.meshgrid(vectors, indexing="ij")).unsqueeze(0)


def transform(src, flow, grid):
    """voxelmorph SpatialTransformer (pull-back, displacement in voxels), linear, border clamp."""
    shape = flow.shape[2:]
    locs = grid + flow
    locs = torch.stack([2 * (locs[:, i] / (shape[i] - 1) - 0.5) for i in range(3)], dim=1)
    locs = locs.permute(0, 2, 3, 4, 1)[..., [2, 1, 0]]
    return F.grid_sample(src, locs, align_corners=True, mode="bilinear", padding_mode="border")


class VxmDenseHalfRes(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.unet = HalfResUnet()
        self.flow = nn.Conv3d(self.unet.out_channels, 3, 3, padding=1)
        nn.init.normal_(self.flow.weight, 0.0, 1e-5)
        nn.init.zeros_(self.flow.bias)
        self.register_buffer("grid_full", identity_grid(shape), persistent=False)
        self.register_buffer("grid_half", identity_grid([s // 2 for s in shape]), persistent=False)

    def forward(self, moving, fixed):
        svf = self.flow(self.unet(torch.cat([moving, fixed], dim=1)))  # at 1/2 resolution
        vec = svf / (2 ** INT_STEPS)
        for _ in range(INT_STEPS):  # scaling and squaring
            vec = vec + transform(vec, vec, self.grid_half)
        warp = 2 * F.interpolate(vec, scale_factor=2, mode="trilinear", align_corners=True)
        return transform(moving, warp, self.grid_full), svf


def grad_l2(f, loss_mult=2.0):
    d = [(f[:, :, 1:] - f[:, :, :-1]).pow(2).mean(),
         (f[:, :, :, 1:] - f[:, :, :, :-1]).pow(2).mean(),
         (f[:, :, :, :, 1:] - f[:, :, :, :, :-1]).pow(2).mean()]
    return sum(d) / 3 * loss_mult


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.rsplit("\n", 1)[-1].strip())
    threads = int(os.environ.get("THREADS", "2"))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    shape = tuple(int(a) for a in sys.argv[1:4])
    model = VxmDenseHalfRes(shape)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-7)
    moving = torch.rand(1, 1, *shape)
    fixed = torch.rand(1, 1, *shape)

    def step():
        opt.zero_grad(set_to_none=True)
        moved, svf = model(moving, fixed)
        loss = F.mse_loss(moved, fixed) + 0.01 * grad_l2(svf)
        loss.backward()
        opt.step()
        return loss.item()

    step()  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    version = torch.__version__.split("+")[0]
    print(f"| PyTorch {version} CPU, {threads} threads | published (half-res U-Net) | "
          f"{'x'.join(map(str, shape))} | mse | {sorted(times)[1]:.3f} s | {rss:.0f} MB |", flush=True)


if __name__ == "__main__":
    main()
