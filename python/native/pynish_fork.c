/*
 * pynish_fork: the Python package's "fork" context with one copy of the caller.
 *
 * The function's process B must be a copy of the caller (its memory: no pickling) and a child of pynish, which
 * the caller starts: so the process that forks B must both share the caller's memory and then become pynish by
 * exec. Forking that process A from Python copies the caller's page tables twice (A, then B) and tears A's copy
 * down again at the exec: with a caller holding 1 GiB, three quarters of a call's cost.
 *
 * Here A shares the caller's memory instead of copying it: clone(CLONE_VM | CLONE_VFORK), on a stack of its own,
 * with the calling thread suspended until A has exec'd, as posix_spawn does. A starts a session, forks B (the one
 * copy; glibc's fork, so that its own and the libraries' atfork handlers run as for a fork by the calling
 * thread), and execs pynish with B's pid. B leaves A's stack by siglongjmp into this function's frame, which its
 * copy of the calling thread's stack still holds, and returns 0 to Python as os.fork does in a child.
 *
 * No Python code runs in A: A and the caller share every byte. Called through ctypes with the GIL held, this
 * calls PyOS_BeforeFork before and PyOS_AfterFork_Parent or PyOS_AfterFork_Child after (their addresses are
 * passed in), as os.fork does, with no Python code in between. Every signal is blocked in the calling thread
 * meanwhile, so that none runs a handler in A; A resets the handlers it inherited before unblocking them for
 * pynish.
 *
 * Built by build.rs into the pynish binary, which writes it out on `--fork-helper` (pynish._call.native loads it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#if __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#endif

/* A's stack: glibc's fork runs the atfork handlers of every library the caller loaded on it. Reserved, not
 * committed: only what A touches costs memory. Its lowest page is a guard: A overflowing it dies of SIGSEGV (the
 * call then fails as a pynish that died) instead of writing over whatever the caller mapped below. */
#define STACK_SIZE (1 << 20)
#define GUARD_SIZE (1 << 16)

struct request {
    const char *path;
    char *const *argv;
    char *pid_slot;
    const int *keep;
    int nkeep;
    int *out;
    pid_t caller;
    sigjmp_buf back;
};

#if defined(RSEQ_SIG) && defined(SYS_rseq)
/* glibc's rseq area, weak: a glibc without rseq (before 2.35) has none to restore. */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

/* The kernel drops the rseq registration of a CLONE_VM child, so A has none and B inherits none, while B's glibc
 * (the caller's thread, copied) believes it registered: sched_getcpu would keep saying the CPU of the fork, and
 * an allocator's per-CPU caches would lose the kernel's aborts. B registers the same area again, as glibc does
 * when a thread starts (at least the original 32 bytes: glibc 2.40 reports a smaller feature size). */
static void restore_rseq(void) {
    if (&__rseq_size == NULL || &__rseq_offset == NULL || __rseq_size == 0)
        return;
    unsigned int size = __rseq_size < 32 ? 32 : __rseq_size;
    syscall(SYS_rseq, (char *)__builtin_thread_pointer() + __rseq_offset, size, 0, RSEQ_SIG);
}
#else
static void restore_rseq(void) {}
#endif

/* The pid in decimal, without stdio (A shares the caller's stdio buffers). */
static void decimal(char *slot, unsigned value) {
    char digits[16];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    for (int i = 0; i < n; i++)
        slot[i] = digits[n - 1 - i];
    slot[n] = 0;
}

static int in_a(void *arg) {
    struct request *r = arg;
    /* Until its exec, A dies with the calling thread: a library's at-fork handler that never returns (OpenBLAS's,
     * racing a BLAS call in another thread, was seen to) would otherwise keep A, and with it the caller's whole
     * memory, after the caller was killed. After the exec, pynish's lifeline ends it with the caller. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != r->caller)
        _exit(127);
    setsid();
    r->out[0] = getpid(); /* B's parent, which B checks after arming PR_SET_PDEATHSIG */
    pid_t b = fork();
    if (b == 0)
        siglongjmp(r->back, 1);
    if (b < 0) {
        r->out[1] = errno;
        r->out[2] = 1;
        _exit(127);
    }
    decimal(r->pid_slot, (unsigned)b);
    for (int i = 0; i < r->nkeep; i++)
        fcntl(r->keep[i], F_SETFD, 0);
    /* The caller's handlers are Python's: A must not run them (they write the caller's memory). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) {
        struct sigaction old;
        if (sigaction(s, NULL, &old) == 0 && old.sa_handler != SIG_IGN && old.sa_handler != SIG_DFL)
            sigaction(s, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, 0);
    execv(r->path, r->argv);
    r->out[1] = errno;
    r->out[2] = 2;
    _exit(127);
}

/*
 * Starts pynish (path, argv) as A, with B its held child. argv must hold pid_slot (room for 16 bytes), which A
 * fills with B's pid; the descriptors in keep are passed on to pynish (they are close-on-exec in the caller).
 *
 * before, after_parent, after_child: PyOS_BeforeFork, PyOS_AfterFork_Parent, PyOS_AfterFork_Child.
 * Returns A's pid in the caller, 0 in B, -1 if A could not be made (errno). out[0]: A's pid, as B must see it;
 * out[1], out[2]: errno and the step (1 fork, 2 exec) if A failed, after which A has exited with 127.
 */
int pynish_fork(const char *path, char *const *argv, char *pid_slot, const int *keep, int nkeep, int *out,
                void (*before)(void), void (*after_parent)(void), void (*after_child)(void)) {
    struct request r = {path, argv, pid_slot, keep, nkeep, out, getpid()};
    out[1] = out[2] = 0;
    before();
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    char *stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE,
                       -1, 0);
    if (stack == MAP_FAILED || mprotect(stack, GUARD_SIZE, PROT_NONE) != 0) {
        int error = errno;
        if (stack != MAP_FAILED)
            munmap(stack, STACK_SIZE);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        after_parent();
        errno = error;
        return -1;
    }
    if (sigsetjmp(r.back, 0)) {
        /* B, on its copy of the calling thread's stack. Its signals start unblocked, as a spawned child's. */
        restore_rseq();
        munmap(stack, STACK_SIZE);
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        after_child();
        return 0;
    }
    int pid = clone(in_a, stack + STACK_SIZE, CLONE_VM | CLONE_VFORK | SIGCHLD, &r);
    int error = errno;
    munmap(stack, STACK_SIZE);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    after_parent();
    errno = error;
    return pid;
}
