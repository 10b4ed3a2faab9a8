#!/usr/bin/env bash
# Soak test: the whole suite (`CI=true make test`) N times in a row on a fresh clone while busy
# loops keep every core busy. Fails if any run fails or takes longer than the limit.
#
#   scripts/soak.sh [-n RUNS] [-l LIMIT_SECONDS] [SOURCE [COMMIT]]
#
# SOURCE is a repository path or URL (default: the repository this script is in), COMMIT what to
# check out (default: that repository's HEAD). The clone, its venvs and the busy loops go away on
# exit, whatever happens; each run's log is kept in the directory printed at the end.
set -uo pipefail

runs=5
limit=600
while getopts "n:l:h" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    l) limit=$OPTARG ;;
    *) sed -n '2,10p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
here=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
source_repo=${1:-$here}
commit=${2:-$(git -C "$source_repo" rev-parse HEAD 2>/dev/null || echo HEAD)}

work=$(mktemp -d -t rxbus-soak.XXXXXX)
logs=$(mktemp -d -t rxbus-soak-logs.XXXXXX)
busy=()
suite=""

cleanup() {
  # a run stopped midway (Ctrl-C, TERM): its whole process group, servers and browsers too
  [ -n "$suite" ] && kill -- -"$suite" 2>/dev/null
  for pid in "${busy[@]}"; do
    kill "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

clone=$work/rxbus
git clone --quiet "$source_repo" "$clone" || exit 1
git -C "$clone" checkout --quiet --detach "$commit" || exit 1
echo "soak: $runs run(s) of 'CI=true make test' on a fresh clone of $source_repo at $(git -C "$clone" rev-parse --short HEAD)"

# Set-up as .ci/run does it (JS client, both venvs), outside the timed runs.
setup_start=$SECONDS
if [ -f "$clone/tests/js/package.json" ]; then
  (cd "$clone/tests/js" && npm install --no-audit --no-fund --loglevel=error) >"$logs/setup.log" 2>&1 \
    || { echo "soak: npm install failed (see $logs/setup.log)"; exit 1; }
fi
make -C "$clone" --no-print-directory install install-lowest >>"$logs/setup.log" 2>&1 \
  || { echo "soak: make install failed (see $logs/setup.log)"; exit 1; }
echo "soak: set-up took $((SECONDS - setup_start)) s"

cores=$(nproc 2>/dev/null || echo 2)
for _ in $(seq "$cores"); do
  (while :; do :; done) &
  busy+=($!)
done
echo "soak: $cores busy loop(s) running (pids ${busy[*]})"

failed=0
for run in $(seq "$runs"); do
  log=$logs/run-$run.log
  started=$(date '+%H:%M:%S')
  t0=$(date +%s)
  # bash's `times` after make: the CPU time of everything the suite ran and waited for
  (cd "$clone" && CI=true exec setsid bash -c 'make test; rc=$?; echo "cpu-times:"; times; exit $rc') \
    >"$log" 2>&1 &
  suite=$!
  wait "$suite"
  rc=$?
  suite=""
  wall=$(($(date +%s) - t0))
  verdict=pass
  if [ "$rc" -ne 0 ]; then
    verdict="FAIL (exit $rc)"
    failed=1
  elif [ "$wall" -gt "$limit" ]; then
    verdict="FAIL (over ${limit} s)"
    failed=1
  fi
  # the children's line of `times` (user and system CPU of the suite): "0m12.3s 0m1.2s"
  cpu=$(grep -A2 '^cpu-times:' "$log" | tail -1 | awk '{
    split($1, u, /[ms]/); split($2, y, /[ms]/); printf "%d", u[1] * 60 + u[2] + y[1] * 60 + y[2] }')
  printf 'run %s  start %s  wall %dm%02ds  cpu %ss  %s\n' "$run" "$started" $((wall / 60)) \
    $((wall % 60)) "${cpu:-?}" "$verdict"
  # the pytest summary lines: the main suite, then the lowest-reactivex one
  grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped).* in [0-9.]+s' "$log" | sed 's/^/    /'
done

echo "soak: logs in $logs"
if [ "$failed" -ne 0 ]; then
  echo "soak: FAILED"
  exit 1
fi
echo "soak: $runs/$runs green, each under ${limit} s"
