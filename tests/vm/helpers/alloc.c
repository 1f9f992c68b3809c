/* alloc N [DELAY_US]: allocate and touch N MiB in 1 MiB steps, then exit 0.
 * Prints nothing. DELAY_US (default 0) sleeps between steps so a sampling
 * supervisor gets a chance to see the growth. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100;
    long delay = argc > 2 ? atol(argv[2]) : 0;
    const size_t step = 1024 * 1024;
    for (long i = 0; i < n; i++) {
        char *p = malloc(step);
        if (!p)
            return 1;
        memset(p, (int)(i & 0x7f) | 1, step); /* touch every page */
        if (delay > 0)
            usleep((useconds_t)delay);
    }
    return 0;
}
