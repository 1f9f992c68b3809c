#!/bin/sh
# /init of the pynish test VM: runs as PID 1 under busybox sh, mounts cgroup2,
# runs the scenarios named by pynish.cases= on the kernel command line (all of
# them by default) and prints for each exactly one line
#   PYNISH-VM-CASE <name> PASS|FAIL <detail>
# then "PYNISH-VM-DONE <n_pass> <n_fail>", and powers the VM off.
# On a failure the case's command, exit code and output are printed first, on
# lines starting with "  [<name>] ".
# Built into the initramfs by tests/vm/run.sh, with /bin/pynish and the static
# helpers from tests/vm/helpers/ in /bin.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
umask 022

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t tmpfs -o mode=1777 tmpfs /tmp

off() {
    sync
    poweroff -f
    sleep 10
}

if grep -q 'pynish\.probe=1' /proc/cmdline; then
    echo PYNISH-VM-PROBE-OK
    off
fi

# Keep kernel messages (OOM reports...) off the console so they cannot cut
# into a result line; failures print the tail of dmesg instead.
dmesg -n 1 2>/dev/null

CG=/sys/fs/cgroup
mkdir -p $CG
if ! mount -t cgroup2 cgroup2 $CG; then
    echo "PYNISH-VM-ERROR cannot mount cgroup2"
    echo "PYNISH-VM-DONE 0 1"
    off
fi
if ! echo "+memory +pids +cpu" >$CG/cgroup.subtree_control; then
    echo "PYNISH-VM-ERROR cannot enable controllers (available: $(cat $CG/cgroup.controllers))"
fi

CASE_TIMEOUT=20 # seconds, for each pynish run
ALL_CASES="memory processes daemon cpu_subsecond nonleaf unpriv_delegated unpriv_fallback timeline cost born birth_cost cpu_quota oom_outside nested_memory nested_processes records io no_leftover_groups"
CASES=$(sed -n 's/.*pynish\.cases=\([^ ]*\).*/\1/p' /proc/cmdline | tr , ' ')
[ -n "$CASES" ] || CASES=$ALL_CASES

echo "PYNISH-VM-INFO kernel=$(uname -r) cpus=$(nproc) controllers=\"$(cat $CG/cgroup.controllers)\" subtree_control=\"$(cat $CG/cgroup.subtree_control)\""
echo "PYNISH-VM-INFO pynish check (as root):"
timeout -s KILL 10 /bin/pynish check 2>&1 | sed 's/^/  [info] /'

# Groups present before any case; no_leftover_groups compares against this.
find $CG -type d | sort >/tmp/cg.before

# ------------------------------------------------------------------ helpers

# run_pynish TAG GROUP UID ARGS...
# Runs /bin/pynish ARGS from a shell that first moves itself into cgroup
# $CG/GROUP (GROUP "-": stay in the root group) and then drops to uid and gid
# UID (UID "-": stay root). Kills it after CASE_TIMEOUT seconds.
# Sets RC, OUT, ERR (file names), JSON (the last stderr line from its first
# "{") and adds to the case's log.
run_pynish() {
    tag=$1 group=$2 uid=$3
    shift 3
    OUT=/tmp/$tag.out ERR=/tmp/$tag.err
    LOG="$LOG
\$ [group=$group uid=$uid] pynish $*"
    grp=
    [ "$group" = - ] || grp=$CG/$group
    if [ "$uid" = - ]; then
        set -- /bin/pynish "$@"
    else
        set -- /bin/setuid_exec "$uid" "$uid" /bin/pynish "$@"
    fi
    # shellcheck disable=SC2016
    sh -c 'if [ -n "$0" ]; then echo $$ >"$0/cgroup.procs" || exit 99; fi; exec "$@"' \
        "$grp" "$@" >"$OUT" 2>"$ERR" </dev/null &
    pid=$!
    (sleep $CASE_TIMEOUT && kill -KILL $pid) 2>/dev/null &
    wd=$!
    wait $pid
    RC=$?
    if kill -0 $wd 2>/dev/null; then
        kill $wd 2>/dev/null
    else
        FAILS="$FAILS timeout(killed after ${CASE_TIMEOUT}s)"
    fi
    JSON=$(tail -n 1 "$ERR" | sed 's/^[^{]*//')
    LOG="$LOG
exit code $RC
stdout: $(tail -n 15 "$OUT")
stderr: $(tail -n 15 "$ERR")"
}

# jget JSON KEY: the value of "KEY" (the last one in JSON), strings unquoted.
# serde_json writes no spaces. Use jobj first for a key of a nested object.
jget() {
    printf '%s\n' "$1" | sed -nE 's/.*"'"$2"'":("[^"]*"|[^,}]*).*/\1/p' | sed -E 's/^"(.*)"$/\1/'
}
# jobj JSON KEY: the inside of the flat object "KEY":{...}.
jobj() {
    printf '%s\n' "$1" | sed -nE 's/.*"'"$2"'":\{([^}]*)\}.*/\1/p'
}

# Checks; each failed one is added to FAILS.
expect_eq() { # expect_eq WHAT ACTUAL EXPECTED
    [ "$2" = "$3" ] || FAILS="$FAILS $1=${2:-<none>}(want $3)"
}
is_num() {
    case $1 in '' | null | *[!0-9.eE+-]*) return 1 ;; esac
    return 0
}
expect_cmp() { # expect_cmp WHAT ACTUAL OP BOUND   (OP: < <= >= >)
    if ! is_num "$2"; then
        FAILS="$FAILS $1=${2:-<none>}(want a number $3 $4)"
    elif ! awk -v a="$2" -v b="$4" -v op="$3" 'BEGIN {
        a += 0; b += 0
        ok = (op == "<" && a < b) || (op == "<=" && a <= b) || (op == ">=" && a >= b) || (op == ">" && a > b)
        exit !ok }'; then
        FAILS="$FAILS $1=$2(want $3 $4)"
    fi
}

# alive PID: the process exists and is not a zombie.
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    state=$(sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' /proc/"$1"/stat 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ]
}

N_PASS=0
N_FAIL=0
# finish NAME DETAIL: print the case's result line (and its log on failure).
finish() {
    if [ -z "$FAILS" ]; then
        N_PASS=$((N_PASS + 1))
        echo "PYNISH-VM-CASE $1 PASS $2"
    else
        N_FAIL=$((N_FAIL + 1))
        printf '%s\n' "$LOG" | sed '/^$/d' | sed "s/^/  [$1] /"
        echo "PYNISH-VM-CASE $1 FAIL$FAILS; $2"
    fi
}

# -------------------------------------------------------------------- cases

case_memory() {
    run_pynish memory - - --backend cgroup2 --memory 100MB --json -- /bin/alloc 1000
    usage=$(jobj "$JSON" usage)
    enf=$(jobj "$JSON" enforcement)
    peak=$(jget "$usage" peak_memory_bytes)
    expect_eq exit "$RC" 122
    expect_eq verdict "$(jget "$JSON" verdict)" memory
    expect_eq enforcement.memory "$(jget "$enf" memory)" cgroup2
    # memory.max rounds 100 MB down to whole pages; allow 4 MiB of slack.
    expect_cmp peak_memory_bytes "$peak" '<=' $((100000000 + 4194304))
    # The job did reach the limit, so a much lower peak means it was not measured.
    expect_cmp peak_memory_bytes "$peak" '>=' 50000000
    DETAIL="exit=$RC verdict=$(jget "$JSON" verdict) enforcement.memory=$(jget "$enf" memory) peak_memory_bytes=$peak"
}

case_processes() {
    run_pynish processes - - --backend cgroup2 --processes 50 --json -- /bin/forkbomb 2000
    usage=$(jobj "$JSON" usage)
    enf=$(jobj "$JSON" enforcement)
    maxp=$(jget "$usage" max_processes)
    expect_eq exit "$RC" 121
    expect_eq verdict "$(jget "$JSON" verdict)" processes
    expect_eq enforcement.processes "$(jget "$enf" processes)" cgroup2
    expect_cmp max_processes "$maxp" '<=' 50
    DETAIL="exit=$RC verdict=$(jget "$JSON" verdict) enforcement.processes=$(jget "$enf" processes) max_processes=$maxp"
}

case_daemon() {
    rm -f /tmp/daemon.pid
    run_pynish daemon - - --backend cgroup2 --wall-time 1s --json -- \
        /bin/sh -c '/bin/daemon /tmp/daemon.pid 1000; sleep 100'
    dpid=$(cat /tmp/daemon.pid 2>/dev/null)
    expect_eq exit "$RC" 124
    expect_eq verdict "$(jget "$JSON" verdict)" wall_time
    if [ -z "$dpid" ]; then
        FAILS="$FAILS daemon_pid=<none>(the daemon never wrote its pid)"
        dstate="unknown"
    elif alive "$dpid"; then
        FAILS="$FAILS daemon_alive=$dpid(want it killed)"
        dstate="alive"
        kill -KILL "$dpid" 2>/dev/null
    else
        dstate="dead"
    fi
    DETAIL="exit=$RC verdict=$(jget "$JSON" verdict) wall_time_s=$(jget "$(jobj "$JSON" usage)" wall_time_s) daemon_pid=${dpid:-none} daemon=$dstate"
}

case_cpu_subsecond() {
    run_pynish cpu_subsecond - - --backend cgroup2 --cpu-time 300ms --json -- /bin/spin
    usage=$(jobj "$JSON" usage)
    enf=$(jobj "$JSON" enforcement)
    u=$(jget "$usage" cpu_user_s)
    s=$(jget "$usage" cpu_system_s)
    cpu=
    if is_num "$u" && is_num "$s"; then
        cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.3f", u + s }')
    fi
    expect_eq exit "$RC" 123
    expect_eq verdict "$(jget "$JSON" verdict)" cpu_time
    expect_cmp cpu_s "$cpu" '>=' 0.3
    expect_cmp cpu_s "$cpu" '<' 0.6
    DETAIL="exit=$RC verdict=$(jget "$JSON" verdict) enforcement.cpu_time=$(jget "$enf" cpu_time) cpu_s=$cpu (user=$u system=$s)"
}

case_nonleaf() {
    mkdir -p $CG/test-nonleaf
    run_pynish nonleaf test-nonleaf - --backend cgroup2 --memory 100MB --json -- /bin/alloc 1000
    enf=$(jobj "$JSON" enforcement)
    expect_eq exit "$RC" 122
    expect_eq verdict "$(jget "$JSON" verdict)" memory
    expect_eq enforcement.memory "$(jget "$enf" memory)" cgroup2
    DETAIL="exit=$RC verdict=$(jget "$JSON" verdict) enforcement.memory=$(jget "$enf" memory) started_in=/test-nonleaf"
}

case_unpriv_delegated() {
    d=$CG/user1000
    mkdir -p $d
    # Delegation as in the kernel's cgroup-v2 documentation: the directory and
    # its cgroup.procs, cgroup.threads and cgroup.subtree_control.
    chown 1000:1000 $d $d/cgroup.procs $d/cgroup.threads $d/cgroup.subtree_control
    run_pynish unpriv_delegated user1000 1000 --memory 100MB --json -- /bin/alloc 1000
    enf=$(jobj "$JSON" enforcement)
    expect_eq exit "$RC" 122
    expect_eq verdict "$(jget "$JSON" verdict)" memory
    expect_eq backend "$(jget "$JSON" backend)" cgroup2
    expect_eq enforcement.memory "$(jget "$enf" memory)" cgroup2
    DETAIL="exit=$RC verdict=$(jget "$JSON" verdict) backend=$(jget "$JSON" backend) enforcement.memory=$(jget "$enf" memory) uid=1000 started_in=/user1000"
}

case_unpriv_fallback() {
    mkdir -p $CG/test-fallback # owned by root: nothing delegated to uid 1000
    run_pynish unpriv_fallback test-fallback 1000 --memory 100MB --json -- /bin/alloc 1000
    enf=$(jobj "$JSON" enforcement)
    expect_eq exit "$RC" 122
    expect_eq verdict "$(jget "$JSON" verdict)" memory
    expect_eq enforcement.memory "$(jget "$enf" memory)" proc
    DETAIL="exit=$RC verdict=$(jget "$JSON" verdict) backend=$(jget "$JSON" backend) enforcement.memory=$(jget "$enf" memory)"
    run_pynish unpriv_fallback_check test-fallback 1000 check
    if cat "$OUT" "$ERR" | grep -qi delegat; then
        DETAIL="$DETAIL check_mentions_delegation=yes"
    else
        FAILS="$FAILS check_mentions_delegation=no(want \"pynish check\" to say why: delegat...)"
        DETAIL="$DETAIL check_mentions_delegation=no"
    fi
}

# --timeline on cgroup2: two processes growing to the memory limit are recorded from the group's counters.
case_timeline() {
    T=/tmp/timeline.jsonl
    run_pynish timeline - - --backend cgroup2 --memory 100MB --timeline $T --json -- \
        /bin/sh -c '/bin/alloc 1000 25000 & /bin/alloc 1000 25000; wait'
    expect_eq exit "$RC" 122
    expect_eq header.backend "$(head -n 1 $T | grep -c '"backend":"cgroup2"')" 1
    samples=$(grep -c '^{"t":[0-9.]*,"cpu_user_s"' $T)
    expect_cmp samples "$samples" '>=' 10
    peak=$(sed -nE 's/.*"memory_bytes":([0-9]+),"processes".*/\1/p' $T | awk 'BEGIN { m = 0 } $1 > m { m = $1 } END { print m }')
    expect_cmp timeline.memory "$peak" '>=' 60000000
    expect_cmp timeline.memory "$peak" '<=' $((100000000 + 4194304))
    procs=$(sed -nE 's/^\{"t":[0-9.]+,"cpu_user_s".*"processes":([0-9]+)\}$/\1/p' $T | awk 'BEGIN { m = 0 } $1 > m { m = $1 } END { print m }')
    expect_cmp timeline.processes "$procs" '>=' 2
    expect_cmp kill_events "$(grep -cE '"event":"(oom_kill|signal)"' $T)" '>=' 1
    backwards=$(sed -nE 's/^\{"t":([0-9.]+),.*/\1/p' $T | awk 'NR > 1 && $1 + 0 < last + 0 { n++ } { last = $1 } END { print n + 0 }')
    expect_eq t_backwards "$backwards" 0
    expect_eq last_event "$(tail -n 1 $T | grep -c '"event":"end"')" 1
    LOG="$LOG
timeline: $(grep -c . $T) lines, events: $(grep -o '"event":"[a-z_]*"' $T | tr '\n' ' ')"
    DETAIL="exit=$RC samples=$samples memory=$peak processes=$procs events=$(grep -o '"event":"[a-z_]*"' $T | cut -d'"' -f4 | tr '\n' ,)"
}

# cost: pynish's cost on `true` against GNU timeout in this VM, as ratios (TCG emulates every instruction, so
# only ratios measured side by side here mean anything): the default path (auto without a memory or process
# limit: proc) and auto with --memory (a cgroup2 group: made, joined by the child before exec, removed), back to
# back and 0.3 s apart. Passes when every run succeeded on the expected backend; the figures are in the detail.
case_cost() {
    run_pynish cost_default - - --json -- /bin/true
    expect_eq default.backend "$(jget "$JSON" backend)" proc
    run_pynish cost_memory - - --memory 1GB --json -- /bin/true
    expect_eq memory.backend "$(jget "$JSON" backend)" cgroup2
    for spec in "back_to_back 30 0" "apart_0.3s 12 300"; do
        set -- $spec
        /bin/alternate "$2" "$3" -- timeout /bin/gnu-timeout 100 /bin/true ::: default /bin/pynish -- /bin/true \
            ::: memory /bin/pynish --memory 1GB -- /bin/true >/tmp/cost.txt 2>&1
        LOG="$LOG
$1: $(tr '\n' ';' </tmp/cost.txt)"
        base=$(awk '$1 == "timeout" { print $2 }' /tmp/cost.txt)
        fails=$(awk '{ n += $4 } END { print n + 0 }' /tmp/cost.txt)
        expect_eq "$1.failed_runs" "$fails" 0
        DETAIL="$DETAIL $1:$(awk -v b="$base" 'NF == 4 && b > 0 {
            printf " %s=%.2fx", $1, $2 / b } END { printf " (timeout %.1f ms)", b / 1000 }' /tmp/cost.txt)"
    done
}
# --output with --output-limit on cgroup2: a flood of output (~2 MB) keeps its first and last half around one
# marker and the command completes; the report says when and where (started_at, hostname). (I/O: case_io.)
case_records() {
    O=/tmp/records.log
    run_pynish records - - --backend cgroup2 --memory 100MB --output $O --output-limit 64KiB --json -- \
        /bin/sh -c 'seq 1 300000; echo end >&2'
    out=$(jobj "$JSON" output)
    expect_eq exit "$RC" 0
    expect_eq verdict "$(jget "$JSON" verdict)" completed
    expect_eq backend "$(jget "$JSON" backend)" cgroup2
    size=$(wc -c <$O)
    expect_cmp output.size "$size" '<=' 73728
    expect_eq first_line "$(head -n 1 $O)" 1
    expect_eq last_line "$(tail -n 1 $O)" end
    expect_eq markers "$(grep -c '^\[pynish: [0-9]* bytes' $O)" 1
    expect_eq output.bytes_written "$(jget "$out" bytes_written)" 65536
    expect_eq hostname "$(jget "$JSON" hostname)" "$(hostname)"
    started=$(jget "$JSON" started_at)
    expect_eq started_at.rfc3339 "$(expr "$started" : '[0-9]\{4\}-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\.[0-9]*Z$' >/dev/null && echo yes)" yes
    DETAIL="exit=$RC size=$size output={$out} started_at=$started"
}


# cpu_quota: --cpu-quota 0.5 on a real cgroup v2 cpu controller (cpu.max): one spinner and two spinners together
# get 1.1-1.9 s of CPU in 3 s of wall time, as root and as a user whose group lists cpu in cgroup.controllers
# (delegated, as systemd's Delegate=yes leaves it): pynish enables it in the group's subtree_control itself.
case_cpu_quota() {
    d=$CG/user1000q
    mkdir -p $d
    chown 1000:1000 $d $d/cgroup.procs $d/cgroup.threads $d/cgroup.subtree_control
    DETAIL=
    for who in root:-:- user:user1000q:1000; do
        who_name=${who%%:*} rest=${who#*:}
        for n in 1 2; do
            run_pynish cpu_quota_$who_name$n "${rest%%:*}" "${rest#*:}" --cpu-quota 0.5 --wall-time 3s --json -- \
                /bin/sh -c "i=0; while [ \$i -lt $n ]; do /bin/spin & i=\$((i + 1)); done; wait"
            usage=$(jobj "$JSON" usage)
            enf=$(jobj "$JSON" enforcement)
            cpu=$(jget "$usage" cpu_time_s)
            expect_eq $who_name$n.exit "$RC" 124
            expect_eq $who_name$n.verdict "$(jget "$JSON" verdict)" wall_time
            expect_eq $who_name$n.enforcement.cpu_quota "$(jget "$enf" cpu_quota)" cgroup2
            expect_cmp $who_name$n.cpu_s "$cpu" '>=' 1.1
            expect_cmp $who_name$n.cpu_s "$cpu" '<=' 1.9
            DETAIL="$DETAIL $who_name/$n-spinners: cpu_s=$cpu enforcement.cpu_quota=$(jget "$enf" cpu_quota)"
        done
    done
    # The user's group as found: pynish turned cpu on there for the quota, and off again.
    expect_eq user1000q.subtree_control "$(cat $d/cgroup.subtree_control)" ""
}

# born: on cgroup v2 the command is born in its group (clone3 with CLONE_INTO_CGROUP), as root and as a user
# with a delegated group: -v says so and the command's /proc/self/cgroup is the run's group from its first
# instruction; an exec that fails after the birth (a missing #! interpreter) is still 126 with the reason.
case_born() {
    run_pynish born - - -v --backend cgroup2 --memory 100MB -- /bin/cat /proc/self/cgroup
    expect_eq exit "$RC" 0
    expect_eq born_log "$(grep -c 'cgroup2 backend, born in its group' "$ERR")" 1
    group=$(sed -n 's/^0:://p' "$OUT")
    case $group in */pynish-*) ;; *) FAILS="$FAILS group=${group:-<none>}(want .../pynish-...)" ;; esac
    DETAIL="root: group=$group"
    d=$CG/user1000
    mkdir -p $d
    chown 1000:1000 $d $d/cgroup.procs $d/cgroup.threads $d/cgroup.subtree_control
    run_pynish born_unpriv user1000 1000 -v --memory 100MB -- /bin/cat /proc/self/cgroup
    expect_eq unpriv.exit "$RC" 0
    expect_eq unpriv.born_log "$(grep -c 'cgroup2 backend, born in its group' "$ERR")" 1
    group=$(sed -n 's/^0:://p' "$OUT")
    case $group in /user1000/*pynish-*) ;; *) FAILS="$FAILS unpriv.group=${group:-<none>}(want /user1000/.../pynish-...)" ;; esac
    DETAIL="$DETAIL uid 1000: group=$group"
    printf '#!/nonexistent/interp\n' >/tmp/badinterp
    chmod 755 /tmp/badinterp
    run_pynish born_badinterp - - --backend cgroup2 --memory 100MB -- /tmp/badinterp
    expect_eq badinterp.exit "$RC" 126
    expect_eq badinterp.message "$(grep -c 'bad interpreter /nonexistent/interp: No such file or directory' "$ERR")" 1
    DETAIL="$DETAIL bad_interpreter_exit=$RC"
}

# birth_cost (only when asked: PYNISH_VM_CASES=birth_cost PYNISH_VM_BASELINE=<an older pynish>): a memory-limited
# run with the child born in its group against the baseline binary's (which writes cgroup.procs) and against a
# run without a group, medians of 25, back to back and 0.3 s apart, in one boot.
case_birth_cost() {
    if [ ! -x /bin/pynish-base ]; then
        FAILS=" no_baseline(PYNISH_VM_BASELINE unset)"
        return
    fi
    for spec in "back_to_back 25 0" "apart_0.3s 25 300"; do
        set -- $spec
        /bin/alternate "$2" "$3" -- plain /bin/pynish --wall-time 60s -- /bin/true \
            ::: born /bin/pynish --memory 64MB --wall-time 60s -- /bin/true \
            ::: written /bin/pynish-base --memory 64MB --wall-time 60s -- /bin/true \
            ::: base_plain /bin/pynish-base --wall-time 60s -- /bin/true >/tmp/birth.txt 2>&1
        LOG="$LOG
$1: $(tr '\n' ';' </tmp/birth.txt)"
        expect_eq "$1.failed_runs" "$(awk '{ n += $4 } END { print n + 0 }' /tmp/birth.txt)" 0
        DETAIL="$DETAIL $1:$(awk 'NF == 4 { m[$1] = $2 } END {
            printf " plain=%.2fms born=%.2fms written=%.2fms base_plain=%.2fms born/plain=%.2fx written/base_plain=%.2fx",
                m["plain"] / 1000, m["born"] / 1000, m["written"] / 1000, m["base_plain"] / 1000,
                m["born"] / m["plain"], m["written"] / m["base_plain"] }' /tmp/birth.txt)"
    done
}

# jlabel FILE LABEL: the report labelled LABEL among the JSON lines of FILE.
jlabel() {
    grep '"label":"'"$2"'"' "$1" | tail -n 1 | sed 's/^[^{]*//'
}

# usage.io_write_bytes on cgroup2: a 40 MiB fsynced write to a block device (brd, a RAM disk: the VM has no
# other), in a child of the command, counts at least 40 MiB; a direct read of it back counts in io_read_bytes.
case_io() {
    if [ ! -e /brd.ko ]; then
        FAILS="$FAILS no_brd.ko(run.sh copies it from the booted kernel's modules)"
        return
    fi
    [ -b /dev/ram0 ] || insmod /brd.ko rd_nr=1 rd_size=65536 || FAILS="$FAILS insmod_brd"
    run_pynish io - - --backend cgroup2 --memory 200MB --json -- /bin/sh -c \
        'sh -c "dd if=/dev/zero of=/dev/ram0 bs=1M count=40 conv=fsync 2>/dev/null"; dd if=/dev/ram0 of=/dev/null bs=1M count=40 iflag=direct 2>/dev/null'
    usage=$(jobj "$JSON" usage)
    expect_eq exit "$RC" 0
    expect_eq backend "$(jget "$JSON" backend)" cgroup2
    expect_cmp io_write_bytes "$(jget "$usage" io_write_bytes)" '>=' 41943040
    expect_cmp io_write_bytes "$(jget "$usage" io_write_bytes)" '<' 167772160
    expect_cmp io_read_bytes "$(jget "$usage" io_read_bytes)" '>=' 41943040
    DETAIL="exit=$RC usage={$usage}"
}

case_oom_outside() {
    # An enclosing group (a batch job's step) with a 150 MB limit; the run asks for 1 GB.
    mkdir -p $CG/test-encl
    echo 150M >$CG/test-encl/memory.max
    echo 0 >$CG/test-encl/memory.swap.max 2>/dev/null
    run_pynish oom_outside test-encl - --backend cgroup2 --memory 1GB --json -- /bin/alloc 300
    expect_eq exit "$RC" 137
    expect_eq verdict "$(jget "$JSON" verdict)" signaled
    expect_eq oom "$(jget "$JSON" oom)" outside
    grep -q 'OOM killer outside this run (the enclosing cgroup /test-encl limits memory to 150MiB)' "$ERR" ||
        FAILS="$FAILS message=<none>(want the enclosing group named)"
    DETAIL="exit=$RC verdict=$(jget "$JSON" verdict) oom=$(jget "$JSON" oom)"
}

case_nested_memory() {
    # The outer run's group has memory.oom.group: its OOM kill takes the whole group, the inner pynish too,
    # unless the inner run ends first; either way the outer says memory and the inner never says memory.
    run_pynish nested_memory - - --backend cgroup2 --label outer --memory 100MB --json -- \
        /bin/pynish --backend cgroup2 --label inner --memory 1GB --json -- /bin/alloc 300
    outer=$(jlabel "$ERR" outer)
    inner=$(jlabel "$ERR" inner)
    expect_eq exit "$RC" 122
    expect_eq outer.verdict "$(jget "$outer" verdict)" memory
    expect_eq outer.oom "$(jget "$outer" oom)" run
    if [ -n "$inner" ]; then
        expect_eq inner.verdict "$(jget "$inner" verdict)" signaled
        expect_eq inner.oom "$(jget "$inner" oom)" outside
    fi
    DETAIL="exit=$RC outer=$(jget "$outer" verdict)/$(jget "$outer" oom) inner=$(jget "$inner" verdict)/$(jget "$inner" oom)"
}

case_nested_processes() {
    # The inner tree keeps its children (they sleep 3 s) after the refused forks: the outer samples meanwhile.
    run_pynish nested_processes - - --backend cgroup2 --label outer --processes 5 --grace 1s --json -- \
        /bin/pynish --backend cgroup2 --label inner --processes 100 --json -- /bin/forkbomb 20 3
    outer=$(jlabel "$ERR" outer)
    inner=$(jlabel "$ERR" inner)
    expect_eq exit "$RC" 121
    expect_eq outer.verdict "$(jget "$outer" verdict)" processes
    expect_eq outer.fork_refused "$(jget "$outer" fork_refused)" run
    expect_eq inner.fork_refused "$(jget "$inner" fork_refused)" outside
    [ "$(jget "$inner" verdict)" != processes ] || FAILS="$FAILS inner.verdict=processes(want not processes)"
    DETAIL="exit=$RC outer=$(jget "$outer" verdict)/$(jget "$outer" fork_refused) inner=$(jget "$inner" verdict)/$(jget "$inner" fork_refused)"
}

case_no_leftover_groups() {
    find $CG -type d | sort >/tmp/cg.after
    # Groups this script made itself are expected; anything else new, including
    # groups below those, was left behind by pynish.
    left=$(grep -vxF -f /tmp/cg.before /tmp/cg.after |
        grep -vxF -e $CG/test-nonleaf -e $CG/user1000 -e $CG/test-fallback -e $CG/test-encl -e $CG/user1000q |
        sed "s|^$CG||")
    if [ -n "$left" ]; then
        for g in $left; do
            LOG="$LOG
left over: $g procs=[$(tr '\n' ' ' <"$CG$g/cgroup.procs" 2>/dev/null)] subtree_control=[$(cat "$CG$g/cgroup.subtree_control" 2>/dev/null)]"
        done
        FAILS=" left_over:$(printf '%s' "$left" | tr '\n' ',')"
    fi
    DETAIL="groups_before=$(wc -l </tmp/cg.before) groups_after=$(wc -l </tmp/cg.after)"
}

# --------------------------------------------------------------------- main

for c in $CASES; do
    FAILS='' DETAIL='' LOG=
    case " $ALL_CASES " in
    *" $c "*)
        t0=$(cut -d' ' -f1 /proc/uptime)
        "case_$c"
        t1=$(cut -d' ' -f1 /proc/uptime)
        finish "$c" "$DETAIL ($(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')s)"
        ;;
    *)
        FAILS=" unknown_case"
        finish "$c" ""
        ;;
    esac
done

if [ $N_FAIL -gt 0 ]; then
    echo "PYNISH-VM-INFO cgroups now:"
    find $CG -type d | sed "s|^$CG||; s|^\$|/|; s|^|  [info] |"
    echo "PYNISH-VM-INFO last kernel messages (without memory.stat dumps):"
    dmesg | grep -vE '^\[ *[0-9.]+\] +[a-z_]+ [0-9]+$' | tail -n 30 | sed 's/^/  [dmesg] /'
fi
echo "PYNISH-VM-DONE $N_PASS $N_FAIL"
off
