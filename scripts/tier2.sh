#!/usr/bin/env bash
# Tier 2: the tests that need real services (an S3 server, a NATS JetStream server, etcd, network namespaces).
# It installs and starts what they need, then runs them; a service that cannot start fails the
# run. Tier-2 tests are #[ignore]d in `cargo test` and live in modules named `tier2`, so
# `cargo test -- --ignored tier2::` selects exactly them.
#
#   scripts/tier2.sh            every tier-2 test (extra arguments go to the test harness)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/s3.sh
. scripts/lib/nats.sh
. scripts/lib/etcd.sh
. scripts/lib/apt.sh

# The console's browser test drives Debian's headless Chromium; promtool checks /metrics.
apt_install chromium:chromium prometheus:promtool

# Ports below Linux's ephemeral range (32768-60999), which outgoing connections take theirs
# from: a service's random port there can be in use already.
port="${SWD_TEST_S3_PORT:-$((10000 + RANDOM % 20000))}"
trap 'stop_s3; stop_nats; stop_etcd' EXIT
start_s3 127.0.0.1 "$port"
start_nats 127.0.0.1 "${SWD_TEST_NATS_PORT:-$((port + 1))}"
start_etcd 127.0.0.1 "${SWD_TEST_ETCD_PORT:-$((port + 2))}"

# Each test binary runs its tier2:: tests; a binary with none passes with zero run.
cargo test --workspace --locked -- --ignored tier2:: "$@"

# Several hosts: network namespaces, S3 as the only shared storage (its own S3 server, on the
# namespaces' bridge). Uses the debug `swd` the tests above built.
stop_s3
cargo build -p swd --locked
scripts/netns-cluster.sh
