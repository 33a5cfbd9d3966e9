#!/bin/bash
# The GPU benchmark (make bench-gpu): the ViT-B image encoder and the mask
# decoder on the CUDA backend (bench_gpu) and the same in PyTorch on the same GPU
# (torch_ref.py --device cuda, fp32 with TF32 off on both sides), then one
# table with the ratio. Without a usable CUDA backend it says why and stops;
# without a CUDA PyTorch the PyTorch column is skipped. See bench/README.md.
#
#   bench/run_gpu.sh [--repeat N] [--json FILE]
set -u

repeat=3 json=
while [ $# -gt 0 ]; do
    case $1 in
    --repeat) repeat=$2; shift 2 ;;
    --json) json=$(realpath -m "$2"); shift 2 ;;  # before the cd below
    *) echo "usage: bench/run_gpu.sh [--repeat N] [--json FILE]" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.." || exit 1

fix=${MEDSAM_FIXTURES:-../shared/fixtures}/sam/vit_b_s1
scratch=build/scratch
out=build/bench/results_gpu
mkdir -p "$scratch" "$out"
rm -f "$out"/*.json

make -s build/medsam build/bench/bench_gpu cuda >"$out/build.txt" 2>&1 ||
    { echo "bench_gpu: build failed (build/bench/results_gpu/build.txt)" >&2; exit 1; }

pth=$scratch/vit_b.pth
if [ ! -s "$pth" ]; then
    gzip -dc "$fix/model.pth.gz" >"$pth.tmp" || { echo "no ViT-B checkpoint in $fix" >&2; exit 1; }
    mv "$pth.tmp" "$pth"
fi
w=$scratch/bench_vit_b_f32.msw
if [ ! -s "$w" ] || [ build/medsam -nt "$w" ] || [ "$pth" -nt "$w" ]; then
    build/medsam convert "$pth" "$w" --dtype f32 >"$out/convert.txt" 2>&1 ||
        { echo "convert failed: $(tail -n1 "$out/convert.txt")" >&2; exit 1; }
fi

MEDSAM_CUDA_LIB=build/libmedsam_cuda.so build/bench/bench_gpu -r "$repeat" --json "$w" >"$out/ours.json" ||
    exit 1
# Debian's python3-torch has no CUDA; a machine with a GPU may have a CUDA
# PyTorch on its python3.
for py in python3 /usr/bin/python3; do
    if "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
        "$py" bench/torch_ref.py --pth "$pth" --device cuda --repeat "$repeat" --json \
            >"$out/torch.json" 2>"$out/torch.txt" || rm -f "$out/torch.json"
        break
    fi
done

python3 - "$out" "$json" <<'PY'
import json, os, sys
out, dest = sys.argv[1], sys.argv[2]
ours = json.load(open(os.path.join(out, "ours.json")))
if not ours["usable"]:
    print("CUDA unusable: " + ours["why"])
    sys.exit(0)
tp = os.path.join(out, "torch.json")
torch = json.load(open(tp)) if os.path.exists(tp) else None
res = {"ours": ours, "torch": torch}
print(f"{ours['device']}, fp32, best of {ours['repeat']}")
t = torch["stages"]["encoder"] if torch else None
print(f"  {'':28s} {'ours':>10s} {'PyTorch':>10s} {'PyTorch/ours':>13s}")
print(f"  {'encoder ms':28s} {ours['encoder_ms']:10.2f} " +
      (f"{t:10.2f} {t / ours['encoder_ms']:12.2f}x" if t else f"{'-':>10s}"))
print(f"  {'first image ms (upload)':28s} {ours['encoder_first_ms']:10.2f}")
for n, what in ((1, "1 box"), (3, "3 boxes")):
    o, k = ours[f"decoder_box{n}_ms"], f"decoder_box{n}"
    t = torch["stages"][k] if torch else None
    print(f"  {'decoder ms, ' + what:28s} {o:10.2f} " +
          (f"{t:10.2f} {t / o:12.2f}x" if t else f"{'-':>10s}"))
print(f"  {'device memory MB':28s} {ours['device_mb']:10.1f} " +
      (f"{torch['gpu_peak_mb']:10.1f}" if torch else f"{'-':>10s}") +
      "   (ours: weights + activations; PyTorch: peak allocated)")
if not torch:
    print("  PyTorch column skipped: no python3 with a CUDA PyTorch")
if dest:
    json.dump(res, open(dest, "w"), indent=1)
PY
