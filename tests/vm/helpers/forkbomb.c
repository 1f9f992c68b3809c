/* forkbomb N [SLEEP_S]: make N fork attempts; every child sleeps SLEEP_S
 * seconds (default 5) and exits. Failed forks are counted, not retried.
 * The parent then reaps its children and prints one summary line on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100;
    unsigned s = argc > 2 ? (unsigned)atoi(argv[2]) : 5;
    long ok = 0, failed = 0;
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            sleep(s);
            _exit(0);
        }
        if (p < 0)
            failed++;
        else
            ok++;
    }
    while (wait(NULL) > 0)
        ;
    fprintf(stderr, "forkbomb: %ld forks ok, %ld failed\n", ok, failed);
    return 0;
}
