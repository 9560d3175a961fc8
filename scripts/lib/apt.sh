# Sourced by the tier-2 scripts: installs Debian packages whose command is missing, running
# `apt-get update` at most once per tier-2 run (the first install exports SWD_APT_UPDATED).
#
#   apt_install PACKAGE:COMMAND ...   e.g. apt_install nats-server:nats-server etcd-server:etcd

apt_install() {
    local pair missing=()
    for pair in "$@"; do
        command -v "${pair#*:}" >/dev/null 2>&1 || missing+=("${pair%%:*}")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    echo "installing ${missing[*]} (apt-get)"
    if [ -z "${SWD_APT_UPDATED:-}" ]; then
        apt-get update -qq >/dev/null || { echo "error: apt-get update failed (needs root)" >&2; return 1; }
        export SWD_APT_UPDATED=1
    fi
    apt-get install -y -qq "${missing[@]}" >/dev/null \
        || { echo "error: apt-get install ${missing[*]} failed" >&2; return 1; }
}
