#!/usr/bin/env bash
# Install, with apt, the system packages the local cluster and the image build need:
# containerd + runc + CNI plugins (the node), iptables + conntrack (kube-proxy), docker.io
# (image builds), debootstrap (the offline base image), gcc + libc6-dev (the static pause
# binary), openssl (the cluster's PKI), prometheus (promtool, for the alerting rules' unit
# tests).
#
#   hack/install-deps.sh [PACKAGE ...]
#
# With package names (from the list below), only those: e.g. `hack/install-deps.sh prometheus`
# where a cluster is given and the node packages are not needed.
# Idempotent and quick when everything is present. Nothing is started: a policy-rc.d
# forbids Debian's maintainer scripts from starting services (our scripts start the
# daemons they need, with their own configuration).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# package -> a file it installs, to skip apt entirely when all are present.
declare -A probe=(
  [containerd]=/usr/bin/containerd
  [runc]=/usr/sbin/runc
  [containernetworking-plugins]=/usr/lib/cni/bridge
  [iptables]=/usr/sbin/iptables
  [conntrack]=/usr/sbin/conntrack
  [docker.io]=/usr/sbin/dockerd
  [debootstrap]=/usr/sbin/debootstrap
  [gcc]=/usr/bin/gcc
  [libc6-dev]=/usr/lib/x86_64-linux-gnu/libc.a
  [openssl]=/usr/bin/openssl
  [iproute2]=/usr/sbin/ip
  [util-linux]=/usr/bin/findmnt
  [procps]=/usr/bin/pgrep
  [prometheus]=/usr/bin/promtool
)
wanted=("$@")
[ "${#wanted[@]}" -gt 0 ] || wanted=("${!probe[@]}")
missing=()
for pkg in "${wanted[@]}"; do
  [ -n "${probe[$pkg]:-}" ] || die "unknown package '$pkg' (see the list in $0)"
  [ -e "${probe[$pkg]}" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  log "system packages: all present"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "installing ${missing[*]} needs root (run with sudo)"
command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} with your distribution's package manager"

policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# plugin-operator: keep apt from starting services\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
log "system packages installed"
