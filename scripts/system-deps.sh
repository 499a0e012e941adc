#!/usr/bin/env bash
# Install the system packages the test suite talks to (real sshd, sshpass, Chromium, redis-server, busybox-static,
# slapd).
set -euo pipefail
need=()
command -v /usr/sbin/sshd >/dev/null 2>&1 || need+=(openssh-server)
command -v sshpass >/dev/null 2>&1 || need+=(sshpass)
command -v /usr/bin/chromium >/dev/null 2>&1 || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v vim >/dev/null 2>&1 || need+=(vim)
command -v less >/dev/null 2>&1 || need+=(less)
command -v busybox >/dev/null 2>&1 || need+=(busybox-static)  # the Kubernetes API test server's pod without bash
command -v socat >/dev/null 2>&1 || need+=(socat)  # the benchmarks' TCP relay peer (tests/perf/bench_gateway.py)
# OpenLDAP server and tools: the LDAP login tests start their own slapd per test (never the system service)
command -v /usr/sbin/slapd >/dev/null 2>&1 || need+=(slapd)
command -v ldapadd >/dev/null 2>&1 || need+=(ldap-utils)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${need[*]} (run as root or install them with apt-get)" >&2
    exit 1
  fi
  apt-get update -qq
  # slapd: no debconf-made system directory (tests configure their own)
  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections 2>/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
