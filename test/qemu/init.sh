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
# No forks in this loop but insmod itself: under TCG each one costs.
while read -r ko flag; do
    [ -n "$ko" ] || continue
    read -r t0 _ < /proc/uptime
    if ! insmod "/lib/modules/$KV/$ko" 2>/tmp/insmod.err; then
        if grep -q 'File exists' /tmp/insmod.err; then :
        elif [ "$flag" = required ]; then
            say "HIKE-QEMU-SETUP-FAILED insmod $ko: $(cat /tmp/insmod.err)"
            exit 1
        else
            echo "optional module $ko not loaded: $(cat /tmp/insmod.err)"
        fi
    fi
    read -r t1 _ < /proc/uptime
    # crypto self-tests run at load time; name the slow modules
    # (/proc/uptime has two decimals, so dropping the dot gives centiseconds)
    d=$(( ${t1%.*}${t1#*.} - ${t0%.*}${t0#*.} ))
    [ "$d" -gt 50 ] && echo "hike-qemu: insmod $ko took $((d / 100)).$((d % 100 / 10))s"
done < /etc/modules.load
echo "hike-qemu: modules loaded, up $(uptime_s)s"

# Test binaries see the harness through these variables: iproute2 lives
# in /usr/local/sbin because busybox's own ip applet wins over $PATH;
# /bin/hike is the daemon, for tests that run it.
export HIKE_QEMU=1 HIKE_EXPECT_ESP=1 HIKE_IP=/usr/local/sbin/ip HIKE_BIN=/bin/hike
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
