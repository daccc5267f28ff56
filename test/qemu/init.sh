#!/bin/busybox sh
# /init of hike's qemu test VM (PID 1). Loads the XFRM/ESP modules that
# run.sh copied in, runs every /tests/*.test binary with -test.v, writes
# their output to the second serial port (ttyS1, kept free of kernel
# messages) between BEGIN/END markers, and powers off. run.sh turns that
# into Go test output on the host.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /run /tmp /var
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
ln -sf /run /var/run            # `ip netns` keeps its mounts in /run/netns

OUT=/dev/ttyS1
stty -F $OUT raw -echo 2>/dev/null
say() { echo "$*" > $OUT; }
finish() {
    [ -s /run/modprobe.log ] && echo "kernel module requests: $(sort -u /run/modprobe.log | tr '\n' ' ')"
    say "HIKE-QEMU-DONE"
    sync
    poweroff -f
    echo o > /proc/sysrq-trigger # with -no-reboot, a panic ends qemu as well
    sleep 5
}
trap finish EXIT

uptime_s() { cut -d' ' -f1 /proc/uptime; }
echo "hike-qemu: kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) cpu(s), up $(uptime_s)s"
say "HIKE-QEMU-BOOTED $(uname -r)"

# Kernel-initiated module loads (crypto-*, xfrm-type-*) go through a
# logging wrapper, so a missing module shows up by name.
printf '#!/bin/busybox sh\necho "$*" >> /run/modprobe.log\nexec /bin/busybox modprobe "$@"\n' > /sbin/modprobe-log
chmod 755 /sbin/modprobe-log
echo /sbin/modprobe-log > /proc/sys/kernel/modprobe

# /etc/modules.load: "<path under /lib/modules/KVER> required|optional", in
# dependency order (computed on the host with modprobe --show-depends).
KV=$(uname -r)
while read -r ko flag; do
    [ -n "$ko" ] || continue
    name=$(basename "$ko" .ko | tr - _)
    grep -q "^$name " /proc/modules && continue
    if ! out=$(insmod "/lib/modules/$KV/$ko" 2>&1); then
        if [ "$flag" = required ]; then
            say "HIKE-QEMU-SETUP-FAILED insmod $ko: $out"
            exit 1
        fi
        echo "optional module $name not loaded: $out"
    fi
done < /etc/modules.load
echo "hike-qemu: modules loaded, up $(uptime_s)s"

# Test binaries see the harness through these variables: iproute2 lives
# in /usr/local/sbin because busybox's own ip applet wins over $PATH.
export HIKE_QEMU=1 HIKE_EXPECT_ESP=1 HIKE_IP=/usr/local/sbin/ip
ARGS=$(cat /etc/test.args 2>/dev/null)
for t in /tests/*.test; do
    [ -x "$t" ] || continue
    pkg=$(cat "$t.pkg" 2>/dev/null || basename "$t" .test)
    say "HIKE-QEMU-BEGIN $pkg"
    start=$(uptime_s)
    cd /tmp
    # shellcheck disable=SC2086
    "$t" -test.v -test.timeout=150s $ARGS > $OUT 2>&1
    rc=$?
    say "HIKE-QEMU-END $pkg $rc $start $(uptime_s)"
done
echo "hike-qemu: tests done, up $(uptime_s)s"
exit 0
