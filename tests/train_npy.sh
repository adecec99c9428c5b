# Sourced by the vxm train test scripts: tiny float32 2-D .npy volumes written with shell tools.
# npy2d OUT H W KIND: float32 (H, W) .npy; KIND sq0/sq1: a bright square (shifted by one voxel for sq1) on a
# faint pattern; nan: sq0 with one NaN voxel; hi: sq0 with the square at 2.0 (outside VoxelMorph's [0, 1]);
# lab0/lab1: label maps of sq0/sq1 (2 in the square, 0 elsewhere).
npy2d() {
    local out=$1 h=$2 w=$3 kind=$4 hdr body="" i j v off=0
    { [ "$kind" = sq1 ] || [ "$kind" = lab1 ]; } && off=1
    hdr="{'descr': '<f4', 'fortran_order': False, 'shape': ($h, $w), }"
    while [ $(( (10 + ${#hdr} + 1) % 64 )) -ne 0 ]; do hdr="$hdr "; done
    for ((i = 0; i < h; i++)); do
        for ((j = 0; j < w; j++)); do
            v='\x00\x00\x00\x00'                                                   # 0.0f
            if [ $i -ge $((4 + off)) ] && [ $i -lt $((h - 4 + off)) ] && [ $j -ge $((4 + off)) ] && [ $j -lt $((w - 4 + off)) ]; then
                v='\x00\x00\x80\x3f'                                               # 1.0f
            elif [ $(( (i + j) % 3 )) -eq 0 ]; then v='\x00\x00\x00\x3e'; fi        # 0.125f
            [ "$kind" = nan ] && [ $i -eq 3 ] && [ $j -eq 5 ] && v='\x00\x00\xc0\x7f'  # NaN
            [ "$kind" = hi ] && [ "$v" = '\x00\x00\x80\x3f' ] && v='\x00\x00\x00\x40'  # 2.0f
            if [ "${kind#lab}" != "$kind" ]; then
                if [ "$v" = '\x00\x00\x80\x3f' ]; then v='\x00\x00\x00\x40'; else v='\x00\x00\x00\x00'; fi
            fi
            body="$body$v"
        done
    done
    { printf '\223NUMPY\001\000'; printf "\\$(printf %03o $(( (${#hdr} + 1) % 256 )))\\$(printf %03o $(( (${#hdr} + 1) / 256 )))"
      printf '%s\n' "$hdr"; printf "$body"; } >"$out"
}

# npy1d OUT V...: a float32 vector .npy (e.g. a label list) from small non-negative integers.
npy1d() {
    local out=$1 hdr body="" x; shift
    hdr="{'descr': '<f4', 'fortran_order': False, 'shape': ($#,), }"
    while [ $(( (10 + ${#hdr} + 1) % 64 )) -ne 0 ]; do hdr="$hdr "; done
    for x in "$@"; do
        case $x in 0) body="$body\x00\x00\x00\x00" ;; 1) body="$body\x00\x00\x80\x3f" ;;
                   2) body="$body\x00\x00\x00\x40" ;; 3) body="$body\x00\x00\x40\x40" ;; esac
    done
    { printf '\223NUMPY\001\000'; printf "\\$(printf %03o $(( (${#hdr} + 1) % 256 )))\\$(printf %03o $(( (${#hdr} + 1) / 256 )))"
      printf '%s\n' "$hdr"; printf "$body"; } >"$out"
}

# npy4d OUT X Y Z C: a float32 (X, Y, Z, C) .npy with a smooth pattern in [0, 1] (C channels, shifted by SHIFT).
npy4d() {
    local out=$1 x=$2 y=$3 z=$4 c=$5 hdr body="" i j k l v
    hdr="{'descr': '<f4', 'fortran_order': False, 'shape': ($x, $y, $z, $c), }"
    while [ $(( (10 + ${#hdr} + 1) % 64 )) -ne 0 ]; do hdr="$hdr "; done
    for ((i = 0; i < x; i++)); do for ((j = 0; j < y; j++)); do for ((k = 0; k < z; k++)); do for ((l = 0; l < c; l++)); do
        v=$(( (i + j + k + l + ${SHIFT:-0}) % 4 ))
        case $v in 0) body="$body\x00\x00\x00\x00" ;; 1) body="$body\x00\x00\x80\x3e" ;;
                   2) body="$body\x00\x00\x00\x3f" ;; 3) body="$body\x00\x00\x40\x3f" ;; esac
    done; done; done; done
    { printf '\223NUMPY\001\000'; printf "\\$(printf %03o $(( (${#hdr} + 1) % 256 )))\\$(printf %03o $(( (${#hdr} + 1) / 256 )))"
      printf '%s\n' "$hdr"; printf "$body"; } >"$out"
}
