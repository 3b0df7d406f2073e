#!/bin/bash
# zfs-vm.sh - a throw-away QEMU guest with current OpenZFS, for imgstore's
# ZFS tests (scripts/zfs-vm-test drives it; usable on its own too).
#
# The guest is a minimal Debian bookworm with the stock Debian kernel and
# OpenZFS built by DKMS (zfs-dkms + zfsutils-linux from bookworm-backports:
# OpenZFS 2.3.x).  It is built once into CACHE_DIR; every run boots it with
# a copy-on-write overlay (QEMU snapshot=on), so runs never change the image
# and can run side by side.  Written for this project after the example in
# the team's shared tools.
#
# Usage (as root, on a Debian 12 host):
#   scripts/zfs-vm.sh build CACHE_DIR
#       Builds the guest into CACHE_DIR unless CACHE_DIR/READY exists and
#       names the current recipe.  About 5 minutes on 2 idle cores, much
#       longer on a busy machine (mostly the DKMS compile of zfs.ko: 34 of
#       40 minutes under heavy load); a failed or interrupted build resumes
#       at the step that failed.  Installs qemu-system-x86, debootstrap, e2fsprogs
#       on the host with apt-get if they are missing.
#   scripts/zfs-vm.sh run CACHE_DIR SCRIPT [HOST_DIR]
#       Builds if needed, boots the guest and runs SCRIPT (a host file,
#       copied in; any interpreter the guest has, by its #! line) as root.
#       HOST_DIR, if given, is shared read-write at /host (9p) and is the
#       script's working directory.  The script's stdout and stderr stream
#       to this command's stdout; its exit status is this command's.
#
# Exit status: build: 0 or 125.  run: the script's own status, or
#   124  the guest ran longer than ZFSVM_TIMEOUT and was killed
#   125  build, boot or VM failure (no result from the script)
#   2    usage error
#
# What is cached in CACHE_DIR (about 1.5 GB; delete the directory to start
# over): vmlinux/vmlinuz, initrd.img, root.img (ext4 root filesystem),
# info (kernel and ZFS versions), READY (recipe stamp), build-timings; during
# a build also build/ (the unpacked root, removed when the build succeeds).
# Runs use a scratch directory under ZFSVM_WORKDIR_BASE (default $TMPDIR or
# /tmp) for the blank disks (sparse files) and the overlay, removed after.
#
# Inside the guest: zfs.ko is loaded before the script starts; there are
# ZFSVM_DISKS blank virtio disks, /dev/disk/by-id/virtio-zpool1, -zpool2, ...
# (also /dev/vdb, /dev/vdc, ...; /dev/vda is the root).  No network.  The
# userland is Debian bookworm, so binaries built on a bookworm host run from
# /host unchanged.  /tmp is a tmpfs.
#
# Acceleration: KVM when /dev/kvm is usable for a stock kernel (the CPU has
# VMX/SVM and /dev/kvm is not the PVM-only flavour of nested sandboxes);
# otherwise TCG software emulation, 5-20x slower (fine for correctness, not
# for timings).
#
# Environment (all optional):
#   ZFSVM_MEM=3G          guest RAM
#   ZFSVM_CPUS=N          guest vCPUs (default: host cores, at most 4)
#   ZFSVM_DISKS=2         number of blank disks
#   ZFSVM_DISK_SIZE=4G    size of each blank disk (sparse)
#   ZFSVM_TIMEOUT=1800    seconds before the guest is killed (exit 124)
#   ZFSVM_ACCEL=auto      auto | kvm | tcg
#   ZFSVM_CONSOLE_LOG=F   keep the guest's kernel console log in file F
#   ZFSVM_VERBOSE=1       print the qemu command line and the console log
#   ZFSVM_WORKDIR_BASE=D  where per-run scratch directories go
#   Build only:
#   ZFSVM_MIRROR=URL      Debian archive (default: the host's apt source)
#   ZFSVM_SECURITY_MIRROR=URL  Debian security archive (default: the host's)
#   ZFSVM_ZFS_SUITE=bookworm-backports  ("bookworm" gives OpenZFS 2.1.11;
#                         use another CACHE_DIR per suite)
set -euo pipefail

PROG=${0##*/}
# Bumped whenever the guest recipe below changes: a cache built by another
# recipe is rebuilt.
RECIPE=imgstore-zfsvm-1

trap 'exit 130' INT     # so that the EXIT traps (unmounts, cleanup) run
trap 'exit 143' TERM
msg() { echo "[$PROG $(date +%H:%M:%S)] $*" >&2; }
die() { msg "ERROR: $*"; exit 125; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

SUITE=bookworm

# The first URI of the host's apt sources whose path ends in $1.
host_apt_uri() {
    { cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
          sed -nE 's/^[[:space:]]*URIs:[[:space:]]*//p' | tr ' ' '\n'
      cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
          sed -nE 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p'
    } | grep -E "${1}/?\$" | head -n 1 || true
}

# ---------------------------------------------------------------- host tools

# qemu-system-x86, debootstrap, mkfs.ext4.  A host with a backported
# qemu-utils (which Breaks bookworm's qemu-system-common) cannot install
# bookworm's qemu-system-x86: then retry from bookworm-backports through a
# private apt source list, leaving /etc/apt untouched.
ensure_host_tools() {
    local need=()
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
    command -v flock >/dev/null || need+=(util-linux)
    [ ${#need[@]} -eq 0 ] && return 0
    msg "installing host packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    if apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
        return 0
    fi
    msg "plain install failed; retrying with bookworm-backports"
    local a=$CACHE/host-apt
    mkdir -p "$a/sources.list.d" "$a/lists/partial"
    cp /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
        "$a/sources.list.d/" 2>/dev/null || true
    [ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$a/sources.list.d/base.list"
    printf 'deb %s bookworm-backports main\n' "$MIRROR" > "$a/sources.list.d/zfsvm-bpo.list"
    local o=(-o "Dir::Etc::SourceParts=$a/sources.list.d" -o Dir::Etc::SourceList=/dev/null
             -o "Dir::State::Lists=$a/lists")
    apt-get "${o[@]}" update -qq
    apt-get "${o[@]}" install -y -qq --no-install-recommends -t bookworm-backports \
        "${need[@]}" >/dev/null
}

# ---------------------------------------------------------------- build

CHROOT_MOUNTS=()
mount_chroot() {
    local m
    for m in proc sys dev dev/pts; do
        case $m in
            proc) mount -t proc proc "$ROOTFS/proc" ;;
            sys) mount -t sysfs sysfs "$ROOTFS/sys" ;;
            *) mount --bind "/$m" "$ROOTFS/$m" ;;
        esac
        CHROOT_MOUNTS+=("$ROOTFS/$m")
    done
}
umount_chroot() {
    local i
    for ((i = ${#CHROOT_MOUNTS[@]} - 1; i >= 0; i--)); do
        umount -l "${CHROOT_MOUNTS[i]}" 2>/dev/null || true
    done
    CHROOT_MOUNTS=()
}
# Anything still mounted below the build directory (an interrupted build) is
# unmounted before any rm -rf, which must never reach the host's /dev.
umount_stale() {
    local m
    awk -v p="$BUILD/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r m; do umount -l "$m" || true; done
}
in_root() { chroot "$ROOTFS" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
apt_in_root() { # LOG apt-get args...
    local log=$1; shift
    in_root apt-get "$@" >> "$BUILD/$log" 2>&1 || { tail -40 "$BUILD/$log" >&2; return 1; }
}

# Runs build step NAME unless its stamp exists.  The step functions rely on
# set -e, so they are never called from an if/&&/|| context.
step() {
    local name=$1; shift
    if [ -e "$BUILD/.done-$name" ]; then msg "step $name: done before"; return; fi
    msg "step $name ..."
    local t0=$SECONDS
    "$@"
    touch "$BUILD/.done-$name"
    msg "step $name: took $((SECONDS - t0))s"
    echo "$name $((SECONDS - t0))s" >> "$BUILD/timings"
}

do_debootstrap() {
    rm -rf --one-file-system "$ROOTFS"
    debootstrap --variant=minbase --components=main,contrib "$SUITE" "$ROOTFS" "$MIRROR" \
        > "$BUILD/debootstrap.log" 2>&1 || { tail -20 "$BUILD/debootstrap.log" >&2; return 1; }
}

do_kernel() {
    cat > "$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main contrib
deb $MIRROR $SUITE-updates main contrib
deb $SEC_MIRROR $SUITE-security main contrib
deb $MIRROR $SUITE-backports main contrib
EOF
    # No daemons start inside the chroot.
    printf '#!/bin/sh\nexit 101\n' > "$ROOTFS/usr/sbin/policy-rc.d"
    chmod +x "$ROOTFS/usr/sbin/policy-rc.d"
    # A small initrd: just enough to mount an ext4 root on virtio-blk.
    mkdir -p "$ROOTFS/etc/initramfs-tools/conf.d"
    echo MODULES=list > "$ROOTFS/etc/initramfs-tools/conf.d/zfsvm.conf"
    printf 'virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n' >> "$ROOTFS/etc/initramfs-tools/modules"
    in_root dpkg --configure -a >/dev/null 2>&1 || true   # after an interrupted step
    apt_in_root kernel.log update
    apt_in_root kernel.log install -y --no-install-recommends \
        linux-image-amd64 linux-headers-amd64 udev kmod procps python3
}

guest_kver() { find "$ROOTFS/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1; }

do_zfs() {
    in_root dpkg --configure -a >/dev/null 2>&1 || true
    # zfs-dkms notices the chroot and builds for the chroot's kernel.
    apt_in_root zfs.log install -y --no-install-recommends -t "$ZFS_SUITE" \
        zfs-dkms zfsutils-linux
    local kver; kver=$(guest_kver)
    if ! in_root modinfo -k "$kver" zfs >/dev/null 2>&1; then
        msg "no zfs.ko for $kver yet; dkms autoinstall -k $kver"
        in_root dkms autoinstall -k "$kver" >> "$BUILD/zfs.log" 2>&1 \
            || { tail -40 "$BUILD/zfs.log" >&2; return 1; }
    fi
    in_root modinfo -k "$kver" zfs | grep -E '^(filename|version):' >&2
}

do_guest_config() {
    echo zfsvm > "$ROOTFS/etc/hostname"
    in_root zgenhostid -f >/dev/null 2>&1 || true
    : > "$ROOTFS/etc/fstab"
    install -m 0755 /dev/stdin "$ROOTFS/sbin/zfsvm-init" <<'INIT'
#!/bin/bash
# PID 1 of the guest (kernel command line init=/sbin/zfsvm-init): mounts the
# basics and the 9p shares, loads zfs, runs /ctl/run.sh with its output on
# ttyS1 (the host's stdout), writes its status to /ctl/rc and powers off.
# The kernel console is ttyS0 (a log file on the host).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LANG=C.UTF-8

log() { echo "zfsvm-init[$(cut -d' ' -f1 /proc/uptime)]: $*" >/dev/ttyS0; }
poweroff_now() {
    udevadm control --exit 2>/dev/null
    sync; umount /host /ctl 2>/dev/null; mount -o remount,ro / 2>/dev/null
    mkfifo /run/halt.fifo 2>/dev/null; exec 8<>/run/halt.fifo
    exec >/dev/null 2>&1
    echo o > /proc/sysrq-trigger
    # Wait with builtins only; should init ever exit, panic=-1 and qemu's
    # -no-reboot end the VM anyway.
    while :; do read -r -t 60 -u 8; done
}
die() { log "FATAL: $*"; poweroff_now; }
mnt() { mountpoint -q "$3" || mount -t "$1" "$2" "$3" ${4:+-o "$4"}; }

mnt proc proc /proc
mnt sysfs sysfs /sys
mnt devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mnt devpts devpts /dev/pts
mnt tmpfs tmpfs /dev/shm
mnt tmpfs tmpfs /run mode=0755
mnt tmpfs tmpfs /tmp mode=1777
ln -sf /proc/self/mounts /etc/mtab 2>/dev/null
hostname zfsvm

modprobe -a 9pnet_virtio 9p || die "cannot load the 9p modules"
mkdir -p /ctl /host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 zfsvmctl /ctl \
    || die "cannot mount the control share"
if [ -e /ctl/host-shared ]; then
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=mmap host0 /host \
        || die "cannot mount the host share"
fi

# zfs loads (slowly under TCG) while udev creates /dev/disk/by-id/*.
log "loading zfs"
modprobe zfs & zfs_pid=$!
/lib/systemd/systemd-udevd --daemon
udevadm trigger --action=add --subsystem-match=block >/dev/null 2>&1
udevadm settle --timeout=60
wait $zfs_pid || log "modprobe zfs failed"
log "zfs loaded"

OUT=/dev/ttyS1
stty -F "$OUT" raw -echo 2>/dev/null
cd /host 2>/dev/null || cd /root
log "running the script"
bash -c 'chmod +x /ctl/run.sh; exec /ctl/run.sh' </dev/null >"$OUT" 2>&1
rc=$?
log "script exited with $rc"
echo "$rc" > /ctl/rc.tmp && mv /ctl/rc.tmp /ctl/rc
zpool export -a >/dev/null 2>&1
poweroff_now
INIT
    local kver; kver=$(guest_kver)
    in_root update-initramfs -u -k "$kver" >> "$BUILD/zfs.log" 2>&1
    in_root apt-get clean
    rm -f "$ROOTFS/usr/sbin/policy-rc.d"
}

do_image() {
    local kver out=$BUILD/out
    kver=$(guest_kver)
    rm -rf "$out"; mkdir -p "$out"
    # QEMU boots an uncompressed ELF vmlinux through its PVH entry point,
    # which saves the in-guest decompression (seconds under TCG).  If the
    # extraction fails, runs boot the compressed vmlinuz instead.
    if ! in_root python3 - "/boot/vmlinuz-$kver" > "$out/vmlinux" 2>>"$BUILD/image.log" <<'PY'
import lzma, sys, zlib
data = open(sys.argv[1], "rb").read()
for magic, unpack in ((b"\xfd7zXZ\x00", lambda b: lzma.LZMADecompressor().decompress(b)),
                      (b"\x1f\x8b\x08", lambda b: zlib.decompressobj(31).decompress(b))):
    at = data.find(magic)
    if at >= 0:
        elf = unpack(data[at:])
        if elf[:4] == b"\x7fELF":
            sys.stdout.buffer.write(elf)
            sys.exit(0)
sys.exit("no vmlinux found in " + sys.argv[1])
PY
    then
        msg "could not extract vmlinux; runs will boot vmlinuz"
        rm -f "$out/vmlinux"
    fi
    cp "$ROOTFS/boot/vmlinuz-$kver" "$out/vmlinuz"
    cp "$ROOTFS/boot/initrd.img-$kver" "$out/initrd.img"
    {
        echo "kernel=$kver"
        # shellcheck disable=SC2016  # ${Version} is dpkg-query's, not ours
        echo "zfs=$(in_root dpkg-query -W -f='${Version}' zfs-dkms)"
        echo "recipe=$RECIPE"
        echo "built=$(date -u +%FT%TZ)"
    } > "$out/info"
    umount_chroot
    local mb; mb=$(du -sm "$ROOTFS" | cut -f1)
    # 30% + 256 MB of free space in the root for what scripts write there.
    mkfs.ext4 -q -F -L zfsvm-root -E root_owner=0:0 -d "$ROOTFS" \
        "$out/root.img" "$((mb * 13 / 10 + 256))M"
}

image_ready() { [ -e "$CACHE/READY" ] && [ "$(cat "$CACHE/READY")" = "$RECIPE" ]; }

cmd_build() {
    image_ready && return 0
    [ "$(id -u)" = 0 ] || die "building the guest needs root (debootstrap, chroot, mounts)"
    MIRROR=${ZFSVM_MIRROR:-$(host_apt_uri /debian)}
    SEC_MIRROR=${ZFSVM_SECURITY_MIRROR:-$(host_apt_uri /debian-security)}
    [ -n "$MIRROR" ] || die "no Debian archive in the host's apt sources; set ZFSVM_MIRROR"
    [ -n "$SEC_MIRROR" ] || SEC_MIRROR=${MIRROR}-security
    ZFS_SUITE=${ZFSVM_ZFS_SUITE:-bookworm-backports}
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9                                  # one builder per cache
    if image_ready; then exec 9>&-; return 0; fi
    if [ -e "$CACHE/READY" ]; then
        msg "$CACHE was built by recipe $(cat "$CACHE/READY"), not $RECIPE: rebuilding"
        rm -f "$CACHE/READY" "$CACHE/root.img" "$CACHE/vmlinux" "$CACHE/vmlinuz" \
            "$CACHE/initrd.img" "$CACHE/info"
    fi
    ensure_host_tools
    BUILD=$CACHE/build ROOTFS=$CACHE/build/rootfs
    mkdir -p "$BUILD"
    umount_stale
    # shellcheck disable=SC2154  # rc is set in the trap
    trap 'rc=$?; umount_chroot; umount_stale
          [ $rc = 0 ] || msg "build failed (status $rc); logs in $BUILD"' EXIT
    local t0=$SECONDS
    step debootstrap do_debootstrap
    mount_chroot
    step kernel do_kernel
    step zfs do_zfs
    step guestconfig do_guest_config
    step image do_image
    umount_chroot
    umount_stale
    mv "$BUILD/out/"* "$CACHE/"
    cp "$BUILD/timings" "$CACHE/build-timings"
    rm -rf --one-file-system "$BUILD"
    echo "$RECIPE" > "$CACHE/READY"
    trap - EXIT
    exec 9>&-
    msg "guest ready in $CACHE after $((SECONDS - t0))s: $(tr '\n' ' ' < "$CACHE/info")"
}

# ---------------------------------------------------------------- run

pick_accel() {
    local a=${ZFSVM_ACCEL:-auto}
    if [ "$a" = auto ]; then
        a=tcg
        # A /dev/kvm backed by kvm-pvm (nested sandboxes without VMX) only
        # runs PVM guest kernels, not Debian's.
        if [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ] &&
            grep -qwE 'vmx|svm' /proc/cpuinfo; then
            a=kvm
        fi
    fi
    echo "$a"
}

# Boots the guest and runs the script; sets RUN_RC.
# shellcheck disable=SC2054  # the commas belong to qemu's arguments
cmd_run() {
    local script=$1 hostdir=$2
    image_ready || die "no guest in $CACHE (run: $PROG build $CACHE)"
    local accel cpus disks i kernel
    WORK=$(mktemp -d "${ZFSVM_WORKDIR_BASE:-${TMPDIR:-/tmp}}/zfsvm-run.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    mkdir "$WORK/ctl"
    cp "$script" "$WORK/ctl/run.sh"
    accel=$(pick_accel)
    kernel=$CACHE/vmlinux; [ -f "$kernel" ] || kernel=$CACHE/vmlinuz
    cpus=${ZFSVM_CPUS:-$(( $(nproc) < 4 ? $(nproc) : 4 ))}
    local q=(qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot
        -machine q35 -m "${ZFSVM_MEM:-3G}" -smp "$cpus"
        -kernel "$kernel" -initrd "$CACHE/initrd.img"
        -append "console=ttyS0 root=LABEL=zfsvm-root rw init=/sbin/zfsvm-init panic=-1 quiet loglevel=4"
        -drive "file=$CACHE/root.img,format=raw,if=none,id=root,snapshot=on"
        -device virtio-blk-pci,drive=root
        -virtfs "local,path=$WORK/ctl,mount_tag=zfsvmctl,security_model=none"
        -serial "file:$WORK/console.log" -serial stdio)
    if [ "$accel" = kvm ]; then
        q+=(-accel kvm -cpu host)
    else
        q+=(-accel tcg,thread=multi -cpu "${ZFSVM_CPU:-max}")
    fi
    disks=${ZFSVM_DISKS:-2}
    for ((i = 1; i <= disks; i++)); do
        truncate -s "${ZFSVM_DISK_SIZE:-4G}" "$WORK/disk$i.img"
        q+=(-drive "file=$WORK/disk$i.img,format=raw,if=none,id=d$i,cache=unsafe"
            -device "virtio-blk-pci,drive=d$i,serial=zpool$i")
    done
    if [ -n "$hostdir" ]; then
        touch "$WORK/ctl/host-shared"
        q+=(-virtfs "local,path=$(realpath "$hostdir"),mount_tag=host0,security_model=none")
    fi
    msg "booting the guest ($accel, $cpus vCPUs, $(grep -E '^(kernel|zfs)=' "$CACHE/info" | tr '\n' ' '))"
    [ "${ZFSVM_VERBOSE:-0}" = 1 ] && msg "${q[*]}"
    local t0=$SECONDS qrc
    set +e
    # snapshot=on puts the root overlay in TMPDIR: keep it in the scratch dir.
    TMPDIR=$WORK timeout -k 10 "${ZFSVM_TIMEOUT:-1800}" "${q[@]}" </dev/null
    qrc=$?
    set -e
    [ -n "${ZFSVM_CONSOLE_LOG:-}" ] && cp "$WORK/console.log" "$ZFSVM_CONSOLE_LOG"
    [ "${ZFSVM_VERBOSE:-0}" = 1 ] && { msg "console log:"; cat "$WORK/console.log" >&2; }
    if [ -f "$WORK/ctl/rc" ]; then
        RUN_RC=$(cat "$WORK/ctl/rc")
        msg "script exited with $RUN_RC after $((SECONDS - t0))s in the guest ($accel)"
        return 0
    fi
    if [ $qrc = 124 ] || [ $qrc = 137 ]; then
        msg "guest killed after ${ZFSVM_TIMEOUT:-1800}s (ZFSVM_TIMEOUT)"; RUN_RC=124
    else
        msg "guest ended (qemu status $qrc) without a result"; RUN_RC=125
    fi
    msg "last console lines:"; tail -n 25 "$WORK/console.log" >&2 || true
}

# ---------------------------------------------------------------- main

[ $# -ge 2 ] || usage
CMD=$1 CACHE=$2; shift 2
case $CMD in
    build)
        [ $# -eq 0 ] || usage
        cmd_build ;;
    run)
        if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
        SCRIPT=$1 HOSTDIR=${2:-}
        [ -f "$SCRIPT" ] || die "no such script: $SCRIPT"
        [ -z "$HOSTDIR" ] || [ -d "$HOSTDIR" ] || die "no such directory: $HOSTDIR"
        cmd_build
        RUN_RC=125
        cmd_run "$SCRIPT" "$HOSTDIR"
        exit "$RUN_RC" ;;
    *) usage ;;
esac
