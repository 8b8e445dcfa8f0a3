/*
 * A slower disk for benches/stale_reads.py --fsync-delay-ms: an LD_PRELOAD library whose
 * fsync and fdatasync take SLOW_FSYNC_US microseconds longer, one at a time across every
 * process that loads it (an flock on SLOW_FSYNC_LOCK, plus a mutex within a process), as
 * the cache flushes of one real disk shared by the members of an ensemble on one machine.
 *
 *     cc -O2 -shared -fPIC -o slow_fsync.so benches/slow_fsync.c -ldl -lpthread
 *
 * Benchmarks only: it changes no data, only when a flush returns.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int lock_fd = -1;
static long delay_us = 0;

static void init(void) {
    const char *path = getenv("SLOW_FSYNC_LOCK");
    const char *us = getenv("SLOW_FSYNC_US");
    if (path)
        lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (us)
        delay_us = atol(us);
}

static int slow(int (*real)(int), int fd) {
    pthread_once(&once, init);
    pthread_mutex_lock(&mutex);
    if (lock_fd >= 0)
        flock(lock_fd, LOCK_EX);
    int r = real(fd);
    int saved = errno;
    struct timespec ts = {delay_us / 1000000, (delay_us % 1000000) * 1000};
    while (delay_us > 0 && nanosleep(&ts, &ts) != 0) {
    }
    if (lock_fd >= 0)
        flock(lock_fd, LOCK_UN);
    pthread_mutex_unlock(&mutex);
    errno = saved;
    return r;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return slow(real, fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return slow(real, fd);
}
