"""OpenVINO reference for `make bench` (issue 12; run by bench/openvino_bench.sh in bench/.venv): the ONNX export
of the published model's U-Net part (bench/export_onnx.py), f32 on the CPU with THREADS threads.
1. check: its flow on the 64^3 crop pair against the golden SVF (pairs/paircrop_vxm_dense_flow.nii.gz, the
   output of the vxm_dense_flow conv, which vxm's golden tests also match);
2. time: pair1 at full size (160x192x224), one warm-up, median of RUNS inferences.
Prints "check: ..." and then one line "OV <version> <seconds> <GFLOP>" for the shell script's table.
Dev tool only: never used at run time or by the tests.
  python openvino_run.py MODEL.h5 PAIRS_DIR"""
import os
import sys
import time

import numpy as np
import openvino as ov

from export_onnx import build, read_nifti, read_weights


def pair_input(pairs, moving, fixed):
    m, f = read_nifti(os.path.join(pairs, moving)), read_nifti(os.path.join(pairs, fixed))
    return np.ascontiguousarray(np.stack([m, f])[None])  # (1, 2, D, H, W): concat(moving, fixed)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.rsplit("\n", 1)[-1].strip())
    model_h5, pairs = sys.argv[1], sys.argv[2]
    threads = int(os.environ.get("THREADS", "2"))
    runs = int(os.environ.get("RUNS", "3"))
    onnx_model, g = build(read_weights(model_h5))
    core = ov.Core()
    ov_model = core.read_model(onnx_model.SerializeToString(), b"")
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
              "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(ov_model, "CPU", config)
    req = compiled.create_infer_request()

    x = pair_input(pairs, "paircrop_moving.nii.gz", "paircrop_fixed.nii.gz")
    flow = req.infer({0: x})[0][0].transpose(1, 2, 3, 0)  # (d, h, w, 3) as the golden file
    golden = read_nifti(os.path.join(pairs, "paircrop_vxm_dense_flow.nii.gz"))
    if flow.shape != golden.shape:
        sys.exit(f"openvino_run.py: flow shape {flow.shape}, golden {golden.shape}")
    diff = float(np.abs(flow - golden).max())
    rel = diff / float(np.abs(golden).max())
    print(f"check: OpenVINO flow on the 64^3 crop pair vs golden paircrop_vxm_dense_flow: max |diff| {diff:.2e} "
          f"({rel:.1e} of max |flow|)", flush=True)

    x = pair_input(pairs, "pair1_moving.nii.gz", "fixed.nii.gz")
    req.infer({0: x})  # warm-up: the first inference at a new shape prepares its kernels
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        req.infer({0: x})
        times.append(time.perf_counter() - t0)
    gflop = g.flops_per_voxel * x[0, 0].size / 1e9
    print(f"OV {ov.get_version().split('-')[0]} {sorted(times)[len(times) // 2]:.4f} {gflop:.1f}", flush=True)


if __name__ == "__main__":
    main()
