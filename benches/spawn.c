/* The machine's own limit for the burst: spawn N copies of a program, P at a time, and reap them.
 * No database, no threads, no logging: what cronmgr's burst could approach at best.
 * Built and run by bench.py:  spawn N P PROGRAM  ->  prints the seconds it took. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: spawn N PARALLEL PROGRAM\n");
        return 2;
    }
    long n = atol(argv[1]), parallel = atol(argv[2]), started = 0, running = 0;
    char *args[] = {argv[3], NULL};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (started < n || running > 0) {
        while (running < parallel && started < n) {
            pid_t pid;
            if (posix_spawn(&pid, argv[3], NULL, NULL, args, environ) != 0) {
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
