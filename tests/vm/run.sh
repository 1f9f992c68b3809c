#!/usr/bin/env bash
# Boot a tiny Linux VM (qemu, software emulation) with a busybox initramfs that
# holds the given pynish binary, run the cgroup v2 scenarios of tests/vm/init.sh
# inside it, and check the result lines it prints on the serial console.
#
# usage: tests/vm/run.sh PYNISH_BINARY
#
# Needs (installs nothing itself): qemu-system-x86_64, a kernel at
# /boot/vmlinuz-*, a static busybox, gcc with a static libc, cpio and gzip.
# On Debian: apt-get install qemu-system-x86 linux-image-cloud-amd64 busybox-static
#
# Exit status: 0 every case passed; 1 a case failed or is missing, or the VM
# did not finish; 2 usage error; 77 skipped (a requirement is missing; the
# reason is printed as "SKIP: ..." on stdout).
#
# The console log is printed on stdout. Environment knobs:
#   PYNISH_VM_CASES    space-separated subset of cases to run (default: all)
#   PYNISH_VM_KERNEL   kernel image to boot (default: newest /boot/vmlinuz-*)
#   PYNISH_VM_ACCEL    tcg (default), kvm, or auto (probe kvm, fall back to tcg)
#   PYNISH_VM_TIMEOUT  hard limit in seconds for the whole VM run (default 300)
#   PYNISH_VM_SMP      number of virtual CPUs (default 2)
#   PYNISH_VM_KEEP     if set, keep the temporary directory and print its path
#   PYNISH_VM_BASELINE another pynish binary, as /bin/pynish-base, for the birth_cost case
set -u -o pipefail

ALL_CASES="memory processes daemon cpu_subsecond nonleaf unpriv_delegated unpriv_fallback timeline cost born cpu_quota oom_outside nested_memory nested_processes records io no_leftover_groups"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

skip() {
    echo "SKIP: $*"
    exit 77
}

if [ $# -ne 1 ]; then
    echo "usage: $0 PYNISH_BINARY" >&2
    exit 2
fi
pynish_bin=$1
if [ ! -f "$pynish_bin" ] || [ ! -x "$pynish_bin" ]; then
    echo "error: $pynish_bin is not an executable file" >&2
    exit 2
fi

cases=${PYNISH_VM_CASES:-$ALL_CASES}
accel=${PYNISH_VM_ACCEL:-tcg}
vm_timeout=${PYNISH_VM_TIMEOUT:-300}
smp=${PYNISH_VM_SMP:-2}

# ---------------------------------------------------------------- requirements
[ "$(uname -m)" = x86_64 ] || skip "host is $(uname -m), the VM harness needs x86_64"
command -v qemu-system-x86_64 >/dev/null ||
    skip "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"

kernel=${PYNISH_VM_KERNEL:-}
if [ -z "$kernel" ]; then
    # shellcheck disable=SC2012 # kernel file names are plain
    kernel=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
    [ -n "$kernel" ] || skip "no kernel at /boot/vmlinuz-* (apt-get install linux-image-cloud-amd64)"
fi
[ -r "$kernel" ] || skip "kernel $kernel is not readable (run as root?)"

busybox=
for b in /bin/busybox /usr/bin/busybox /usr/lib/busybox/busybox; do
    if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then # ldd fails on static binaries
        busybox=$b
        break
    fi
done
[ -n "$busybox" ] || skip "no static busybox found (apt-get install busybox-static)"

command -v gcc >/dev/null || skip "gcc not found"
command -v cpio >/dev/null || skip "cpio not found"
command -v gzip >/dev/null || skip "gzip not found"
command -v timeout >/dev/null || skip "timeout (coreutils) not found"

work=$(mktemp -d "${TMPDIR:-/tmp}/pynish-vm.XXXXXX") || exit 1
qemu_pid=
# shellcheck disable=SC2317 # called through trap
cleanup() {
    if [ -n "$qemu_pid" ]; then
        # timeout(1) made itself a process group leader: end it and qemu.
        kill -KILL -- "-$qemu_pid" 2>/dev/null || kill -KILL "$qemu_pid" 2>/dev/null
        wait "$qemu_pid" 2>/dev/null
    fi
    if [ -n "${PYNISH_VM_KEEP:-}" ]; then
        echo "kept: $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# gcc may be present without a static libc (libc6-dev brings libc.a).
if ! echo 'int main(void){return 0;}' | gcc -static -x c -o "$work/probe" - 2>/dev/null; then
    skip "gcc cannot link static programs (apt-get install libc6-dev)"
fi

# ----------------------------------------------------------------- initramfs
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,home/user}
chmod 1777 "$root/tmp"

cp "$busybox" "$root/bin/busybox"
"$busybox" --list-full | while read -r applet; do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done

# pynish and the shared libraries it needs, each at its own absolute path.
cp -L "$pynish_bin" "$root/bin/pynish"
chmod 755 "$root/bin/pynish"
copy_lib() {
    local src=$1
    [ -e "$src" ] || return 0
    mkdir -p "$root$(dirname "$src")"
    cp -L "$src" "$root$src"
}
if ldd "$pynish_bin" >"$work/ldd.txt" 2>&1; then
    # lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)"
    #        "/lib64/ld-linux-x86-64.so.2 (0x...)"
    while read -r line; do
        case $line in
        *'=> not found'*)
            echo "error: pynish needs a library that is not installed: $line" >&2
            exit 1
            ;;
        *'=> /'*) lib=${line#*=> } ;;
        /*) lib=$line ;;
        *) continue ;;
        esac
        copy_lib "${lib%% (*}"
    done <"$work/ldd.txt"
fi

if [ -n "${PYNISH_VM_BASELINE:-}" ]; then
    cp -L "$PYNISH_VM_BASELINE" "$root/bin/pynish-base"
    chmod 755 "$root/bin/pynish-base"
fi

# GNU timeout, the peer of the cost case (busybox has its own, static and cheaper).
timeout_bin=$(command -v timeout)
cp -L "$timeout_bin" "$root/bin/gnu-timeout"
if ldd "$timeout_bin" >"$work/ldd-timeout.txt" 2>&1; then
    while read -r line; do
        case $line in
        *'=> /'*) lib=${line#*=> } ;;
        /*) lib=$line ;;
        *) continue ;;
        esac
        copy_lib "${lib%% (*}"
    done <"$work/ldd-timeout.txt"
fi

# Static helper programs.
for src in "$here"/helpers/*.c; do
    name=$(basename "$src" .c)
    if ! gcc -static -O2 -pthread -o "$root/bin/$name" "$src" 2>"$work/gcc.err"; then
        cat "$work/gcc.err" >&2
        echo "error: could not compile $src" >&2
        exit 1
    fi
done

# brd (a RAM block device) for the io case: the initramfs has no disk, and the tree's write to storage must
# reach a block device to count. The module of the kernel booted, if its modules are installed.
brd=/lib/modules/$(basename "$kernel" | sed 's/^vmlinuz-//')/kernel/drivers/block/brd.ko
[ -r "$brd" ] && cp "$brd" "$root/brd.ko"

cp "$here/init.sh" "$root/init"
chmod 755 "$root/init"

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
user:x:1000:
EOF
chown 1000:1000 "$root/home/user" 2>/dev/null
# The kernel opens /dev/console before it runs /init; init.sh also reopens it
# after mounting devtmpfs, so a failed mknod (not root) is not fatal.
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null
mknod -m 666 "$root/dev/null" c 1 3 2>/dev/null

(cd "$root" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) | gzip -1 >"$work/initrd.gz" ||
    { echo "error: could not build the initramfs" >&2; exit 1; }

# ------------------------------------------------------------------- boot
qemu_common=(-nodefaults -no-user-config -display none -monitor none -no-reboot
    -nic none -m 2048 -smp "$smp" -kernel "$kernel" -initrd "$work/initrd.gz")
append="console=ttyS0 panic=-1 quiet pynish.cases=$(echo "$cases" | tr -s ' \n' ',,' | sed 's/^,//; s/,$//')"

kvm_works() {
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
    # A throwaway boot that must reach /init within 30 s.
    local log=$work/kvm-probe.log
    timeout -k 5 30 qemu-system-x86_64 "${qemu_common[@]}" -machine accel=kvm -cpu host \
        -serial "file:$log" -append "console=ttyS0 panic=-1 quiet pynish.probe=1" \
        </dev/null >/dev/null 2>&1
    grep -q PYNISH-VM-PROBE-OK "$log" 2>/dev/null
}

case $accel in
auto)
    if kvm_works; then accel=kvm; else accel=tcg; fi
    ;;
kvm | tcg) ;;
*)
    echo "error: PYNISH_VM_ACCEL must be tcg, kvm or auto" >&2
    exit 2
    ;;
esac
if [ "$accel" = kvm ]; then
    machine=(-machine accel=kvm -cpu host)
else
    machine=(-machine accel=tcg -cpu max)
fi

log=$work/console.log
echo "pynish-vm: kernel=$kernel accel=$accel smp=$smp binary=$pynish_bin"
echo "pynish-vm: cases: $cases"
start=$(date +%s)
timeout -k 10 "$vm_timeout" qemu-system-x86_64 "${qemu_common[@]}" "${machine[@]}" \
    -serial "file:$log" -append "$append" </dev/null >"$work/qemu.out" 2>&1 &
qemu_pid=$!
wait "$qemu_pid"
qemu_rc=$?
qemu_pid=
elapsed=$(($(date +%s) - start))

echo "----- VM console log -----"
tr -d '\r' <"$log" 2>/dev/null
echo "----- end of VM console log -----"
if [ -s "$work/qemu.out" ]; then
    echo "----- qemu output -----"
    cat "$work/qemu.out"
fi
echo "pynish-vm: qemu exited with $qemu_rc after ${elapsed}s"
if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
    echo "pynish-vm: FAIL: the VM did not power off within ${vm_timeout}s"
fi

# ------------------------------------------------------------------ verdict
status=0
[ "$qemu_rc" -eq 0 ] || status=1
n_pass=0
for c in $cases; do
    line=$(tr -d '\r' <"$log" | grep -E "^PYNISH-VM-CASE $c (PASS|FAIL)( |$)" | tail -n 1)
    case $line in
    "PYNISH-VM-CASE $c PASS"*) n_pass=$((n_pass + 1)) ;;
    "PYNISH-VM-CASE $c FAIL"*)
        echo "pynish-vm: case $c failed: ${line#"PYNISH-VM-CASE $c FAIL"}"
        status=1
        ;;
    *)
        echo "pynish-vm: case $c is missing"
        status=1
        ;;
    esac
done
if ! tr -d '\r' <"$log" | grep -q '^PYNISH-VM-DONE '; then
    echo "pynish-vm: the VM never printed PYNISH-VM-DONE"
    status=1
fi
n_total=$(echo "$cases" | wc -w)
echo "pynish-vm: $n_pass of $n_total cases passed"
exit $status
