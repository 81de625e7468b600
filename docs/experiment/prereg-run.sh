#!/bin/bash
# The pre-registered run (docs/preregistration.md), resumable chunk by chunk.
#   bash docs/experiment/prereg-run.sh FROZEN_CHECKOUT W [DEST]
# FROZEN_CHECKOUT: a clone at the plan's commit with its own `make install` (the run must not import code
# edited while it goes); W: NAIVE's source weight the plan fixed; DEST: where the cells' small files are copied
# after each chunk to be committed (default: this repository's docs/experiment). Each chunk is 5 cohorts, T1 then
# T2; `duiit experiment` skips the cells it finds finished, so copying DEST's committed files into a fresh
# FROZEN_CHECKOUT's docs/experiment first continues the run where the last machine stopped.
set -u
FROZEN="$(cd "$1" && pwd)"; W="$2"
DEST="$(cd "${3:-$(dirname "$0")}" && pwd)"
ARMS="PURE-CT ORACLE-CT-MRI NAIVE-CT-MRI MIX-CT-MRI"
copy_small_files() {   # results, reports, cells' result.json and the prepared markers: no checkpoints
  (cd "$FROZEN/docs/experiment" && find "prereg-$1" \( -name results.json -o -name report.md -o -name experiment.json \
     -o -name result.json -o -name 'prepared*' -o -name test_mse.png \) -type f -print0 | xargs -0 cp --parents -t "$DEST")
}
for start in 100 105 110 115 120 125 130 135; do
  end=$((start + 4))
  for contrast in t1 t2; do
    extra=()
    [ "$contrast" = t2 ] && extra=(--set phantom.mri_contrast=t2)
    (cd "$FROZEN" && .venv/bin/duiit experiment --cohorts "100-$end" --arms $ARMS --precision bf16 --compile off \
       --set "naive_source_weight=$W" "${extra[@]}" --out "docs/experiment/prereg-$contrast")
    echo "$(date -u '+%F %T') cohorts 100-$end $contrast: exit $?"
    copy_small_files "$contrast"
  done
done
