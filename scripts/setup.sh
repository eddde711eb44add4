#!/usr/bin/env bash
# Installs what EvLoop needs on a fresh Debian machine, when it is missing:
#   liburing-dev + pkg-config  (the io_uring backend links liburing, found with pkg-config)
#   socat, netcat-openbsd      (the end-to-end tests check the echo servers against them)
#   curl                       (the end-to-end tests fetch from ev-http with it)
# Safe to run again: it does nothing when everything is present.
set -euo pipefail
need=()
dpkg -s liburing-dev >/dev/null 2>&1 || need+=(liburing-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v nc >/dev/null 2>&1 || need+=(netcat-openbsd)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi
