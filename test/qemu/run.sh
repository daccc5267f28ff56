#!/bin/bash
# Run hike's kernel data-plane tests inside a throw-away qemu VM booted with
# Debian's stock kernel, for hosts whose kernel lacks ESP (CONFIG_INET_ESP).
#
#   test/qemu/run.sh [go test flags for the guest, e.g. -test.run TestKernelTunnels]
#
# It installs missing host tools with apt, downloads and unpacks the kernel
# .deb once, builds static test binaries (CGO_ENABLED=0 go test -c -tags
# xfrmkernel), boots them with a busybox initramfs and prints the guest's Go
# test output followed by go-test-style "ok"/"FAIL" lines.
#
# Exit status: 0 all tests passed; 1 a test failed or the guest gave no
# result (boot failure, timeout); 2 the harness could not set up.
#
# Environment:
#   HIKE_QEMU_DIR   work and cache directory (default /var/tmp/hike-qemu)
#   HIKE_QEMU_PKGS  packages to test (default ./internal/dataplane/xfrm)
#   HIKE_QEMU_KPKG  kernel package (default linux-image-amd64, resolved to
#                   the concrete linux-image-<version> it depends on)
#   HIKE_QEMU_ACCEL auto|tcg|kvm (auto: TCG when /dev/kvm is missing or is
#                   kvm_pvm, which boots only PVM guest kernels)
#   HIKE_QEMU_TIMEOUT  seconds for the whole boot (default 240)
#   HIKE_QEMU_MEM, HIKE_QEMU_SMP  guest size (default 512 MB, 2 CPUs)
set -Eeuo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
W=${HIKE_QEMU_DIR:-/var/tmp/hike-qemu}
PKGS=${HIKE_QEMU_PKGS:-./internal/dataplane/xfrm}
KPKG=${HIKE_QEMU_KPKG:-linux-image-amd64}
ACCEL=${HIKE_QEMU_ACCEL:-auto}
TIMEOUT=${HIKE_QEMU_TIMEOUT:-240}
MEM=${HIKE_QEMU_MEM:-512}
SMP=${HIKE_QEMU_SMP:-2}
T0=$(date +%s.%N)

log() { echo "# hike-qemu: $*" >&2; }
die() { log "setup error: $*"; exit 2; }
trap 'log "setup error at line $LINENO: $BASH_COMMAND"; exit 2' ERR
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

mkdir -p "$W"
# One run per work directory at a time: runs share the initramfs and the logs.
exec 9>"$W/lock"
flock -w 900 9 || die "another run kept $W busy for 15 minutes (set HIKE_QEMU_DIR)"

# ------------------------------------------------------------ host tools
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)   # static /bin/busybox
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null || need+=(kmod)
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${need[*]}; install them or run as root"
    log "installing ${need[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
command -v go >/dev/null || die "go not in PATH"

# ---------------------------------------------------------------- kernel
if ! apt-cache show "$KPKG" >/dev/null 2>&1; then apt-get update -qq >&2; fi
KIMG=$(apt-cache depends "$KPKG" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$KIMG" ] || KIMG=$KPKG
KVER=${KIMG#linux-image-}
KROOT=$W/kernel-$KVER
if [ ! -f "$KROOT/boot/vmlinuz-$KVER" ]; then
    log "downloading $KIMG"
    mkdir -p "$W/debs"
    rm -rf "$KROOT" "$KROOT.tmp" "$W/vmlinux-$KVER"
    rm -f "$W/debs/${KIMG}"_*.deb
    (cd "$W/debs" && apt-get download "$KIMG" 2>&1 | grep -v unsandboxed >&2 || true)
    deb=$(ls "$W/debs/${KIMG}"_*.deb 2>/dev/null | head -1)
    [ -n "$deb" ] || die "could not download $KIMG"
    dpkg-deb -x "$deb" "$KROOT.tmp"
    mv "$KROOT.tmp" "$KROOT"
fi
MODDIR=$KROOT/lib/modules/$KVER
[ -f "$MODDIR/modules.dep" ] || depmod -b "$KROOT" "$KVER"   # the .deb ships none

# Boot the uncompressed ELF through its PVH entry: under TCG this saves the
# seconds the bzImage stub spends decompressing itself.
KERNEL=$KROOT/boot/vmlinuz-$KVER
VMLINUX=$W/vmlinux-$KVER
if [ ! -s "$VMLINUX" ]; then
    for fmt in xz zstd; do
        case $fmt in
            xz)   magic=$'\xfd7zXZ\x00'; dec=(xz -dc) ;;
            zstd) magic=$'\x28\xb5\x2f\xfd'; dec=(zstd -dcq) ;;
        esac
        for off in $(LC_ALL=C grep -abo "$magic" "$KERNEL" | head -3 | cut -d: -f1); do
            # trailing data after the stream makes the decompressor complain
            tail -c +$((off + 1)) "$KERNEL" | "${dec[@]}" 2>/dev/null > "$VMLINUX.tmp" || true
            if [ "$(head -c 4 "$VMLINUX.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
                mv "$VMLINUX.tmp" "$VMLINUX"; break 2
            fi
        done
    done
    rm -f "$VMLINUX.tmp"
fi
[ -s "$VMLINUX" ] && KERNEL=$VMLINUX

# ---------------------------------------------------- base initramfs (cached)
# Modules: ESP and XFRM netlink, veth, the AEAD and hash templates the
# tests use (authencesn is CBC+HMAC with ESN). drbg provides "stdrng" for the IV generators; the kernel asks
# for it only at run time, so --show-depends cannot find it, and without
# it adding an SA fails with "unable to initialize cryptographic
# operations". drbg's jitterentropy needs sha3.
REQUIRED="xfrm_user esp4 esp6 veth gcm ghash_generic ctr authenc authencesn echainiv seqiv sha3_generic drbg chacha20poly1305 chacha_generic poly1305_generic"
OPTIONAL="jitterentropy_rng sha1_generic sha512_generic"
BASE=$W/base-$KVER.cpio
KEY="$KVER|$REQUIRED|$OPTIONAL|$(sha256sum "$HERE/init.sh" "$HERE/run.sh" | cut -c1-16 | tr '\n' ' ')"
if [ ! -s "$BASE" ] || [ "$(cat "$BASE.key" 2>/dev/null)" != "$KEY" ]; then
    log "building base initramfs for $KVER"
    R=$W/rootfs
    rm -rf "$R"
    mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,run,tmp,tests,usr/local/sbin,"lib/modules/$KVER"}
    cp /bin/busybox "$R/bin/busybox"
    # iproute2 (busybox's ip has no netns or xfrm) and the libraries it needs
    IPBIN=$(readlink -f "$(command -v ip)")
    cp "$IPBIN" "$R/usr/local/sbin/ip"
    for lib in $(ldd "$IPBIN" | awk '/=> \//{print $3} /^[ \t]*\/lib64\//{print $1}'); do
        mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"
    done
    : > "$R/etc/modules.load"
    declare -A seen=()
    addmods() { # flag module...
        local flag=$1 m deps kind path rel; shift
        for m in "$@"; do
            if ! deps=$(modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" 2>&1); then
                [ "$flag" = required ] && die "kernel $KVER has no module $m: $deps"
                log "optional module $m not in $KVER"; continue
            fi
            while read -r kind path _; do
                [ "$kind" = insmod ] || continue      # "builtin ..." needs nothing
                rel=${path#"$MODDIR"/}
                case $rel in                          # busybox insmod wants plain ELF
                    *.ko.xz)  rel=${rel%.xz};  dec=(xz -dc) ;;
                    *.ko.zst) rel=${rel%.zst}; dec=(zstd -dcq) ;;
                    *.ko.gz)  rel=${rel%.gz};  dec=(gzip -dc) ;;
                    *)        dec=(cat) ;;
                esac
                [ -n "${seen[$rel]:-}" ] && continue
                seen[$rel]=1
                mkdir -p "$R/lib/modules/$KVER/$(dirname "$rel")"
                "${dec[@]}" "$path" > "$R/lib/modules/$KVER/$rel"
                echo "$rel $flag" >> "$R/etc/modules.load"
            done <<< "$deps"
        done
    }
    addmods required $REQUIRED
    addmods optional $OPTIONAL
    # an index for busybox modprobe, which the kernel calls for crypto-* aliases
    cp "$MODDIR"/modules.builtin* "$MODDIR/modules.order" "$R/lib/modules/$KVER/"
    depmod -b "$R" "$KVER"
    cp "$HERE/init.sh" "$R/init"; chmod 755 "$R/init"
    # uncompressed: qemu copies it into guest RAM, and the guest need not
    # inflate it under TCG
    (cd "$R" && find . -print0 | cpio --null -o -H newc --quiet) > "$BASE.tmp"
    mv "$BASE.tmp" "$BASE"
    echo "$KEY" > "$BASE.key"
fi

# ------------------------------------------------------- test binaries
# A second cpio archive; the kernel unpacks concatenated archives in order.
TR=$W/testroot
rm -rf "$TR"; mkdir -p "$TR/tests" "$TR/etc"
i=0
for pkg in $PKGS; do
    i=$((i + 1))
    name=$(printf '%02d-%s' "$i" "$(basename "$pkg")")
    (cd "$REPO" && CGO_ENABLED=0 go test -c -tags xfrmkernel -o "$TR/tests/$name.test" "$pkg") || die "building $pkg"
    [ -x "$TR/tests/$name.test" ] || die "$pkg has no tests"
    (cd "$REPO" && go list "$pkg") > "$TR/tests/$name.test.pkg"
done
# hike itself, for the tests that run two daemons (HIKE_BIN in the guest)
mkdir -p "$TR/bin"
(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$TR/bin/hike" ./cmd/hike) || die "building hike"
printf '%s\n' "$*" > "$TR/etc/test.args"
(cd "$TR" && find . -print0 | cpio --null -o -H newc --quiet) > "$W/tests.cpio"
cat "$BASE" "$W/tests.cpio" > "$W/initramfs.cpio"
log "prepared in $(elapsed)s (kernel $KVER)"

# ------------------------------------------------------------------ boot
TCG=(-accel tcg,thread=multi -cpu max)
# -arch-capabilities: qemu 7.2 under some nested KVMs aborts with "failed to set MSR 0x10a"
KVM=(-accel kvm -cpu host,-arch-capabilities)
case $ACCEL in
    tcg) ACCEL_ARGS=("${TCG[@]}") ;;
    kvm) ACCEL_ARGS=("${KVM[@]}") ;;
    auto)
        if [ -d /sys/module/kvm_pvm ] || [ ! -w /dev/kvm ]; then ACCEL_ARGS=("${TCG[@]}")
        elif [ "$(cat "$W/accel" 2>/dev/null)" = tcg ]; then ACCEL_ARGS=("${TCG[@]}")
        else ACCEL_ARGS=("${KVM[@]}"); fi ;;
    *) die "HIKE_QEMU_ACCEL=$ACCEL (want auto, tcg or kvm)" ;;
esac

# boot PROBE accel-args...: runs the VM to the end. With PROBE=1 it gives
# the guest 30 s to report that it booted and kills qemu otherwise, so a
# KVM that cannot run the stock kernel costs 30 s, not the whole timeout.
boot() {
    local probe=$1 qpid rc=0 i; shift
    rm -f "$W/tests.out"
    timeout -k 5 "$TIMEOUT" qemu-system-x86_64 -nographic -nic none -no-reboot -m "$MEM" -smp "$SMP" \
        -kernel "$KERNEL" -initrd "$W/initramfs.cpio" \
        -append "console=ttyS0 panic=-1 quiet" \
        -serial stdio -serial "file:$W/tests.out" -monitor none \
        "$@" </dev/null >"$W/console.log" 2>&1 &
    qpid=$!
    if [ "$probe" = 1 ]; then
        for i in $(seq 60); do
            grep -aqs HIKE-QEMU-BOOTED "$W/tests.out" && break
            kill -0 "$qpid" 2>/dev/null || break
            sleep 0.5
        done
        if ! grep -aqs HIKE-QEMU-BOOTED "$W/tests.out"; then
            kill "$qpid" 2>/dev/null || true
            wait "$qpid" 2>/dev/null || true
            return 1
        fi
    fi
    wait "$qpid" || rc=$?
    [ $rc = 0 ] || echo "qemu exit $rc (124 = timeout)" >> "$W/console.log"
    return 0
}
B0=$(date +%s.%N)
if [ "$ACCEL" = auto ] && [ "${ACCEL_ARGS[1]}" = kvm ]; then
    if ! boot 1 "${ACCEL_ARGS[@]}"; then
        log "KVM did not boot the guest within 30 s; using TCG from now on"
        echo tcg > "$W/accel"
        ACCEL_ARGS=("${TCG[@]}")
        B0=$(date +%s.%N)
        boot 0 "${ACCEL_ARGS[@]}"
    fi
else
    boot 0 "${ACCEL_ARGS[@]}"
fi
BOOT=$(awk -v a="$B0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')

# ------------------------------------------------------------- report
# Print the guest's go test output and a go-test summary line per package.
trap - ERR
rc=0
if ! grep -aq HIKE-QEMU-BOOTED "$W/tests.out" 2>/dev/null; then
    log "the guest did not start (${ACCEL_ARGS[*]}); console:"
    tail -n 40 "$W/console.log" >&2
    exit 1
fi
if grep -aq HIKE-QEMU-SETUP-FAILED "$W/tests.out"; then
    grep -a HIKE-QEMU-SETUP-FAILED "$W/tests.out" >&2
    tail -n 30 "$W/console.log" >&2
    exit 1
fi
awk '
    /^HIKE-QEMU-BEGIN /  { pkg = $2; inpkg = 1; seen[pkg] = 1; next }
    /^HIKE-QEMU-END /    { printf "%s\t%s\t%.3fs\n", ($3 == 0 ? "ok  " : "FAIL"), $2, $5 - $4
                           if ($3 != 0) bad = 1; done[$2] = 1; inpkg = 0; next }
    /^HIKE-QEMU-/        { next }
    inpkg                { print }
    END { for (p in seen) if (!(p in done)) { printf "FAIL\t%s\t(no result: guest stopped)\n", p; bad = 1 }
          exit bad }
' "$W/tests.out" || rc=1
grep -aq HIKE-QEMU-BEGIN "$W/tests.out" || { log "no test ran"; rc=1; }
grep -aq HIKE-QEMU-DONE "$W/tests.out" || { log "guest did not finish within ${TIMEOUT}s; console tail:"; tail -n 20 "$W/console.log" >&2; rc=1; }
log "kernel $KVER, ${ACCEL_ARGS[1]}, boot+tests ${BOOT}s, total $(elapsed)s, logs in $W"
exit $rc
