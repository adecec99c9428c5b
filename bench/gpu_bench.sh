#!/usr/bin/env bash
# make bench on a GPU (issue 10): on the first GPU OpenCL device (VXM_GPU_DEVICE=opencl:P:D picks another), the
# device's measured FP32 FMA peak (cl_peak), the per-layer table against it with the built-in tiles, `vxm tune`,
# the table again with the tuned tiles, a training step at 160x192x224 (time and GPU memory), the whole
# `vxm register` process (first run with empty kernel caches, then cached), the PyTorch reference when a python3
# with CUDA torch is there (torch_register.py, torch_train_step.py), and at the end issue 10's table with our
# column filled in.  Runs from the project root with a normal build (./vxm, build/bench/*) or with the .gpu/
# bundle of /work/shared/gpu/bundle.sh (.gpu/bin, .gpu/lib, .gpu/data); bench.sh calls it when a GPU is listed.
# Output also goes to $OUT/gpu_bench.txt when OUT is set.  Exits 0 with a message when there is no GPU device.
#   bash bench/gpu_bench.sh        (RUNS=5 TORCH_RUNS=20 TUNE_ARGS= TUNE_TIMEOUT=300 TORCH_PYTHON=python3)
set -u
cd "$(dirname "$0")/.." || exit 1
RUNS=${RUNS:-5}
TORCH_RUNS=${TORCH_RUNS:-20}
T=$(mktemp -d "${TMPDIR:-/tmp}/vxm-gpu-bench.XXXXXX")
trap 'rm -rf "$T"' EXIT
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT" && exec > >(tee "$OUT/gpu_bench.txt") 2>&1; fi

# The NVIDIA driver's OpenCL library, registered with the ICD loader when nobody has (containers often lack it).
if [ ! -e /etc/OpenCL/vendors/nvidia.icd ]; then
    lib=$(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1/ {print $NF; exit}')
    [ -n "$lib" ] || lib=$(find /usr /lib /opt -name 'libnvidia-opencl.so*' 2>/dev/null | head -1)
    if [ -n "$lib" ]; then
        { mkdir -p /etc/OpenCL/vendors && echo "$lib" > /etc/OpenCL/vendors/nvidia.icd; } 2>/dev/null ||
            echo "gpu_bench: cannot register $lib in /etc/OpenCL/vendors (not root?)"
    fi
fi

# Binaries: the normal build when it runs here, else the portable bundle.
if [ -x ./vxm ] && ./vxm devices >/dev/null 2>&1; then
    VXM=./vxm; DIRS="build/bench"; SHARED=${VXM_SHARED:-../shared}
    MODEL=$SHARED/data/models/vxm_dense_brain_T1_3D_mse.h5; P=$SHARED/data/pairs
    if [ ! -f "$MODEL" ] && [ -f .gpu/data/vxm_dense_brain_T1_3D_mse.h5 ]; then
        MODEL=.gpu/data/vxm_dense_brain_T1_3D_mse.h5; P=.gpu/data  # no shared folder: the bundle's data
    fi
elif [ -x .gpu/bin/vxm ]; then
    LD_LIBRARY_PATH=$(pwd)/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}; export LD_LIBRARY_PATH
    VXM=.gpu/bin/vxm; DIRS=".gpu/bin build/bench"; MODEL=.gpu/data/vxm_dense_brain_T1_3D_mse.h5; P=.gpu/data
else
    echo "gpu_bench: no vxm here (build with make, or make the .gpu bundle): nothing to measure"; exit 0
fi
tool() {  # path of a bench program, or nothing
    for d in $DIRS; do [ -x "$d/$1" ] && { echo "$d/$1"; return; }; done
}
MOV=$P/pair1_moving.nii.gz; FIX=$P/fixed.nii.gz
if [ ! -f "$MODEL" ] || [ ! -f "$MOV" ] || [ ! -f "$FIX" ]; then
    echo "gpu_bench: model or pair1 not found ($MODEL, $MOV): nothing to measure"; exit 0
fi
D=${VXM_GPU_DEVICE:-$("$VXM" devices 2>/dev/null | awk '/^opencl:/ && /\[GPU,/ {print $1; exit}')}
if [ -z "$D" ]; then
    echo "gpu_bench: no GPU OpenCL device (vxm devices lists none): nothing to measure on a GPU"; exit 0
fi
HAVE_SMI=0; command -v nvidia-smi >/dev/null 2>&1 && HAVE_SMI=1

echo "# vxmcl GPU benchmark ($(date -u +%F)): $("$VXM" devices | grep "^$D ")"
[ "$HAVE_SMI" = 1 ] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

# Runs a command in the background and prints the most GPU memory (MiB, all compute processes together, from
# nvidia-smi) seen while it ran, into the file $1; the command's output goes to stdout.
with_gpu_mem() {
    local memfile=$1; shift
    "$@" &
    local pid=$! max=0 m
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$HAVE_SMI" = 1 ]; then
            m=$(nvidia-smi --query-compute-apps=used_memory --format=csv,noheader,nounits 2>/dev/null |
                awk '{s += $1} END {print s + 0}')
            [ "${m:-0}" -gt "$max" ] && max=$m
        fi
        sleep 0.2
    done
    wait "$pid"; local rc=$?
    [ "$HAVE_SMI" = 1 ] && echo "$max" > "$memfile"
    return $rc
}

rate() {  # GFLOP/s -> "X GFLOP/s" or "X TFLOP/s"
    awk -v g="$1" 'BEGIN { if (g >= 1000) printf "%.2f TFLOP/s", g / 1000; else printf "%.1f GFLOP/s", g }'
}

# 1. peak (the .gpu bundle has no cl_peak: built here when a compiler and the OpenCL headers are present)
PEAK=""
CLP=$(tool cl_peak)
if [ -z "$CLP" ] && command -v cc >/dev/null 2>&1; then
    ocl=-lOpenCL; [ -e .gpu/lib/libOpenCL.so.1 ] && ocl=.gpu/lib/libOpenCL.so.1
    cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -DCL_TARGET_OPENCL_VERSION=120 -o "$T/cl_peak" bench/cl_peak.c \
        "$ocl" 2>/dev/null && CLP=$T/cl_peak
fi
if [ -n "$CLP" ]; then
    PEAK=$("$CLP" --device "$D" -v 2>"$T/cl_peak.log") || PEAK=""
    cat "$T/cl_peak.log"
fi
if [ -n "$PEAK" ]; then echo "device FP32 peak: $(rate "$PEAK") (cl_peak)"
else echo "device FP32 peak: not measured (cl_peak missing or failed: make build/bench/cl_peak)"; fi
PEAK_ARG=(); [ -n "$PEAK" ] && PEAK_ARG=(--peak "$PEAK")

# 2.-4. per-layer tables: built-in tiles, tune, tuned tiles
VB=$(tool vxm_bench)
bench_table() {  # $1 = label, $2 = VXM_TUNE_FILE value; output kept in $T/bench_$1.txt
    echo; echo "== vxm_bench on $D, $1 tiles"
    if [ -z "$VB" ]; then echo "(vxm_bench not built)"; return; fi
    VXM_TUNE_FILE=$2 timeout 600 "$VB" --model "$MODEL" --moving "$MOV" --fixed "$FIX" --device "$D" \
        --runs "$RUNS" ${PEAK_ARG[@]+"${PEAK_ARG[@]}"} --vxm "$VXM" | tee "$T/bench_$1.txt"
}
bench_table built-in 0
TUNED=$T/tune.json
echo; echo "== vxm tune --device $D ${TUNE_ARGS:-}"
if VXM_TUNE_FILE=$TUNED timeout "${TUNE_TIMEOUT:-300}" "$VXM" tune --device "$D" ${TUNE_ARGS:-}; then
    bench_table tuned "$TUNED"
else
    echo "(vxm tune failed or timed out: the tables below use the built-in tiles)"; TUNED=0
    cp "$T/bench_built-in.txt" "$T/bench_tuned.txt" 2>/dev/null
fi

# 5. training step at the full shape on the GPU
echo; echo "== training step on $D (published architecture, 160x192x224, median of 3 after a warm-up)"
TRAIN_ROW=""
if TB=$(tool train_bench) && [ -n "$TB" ]; then
    VXM_TUNE_FILE=$TUNED with_gpu_mem "$T/train_mem" "$TB" --model "$MODEL" --shape 160 192 224 --device "$D" \
        --runs 3 > "$T/train.txt"
    cat "$T/train.txt"; TRAIN_ROW=$(grep '^|' "$T/train.txt" | tail -1)
    [ -s "$T/train_mem" ] && echo "GPU memory (nvidia-smi, all processes): $(cat "$T/train_mem") MiB"
else
    echo "(train_bench not built: make build/bench/train_bench; the .gpu bundle does not carry it)"
fi

# 6. whole process: empty kernel caches (ours and the NVIDIA driver's), then cached
echo; echo "== whole vxm register process on $D (read, register, write)"
whole() {  # $1 = cache dir, $2 = tune file; prints seconds
    local s=$EPOCHREALTIME
    VXM_CL_CACHE_DIR=$1 CUDA_CACHE_PATH=$1/nv VXM_TUNE_FILE=$2 "$VXM" register --device "$D" --model "$MODEL" \
        --moving "$MOV" --fixed "$FIX" --moved "$T/moved.nii.gz" --warp "$T/warp.nii.gz" >/dev/null || return 1
    awk -v a="$s" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'
}
FIRST0=$(whole "$T/cache0" 0) && echo "first run, empty caches, built-in tiles: $FIRST0 s"
CDIR=$T/cache1
if [ "$TUNED" = 0 ]; then FIRST=${FIRST0:-}; FIRST0=""; CDIR=$T/cache0
else FIRST=$(whole "$CDIR" "$TUNED") && echo "first run, empty caches, tuned tiles: $FIRST s"; fi
CACHED=""
for _ in 1 2 3; do c=$(whole "$CDIR" "$TUNED") && CACHED="$CACHED $c"; done
echo "cached runs:$CACHED s"
CACHED_MED=$(echo "$CACHED" | tr ' ' '\n' | grep . | sort -n |
             awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]}')

# 7. PyTorch reference
TP=""
for p in ${TORCH_PYTHON:-} python3 /usr/bin/python3; do
    if "$p" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then TP=$p; break; fi
done
TORCH_VER=""; T_REG=""; T_TRAIN32=""; T_TRAIN_TF=""; T_WHOLE=""
if [ -n "$TP" ]; then
    TORCH_VER=$("$TP" -c 'import torch; print(torch.__version__.split("+")[0])')
    echo; echo "== PyTorch $TORCH_VER reference on the GPU ($TP)"
    CHECK=(); [ -f "$T/warp.nii.gz" ] && CHECK=(--check-warp "$T/warp.nii.gz")  # vxm's warp, from step 6
    if "$TP" -c 'import h5py' 2>/dev/null; then
        "$TP" bench/torch_register.py --device cuda --model "$MODEL" --moving "$MOV" --fixed "$FIX" \
            --runs "$TORCH_RUNS" --tf32 ${CHECK[@]+"${CHECK[@]}"} | tee "$T/torch_reg.txt"
        T_REG=$T/torch_reg.txt
        s=$EPOCHREALTIME
        "$TP" bench/torch_register.py --device cuda --model "$MODEL" --moving "$MOV" --fixed "$FIX" --runs 0 &&
            T_WHOLE=$(awk -v a="$s" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') &&
            echo "whole PyTorch process (import, read, one registration): $T_WHOLE s"
    else
        echo "(h5py missing for $TP: no PyTorch registration rows; pip install h5py)"
    fi
    for mode in fp32 tf32; do
        flag=""; [ "$mode" = tf32 ] && flag=--tf32
        row=$(with_gpu_mem "$T/torch_mem_$mode" "$TP" bench/torch_train_step.py 160 192 224 --device cuda $flag) &&
            echo "$row" && if [ "$mode" = fp32 ]; then T_TRAIN32=$row; else T_TRAIN_TF=$row; fi
        [ -s "$T/torch_mem_$mode" ] && echo "GPU memory (nvidia-smi, all processes): $(cat "$T/torch_mem_$mode") MiB"
    done
else
    echo; echo "(no python3 with CUDA torch here: set TORCH_PYTHON for the PyTorch column)"
fi

# 8. issue 10's table
B=$T/bench_tuned.txt
field() { [ -n "$2" ] && [ -f "$2" ] && grep -m1 "^$1" "$2" | sed "s/^$1[^:]*: //"; }
ms() { awk -v s="$1" 'BEGIN { printf "%.1f", s * 1000 }'; }
if [ -s "$B" ]; then
    compute=$(awk '/^compute \(unprofiled/ {print $4}' "$B")
    conv=$(awk '/^convolutions:/ {r = $8; if ($9 ~ /^TFLOP/) r *= 1000; print $5, r}' "$B")  # s, GFLOP/s
    input=$(awk -F'|' 'NF == 5 && $2 == " input " {print $3 + 0}' "$B")  # op kind table, ms
    big=$(awk -F'|' 'NF == 9 && $6 + 0 > g {g = $6 + 0; r = ($5 + 0) " " ($7 + 0) " " $4 " " g}
                     END {print r}' "$B")  # the per-layer row with the most GFLOP: ms, GFLOP/s, output, GFLOP
    read -r big_ms big_rate big_shape big_gf <<<"$big"
    shape=$(awk '/^## / {if (match($0, /[0-9]+x[0-9]+x[0-9]+,/)) print substr($0, RSTART, RLENGTH - 1); exit}' "$B")
    big_shape=$(echo "$big_shape" | awk -Fx '{print $1 "×" $2 "×" $3}')
    read -r conv_s conv_rate <<<"$conv"
    VX_REG="$(ms "$compute") ms (convolutions $(ms "$conv_s") ms = $(rate "$conv_rate"); \"input\" ${input:-?} ms)"
    VX_BIG="$(printf '%.1f' "$big_ms") ms = $(rate "$big_rate")"
    [ -n "$PEAK" ] &&
        VX_BIG="$VX_BIG ($(awk -v a="$big_rate" -v p="$PEAK" 'BEGIN {printf "%.0f", 100 * a / p}') % of peak)"
else
    VX_REG="—"; VX_BIG="—"; big_shape="80×96×112"; big_gf=95; shape=160x192x224
fi
VX_WHOLE="${CACHED_MED:-?} s / ${FIRST:-?} s"; [ -n "${FIRST0:-}" ] && VX_WHOLE="$VX_WHOLE (built-in tiles: $FIRST0 s)"
VX_TRAIN="—"
if [ -n "$TRAIN_ROW" ]; then
    VX_TRAIN="$(echo "$TRAIN_ROW" | awk -F'|' '{gsub(/ s */, "", $6); printf "%.0f ms, %.1f GB (buffers)", $6 * 1000, ($7 + 0) / 1024}')"
    [ -s "$T/train_mem" ] && VX_TRAIN="$VX_TRAIN, $(awk '{printf "%.1f", $1 / 1024}' "$T/train_mem") GB (nvidia-smi)"
fi
if [ -n "$TP" ]; then
    t_step() { echo "$1" | awk -F'|' '{gsub(/ s */, "", $6); printf "%.0f", $6 * 1000}'; }
    t_mem() { echo "$1" | awk -F'|' '{printf "%.1f", ($7 + 0) / 1024}'; }
    PT_REG="$(field "torch registration compute fp32" "$T_REG" | sed 's/ ms//') ms / "
    PT_REG="$PT_REG$(field "torch registration compute tf32" "$T_REG")"
    PT_BIG="$(field "torch largest conv fp32" "$T_REG")"; PT_BIG=${PT_BIG:+$PT_BIG (fp32)}
    PT_WHOLE="${T_WHOLE:+≈ $T_WHOLE s}"
    PT_TRAIN="$(t_step "$T_TRAIN32") ms / $(t_step "$T_TRAIN_TF") ms, $(t_mem "$T_TRAIN32") GB (max_memory_allocated"
    [ -s "$T/torch_mem_fp32" ] && PT_TRAIN="$PT_TRAIN; $(awk '{printf "%.1f", $1 / 1024}' "$T/torch_mem_fp32") GB nvidia-smi"
    PT_TRAIN="$PT_TRAIN)"
    HEAD="PyTorch $TORCH_VER + cuDNN, same model (fp32 / TF32)"
else
    PT_REG="—"; PT_BIG="—"; PT_WHOLE="—"; PT_TRAIN="—"; HEAD="PyTorch + cuDNN, same model (fp32 / TF32): not run"
fi
echo
peak_note=""; [ -n "$PEAK" ] && peak_note="; device FP32 peak $(rate "$PEAK") (cl_peak)"
echo "== issue 10 table: $D, pair1 (${shape//x/×}), float32$peak_note"
echo
echo "| | vxmcl OpenCL | $HEAD |"
echo "| --- | ---: | ---: |"
echo "| registration compute | $VX_REG | ${PT_REG:-—} |"
gf=$(awk -v g="${big_gf:-95}" 'BEGIN {printf (g >= 10 ? "%.0f" : "%.1f"), g}')
echo "| largest conv (64→32 at $big_shape, $gf GFLOP) | $VX_BIG | ${PT_BIG:-—} |"
echo "| whole process, kernels cached / first run | $VX_WHOLE | ${PT_WHOLE:-—} |"
echo "| training step (published architecture) | $VX_TRAIN | ${PT_TRAIN:-—} |"
