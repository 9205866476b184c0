#!/usr/bin/env bash
# Palisade's load benchmark, in one command. See benches/load/README.md.
#
# Installs what it needs if missing (oha from crates.io; nginx, the ModSecurity v3 module
# and the OWASP CRS from Debian), then runs the driver. Every process the driver starts is
# recorded in a pid file and stopped by the trap below however the run ends.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

need_apt=()
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_http_modsecurity_module.so ] || need_apt+=(libnginx-mod-http-modsecurity)
[ -e /etc/modsecurity/crs/crs-setup.conf ] || need_apt+=(modsecurity-crs)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "installing from Debian: ${need_apt[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_apt[@]}"
fi
if ! command -v oha >/dev/null 2>&1; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v oha >/dev/null 2>&1; then
    echo "installing oha from crates.io (cargo install oha --locked)"
    cargo install oha --locked
fi

pid_file="$(mktemp -t palisade-load-pids.XXXXXX)"
export PALISADE_LOAD_PIDFILE="$pid_file"
driver_pid=""
cleanup() {
    if [ -n "$driver_pid" ] && kill -0 "$driver_pid" 2>/dev/null; then
        kill -TERM "$driver_pid" 2>/dev/null || true
        wait "$driver_pid" 2>/dev/null || true
    fi
    # Each child of the driver leads its own process group (nginx master plus workers).
    while read -r pgid; do
        [ -n "$pgid" ] && kill -KILL -- "-$pgid" 2>/dev/null || true
    done <"$pid_file"
    rm -f "$pid_file"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PYTHONDONTWRITEBYTECODE=1 python3 "$here/driver.py" "$@" &
driver_pid=$!
set +e
wait "$driver_pid"
status=$?
set -e
driver_pid=""
exit "$status"
