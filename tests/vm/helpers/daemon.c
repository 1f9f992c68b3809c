/* daemon PIDFILE [SECONDS]: double-fork a setsid()'d grandchild that writes its
 * pid to PIDFILE (atomically, via rename) and sleeps SECONDS (default 1000).
 * The caller returns once the pid file exists, like a classic daemon start. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: daemon PIDFILE [SECONDS]\n");
        return 2;
    }
    const char *pidfile = argv[1];
    unsigned secs = argc > 2 ? (unsigned)atoi(argv[2]) : 1000;
    pid_t child = fork();
    if (child < 0)
        return 1;
    if (child == 0) {
        setsid();
        pid_t g = fork();
        if (g < 0)
            _exit(1);
        if (g > 0)
            _exit(0);
        /* grandchild: the daemon */
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", pidfile);
        FILE *f = fopen(tmp, "w");
        if (f) {
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
            rename(tmp, pidfile);
        }
        chdir("/");
        sleep(secs);
        _exit(0);
    }
    waitpid(child, NULL, 0);
    for (int i = 0; i < 500 && access(pidfile, F_OK) != 0; i++)
        usleep(10000);
    return 0;
}
