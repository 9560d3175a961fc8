# Sourced by the tier-2 scripts: starts etcd (Debian's etcd-server, installed if missing) with a
# temporary data directory. Fails loudly, never skips: a tier-2 run without etcd is a failure.
#
#   start_etcd HOST PORT   starts etcd with its client port on HOST:PORT (peer port PORT+1),
#                          waits until it answers, exports SWD_TEST_ETCD=HOST:PORT; stop_etcd stops it.

. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

install_etcd() {
    apt_install etcd-server:etcd
}

start_etcd() {
    local host="$1" port="$2"
    install_etcd || return 1
    ETCD_DIR="$(mktemp -d)"
    local log="$ETCD_DIR/etcd.log" peer="http://$host:$((port + 1))"
    etcd --name swd-test --data-dir "$ETCD_DIR/data" \
        --listen-client-urls "http://$host:$port" --advertise-client-urls "http://$host:$port" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "swd-test=$peer" >"$log" 2>&1 &
    ETCD_PID=$!
    export SWD_TEST_ETCD="$host:$port"
    local deadline=$((SECONDS + 30))
    until curl -sf -X POST "http://$SWD_TEST_ETCD/v3/kv/range" -d '{"key":"AA=="}' >/dev/null 2>&1; do
        if ! kill -0 "$ETCD_PID" 2>/dev/null; then
            echo "error: etcd exited; its log ($log):" >&2
            tail -20 "$log" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "error: etcd did not answer on $SWD_TEST_ETCD within 30 s" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "etcd on $SWD_TEST_ETCD"
}

stop_etcd() {
    if [ -n "${ETCD_PID:-}" ]; then
        kill "$ETCD_PID" 2>/dev/null || true
        wait "$ETCD_PID" 2>/dev/null || true
        ETCD_PID=
    fi
    if [ -n "${ETCD_DIR:-}" ]; then
        rm -rf "$ETCD_DIR"
        ETCD_DIR=
    fi
}
