/*
 * alternate ROUNDS GAP_MS -- LABEL ARGV... [::: LABEL ARGV...]...
 *
 * The VM's stopwatch for the cost case of init.sh: runs every command ROUNDS times, the commands alternated in
 * every round (the order rotating, so drift hits all alike), each run after GAP_MS ms of idling, timed from
 * fork to the moment no child is left (the caller is a child subreaper, so orphans count). Prints one line per
 * command: "LABEL median_us p10_us failures", a failure being a run that did not exit 0.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>

static long long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--")) {
        fprintf(stderr, "usage: alternate ROUNDS GAP_MS -- LABEL ARGV... [::: LABEL ARGV...]...\n");
        return 2;
    }
    int rounds = atoi(argv[1]), gap_ms = atoi(argv[2]);
    char **labels = calloc(argc, sizeof *labels), ***cmds = calloc(argc, sizeof *cmds);
    int n = 0;
    for (int i = 4; i < argc;) {
        labels[n] = argv[i++];
        cmds[n] = argv + i;
        while (i < argc && strcmp(argv[i], ":::")) i++;
        if (i < argc) argv[i++] = NULL;
        n++;
    }
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    long long *t = calloc((size_t)n * rounds, sizeof *t);
    int *failed = calloc(n, sizeof *failed);
    for (int r = -1; r < rounds; r++) { /* round -1 warms up */
        for (int k = 0; k < n; k++) {
            int c = ((r < 0 ? 0 : r) + k) % n;
            if (gap_ms) usleep(gap_ms * 1000);
            long long t0 = now_us();
            pid_t pid = fork();
            if (pid == 0) {
                int null = open("/dev/null", O_RDWR);
                dup2(null, 0), dup2(null, 1), dup2(null, 2);
                execv(cmds[c][0], cmds[c]);
                _exit(127);
            }
            int st, ok = 0;
            pid_t w;
            while ((w = wait(&st)) > 0 || errno == EINTR)
                if (w == pid) ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
            if (r >= 0) {
                t[(size_t)c * rounds + r] = now_us() - t0;
                failed[c] += !ok;
            }
        }
    }
    for (int c = 0; c < n; c++) {
        long long *s = t + (size_t)c * rounds;
        qsort(s, rounds, sizeof *s, cmp);
        printf("%s %lld %lld %d\n", labels[c], s[rounds / 2], s[rounds / 10], failed[c]);
    }
    return 0;
}
