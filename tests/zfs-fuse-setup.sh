#!/usr/bin/env bash
# tests/zfs-fuse-setup.sh -- make a file-backed ZFS test pool on zfs-fuse.
#
# USAGE
#   tests/zfs-fuse-setup.sh [POOL [SIZE]]        ensure daemon + pool, print POOL
#   tests/zfs-fuse-setup.sh --recreate [POOL [SIZE]]   destroy, then create afresh
#   tests/zfs-fuse-setup.sh --destroy [POOL]     destroy the pool and its file
#   tests/zfs-fuse-setup.sh --help
#
#   Typical use (CI, tests):  export IMGSTORE_TEST_POOL="$(tests/zfs-fuse-setup.sh)"
#
#   Must run as root.  Idempotent: re-running with the daemon already up and
#   the pool already imported changes nothing and prints the pool name again.
#   stdout carries only the pool name (ensure modes); progress goes to stderr.
#
# ENVIRONMENT (arguments win over environment)
#   IMGSTORE_TEST_POOL        pool name                   (default imgstore-test)
#   IMGSTORE_TEST_POOL_SIZE   sparse file size, truncate(1) syntax (default 4G)
#   IMGSTORE_TEST_POOL_DIR    directory of the backing file
#                             (default /var/tmp/imgstore-zpool; file POOL.img)
#   ZFS_FUSE_WAIT             seconds to wait for the daemon to answer (default 60)
#
# WHAT IT DOES
#   1. Checks /dev/fuse (tries `modprobe fuse` if it is missing).
#   2. If `zpool list` does not answer: starts `zfs-fuse --pidfile
#      /var/run/zfs-fuse.pid` (same pidfile as /etc/init.d/zfs-fuse, so
#      `service zfs-fuse stop` still works), unless a live daemon is already
#      starting; then polls `zpool list` (every 0.2 s, bounded by ZFS_FUSE_WAIT).
#      A running daemon is never restarted or stopped: other pools may live on it.
#   3. If the pool is imported and ONLINE: nothing to do.  If it is imported
#      but not ONLINE: destroys and recreates it (a test pool is disposable).
#      If it is not imported but its backing file exists: `zpool import -d DIR`,
#      and if that fails the file is recreated.  Otherwise: sparse file with
#      truncate(1), then `zpool create -f POOL FILE`.  Mountpoint is /POOL.
#   4. Prints the pool name.
#   --destroy: `zpool destroy -f POOL` (if imported) and removes the file.  The
#   daemon is left running.  Runs are serialised with flock on
#   /run/lock/imgstore-zfs-fuse-setup.lock.
#
# ---------------------------------------------------------------------------
# FINDINGS: zfs-fuse 0.7.0-25+b1 (Debian 12), pool version 23, ZPL version 4
# (all checked by hand on this sandbox; stderr texts verbatim, "rc" = exit code)
#
# Sandbox: /dev/fuse exists (crw------- 10,229) and zfs-fuse runs as root with
#   no special setup.  `apt-get install zfs-fuse` does NOT start the daemon
#   here (/usr/sbin/policy-rc.d exits 101, the Docker default), and there is no
#   systemd/init running: this script starts it.  Daemon socket /var/run/zfs/zfs_socket, lock /var/lock/zfs/zfs_lock,
#   pool cache /var/lib/zfs/zpool.cache (pools come back on a daemon restart),
#   config /etc/zfs/zfsrc (Debian: max-arc-size=100 MB, fuse-attr-timeout=3600,
#   fuse-entry-timeout=3600).  With no daemon, every zfs/zpool command prints
#     connect: No such file or directory
#     Please make sure that the zfs-fuse daemon is running.
#     internal error: failed to initialize ZFS library
#   and exits 1.
# Pools: minimum vdev 64M ("cannot create 'P': one or more devices is less than
#   the minimum size (64M)"); the vdev must be an absolute path ("cannot open
#   'x.img': no such device in /dev / must be a full path or shorthand device
#   name").  `zpool create` always prints "Defaulting to 4K blocksize (ashift=12)
#   for 'FILE'" on stderr.  Re-using a file of an imported pool: "invalid vdev
#   specification / use '-f' to override the following errors: / FILE is part
#   of active pool 'P'".  Unknown pool: "cannot open 'P': no such pool" (rc 1).
#   zpool export / import -d DIR / destroy work, but `zpool destroy` of a pool
#   with mounted filesystems fails now and then (about 1 in 3 here, even right
#   after create) with "cannot destroy 'P': pool is busy" (rc 1); the failed
#   try unmounts them and a second `zpool destroy` works.  This script
#   unmounts (deepest first) and retries.
#
# Mounts: every filesystem is a real FUSE mount (type fuse.zfs, mountpoint
#   /POOL/...), readable and writable by tests (write, sync, then snapshot:
#   the snapshot holds the data).  `-o mountpoint=/some/dir`, `none`, `legacy`,
#   `zfs set mountpoint=`, `zfs inherit mountpoint` all work; `zfs mount DS`
#   mounts.  NEVER use `zfs umount -a` / `zfs mount -a` in tests: they act on
#   every pool of the shared daemon.
# zfs destroy: destroying a MOUNTED filesystem fails every time (not a race;
#   a 3 s wait does not help; -f does not help):
#     cannot destroy 'P/fs': dataset is busy          (rc 1)
#   The failed attempt unmounts it, so a second `zfs destroy` succeeds.
#   Reliable form: `zfs umount P/fs && zfs destroy P/fs`; for -r/-R unmount
#   every mounted descendant (children first) before destroying.
#   Other texts: "cannot destroy 'P/fs': filesystem has children / use '-r' to
#   destroy the following datasets:" ; "cannot destroy 'P/fs@s': snapshot has
#   dependent clones / use '-R' to destroy the following datasets:" ;
#   a held snapshot: "cannot destroy 'P/fs@s': dataset is busy" (zfs hold and
#   zfs release work; `zfs holds` fails: "internal error:
#   /usr/lib/zfs/pyzfs.py not found", rc 255).
# zfs rename: snapshots rename fine (`zfs rename P/fs@a P/fs@b` and the short
#   `zfs rename P/fs@a @b`).  Errors: "cannot open 'P/fs@x': dataset does not
#   exist"; "cannot rename 'P/fs@a': dataset already exists".  Renaming a
#   MOUNTED filesystem fails: "cannot rename 'P/fs': dataset is busy" (rc 1);
#   after `zfs umount` it works but the renamed fs stays unmounted.
# zfs send (usage: "send [-RDp] [-[iI] snapshot] <snapshot>"):
#   full, -i (short "@s1" or full "P/fs@s1"), -I, -R, -p, -D work through pipes.
#   `zfs send -c`: unsupported, nothing on stdout, rc 2, stderr:
#     invalid option 'c'
#     usage:
#     	send [-RDp] [-[iI] snapshot] <snapshot>
#     (+ blank line, "For the property list, run: zfs set|get", blank line,
#      "For the delegated permission list, run: zfs allow|unallow")
#   Same for -e, -L, -n, -h (and -w / -P / -t: not in the usage either).
#   Incremental from a clone's origin needs the FULL origin name:
#   `zfs send -i P/base@s1 P/clone@c` works; `zfs send -i @s1 P/clone@c`
#   prints "warning: cannot send 'P/clone@c': incremental source (@s1) does not
#   exist", writes 0 bytes and exits 1; `-i base@s1` (no pool) gives
#   "incremental source must be in same filesystem" + usage, rc 2.
#   `zfs send P/fs@nosuch`: "WARNING: could not send P/fs@nosuch: does not
#   exist", rc 1.  `zfs send P/fs`: "argument must be a snapshot" + usage, rc 2.
#   Stream size ~= data size (64 MiB random: send 0.25 s, send|receive 0.6 s).
# zfs receive (usage: "receive [-vnF] <filesystem|volume|snapshot>" and
#   "receive [-vnF] -d <filesystem>"):
#   full and incremental streams through pipes work; -F, -v, -n work; -u is
#   accepted although undocumented (dataset received but not mounted).
#   `zfs receive -s`: unsupported, rc 2, nothing received, stderr:
#     invalid option 's'
#     usage:
#     	receive [-vnF] <filesystem|volume|snapshot>
#     	receive [-vnF] -d <filesystem>
#     (+ the same two "For the ... list" lines as above)
#   Existing target, full stream: "cannot receive new filesystem stream:
#   destination 'P/fs' exists / must specify -F to overwrite it" (rc 1).
#   Incremental whose base is not the newest snapshot: "cannot receive
#   incremental stream: most recent snapshot of P/fs does not / match
#   incremental source" (rc 1; the text really wraps after "does not").
#   TRAP: reading files in a received, mounted dataset updates atime, and then
#   the next incremental receive fails with "cannot receive incremental stream:
#   destination P/fs has been modified / since most recent snapshot" (rc 1).
#   Avoid with atime=off or readonly=on on the target, receive -u, or -F.
#   An incremental stream received into a NEW name becomes a clone of whatever
#   snapshot in the pool has the stream's from-guid (origin reported by
#   `zfs get origin`); that is how origin images (clones) are imported.
#   Truncated stream: "cannot receive new filesystem stream: invalid backup
#   stream" (rc 1), nothing left behind.  Empty/garbage stream: "cannot
#   receive: failed to read from stream" (rc 1).  Missing parent: "cannot open
#   'P/a/b': dataset does not exist / cannot receive new filesystem stream:
#   dataset does not exist".
# zfs list / get:
#   `zfs list -p` is UNSUPPORTED: "invalid option 'p'" + usage (rc 2).
#   `zfs list -H -o name,used,refer,avail,mountpoint,type,origin -t all -r P`,
#   `-d N`, `-s creation`, `-t snapshot|filesystem|volume|all` work, but sizes
#   are human ("3.12M") and creation is "Tue Nov 24 14:23 2026".  For exact
#   numbers use `zfs get -H -p -o value PROP DS` (-p works for get):
#   used/referenced/available in bytes, creation in epoch seconds, guid as a
#   decimal u64 (`zfs list -o guid` prints "13.5E").  `written`, and other
#   post-v23 properties, are rejected ("bad property list: invalid property
#   'written'", rc 2).  User properties (`zfs set imgstore:x=v`) work on
#   filesystems and snapshots; unset ones read as "-".
#   Missing dataset: "cannot open 'P/x': dataset does not exist" (rc 1).
# Clones / origin: `zfs clone P/fs@s P/c` works; `zfs get -H -o value origin
#   P/c` prints "P/fs@s" ("-" when not a clone, also for snapshots);
#   `zfs promote` works.  `zfs diff` does not exist ("unrecognized command 'diff'").
# zvols: NOT supported.  `zfs create -V 64M P/vol` (with or without -s) prints
#   "internal error: Function not implemented" and aborts (SIGABRT, rc 134);
#   nothing is created, the daemon keeps running.  No /dev/zvol.
# Compression: on|off|lzjb|gzip|gzip-N|zle only; lz4 is rejected ("'compression'
#   must be one of 'on | off | lzjb | gzip | gzip-[1-9] | zle'").
# ---------------------------------------------------------------------------

set -euo pipefail

PIDFILE=/var/run/zfs-fuse.pid
LOCKFILE=/run/lock/imgstore-zfs-fuse-setup.lock

log() { printf 'zfs-fuse-setup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

mode=ensure
case "${1:-}" in
  --destroy) mode=destroy; shift ;;
  --recreate) mode=recreate; shift ;;
  -h|--help) usage; exit 0 ;;
  -*) usage >&2; die "unknown option: $1" ;;
esac

POOL="${1:-${IMGSTORE_TEST_POOL:-imgstore-test}}"
SIZE="${2:-${IMGSTORE_TEST_POOL_SIZE:-4G}}"
DIR="${IMGSTORE_TEST_POOL_DIR:-/var/tmp/imgstore-zpool}"
WAIT="${ZFS_FUSE_WAIT:-60}"
FILE="$DIR/$POOL.img"

[[ "$POOL" =~ ^[A-Za-z][A-Za-z0-9_.:-]*$ ]] || die "bad pool name: '$POOL'"
[[ "$WAIT" =~ ^[0-9]+$ ]] || die "ZFS_FUSE_WAIT must be a number of seconds"
[[ "$(id -u)" == 0 ]] || die "must run as root"
for c in zfs-fuse zpool zfs truncate flock; do
  command -v "$c" >/dev/null || die "'$c' not found (apt-get install zfs-fuse)"
done

mkdir -p "$(dirname "$LOCKFILE")"
exec 9>"$LOCKFILE"
flock -w 300 9 || die "timed out waiting for $LOCKFILE"

daemon_answers() { zpool list -H -o name >/dev/null 2>&1; }

daemon_pid_alive() {
  local pid
  [[ -s "$PIDFILE" ]] || return 1
  pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
    && grep -q zfs-fuse "/proc/$pid/comm" 2>/dev/null
}

ensure_daemon() {
  daemon_answers && return 0

  if [[ ! -e /dev/fuse ]]; then
    modprobe fuse 2>/dev/null || true
    [[ -e /dev/fuse ]] || die "/dev/fuse is missing: FUSE is not available here"
  fi

  if daemon_pid_alive; then
    log "zfs-fuse (pid $(cat "$PIDFILE")) is running but not answering yet; waiting"
  else
    log "starting zfs-fuse"
    rm -f "$PIDFILE"
    # Same environment the Debian init script gives it.  It daemonizes itself.
    # 9>&-: the daemon must not inherit (and so hold forever) our flock.
    (
      ulimit -v unlimited 2>/dev/null || true
      ulimit -l unlimited 2>/dev/null || true
      ulimit -s unlimited 2>/dev/null || true
      unset LANG
      exec zfs-fuse --pidfile "$PIDFILE" </dev/null >/dev/null 2>&1 9>&-
    ) || die "zfs-fuse failed to start (exit $?)"
  fi

  local deadline=$((SECONDS + WAIT))
  until daemon_answers; do
    if ((SECONDS >= deadline)); then
      zpool list >&2 || true
      die "zfs-fuse did not answer 'zpool list' within ${WAIT}s"
    fi
    sleep 0.2
  done
  log "zfs-fuse is up (pid $(cat "$PIDFILE" 2>/dev/null || echo '?'))"
}

pool_imported() { zpool list -H -o name "$POOL" >/dev/null 2>&1; }

destroy_pool() {
  if pool_imported; then
    log "destroying pool $POOL"
    # zfs-fuse: destroying a pool (or dataset) whose filesystems are mounted
    # fails now and then with "pool is busy" (the failed try unmounts them).
    # Unmount deepest first, then retry a few times.
    local ds mounted try
    zfs list -H -o name,mounted -t filesystem -r "$POOL" 2>/dev/null | sort -r \
      | while IFS=$'\t' read -r ds mounted; do
          [[ "$mounted" == yes ]] && zfs umount "$ds" >&2 2>/dev/null || true
        done
    for try in 1 2 3 4 5 6 7 8 9 10; do
      zpool destroy -f "$POOL" 2>/tmp/zfs-fuse-setup.$$.err && break
      pool_imported || break
      if ((try == 10)); then
        cat /tmp/zfs-fuse-setup.$$.err >&2
        rm -f /tmp/zfs-fuse-setup.$$.err
        die "zpool destroy $POOL failed"
      fi
      sleep 0.5
    done
    rm -f /tmp/zfs-fuse-setup.$$.err
  fi
  if [[ -e "$FILE" ]]; then
    log "removing $FILE"
    rm -f "$FILE"
  fi
  rmdir "$DIR" 2>/dev/null || true
}

create_pool() {
  mkdir -p "$DIR"
  rm -f "$FILE"
  truncate -s "$SIZE" "$FILE" || die "cannot create sparse file $FILE ($SIZE)"
  log "creating pool $POOL on $FILE ($SIZE, sparse)"
  # -f: the file may carry a stale label of an earlier (destroyed) pool.
  if ! zpool create -f "$POOL" "$FILE" 2>/tmp/zfs-fuse-setup.$$.err; then
    cat /tmp/zfs-fuse-setup.$$.err >&2
    rm -f /tmp/zfs-fuse-setup.$$.err "$FILE"
    die "zpool create $POOL failed"
  fi
  grep -v '^Defaulting to 4K blocksize' /tmp/zfs-fuse-setup.$$.err >&2 || true
  rm -f /tmp/zfs-fuse-setup.$$.err
}

# A zfs-fuse daemon that was restarted leaves its old FUSE mounts behind,
# answering "Transport endpoint is not connected": detach them and mount
# the datasets again, or every new dataset fails to mount under them.
repair_stale_mounts() {
  local m stale=0
  while read -r m; do
    if ! stat "$m" >/dev/null 2>&1; then
      umount -l "$m" 2>/dev/null || true
      stale=1
    fi
  done < <(awk '$3 == "fuse.zfs" || $3 == "fuse" && $1 ~ /^'"$POOL"'/ {print $2}' /proc/mounts | sort -r)
  if ((stale)); then
    log "stale zfs-fuse mounts detached; remounting"
    zfs mount -a >&2 || true
  fi
}

ensure_pool() {
  if pool_imported; then
    local health
    health="$(zpool list -H -o health "$POOL")"
    if [[ "$health" == ONLINE ]]; then
      repair_stale_mounts
      log "pool $POOL exists and is ONLINE"
      return 0
    fi
    log "pool $POOL is $health: recreating it"
    destroy_pool
  elif [[ -e "$FILE" ]]; then
    log "importing pool $POOL from $DIR"
    if zpool import -d "$DIR" "$POOL" >&2 && pool_imported \
        && [[ "$(zpool list -H -o health "$POOL")" == ONLINE ]]; then
      return 0
    fi
    log "import failed: recreating $POOL"
    pool_imported && zpool destroy -f "$POOL" >&2 || true
  fi
  create_pool
  pool_imported || die "pool $POOL not visible after create"
}

case "$mode" in
  destroy)
    ensure_daemon
    destroy_pool
    ;;
  recreate)
    ensure_daemon
    destroy_pool
    ensure_pool
    echo "$POOL"
    ;;
  ensure)
    ensure_daemon
    ensure_pool
    echo "$POOL"
    ;;
esac
