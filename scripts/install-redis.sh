#!/usr/bin/env bash
# Installs redis-server from Debian's packages, for `cix bench screen
# --vs-redis` (the design a bank would otherwise build: tokens in a Redis set,
# pipelined SMISMEMBER). Nothing in the test suite needs it.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    redis-server --version
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# The package starts a system service on 6379 where it can; the benchmark
# runs its own server on a free port, so that one is not needed.
$SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
redis-server --version
