# Sourced by the tier-2 scripts: installs Debian's nats-server when missing and starts it with
# JetStream on. Fails loudly, never skips: a tier-2 run without NATS is a failure.
#
#   start_nats HOST PORT   starts `nats-server -js` on HOST:PORT with a temporary store
#                          directory, waits until it answers, and exports SWD_TEST_NATS_URL
#                          (nats://HOST:PORT), which the tier-2 NATS tests read; stop_nats stops
#                          it and removes the store.

. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

install_nats() {
    apt_install nats-server:nats-server
}

start_nats() {
    local host="$1" port="$2"
    install_nats || return 1
    NATS_STORE="$(mktemp -d)"
    local log="$NATS_STORE.log"
    nats-server -js -a "$host" -p "$port" -sd "$NATS_STORE" >"$log" 2>&1 &
    NATS_PID=$!
    local deadline=$((SECONDS + 30))
    # The server logs this line once JetStream is up and the client port listens.
    until grep -q "Server is ready" "$log" 2>/dev/null && (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
        if ! kill -0 "$NATS_PID" 2>/dev/null; then
            echo "error: nats-server exited; its log ($log):" >&2
            tail -20 "$log" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "error: nats-server did not answer on $host:$port within 30 s" >&2
            return 1
        fi
        sleep 0.1
    done
    export SWD_TEST_NATS_URL="nats://$host:$port"
    echo "NATS JetStream on $SWD_TEST_NATS_URL (store $NATS_STORE)"
}

stop_nats() {
    if [ -n "${NATS_PID:-}" ]; then
        kill "$NATS_PID" 2>/dev/null || true
        wait "$NATS_PID" 2>/dev/null || true
        NATS_PID=
        rm -rf "$NATS_STORE" "$NATS_STORE.log"
    fi
}
