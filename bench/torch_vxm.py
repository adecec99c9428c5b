"""The published VoxelMorph model (vxm_dense_brain_T1_3D_mse.h5: VxmDense with a half-resolution U-Net) in
PyTorch, shared by the bench's PyTorch references (torch_train_step.py: training step; torch_register.py:
registration with the published weights).  Semantics as docs/voxelmorph-semantics.md §3.4 (graph), §4.2 (linear
interpolation with clamping), §5 (scaling and squaring), §6.1/6.3 (RescaleTransform(2): x2 then the align-corners
resize).  Also a minimal reader for the weights (.h5 via h5py) and for float32 NIfTI-1/2 files (gzip + struct:
no nibabel on a GPU machine).  Dev tool only: never used at run time or by the tests."""
import gzip
import struct

import numpy as np
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
    """voxelmorph SpatialTransformer (pull-back, displacement in voxels), linear, border clamp (§4.2: grid_sample's
    "border" padding with align_corners=True is clamp-then-trilinear)."""
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

    def warp(self, svf):
        """Half-resolution SVF -> full-resolution displacement: 7 squarings, x2, align-corners resize (§5, §6)."""
        vec = svf / (2 ** INT_STEPS)
        for _ in range(INT_STEPS):  # scaling and squaring
            vec = vec + transform(vec, vec, self.grid_half)
        return F.interpolate(2 * vec, scale_factor=2, mode="trilinear", align_corners=True)

    def register(self, moving, fixed):
        """(moved, full-resolution displacement, half-resolution SVF)."""
        svf = self.flow(self.unet(torch.cat([moving, fixed], dim=1)))  # at 1/2 resolution
        warp = self.warp(svf)
        return transform(moving, warp, self.grid_full), warp, svf

    def forward(self, moving, fixed):
        moved, _, svf = self.register(moving, fixed)
        return moved, svf


def keras_layers(model):
    """(module, Keras layer name) for every convolution of VxmDenseHalfRes, in the published file's naming."""
    out = [(seq[0], f"vxm_dense_unet_enc_conv_{i}_0") for i, seq in enumerate(model.unet.enc)]
    out += [(seq[0], f"vxm_dense_unet_dec_conv_{len(ENC) - 1 - i}_0") for i, seq in enumerate(model.unet.dec)]
    out += [(seq[0], f"vxm_dense_unet_dec_final_conv_{i}") for i, seq in enumerate(model.unet.extra)]
    return out + [(model.flow, "vxm_dense_flow")]


def load_keras_h5(model, path):
    """Copies the published weights (Keras kernel (k0, k1, k2, Cin, Cout) -> torch (Cout, Cin, k0, k1, k2): the
    spatial axes are the array axes [i, j, k] in both)."""
    import h5py  # only here: the training reference does not need it

    with h5py.File(path, "r") as f:
        g = f["model_weights"] if "model_weights" in f else f
        for mod, name in keras_layers(model):
            kernel = np.asarray(g[name][name]["kernel:0"], dtype=np.float32)
            bias = np.asarray(g[name][name]["bias:0"], dtype=np.float32)
            if tuple(kernel.shape[3:]) != (mod.in_channels, mod.out_channels):
                raise ValueError(f"{path}: {name} has kernel {kernel.shape}, expected "
                                 f"(3, 3, 3, {mod.in_channels}, {mod.out_channels})")
            with torch.no_grad():
                mod.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2))))
                mod.bias.copy_(torch.from_numpy(bias))


_NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4"}


def read_nifti(path):
    """Data of a NIfTI-1 or NIfTI-2 file (.nii or .nii.gz) as a float32 array indexed [i, j, k, ...] (the file
    stores i fastest), scl_slope / scl_inter applied when set."""
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    for end in "<>":
        size = struct.unpack(end + "i", raw[:4])[0]
        if size in (348, 540):
            break
    else:
        raise ValueError(f"{path}: not a NIfTI file")
    if size == 348:
        dim = struct.unpack(end + "8h", raw[40:56])
        dtype = struct.unpack(end + "h", raw[70:72])[0]
        offset = int(struct.unpack(end + "f", raw[108:112])[0])
        slope, inter = struct.unpack(end + "2f", raw[112:120])
    else:
        dtype = struct.unpack(end + "h", raw[12:14])[0]
        dim = struct.unpack(end + "8q", raw[16:80])
        offset = struct.unpack(end + "q", raw[168:176])[0]
        slope, inter = struct.unpack(end + "2d", raw[176:192])
    if dtype not in _NIFTI_DTYPES:
        raise ValueError(f"{path}: NIfTI datatype {dtype} not supported here")
    shape = tuple(int(d) for d in dim[1:1 + dim[0]])
    n = int(np.prod(shape))
    data = np.frombuffer(raw, dtype=np.dtype(end + _NIFTI_DTYPES[dtype]), count=n, offset=offset)
    data = data.reshape(shape, order="F").astype(np.float32)
    if slope != 0.0 and (slope != 1.0 or inter != 0.0):
        data = data * np.float32(slope) + np.float32(inter)
    return np.ascontiguousarray(data)
