# Sourced by the tier-2 scripts: installs moto's S3 server into a virtual environment (once per
# machine, cached) and starts it. Fails loudly, never skips: a tier-2 run without S3 is a failure.
#
#   start_s3 HOST PORT   starts moto on HOST:PORT, waits until it answers, creates the test
#                        bucket, and exports the standard AWS_* variables (plus SWD_TEST_S3_BUCKET)
#                        that the object store client and the tests read; stop_s3 stops it.

SWD_TIER2_CACHE="${SWD_TIER2_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/swd-tier2}"
MOTO_VENV="$SWD_TIER2_CACHE/moto-venv"

install_moto() {
    if [ -x "$MOTO_VENV/bin/moto_server" ]; then
        return 0
    fi
    echo "installing moto's S3 server into $MOTO_VENV"
    python3 -m venv "$MOTO_VENV" || { echo "error: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; return 1; }
    "$MOTO_VENV/bin/pip" install --quiet 'moto[server]>=5.0,<6' || { echo "error: pip install moto[server] failed" >&2; return 1; }
}

start_s3() {
    local host="$1" port="$2"
    install_moto || return 1
    local log="$SWD_TIER2_CACHE/moto-$port.log"
    "$MOTO_VENV/bin/moto_server" -H "$host" -p "$port" >"$log" 2>&1 &
    MOTO_PID=$!
    export AWS_ENDPOINT_URL="http://$host:$port"
    export AWS_ACCESS_KEY_ID=swd-test AWS_SECRET_ACCESS_KEY=swd-test AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
    export SWD_TEST_S3_BUCKET=swd-tests
    local deadline=$((SECONDS + 60))
    until "$MOTO_VENV/bin/python" - <<PY 2>/dev/null
import boto3
boto3.client("s3", endpoint_url="$AWS_ENDPOINT_URL").create_bucket(Bucket="$SWD_TEST_S3_BUCKET")
PY
    do
        if ! kill -0 "$MOTO_PID" 2>/dev/null; then
            echo "error: moto's S3 server exited; its log ($log):" >&2
            tail -20 "$log" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "error: moto's S3 server did not answer on $AWS_ENDPOINT_URL within 60 s" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "S3 (moto) on $AWS_ENDPOINT_URL, bucket $SWD_TEST_S3_BUCKET"
}

stop_s3() {
    if [ -n "${MOTO_PID:-}" ]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
        MOTO_PID=
    fi
}
