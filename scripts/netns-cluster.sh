#!/usr/bin/env bash
# Several hosts on one machine: a coordinator and three workers, each in its own network
# namespace with its own address and its own empty working directory, joined by a bridge. The
# only thing they share is an S3 server (moto, on the bridge): input, output and checkpoints go
# through it. While word count runs from S3 to S3 with checkpoints, the script
#   - SIGKILLs one worker and starts a replacement on the same host,
#   - cuts another host off (its link down for 2 s, then up),
#   - drops 1% of a host's packets (nftables `numgen random` in its namespace: no netem here),
#   - rate-limits a host's link (`tc tbf`),
# and then checks that the committed output is exactly the word count of the input and that the
# job was restored from a checkpoint. Needs root (CI runs as root); installs nftables if missing.
#
#   scripts/netns-cluster.sh [SWD_BINARY]     (default: $CARGO_TARGET_DIR or target, debug/swd)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
. scripts/lib/s3.sh

if [ "$(id -u)" != 0 ]; then
    echo "error: netns-cluster.sh needs root (network namespaces)" >&2
    exit 1
fi
swd="${1:-${CARGO_TARGET_DIR:-$repo/target}/debug/swd}"
if [ ! -x "$swd" ]; then
    echo "error: no swd binary at $swd (cargo build -p swd)" >&2
    exit 1
fi
swd="$(readlink -f "$swd")"
. scripts/lib/apt.sh
apt_install nftables:nft

# Names and addresses of the test hosts (a private range on a bridge this script creates).
tag="swd$$"
bridge="br-$tag"
# A subnet of its own per run (two runs on one machine must not answer each other's requests).
subnet="10.$((230 + RANDOM % 10)).$((1 + $$ % 250))"
hosts=(coord w1 w2 w3)
declare -A ip=([coord]=$subnet.10 [w1]=$subnet.11 [w2]=$subnet.12 [w3]=$subnet.13)
ns() { echo "$tag-$1"; }
work="$(mktemp -d)"
pids=()

cleanup() {
    set +e
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    stop_s3
    for h in "${hosts[@]}"; do ip netns del "$(ns "$h")" 2>/dev/null; done
    ip link del "$bridge" 2>/dev/null
    if [ "${keep_work:-0}" = 1 ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

fail() {
    echo "FAILED: $*" >&2
    keep_work=1
    for log in "$work"/*/*.log; do
        echo "--- $log (last 15 lines)" >&2
        tail -15 "$log" >&2
    done
    exit 1
}

# The network: a bridge in this namespace (it also carries the S3 server) and one veth per host.
ip link add "$bridge" type bridge
ip addr add "$subnet.1/24" dev "$bridge"
ip link set "$bridge" up
i=0
for h in "${hosts[@]}"; do
    i=$((i + 1))
    veth="v$$-$i" # interface names have at most 15 characters
    ip netns add "$(ns "$h")"
    ip link add "$veth" type veth peer name eth0 netns "$(ns "$h")"
    ip link set "$veth" master "$bridge" up
    ip -n "$(ns "$h")" addr add "${ip[$h]}/24" dev eth0
    ip -n "$(ns "$h")" link set eth0 up
    ip -n "$(ns "$h")" link set lo up
    mkdir -p "$work/$h"
done
s3_port=$((10000 + RANDOM % 20000))
start_s3 "$subnet.1" "$s3_port"
bucket="$SWD_TEST_S3_BUCKET"
base="s3://$bucket/netns-$tag"

# Runs a command on host $1 in its own empty working directory, logging to $work/$1/$2.log.
on_host() {
    local h="$1" log="$2"
    shift 2
    (cd "$work/$h" && exec ip netns exec "$(ns "$h")" "$@") >"$work/$h/$log.log" 2>&1 &
    pids+=($!)
    last_pid=$!
}

# The input: a generated corpus uploaded to S3 (the hosts never see this directory).
"$swd" gen wordcount --out "$work/corpus" --words "${SWD_NETNS_WORDS:-2000000}" --files 6 >/dev/null
"$MOTO_VENV/bin/python" - "$work/corpus/input" "$bucket" "netns-$tag/in" <<'PY'
import os, sys, boto3
src, bucket, prefix = sys.argv[1:]
s3 = boto3.client("s3")
for name in sorted(os.listdir(src)):
    s3.upload_file(os.path.join(src, name), bucket, f"{prefix}/{name}")
PY

coord="${ip[coord]}:7000"
status() { "$swd" status --coordinator "$coord" --json --timeout 3s 2>/dev/null; }
# Waits until the Python expression over the status `s` holds, or fails after $2 seconds.
wait_status() {
    local what="$1" limit="$2" expr="$3" deadline=$((SECONDS + $2))
    while [ "$SECONDS" -lt "$deadline" ]; do
        kill -0 "$coordinator_pid" 2>/dev/null || fail "the coordinator exited while waiting for: $what"
        if status | python3 -c "import json,sys; s=json.load(sys.stdin); sys.exit(0 if ($expr) else 1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    fail "$what (not within ${limit} s); last status: $(status)"
}

# 8 partitions over 3 workers; a rate that keeps the job running through the chaos (about
# 20-30 s for the default corpus).
on_host coord coordinator "$swd" coordinator --bind "$coord" --partitions 8 --data-dir data \
    --heartbeat-timeout 2s --job wordcount --input "$base/in/" --output "$base/out/" \
    --checkpoint-interval 500ms --checkpoint-store "$base/checkpoints" --rate "${SWD_NETNS_RATE:-1000}" \
    --max-restarts 50
coordinator_pid=$last_pid
for w in w1 w2 w3; do
    on_host "$w" "worker-$w" "$swd" worker --coordinator "$coord" --id "$w" --bind 0.0.0.0:7001
    declare "pid_$w=$last_pid"
done
wait_status "the job runs on three workers" 60 \
    "s['job'] and s['job']['state']=='running' and len(s['workers'])==3 and not s['unassigned']"
status | python3 -c "
import json,sys; s=json.load(sys.stdin)
addrs=sorted(w['address'] for w in s['workers'])
assert addrs==['$subnet.11:7001','$subnet.12:7001','$subnet.13:7001'], addrs" \
    || fail "workers did not advertise their own hosts' addresses"
wait_status "a first checkpoint" 30 "s['checkpoints'] and (s['checkpoints']['last_completed'] or 0) >= 1"

echo "chaos: 1% packet loss on w3, a 2 Mbit/s link on w2"
ip netns exec "$(ns w3)" nft -f - <<'NFT'
table inet chaos {
    chain input { type filter hook input priority 0; numgen random mod 100 < 1 drop; }
    chain output { type filter hook output priority 0; numgen random mod 100 < 1 drop; }
}
NFT
ip netns exec "$(ns w2)" tc qdisc add dev eth0 root tbf rate 2mbit burst 32kbit latency 400ms

echo "chaos: SIGKILL w1, then a replacement on the same host"
kill -9 "$pid_w1"
wait_status "w1's death detected" 20 "not any(w['id']=='w1' for w in s['workers'])"
on_host w1 worker-w1-replacement "$swd" worker --coordinator "$coord" --id w1 --bind 0.0.0.0:7001
wait_status "the replacement w1 joins" 30 "any(w['id']=='w1' and w['partitions'] for w in s['workers'])"

echo "chaos: w3 cut off for 2 s"
ip -n "$(ns w3)" link set eth0 down
sleep 2 # the outage itself: a link down for a fixed time, not a synchronisation
ip -n "$(ns w3)" link set eth0 up

wait_status "the job finishes" "${SWD_NETNS_DEADLINE:-300}" "s['job']['state'] in ('finished','failed')"
final="$(status)"
echo "$final" | python3 -c "
import json,sys; s=json.load(sys.stdin); j=s['job']
assert j['state']=='finished', f\"job {j['state']}: {j['error']}\"
assert j['restarts']>=1, 'no restart: the chaos did not reach the job'
assert j['last_restored_checkpoint'] is not None, 'the job was not restored from a checkpoint'
print(f\"job finished: {j['records_in']} records in, {j['records_out']} out, {j['restarts']} restarts, \"
      f\"restored from checkpoint {j['last_restored_checkpoint']}\")" || fail "job state: $final"

# The committed output, read back from S3, is exactly the input's word count.
"$MOTO_VENV/bin/python" - "$bucket" "netns-$tag/out/" "$work/corpus/expected.tsv" <<'PY' || fail "output differs"
import sys, boto3
bucket, prefix, expected_path = sys.argv[1:]
s3 = boto3.client("s3")
counts, names = {}, []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for o in page.get("Contents", []):
        rel = o["Key"][len(prefix):]
        if "/" in rel:  # pending objects under .swd/ must be gone
            sys.exit(f"left behind: {o['Key']}")
        names.append(rel)
        body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode()
        for line in body.splitlines():
            word, n = line.split("\t")
            counts[word] = counts.get(word, 0) + int(n)
expected = {}
for line in open(expected_path):
    word, n = line.rstrip("\n").split("\t")
    expected[word] = int(n)
if counts != expected:
    missing = len(set(expected) - set(counts)); extra = len(set(counts) - set(expected))
    wrong = sum(1 for w in expected if w in counts and counts[w] != expected[w])
    sys.exit(f"{len(names)} output objects: {missing} words missing, {extra} extra, {wrong} wrong counts")
print(f"output exact: {len(counts)} words, {sum(counts.values())} occurrences in {len(names)} objects")
PY
echo "netns cluster: passed"
