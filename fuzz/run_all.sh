#!/usr/bin/env bash
# Run every atheris harness (fuzz/fuzz_*.py) for a while, a few at a time, each starting
# from its seeds in fuzz/seeds/<harness>/.
#
#   fuzz/run_all.sh [SECONDS_PER_HARNESS] [AT_ONCE]      defaults: 120 seconds, 2 at once
#   FUZZ_ONLY="fuzz_http fuzz_manifest" fuzz/run_all.sh   only these harnesses
#
# Logs, the grown corpora and any crash-*/timeout-* inputs land in $FUZZ_WORKDIR (default:
# a new /tmp/dockyard-fuzz.XXXXXX). Prints one line per harness (executions, seconds,
# result) and exits 1 if any harness found a crash.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_HARNESS="${1:-120}"
AT_ONCE="${2:-2}"
WORK="${FUZZ_WORKDIR:-$(mktemp -d /tmp/dockyard-fuzz.XXXXXX)}"
PYTHON="${PYTHON:-.venv/bin/python}"
mkdir -p "$WORK/tmp"

if [ -n "${FUZZ_ONLY:-}" ]; then
  HARNESSES=()
  for name in $FUZZ_ONLY; do HARNESSES+=("fuzz/$name.py"); done
else
  HARNESSES=(fuzz/fuzz_*.py)
fi

run_one() {
  local harness="$1" name corpus
  name="$(basename "$harness" .py)"
  corpus="$WORK/corpus/$name"
  mkdir -p "$corpus"
  local seeds=()
  [ -d "fuzz/seeds/$name" ] && seeds=("fuzz/seeds/$name")
  set +e
  # TMPDIR: the harnesses' temporary roots stay inside the work directory.
  TMPDIR="$WORK/tmp" "$PYTHON" "$harness" \
    -max_total_time="$SECONDS_PER_HARNESS" -timeout=60 -print_final_stats=1 \
    -artifact_prefix="$WORK/$name-" "$corpus" "${seeds[@]}" >"$WORK/$name.log" 2>&1
  echo $? >"$WORK/$name.rc"
  set -e
}
export -f run_one
export WORK PYTHON SECONDS_PER_HARNESS

echo "fuzzing ${#HARNESSES[@]} harnesses for ${SECONDS_PER_HARNESS}s each, $AT_ONCE at once; work dir $WORK"
printf '%s\n' "${HARNESSES[@]}" | xargs -P "$AT_ONCE" -I{} bash -c 'run_one "$1"' _ {}

failed=0
printf '%-18s %12s %8s  %s\n' harness executions seconds result
for harness in "${HARNESSES[@]}"; do
  name="$(basename "$harness" .py)"
  rc="$(cat "$WORK/$name.rc" 2>/dev/null || echo missing)"
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$name.log" | tail -1)"
  secs="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$WORK/$name.log" | tail -1)"
  if [ "$rc" = 0 ]; then
    result=ok
  else
    result="FAILED (exit $rc; see $WORK/$name.log)"
    failed=1
  fi
  printf '%-18s %12s %8s  %s\n' "$name" "${runs:-?}" "${secs:-?}" "$result"
done
rm -rf "$WORK/tmp"
exit "$failed"
