/*
 * load: the workloads the benchmark supervises (no dependency but libc and pthreads).
 *
 *   load spin THREADS [REPORT]       busy loop in THREADS threads forever; if REPORT is given, the process's
 *                                    own CPU time (CLOCK_PROCESS_CPUTIME_ID, ns) is stored in it every ~50 us
 *   load ignore-term                 ignores SIGTERM, forks one child that does too; both sleep forever
 *   load alloc MBPS STEP_MB MAX_MB [REPORT] [ignore-term]
 *                                    allocates and touches STEP_MB at a time at MBPS megabytes (10^6) per
 *                                    second up to MAX_MB, then sleeps; REPORT gets the bytes it has resident
 *                                    (VmRSS at start + bytes touched since) after every step, and in its second
 *                                    slot the file-backed resident bytes at start; exits 3 when an allocation
 *                                    fails
 *   load idle N                      forks N children that sleep until the parent dies; prints "ready"
 *   load tree N spin [REPORT]        forks N-1 sleeping children, then spins in one thread (as spin 1)
 *   load tree N exit                 forks N-1 children that all exit once every one exists; waits; exits 0
 *   load share N MB                  touches MB megabytes (10^6), then forks N-1 children that share them
 *                                    copy-on-write; all sleep forever
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile int64_t *report; /* shared 8-byte slots in a file, or a dummy */
static int64_t dummy[2];

static void open_report(const char *path) {
    report = dummy;
    if (!path) return;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 4096) < 0) { perror(path); exit(2); }
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    close(fd);
    report = p;
}

static int64_t cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *spin(void *arg) {
    (void)arg;
    volatile uint64_t x = 0;
    for (;;) {
        for (int i = 0; i < 20000; i++) x += i; /* ~ tens of microseconds */
        int64_t c = cpu_ns();
        if (c > *report) *report = c; /* racy max across threads is fine: both are within one check */
    }
    return NULL;
}

static void spin_threads(int n) {
    for (int i = 1; i < n; i++) {
        pthread_t t;
        pthread_create(&t, NULL, spin, NULL);
    }
    spin(NULL);
}

static void sleep_forever(void) {
    for (;;) pause();
}

/* A field of /proc/self/status, in bytes (the fields used here are in kB). */
static long status_bytes(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n)) kb = strtol(line + n, NULL, 10);
    if (f) fclose(f);
    return kb * 1024;
}

static void alloc(double mbps, long step_mb, long max_mb, int ignore_term) {
    if (ignore_term) signal(SIGTERM, SIG_IGN);
    long base = status_bytes("VmRSS:");
    /* Resident pages backed by files (the binary, libc, the report file): constant from here on, and charged to
     * whichever cgroup first read them, so the bench subtracts them to compare with a cgroup's charge. */
    report[1] = status_bytes("RssFile:") + status_bytes("RssShmem:");
    size_t step = (size_t)step_mb * 1000000;
    long page = sysconf(_SC_PAGESIZE);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t mapped = (step + page - 1) / page * page; /* every page of it is touched */
    for (long i = 1; (long)(i * step_mb) <= max_mb; i++) {
        char *p = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) exit(3);
        for (size_t off = 0; off < mapped; off += page) p[off] = 1;
        *report = base + (int64_t)(i * mapped);
        /* pace: step i is due at t0 + i * step / rate */
        double due = i * step_mb / mbps;
        struct timespec t = t0;
        t.tv_sec += (time_t)due;
        t.tv_nsec += (long)((due - (time_t)due) * 1e9);
        if (t.tv_nsec >= 1000000000L) { t.tv_sec++; t.tv_nsec -= 1000000000L; }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR) {}
    }
    sleep_forever();
}

static void idle(int n) {
    pid_t parent = getpid();
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p < 0) { perror("fork"); exit(1); }
        if (p == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(0);
            sleep_forever();
        }
    }
    printf("ready\n");
    fflush(stdout);
    sleep_forever();
}

static void tree(int n, const char *mode) {
    int go[2];
    if (pipe(go) < 0) { perror("pipe"); exit(1); }
    for (int i = 1; i < n; i++) {
        pid_t p = fork();
        if (p < 0) { perror("fork"); exit(1); }
        if (p == 0) {
            close(go[1]);
            char c;
            while (read(go[0], &c, 1) < 0 && errno == EINTR) {}
            if (!strcmp(mode, "exit")) _exit(0);
            sleep_forever();
        }
    }
    close(go[0]);
    if (!strcmp(mode, "exit")) {
        close(go[1]); /* every child sees EOF and exits */
        while (wait(NULL) > 0 || errno == EINTR) {}
        exit(0);
    }
    spin_threads(1);
}

static void share(int n, long mb) {
    size_t len = (size_t)mb * 1000000;
    char *block = malloc(len);
    if (!block) { perror("malloc"); exit(1); }
    for (size_t i = 0; i < len; i += 4096) block[i] = 1;
    for (int i = 1; i < n; i++) {
        pid_t p = fork();
        if (p < 0) { perror("fork"); exit(1); }
        if (p == 0) break;
    }
    sleep_forever();
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "spin")) {
        open_report(argc > 3 ? argv[3] : NULL);
        spin_threads(atoi(argv[2]));
    } else if (argc >= 2 && !strcmp(argv[1], "ignore-term")) {
        signal(SIGTERM, SIG_IGN);
        if (fork() < 0) return 1;
        sleep_forever();
    } else if (argc >= 5 && !strcmp(argv[1], "alloc")) {
        open_report(argc > 5 ? argv[5] : NULL);
        alloc(atof(argv[2]), atol(argv[3]), atol(argv[4]), argc > 6 && !strcmp(argv[6], "ignore-term"));
    } else if (argc >= 3 && !strcmp(argv[1], "idle")) {
        idle(atoi(argv[2]));
    } else if (argc >= 4 && !strcmp(argv[1], "tree")) {
        open_report(argc > 4 ? argv[4] : NULL);
        tree(atoi(argv[2]), argv[3]);
    } else if (argc >= 4 && !strcmp(argv[1], "share")) {
        share(atoi(argv[2]), atol(argv[3]));
    } else {
        fprintf(stderr, "usage: see the comment at the top of bench/src/load.c\n");
        return 2;
    }
    return 0;
}
