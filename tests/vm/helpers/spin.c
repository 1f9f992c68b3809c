/* spin [THREADS] [SECONDS]: busy-loop on THREADS threads (default 1, the main
 * thread counts as one) for SECONDS of wall time (default 0 = forever). */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static double limit_s;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *burn(void *arg)
{
    volatile unsigned long x = 0;
    double start = now();
    (void)arg;
    for (;;) {
        for (int i = 0; i < 1000000; i++)
            x += i;
        if (limit_s > 0 && now() - start >= limit_s)
            break;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    limit_s = argc > 2 ? atof(argv[2]) : 0;
    if (threads < 1)
        threads = 1;
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    for (int i = 1; i < threads; i++)
        pthread_create(&t[i], NULL, burn, NULL);
    burn(NULL);
    for (int i = 1; i < threads; i++)
        pthread_join(t[i], NULL);
    return 0;
}
