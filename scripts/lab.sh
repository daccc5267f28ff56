#!/usr/bin/env bash
# Runs hike's lab: builds hike and runs `hike lab` with this script's
# arguments (see `bin/hike lab --help`). Without arguments that is the
# failover scenario: a 3-node hike cluster, 300 simulated clients, the
# busiest node killed, a report of the takeover.
#
# Meant for a Debian 12 machine where it runs as root: it installs what the
# lab needs when it is missing (Go as scripts/test.sh does; iproute2 from
# Debian). strongSwan is installed only when the arguments ask for
# strongSwan clients (--strongswan N, --scenario tunnel): the default
# scenario needs nothing but hike, Go and iproute2. Progress goes to
# stderr, the report to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'lab.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: the lab creates network namespaces and TUN devices"

# wants_strongswan ARGS... succeeds when `hike lab ARGS` runs strongSwan
# clients.
wants_strongswan() {
	local prev=""
	for a in "$@"; do
		case "$a" in
		--strongswan=0) ;;
		--strongswan | --strongswan=*) return 0 ;;
		--scenario=tunnel) return 0 ;;
		tunnel) [ "$prev" = --scenario ] && return 0 ;;
		esac
		prev=$a
	done
	return 1
}

. scripts/lib.sh
ensure_go
install_missing ip:iproute2 unshare:util-linux
if wants_strongswan "$@"; then
	install_missing \
		ping:iputils-ping \
		/usr/lib/ipsec/charon:strongswan-charon \
		swanctl:strongswan-swanctl \
		/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so:libcharon-extra-plugins \
		/usr/lib/ipsec/plugins/libstrongswan-openssl.so:libstrongswan-standard-plugins \
		/usr/lib/ipsec/plugins/libstrongswan-curve25519.so:libstrongswan-extra-plugins
fi

log "building bin/hike"
go build -o bin/hike ./cmd/hike >&2
exec bin/hike lab "$@"
