# Shared by Benchmarks/run.sh and the peer scripts (sourced, not run): how a benchmark
# script names itself in errors and installs a missing Debian package.
# Set PROGRAM to the script's name before sourcing.

die() { echo "${PROGRAM:-benchmarks}: $*" >&2; exit 1; }

# apt_install PACKAGE...: installs Debian packages (sudo when not root), quietly.
apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "${PROGRAM:-benchmarks}: installing $*" >&2
    $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}

# server_port LOG TRIES: the port a server started with --port 0 printed to LOG
# ("listening on ADDRESS:PORT ..."), waiting up to TRIES x 50 ms for the line; empty if it
# never came.
server_port() {
    local log=$1 tries=$2 port=""
    for _ in $(seq 1 "$tries"); do
        port=$(sed -n 's/^listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$log" | head -1)
        [ -n "$port" ] && break
        sleep 0.05
    done
    echo "$port"
}
