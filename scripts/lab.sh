#!/usr/bin/env bash
# Runs hike's lab: builds hike and runs `hike lab` with this script's
# arguments (see `bin/hike lab --help`: --clients N, --json, --keep, ...).
#
# Meant for a Debian 12 machine where it runs as root: it installs what the
# lab needs when it is missing (Go as scripts/test.sh does; iproute2, ping and
# strongSwan from Debian). Progress goes to stderr, the report to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'lab.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: the lab creates network namespaces and TUN devices"

. scripts/lib.sh
ensure_go
install_missing \
	ip:iproute2 ping:iputils-ping unshare:util-linux \
	/usr/lib/ipsec/charon:strongswan-charon \
	swanctl:strongswan-swanctl \
	/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so:libcharon-extra-plugins \
	/usr/lib/ipsec/plugins/libstrongswan-openssl.so:libstrongswan-standard-plugins \
	/usr/lib/ipsec/plugins/libstrongswan-curve25519.so:libstrongswan-extra-plugins

log "building bin/hike"
go build -o bin/hike ./cmd/hike >&2
exec bin/hike lab "$@"
