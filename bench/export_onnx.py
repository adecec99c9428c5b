"""ONNX export of the U-Net part of the published VoxelMorph model (vxm_dense_brain_T1_3D_mse.h5), for the
OpenVINO reference row of `make bench` (issue 12; bench/openvino_bench.sh).  Dev tool only: never used at run
time or by the tests.

The graph is the VxmDense half-resolution U-Net up to and including the `vxm_dense_flow` conv, i.e. the SVF at
half resolution (docs/voxelmorph-semantics.md §3.4), built node by node with onnx.helper in the layer order of
the Keras model (src/model/vxm_dense_graph.c build_unet; bench/torch_vxm.py HalfResUnet):
  input = concat(moving, fixed) (N, 2, D, H, W)
  4 x [Conv 3x3x3 pad 1 + LeakyRelu 0.2, keep skip, MaxPool 2]
  4 x Conv + LeakyRelu, after each of the first three: Resize nearest x2, Concat(upsampled, skip) -- the
      full-resolution skip is never used (half-resolution decoder)
  3 x Conv + LeakyRelu (the extra decoder convs), then the flow Conv (no activation).
Weights are read with h5py: Keras kernel (k0, k1, k2, Cin, Cout) -> ONNX (Cout, Cin, k0, k1, k2); the spatial
axes are the array axes [i, j, k] of the volumes in both.  The spatial input size is symbolic (D, H, W).

  python export_onnx.py MODEL.h5 OUT.onnx      (prints the layer list)"""
import gzip
import struct
import sys

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ENC = ["vxm_dense_unet_enc_conv_%d_0" % i for i in range(4)]
DEC = ["vxm_dense_unet_dec_conv_%d_0" % (3 - i) for i in range(4)]
EXTRA = ["vxm_dense_unet_dec_final_conv_%d" % i for i in range(3)]
FLOW = "vxm_dense_flow"


def read_weights(path):
    """{layer name: (kernel in ONNX layout, bias)} for every conv of the U-Net and the flow conv."""
    out = {}
    with h5py.File(path, "r") as f:
        g = f["model_weights"] if "model_weights" in f else f
        for name in ENC + DEC + EXTRA + [FLOW]:
            kernel = np.asarray(g[name][name]["kernel:0"], dtype=np.float32)
            bias = np.asarray(g[name][name]["bias:0"], dtype=np.float32)
            if kernel.ndim != 5 or kernel.shape[:3] != (3, 3, 3):
                raise ValueError(f"{path}: {name} has kernel {kernel.shape}, expected (3, 3, 3, Cin, Cout)")
            out[name] = (np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2)), bias)
    return out


class Graph:
    def __init__(self, weights):
        self.w = weights
        self.nodes, self.inits = [], []
        self.flops_per_voxel = 0.0  # conv FLOPs per full-resolution voxel (2 per multiply-add)
        self.layers = []

    def conv(self, x, name, scale, act=True):
        """scale: the layer's resolution as a fraction of the input's voxel count (1, 1/8, ...)."""
        k, b = self.w[name]
        self.inits += [numpy_helper.from_array(k, name + "/W"), numpy_helper.from_array(b, name + "/B")]
        self.nodes.append(helper.make_node("Conv", [x, name + "/W", name + "/B"], [name], name=name,
                                           kernel_shape=[3, 3, 3], pads=[1] * 6, strides=[1, 1, 1]))
        self.flops_per_voxel += 2.0 * k.size * scale
        self.layers.append(f"{name}: {k.shape[1]} -> {k.shape[0]} channels at 1/{round(1 / scale)} voxels")
        if not act:
            return name
        self.nodes.append(helper.make_node("LeakyRelu", [name], [name + "/act"], alpha=0.2))
        return name + "/act"

    def pool(self, x, name):
        self.nodes.append(helper.make_node("MaxPool", [x], [name], kernel_shape=[2, 2, 2], strides=[2, 2, 2]))
        return name

    def up_concat(self, x, skip, name):
        # Nearest x2: output i takes input floor(i / 2) (asymmetric + floor, exact for a factor of 2).
        self.nodes.append(helper.make_node("Resize", [x, "", "scales_x2"], [name], mode="nearest",
                                           coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
        self.nodes.append(helper.make_node("Concat", [name, skip], [name + "_concat"], axis=1))
        return name + "_concat"


def build(weights):
    g = Graph(weights)
    g.inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2, 2], dtype=np.float32), "scales_x2"))
    x, skips, scale = "input", [], 1.0
    for level, name in enumerate(ENC):
        x = g.conv(x, name, scale)
        skips.append(x)
        x = g.pool(x, f"unet_enc_pooling_{level}")
        scale /= 8
    skips.pop(0)  # the full-resolution skip: not used by a half-resolution decoder
    for t, name in enumerate(DEC):
        x = g.conv(x, name, scale)
        if t < len(DEC) - 1:
            x = g.up_concat(x, skips.pop(), f"unet_dec_upsample_{len(DEC) - 2 - t}")
            scale *= 8
    for name in EXTRA:
        x = g.conv(x, name, scale)
    g.conv(x, FLOW, scale, act=False)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, "D", "H", "W"])
    out = helper.make_tensor_value_info(FLOW, TensorProto.FLOAT, [1, 3, "d", "h", "w"])
    graph = helper.make_graph(g.nodes, "vxm_dense_unet", [inp], [out], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="vxmcl bench/export_onnx.py")
    onnx.checker.check_model(model)
    return model, g


def read_nifti(path):
    """Data of a float NIfTI-1 file (.nii or .nii.gz) as a float32 array indexed [i, j, k, ...]."""
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    end = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    if struct.unpack(end + "i", raw[:4])[0] != 348:
        raise ValueError(f"{path}: not a NIfTI-1 file")
    dim = struct.unpack(end + "8h", raw[40:56])
    dtype = struct.unpack(end + "h", raw[70:72])[0]
    offset = int(struct.unpack(end + "f", raw[108:112])[0])
    if dtype not in (16, 64):
        raise ValueError(f"{path}: NIfTI datatype {dtype}: only float32/float64 here")
    shape = tuple(int(d) for d in dim[1:1 + dim[0]])
    data = np.frombuffer(raw, dtype=np.dtype(end + ("f4" if dtype == 16 else "f8")), count=int(np.prod(shape)),
                         offset=offset)
    return np.ascontiguousarray(data.reshape(shape, order="F").astype(np.float32))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.rsplit("\n", 1)[-1].strip())
    model, g = build(read_weights(sys.argv[1]))
    onnx.save(model, sys.argv[2])
    print("\n".join(g.layers))
    print(f"{sys.argv[2]}: {len(g.nodes)} nodes, {g.flops_per_voxel:.0f} conv FLOP per input voxel")


if __name__ == "__main__":
    main()
