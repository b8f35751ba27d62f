#!/usr/bin/env bash
# Generate a big seed-shaped event log for benchmarks and load tests.
#
#   scripts/genlog.sh FILE LINES [GROUPS]
#
# Writes LINES lines "i|logN|appsetup|tom|<0..32767>|<1..GROUPS>|<unix time>"
# (GROUPS defaults to 3). The output is deterministic for a given
# GENLOG_SEED (default 1), so benchmark corpora are reproducible.
# awk does the work: a bash loop would take minutes for a million lines.
set -euo pipefail

usage() { echo "usage: $0 FILE LINES [GROUPS]" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
file=$1 lines=$2 groups=${3:-3}
[[ $lines =~ ^[0-9]+$ ]] || { echo "genlog: LINES must be a whole number, got '$lines'" >&2; exit 2; }
[[ $groups =~ ^[1-9][0-9]*$ ]] || { echo "genlog: GROUPS must be at least 1, got '$groups'" >&2; exit 2; }

LC_ALL=C awk -v n="$lines" -v g="$groups" -v seed="${GENLOG_SEED:-1}" 'BEGIN {
    srand(seed)
    t = 1587583122
    for (i = 1; i <= n; i++) {
        printf "%d|log%d|appsetup|tom|%d|%d|%d\n", i, int(rand() * 9) + 1, int(rand() * 32768), int(rand() * g) + 1, t + int(i / 7)
    }
}' > "$file"
