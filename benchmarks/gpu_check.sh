#!/usr/bin/env bash
# On a GPU machine: the CUDA tests and the side-by-side benchmarks on the device, in five to fifteen minutes.
#
#   bash benchmarks/gpu_check.sh          # ./out/: bench_cuda.json, bench_cuda_policies.json,
#   OUT=/some/dir PYTHON=python3 bash benchmarks/gpu_check.sh    # bench_cuda_roofline_b{1024,131072}.json,
#                                                                # bench_cuda_roofline_b131072_store_none.json,
#                                                                # bench_photos_cuda.json and gpu_check_logs.tgz
#                                                                # (every log, and the Triton code inductor wrote
#                                                                # for the batch-131072 run)
# Seven files: the logs travel as one archive, packed on exit, for machines that hand back only a few files.
#
# Python: $PYTHON, else ./.venv/bin/python, else python3 (on a GPU machine, the one with CUDA torch).
# Installs nothing when that Python already has torch; otherwise it installs as the README's test command does.
# Wheels in ./.whl (for a machine without internet: see benchmarks/README.md) are unpacked into a
# private folder first. Peers that are still missing are skipped by the benchmark with a note.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-./out}"
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY="$(command -v python3 || command -v python)"
fi
mkdir -p "$OUT"
LOGS="$(mktemp -d)"
trap 'tar czf "$OUT/gpu_check_logs.tgz" -C "$LOGS" .' EXIT
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "gpu_check: $PY has no torch; installing as the README does (use your CUDA build of torch)" >&2
    "$PY" -m pip install -q torch -e ".[dev,bench]"
fi
if compgen -G ".whl/*.whl" >/dev/null; then
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_check_site .whl/*.whl; then
        export PYTHONPATH="$PYTHONPATH:/tmp/gpu_check_site"
    else
        echo "gpu_check: the wheels in .whl do not install here; going on without them" >&2
    fi
fi
"$PY" -c "import torch; ok = torch.cuda.is_available(); print('gpu_check: torch', torch.__version__, '|',
torch.cuda.get_device_name() if ok else 'no CUDA device: the tests skip and the benchmark stops')"

start=$SECONDS
# 1. Every line that makes the host wait for the device, all at once (the tests stop at the first).
syncs_rc=0
timeout 60 "$PY" benchmarks/find_syncs.py 2>&1 | tee "$LOGS/syncs.log" || syncs_rc=$?

# 2. The CUDA tests: CPU == CUDA images and targets, compiled == eager, no sync, DeviceLoader, training.
#    Exit status 5 is "no test selected": not a failure of this check.
tests_rc=0
timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$LOGS/gpu_tests.log" || tests_rc=$?
if [[ $tests_rc -eq 5 ]]; then tests_rc=0; fi

# 3. The CIFAR and ImageNet recipes side by side with the peers.
bench_rc=0
timeout 170 "$PY" benchmarks/bench_peers.py --device cuda --recipe cifar,imagenet --profile \
    --json "$OUT/bench_cuda.json" 2>&1 | tee "$LOGS/bench_cuda.log" || bench_rc=$?

# 3b. The policy recipes (RandAugment on CIFAR, TrivialAugmentWide on ImageNet) against kornia's auto-augment and
#     torchvision's per-image policies, with the plain recipes' compiled call beside them; the targets at the end.
policy_rc=0
timeout 300 "$PY" benchmarks/bench_peers.py --device cuda --recipe cifar-policy,imagenet-policy \
    --json "$OUT/bench_cuda_policies.json" 2>&1 | tee "$LOGS/bench_cuda_policies.log" || policy_rc=$?

# 4. The issue's roofline target is stated at batch >= 1024: CIFAR at 1024 and at a batch that fills the GPU, each
#    in a process of its own (in one process the second batch size compiles for dynamic shapes, a slower kernel).
#    Informative, so it does not fail the check.
roof_rc=0
for b in 1024 131072; do
    run=(timeout 75 "$PY" benchmarks/bench_peers.py --device cuda --recipe cifar --batch $b --runs 5 --no-memory
         --profile --impls roofline,augpipe-compiled --json "$OUT/bench_cuda_roofline_b$b.json")
    if [[ $b -eq 131072 ]]; then  # and the Triton code inductor writes for it, to read where the time goes
        TORCH_LOGS=output_code "${run[@]}" 2> "$LOGS/bench_cuda_roofline_b$b.stderr_output_code.txt" \
            | tee "$LOGS/bench_cuda_roofline_b$b.log" || roof_rc=$?
    else
        "${run[@]}" 2>&1 | tee "$LOGS/bench_cuda_roofline_b$b.log" || roof_rc=$?
    fi
done

# 5. The same batch-131072 run with inductor told to store no intermediate image (every threshold raised): on a
#    CPU stand-in of the CUDA graph that leaves one pass after the contrast mean, which gathers each pixel from
#    uint8 for the one sample it shows (F.SAMPLE_GATHER_DEVICES): about 6 bytes a pixel moved, where the defaults
#    store the CutMix input and read it back (14; 18 before the CutMix gathered). Measured once before the
#    per-sample tables were stored, slower; this says whether it is faster now.
store_none=bench_cuda_roofline_b131072_store_none
TORCH_LOGS=output_code timeout 75 "$PY" benchmarks/bench_peers.py --device cuda --recipe cifar --batch 131072 \
    --runs 3 --no-memory --impls roofline,augpipe-compiled --json "$OUT/$store_none.json" --inductor-options \
    '{"assert_indirect_indexing": false, "realize_opcount_threshold": 1000, "realize_reads_threshold": 1000,
      "realize_acc_reads_threshold": 1000}' 2> "$LOGS/$store_none.stderr_output_code.txt" \
    | tee "$LOGS/$store_none.log" || roof_rc=$?

# 6. The ImageNet recipe on a folder of real photos, end to end through the same DataLoader and 2 workers: augpipe
#    on the GPU against decode-only (the target: at least 95% of its images/s) and the per-image peers. A failed run
#    fails the check; a missed target is printed and recorded in the JSON.
photos_rc=0
timeout 420 "$PY" benchmarks/bench_photos.py --device cuda --rows all --runs 5 --json "$OUT/bench_photos_cuda.json" \
    2>&1 | tee "$LOGS/bench_photos_cuda.log" || photos_rc=$?

echo "gpu_check: syncs exit $syncs_rc, tests exit $tests_rc, benchmark exit $bench_rc, policy benchmark exit" \
     "$policy_rc, photos exit $photos_rc (roofline run exit $roof_rc), $((SECONDS - start)) s"
exit $(( syncs_rc != 0 || tests_rc != 0 || bench_rc != 0 || policy_rc != 0 || photos_rc != 0 ))
