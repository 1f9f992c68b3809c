/*
 * harness: the benchmark's stopwatch and process-tree keeper (no dependency but libc).
 *
 *   harness run [--cgroup DIR]... [--out FILE] [--err FILE] [--deadline S] [--linger S] [--hwm] -- ARGV...
 *       Starts ARGV once (own process group, stdin /dev/null, optionally placed in the given cgroups before
 *       exec) and prints one JSON line with what the kernel says happened:
 *         exit_s      start -> the tool itself was found exited
 *         dead_s      start -> no process of the tree is left (the harness is a child subreaper: every
 *                     orphan of the tree is re-parented to it, so "no child left" == "tree dead")
 *         survivors   processes still alive --linger seconds after the tool exited (killed by the harness)
 *         tool_cpu_s  the tool's own CPU (/proc/PID/schedstat of the zombie, ns; all threads via stat ticks)
 *         children_cpu_s  CPU of everything reaped (tool + its tree), from getrusage(RUSAGE_CHILDREN)
 *         maxrss_kb   largest resident set any process of the run ever had (kernel hiwater, ru_maxrss)
 *         tool_hwm_kb the tool's own VmHWM, polled every 50 ms while it lives (--hwm)
 *
 *   harness overhead ROUNDS WARMUP OUTFILE [--gap-ms N] -- LABEL ARGV... ::: LABEL ARGV... [::: ...]
 *       Runs every command ROUNDS times, alternating commands within each round (rotating the order every
 *       round) so that drift hits all alike; each sample is posix_spawn -> no process left, in ns (with
 *       --gap-ms, after N ms of idling, so that nothing stays warm from the run before).
 *       Writes "LABEL<TAB>ns" lines.
 *
 *   harness guard -- ARGV...
 *       Runs ARGV as a child subreaper; when ARGV ends (or the guard is asked to stop) SIGKILLs every
 *       descendant still alive and reaps it, so nothing the benchmark started outlives it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "harness: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* ---- descendants ------------------------------------------------------------------------------------ */

/* Appends the children of pid (every thread's children file) to out; returns the new count. */
static int children_of(pid_t pid, pid_t *out, int n, int max) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) return n;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char cpath[128];
        snprintf(cpath, sizeof cpath, "/proc/%d/task/%.20s/children", pid, e->d_name);
        FILE *f = fopen(cpath, "r");
        if (!f) continue;
        int c;
        while (n < max && fscanf(f, "%d", &c) == 1) out[n++] = c;
        fclose(f);
    }
    closedir(d);
    return n;
}

#define MAXD 65536
static pid_t desc[MAXD];

static int descendants(pid_t root) {
    int n = children_of(root, desc, 0, MAXD);
    for (int i = 0; i < n; i++) n = children_of(desc[i], desc, n, MAXD);
    return n;
}

/* SIGKILLs every live descendant of this process until none is left, reaping all; returns how many were
 * found alive on the first pass (zombies not counted). */
static int kill_descendants(void) {
    int first = -1;
    for (int round = 0; round < 2000; round++) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        int n = descendants(getpid());
        if (first < 0) {
            first = 0;
            for (int i = 0; i < n; i++) {
                char p[64], st[512];
                snprintf(p, sizeof p, "/proc/%d/stat", desc[i]);
                FILE *f = fopen(p, "r");
                if (!f) continue;
                if (fgets(st, sizeof st, f)) {
                    char *r = strrchr(st, ')');
                    if (r && r[2] != 'Z') first++;
                }
                fclose(f);
            }
        }
        if (n == 0) break;
        for (int i = 0; i < n; i++) {
            kill(desc[i], SIGKILL);
            kill(desc[i], SIGCONT);
        }
        usleep(2000);
    }
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {}
    return first < 0 ? 0 : first;
}

/* ---- /proc readers -------------------------------------------------------------------------------------- */

static int64_t schedstat_ns(pid_t pid) {
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/schedstat", pid);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    long long ns = -1;
    if (fscanf(f, "%lld", &ns) != 1) ns = -1;
    fclose(f);
    return ns;
}

/* utime+stime of the whole thread group, in clock ticks; threads in *threads. */
static long long stat_ticks(pid_t pid, long *threads) {
    char p[64], buf[2048];
    snprintf(p, sizeof p, "/proc/%d/stat", pid);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    char *r = strrchr(buf, ')');
    if (!r) return -1;
    r += 2;
    /* field 3 is state; utime=14 stime=15 num_threads=20 */
    unsigned long long v[64] = {0};
    int field = 3;
    char *save, *tok = strtok_r(r, " ", &save);
    while (tok && field < 64) {
        v[field] = strtoull(tok, NULL, 10);
        tok = strtok_r(NULL, " ", &save);
        field++;
    }
    *threads = (long)v[20];
    return (long long)(v[14] + v[15]);
}

static long vm_hwm_kb(pid_t pid) {
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", pid);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static double tv_s(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }

/* ---- run ---------------------------------------------------------------------------------------------- */

static int cmd_run(int argc, char **argv) {
    const char *cgroups[8];
    int ncg = 0;
    const char *out = "/dev/null", *err = "/dev/null";
    double deadline = 60, linger = 0.5;
    int hwm = 0;
    int i = 0;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) { i++; break; }
        else if (!strcmp(argv[i], "--cgroup") && i + 1 < argc && ncg < 8) cgroups[ncg++] = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--err") && i + 1 < argc) err = argv[++i];
        else if (!strcmp(argv[i], "--deadline") && i + 1 < argc) deadline = atof(argv[++i]);
        else if (!strcmp(argv[i], "--linger") && i + 1 < argc) linger = atof(argv[++i]);
        else if (!strcmp(argv[i], "--hwm")) hwm = 1;
        else { fprintf(stderr, "harness run: bad option %s\n", argv[i]); return 2; }
    }
    if (i >= argc) { fprintf(stderr, "harness run: no command\n"); return 2; }
    char **cmd = argv + i;

    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) die("subreaper");
    int cgfd[8];
    for (int k = 0; k < ncg; k++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/cgroup.procs", cgroups[k]);
        if ((cgfd[k] = open(p, O_WRONLY | O_CLOEXEC)) < 0) die(p);
    }
    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (in < 0 || fo < 0 || fe < 0) die("open");

    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old);

    struct rusage before, after;
    getrusage(RUSAGE_CHILDREN, &before);
    int errpipe[2];
    if (pipe2(errpipe, O_CLOEXEC) < 0) die("pipe");
    int64_t t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        setpgid(0, 0);
        for (int k = 0; k < ncg; k++)
            if (write(cgfd[k], "0\n", 2) < 0) { int e = errno; (void)!write(errpipe[1], &e, sizeof e); _exit(126); }
        dup2(in, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        execvp(cmd[0], cmd);
        int e = errno;
        (void)!write(errpipe[1], &e, sizeof e);
        _exit(127);
    }
    close(errpipe[1]);
    int child_errno = 0;
    if (read(errpipe[0], &child_errno, sizeof child_errno) != sizeof child_errno) child_errno = 0;
    close(errpipe[0]);

    int64_t t_exit = -1, t_dead = -1;
    int status = 0, orphans = 0, survivors = 0, timed_out = 0;
    long long tool_sched = -1, tool_ticks = -1;
    long threads = 0, hwm_kb = -1;
    int64_t limit_ns = (int64_t)(deadline * 1e9);
    for (;;) {
        siginfo_t si;
        for (;;) {
            memset(&si, 0, sizeof si);
            if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
                if (errno == EINTR) continue;
                goto done; /* ECHILD: nothing left */
            }
            if (si.si_pid == 0) break;
            if (si.si_pid == pid) {
                t_exit = now_ns();
                tool_sched = schedstat_ns(pid);
                tool_ticks = stat_ticks(pid, &threads);
                waitpid(pid, &status, 0);
            } else {
                waitpid(si.si_pid, NULL, 0);
                orphans++;
            }
        }
        int64_t now = now_ns();
        if (now - t0 > limit_ns && !timed_out) {
            timed_out = 1;
            survivors += kill_descendants();
            continue;
        }
        if (t_exit >= 0 && now - t_exit > (int64_t)(linger * 1e9)) {
            survivors += kill_descendants();
            continue;
        }
        if (hwm && t_exit < 0) {
            long k = vm_hwm_kb(pid);
            if (k > hwm_kb) hwm_kb = k;
        }
        int64_t wait_ns = hwm ? 50000000LL : 1000000000LL;
        if (t_exit >= 0) {
            int64_t left = (int64_t)(linger * 1e9) - (now - t_exit);
            if (left < wait_ns) wait_ns = left > 0 ? left : 0;
        }
        struct timespec ts = {wait_ns / 1000000000LL, wait_ns % 1000000000LL};
        sigtimedwait(&chld, NULL, &ts);
    }
done:
    t_dead = now_ns();
    getrusage(RUSAGE_CHILDREN, &after);
    double ccpu = tv_s(after.ru_utime) - tv_s(before.ru_utime) + tv_s(after.ru_stime) - tv_s(before.ru_stime);
    long ticks = sysconf(_SC_CLK_TCK);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    printf("{\"exit_s\":%.9f,\"dead_s\":%.9f,\"code\":%d,\"signal\":%d,\"exec_errno\":%d,\"orphans\":%d,"
           "\"survivors\":%d,\"timed_out\":%s,\"tool_cpu_s\":%.9f,\"tool_cpu_ticks_s\":%.3f,\"tool_threads\":%ld,"
           "\"children_cpu_s\":%.6f,\"children_user_s\":%.6f,\"children_sys_s\":%.6f,\"maxrss_kb\":%ld,"
           "\"tool_hwm_kb\":%ld}\n",
           t_exit < 0 ? -1.0 : (t_exit - t0) / 1e9, (t_dead - t0) / 1e9, code, sig, child_errno, orphans,
           survivors, timed_out ? "true" : "false", tool_sched < 0 ? -1.0 : tool_sched / 1e9,
           tool_ticks < 0 ? -1.0 : (double)tool_ticks / ticks, threads, ccpu,
           tv_s(after.ru_utime) - tv_s(before.ru_utime), tv_s(after.ru_stime) - tv_s(before.ru_stime),
           after.ru_maxrss, hwm_kb);
    return 0;
}

/* ---- overhead ----------------------------------------------------------------------------------------- */

static int cmd_overhead(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "harness overhead ROUNDS WARMUP OUTFILE [--gap-ms N] -- LABEL ARGV... [::: ...]\n");
        return 2;
    }
    int rounds = atoi(argv[0]), warmup = atoi(argv[1]);
    FILE *out = fopen(argv[2], "w");
    if (!out) die(argv[2]);
    int first = 3, gap_ms = 0;
    if (first + 1 < argc && !strcmp(argv[first], "--gap-ms")) {
        gap_ms = atoi(argv[first + 1]);
        first += 2;
    }
    if (first >= argc || strcmp(argv[first], "--")) { fprintf(stderr, "harness overhead: expected --\n"); return 2; }
    char **labels = calloc(argc, sizeof *labels);
    char ***cmds = calloc(argc, sizeof *cmds);
    int n = 0;
    for (int i = first + 1; i < argc;) {
        labels[n] = argv[i++];
        cmds[n] = argv + i;
        while (i < argc && strcmp(argv[i], ":::")) i++;
        if (i < argc) argv[i++] = NULL; /* terminate this argv */
        n++;
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) die("subreaper");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
    for (int r = -warmup; r < rounds; r++) {
        for (int k = 0; k < n; k++) {
            int t = ((r < 0 ? -r : r) + k) % n; /* rotate the order every round */
            pid_t pid;
            if (gap_ms) usleep(gap_ms * 1000);
            int64_t t0 = now_ns();
            int e = posix_spawn(&pid, cmds[t][0], &fa, &at, cmds[t], environ);
            if (e) { errno = e; die(cmds[t][0]); }
            int st;
            while (wait(&st) > 0 || errno == EINTR) {}
            int64_t dt = now_ns() - t0;
            if (r >= 0) fprintf(out, "%s\t%lld\n", labels[t], (long long)dt);
        }
    }
    fclose(out);
    return 0;
}

/* ---- guard -------------------------------------------------------------------------------------------- */

static volatile sig_atomic_t stop_sig;
static void on_stop(int s) { stop_sig = s; }

static int cmd_guard(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[0], "--")) { fprintf(stderr, "harness guard -- ARGV...\n"); return 2; }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) die("subreaper");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        die(argv[1]);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* Ctrl-C reaches the whole foreground group, the main script included: let it clean up first. */
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    int status = 0, forwarded = 0;
    for (;;) {
        pid_t w = waitpid(-1, &status, 0);
        if (w == pid) break;
        if (w < 0 && errno == EINTR && stop_sig && !forwarded) {
            kill(pid, stop_sig);
            forwarded = 1;
        }
        if (w < 0 && errno == ECHILD) break;
    }
    int left = kill_descendants();
    if (left) fprintf(stderr, "harness guard: killed %d leftover processes\n", left);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "run")) return cmd_run(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "overhead")) return cmd_overhead(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "guard")) return cmd_guard(argc - 2, argv + 2);
    fprintf(stderr, "usage: harness run|overhead|guard ...\n");
    return 2;
}
