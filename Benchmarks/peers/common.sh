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
