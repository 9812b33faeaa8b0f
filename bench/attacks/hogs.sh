#!/bin/bash
# The cost of the daemon's CPU discount (capture.nice) when an attacker keeps every CPU busy:
# encrypt-in-place at full speed against a daemon with capture.nice = NICE while HOGS busy loops
# (nice 0) saturate the CPUs; prints how many documents the drill had damaged when it stopped
# (frozen at the verdict; --timeout 3). Decoys off. A by-hand check, not part of run.py:
#
#   sudo bench/attacks/hogs.sh                       # nice 10 and 0, 2 and 4 hogs, 4 rounds
#   sudo bench/attacks/hogs.sh ROUNDS "NICES" "HOGS"
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
NC="$REPO/.venv/bin/nocry"
ROUNDS=${1:-4}; NICES=${2:-"10 0"}; HOGLIST=${3:-"2 4"}
W=$(mktemp -d /var/tmp/nocry-hogs-XXXXXX)
trap 'rm -rf "$W"' EXIT
"$NC" drill init "$W/tpl" --files 600 --seed 1 >/dev/null
one() {  # one() NICE HOGS
    local d="$W/run" pids="" i
    rm -rf "$d"; mkdir -p "$d/home"; cp -a "$W/tpl" "$d/tree"
    printf '[canary]\nenabled = false\n[capture]\nnice = %s\n' "$1" > "$d/home/config.toml"
    "$NC" --home "$d/home" protect "$d/tree" >/dev/null
    for _ in $(seq "$2"); do (while :; do :; done) & pids="$pids $!"; done
    sleep 0.5
    "$NC" --json drill run encrypt-in-place "$d/tree" --timeout 3 > "$d/drill.json" 2>/dev/null || true
    kill $pids 2>/dev/null; wait $pids 2>/dev/null || true
    python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1])).get("files_touched", [])))' "$d/drill.json"
    for i in $("$NC" --home "$d/home" --json incidents | python3 -c 'import json,sys; print(" ".join(str(i["id"]) for i in json.load(sys.stdin)["incidents"]))'); do
        "$NC" --home "$d/home" incident kill "$i" >/dev/null 2>&1 || true
    done
    "$NC" --home "$d/home" stop >/dev/null
}
declare -A got
for r in $(seq "$ROUNDS"); do
    for n in $NICES; do for h in $HOGLIST; do got["$n $h"]+="$(one "$n" "$h") "; done; done
done
for k in "${!got[@]}"; do echo "capture.nice ${k% *}, ${k#* } hogs: damaged ${got[$k]}"; done | sort
