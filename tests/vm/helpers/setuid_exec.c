/* setuid_exec UID GID PROGRAM [ARGS...]: drop supplementary groups, set the
 * gid and uid, then exec PROGRAM (searched in PATH). */
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: setuid_exec UID GID PROGRAM [ARGS...]\n");
        return 125;
    }
    uid_t uid = (uid_t)atol(argv[1]);
    gid_t gid = (gid_t)atol(argv[2]);
    if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        perror("setuid_exec");
        return 125;
    }
    execvp(argv[3], argv + 3);
    perror(argv[3]);
    return 127;
}
