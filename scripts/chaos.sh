#!/usr/bin/env bash
# The chaos run of issue 23: three joblet nodes on moto behind HAProxy,
# valid, revoked and retired clients (the real rnx), and for the whole run,
# at random from the seed: SIGKILLed and restarted nodes, store faults, CA
# rotation steps, role re-issues and revocations, connection and stream
# floods. It writes docs/CHAOS.md; its last line is `violations: N` and it
# exits non-zero when N > 0. The test command runs a short one (90s, seed 1)
# as TestChaos.
#
#   scripts/chaos.sh [--duration 30m] [--seed N]
#
# Without --seed a random one is chosen and printed: replay a failure with
# the same --duration and --seed.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=2m
seed=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="${2:?--duration needs a value such as 30m}"; shift 2 ;;
    --duration=*) duration="${1#*=}"; shift ;;
    --seed) seed="${2:?--seed needs a number}"; shift 2 ;;
    --seed=*) seed="${1#*=}"; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "chaos.sh: unknown argument $1 (use --duration D --seed N)" >&2; exit 2 ;;
  esac
done
[[ "$duration" =~ ^[0-9]+(ms|s|m|h)([0-9]+(ms|s|m))*$ ]] || { echo "chaos.sh: --duration $duration: use a duration such as 90s or 30m" >&2; exit 2; }
[ -n "$seed" ] || seed=$(( $(od -An -N4 -tu4 /dev/urandom) ))
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "chaos.sh: --seed $seed: use a non-negative integer" >&2; exit 2; }

. scripts/lib/deps.sh
unset GOBIN

echo "chaos: seed $seed, duration $duration (replay: scripts/chaos.sh --duration $duration --seed $seed)"
report=docs/CHAOS.md
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rm -f "$report.new"
status=0
JOBLET_CHAOS_DURATION="$duration" JOBLET_CHAOS_SEED="$seed" JOBLET_CHAOS_REPORT="$PWD/$report.new" \
  go test -count=1 -timeout 3h -run '^TestChaos$' -v ./test/ >"$log" 2>&1 || status=$?
if [ ! -s "$report.new" ]; then
  tail -80 "$log" >&2
  echo "chaos.sh: the run did not finish (go test exit $status): no report written" >&2
  exit 1
fi
mv "$report.new" "$report"
grep -E '^\s+chaos_test.go:[0-9]+: (violation|chaos seed)' "$log" || true
echo "wrote $report"
n=$(tail -1 "$report" | sed -n 's/^violations: \([0-9]*\)$/\1/p')
echo "violations: ${n:-unknown}"
[ "${n:-1}" = 0 ] && [ "$status" = 0 ]
