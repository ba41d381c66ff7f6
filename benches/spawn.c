/* The machine's own limit for the burst: spawn N copies of a program, P at a time, and reap them.
 * No database, no threads, no logging: what cronmgr's burst could approach at best.
 * Built and run by bench.py:  spawn N P PROGRAM [posix_spawn|clone]  ->  prints the seconds it took.
 *
 * posix_spawn: glibc's (what std's Command uses).
 * clone: the way cronmgr starts a job (src/runner/process/spawn.rs): clone(CLONE_VM|CLONE_VFORK)
 * on a stack of the caller's, and in the child only a process group, SIGPIPE back to default, an
 * empty signal mask and the exec. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static char *child_args[2];

static int child(void *unused) {
    (void)unused;
    unsigned long empty = 0;
    setpgid(0, 0);
    signal(SIGPIPE, SIG_DFL);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, NULL, sizeof empty);
    execve(child_args[0], child_args, environ);
    _exit(127);
}

static pid_t start_clone(void) {
    static char stack[16 * 1024] __attribute__((aligned(16)));
    unsigned long all = ~0UL, old;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof all);
    pid_t pid = clone(child, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, sizeof old);
    return pid;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: spawn N PARALLEL PROGRAM [posix_spawn|clone]\n");
        return 2;
    }
    int use_clone = argc == 5 && strcmp(argv[4], "clone") == 0;
    long n = atol(argv[1]), parallel = atol(argv[2]), started = 0, running = 0;
    child_args[0] = argv[3];
    child_args[1] = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (started < n || running > 0) {
        while (running < parallel && started < n) {
            pid_t pid;
            if (use_clone) {
                pid = start_clone();
                if (pid < 0) {
                    perror("clone");
                    return 1;
                }
            } else if (posix_spawn(&pid, argv[3], NULL, NULL, child_args, environ) != 0) {
                perror("posix_spawn");
                return 1;
            }
            started++;
            running++;
        }
        if (wait(NULL) > 0)
            running--;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.6f\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
