# Shell functions shared by the scripts in this directory; source it from
# the repository root after defining log MESSAGE and die MESSAGE.

GO_WANT=1.26.8

# --- Go ------------------------------------------------------------------
# Debian 12 ships Go 1.19, too old to fetch a toolchain by itself; the Go
# module proxy serves release toolchains as modules, so 1.19 can download
# the one hike needs.
go_version_ok() { # $1 = go binary
	local v
	v=$("$1" env GOVERSION 2>/dev/null) || return 1
	v=${v#go}
	[ "$(printf '%s\n%s\n' "1.26" "$v" | sort -V | head -1)" = "1.26" ]
}
ensure_go() {
	export PATH=/usr/local/go/bin:$PATH
	if command -v go >/dev/null && go_version_ok go; then return; fi
	log "installing Go $GO_WANT from the Go module proxy"
	command -v go >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go; }
	local mod="golang.org/toolchain@v0.0.1-go${GO_WANT}.linux-$(dpkg --print-architecture)"
	local dir
	dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "$mod" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
	[ -f "$dir/bin/go" ] || die "could not download Go toolchain $mod"
	# The module cache holds it read-only and without exec bits (the go
	# command sets them itself when it switches toolchains); install a copy.
	local root=/usr/local/lib/hike-go$GO_WANT
	rm -rf "$root" && cp -r "$dir" "$root" && chmod -R u+w "$root" &&
		chmod +x "$root"/bin/* "$root"/pkg/tool/*/* || die "could not install Go in $root"
	export PATH="$root/bin:$PATH"
	go_version_ok go || die "Go >= 1.26 needed, found $(go env GOVERSION)"
}

# --- Debian packages -----------------------------------------------------
# install_missing BIN:PACKAGE... installs each PACKAGE whose BIN (a command,
# or an absolute path) is missing, in one apt-get run.
install_missing() {
	local missing=() item bin pkg
	for item in "$@"; do
		bin=${item%%:*} pkg=${item#*:}
		if [[ $bin == /* ]]; then [ -e "$bin" ] && continue; else command -v "$bin" >/dev/null && continue; fi
		missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return
	log "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# A freshly installed strongSwan service would hold port 500 and load
	# every plugin; hike's labs and tests run their own charons.
	systemctl disable --now strongswan-starter strongswan >/dev/null 2>&1 || true
}
