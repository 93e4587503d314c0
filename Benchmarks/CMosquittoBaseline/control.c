// The shared control block and the measuring helpers, used by the C and the Swift roles alike.

#define _GNU_SOURCE
#include "CMosquittoBaseline.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// MARK: - Futex

/// Sleeps while `*word == expected`, at most `timeout_ms`. Not private: the word is in a shared mapping.
static void futex_wait(uint32_t *word, uint32_t expected, int timeout_ms) {
    struct timespec timeout = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L };
    syscall(SYS_futex, word, FUTEX_WAIT, expected, &timeout, NULL, 0);
}

/// Wakes every process sleeping on `word`.
static void futex_wake(uint32_t *word) {
    syscall(SYS_futex, word, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}

// MARK: - Control block

bench_control *bench_control_map(const char *path, int create) {
    int fd = open(path, O_RDWR | (create ? O_CREAT | O_TRUNC : 0) | O_CLOEXEC, 0600);
    if (fd < 0) return NULL;
    if (create && ftruncate(fd, 4096) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return NULL;
    }
    void *address = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int saved = errno;
    close(fd);
    errno = saved;
    return address == MAP_FAILED ? NULL : (bench_control *)address;
}

void bench_control_unmap(bench_control *control) {
    if (control) munmap(control, 4096);
}

void bench_control_note_received(bench_control *control) {
    uint64_t now = bench_now_ns();
    uint64_t count = __atomic_add_fetch(&control->received, 1, __ATOMIC_SEQ_CST);
    if (count == 1) __atomic_store_n(&control->first_receive_ns, now, __ATOMIC_RELAXED);
    __atomic_store_n(&control->last_receive_ns, now, __ATOMIC_RELAXED);
    if (__atomic_load_n(&control->waiting, __ATOMIC_SEQ_CST) == 1
        && count >= __atomic_load_n(&control->wake_at, __ATOMIC_SEQ_CST)) {
        uint32_t expected = 1;
        if (__atomic_compare_exchange_n(&control->waiting, &expected, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            futex_wake(&control->waiting);
        }
    }
}

int bench_control_wait_window(bench_control *control, uint64_t sent, uint64_t window, int stall_ms) {
    uint64_t received = __atomic_load_n(&control->received, __ATOMIC_SEQ_CST);
    if (sent < received + window) return 0;
    // Full: sleep until half the window has drained (hysteresis keeps the wake-ups rare).
    uint64_t target = sent - window / 2;
    uint64_t last_progress = bench_now_ns();
    uint64_t last_seen = received;
    while (1) {
        __atomic_store_n(&control->wake_at, target, __ATOMIC_SEQ_CST);
        __atomic_store_n(&control->waiting, 1, __ATOMIC_SEQ_CST);
        received = __atomic_load_n(&control->received, __ATOMIC_SEQ_CST);
        if (received >= target) {
            __atomic_store_n(&control->waiting, 0, __ATOMIC_SEQ_CST);
            return 0;
        }
        futex_wait(&control->waiting, 1, 20);
        __atomic_store_n(&control->waiting, 0, __ATOMIC_SEQ_CST);
        received = __atomic_load_n(&control->received, __ATOMIC_SEQ_CST);
        if (received >= target) return 0;
        uint64_t now = bench_now_ns();
        if (received != last_seen) {
            last_seen = received;
            last_progress = now;
        } else if (now - last_progress > (uint64_t)stall_ms * 1000000ULL) {
            return -1;
        }
    }
}

void bench_control_publisher_started(bench_control *control) {
    __atomic_store_n(&control->publish_start_ns, bench_now_ns(), __ATOMIC_SEQ_CST);
}

void bench_control_publisher_finished(bench_control *control, uint64_t sent) {
    __atomic_store_n(&control->sent, sent, __ATOMIC_SEQ_CST);
    __atomic_store_n(&control->publisher_done, 1, __ATOMIC_SEQ_CST);
}

int bench_control_subscriber_should_stop(const bench_control *control, int idle_ms) {
    if (!__atomic_load_n(&control->publisher_done, __ATOMIC_SEQ_CST)) return 0;
    uint64_t sent = __atomic_load_n(&control->sent, __ATOMIC_SEQ_CST);
    uint64_t received = __atomic_load_n(&control->received, __ATOMIC_SEQ_CST);
    if (received >= sent) return 1;
    uint64_t last = __atomic_load_n(&control->last_receive_ns, __ATOMIC_SEQ_CST);
    uint64_t start = __atomic_load_n(&control->publish_start_ns, __ATOMIC_SEQ_CST);
    uint64_t reference = last > start ? last : start;
    return bench_now_ns() - reference > (uint64_t)idle_ms * 1000000ULL;
}

uint64_t bench_control_received(const bench_control *control) {
    return __atomic_load_n(&control->received, __ATOMIC_SEQ_CST);
}

void bench_control_snapshot(const bench_control *control, bench_control *copy) {
    copy->received = __atomic_load_n(&control->received, __ATOMIC_SEQ_CST);
    copy->first_receive_ns = __atomic_load_n(&control->first_receive_ns, __ATOMIC_SEQ_CST);
    copy->last_receive_ns = __atomic_load_n(&control->last_receive_ns, __ATOMIC_SEQ_CST);
    copy->publish_start_ns = __atomic_load_n(&control->publish_start_ns, __ATOMIC_SEQ_CST);
    copy->sent = __atomic_load_n(&control->sent, __ATOMIC_SEQ_CST);
    copy->wake_at = __atomic_load_n(&control->wake_at, __ATOMIC_SEQ_CST);
    copy->publisher_done = __atomic_load_n(&control->publisher_done, __ATOMIC_SEQ_CST);
    copy->waiting = __atomic_load_n(&control->waiting, __ATOMIC_SEQ_CST);
}

// MARK: - Measuring

uint64_t bench_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
}

uint64_t bench_cpu_ns(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    uint64_t user = (uint64_t)usage.ru_utime.tv_sec * 1000000000ULL + (uint64_t)usage.ru_utime.tv_usec * 1000ULL;
    uint64_t system = (uint64_t)usage.ru_stime.tv_sec * 1000000000ULL + (uint64_t)usage.ru_stime.tv_usec * 1000ULL;
    return user + system;
}

/// The number after `name` (e.g. "VmHWM:") in /proc/self/status, or -1.
static long status_field(const char *name) {
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buffer[4096];
    ssize_t length = read(fd, buffer, sizeof(buffer) - 1);
    close(fd);
    if (length <= 0) return -1;
    buffer[length] = 0;
    const char *field = strstr(buffer, name);
    long value = -1;
    if (!field || sscanf(field + strlen(name), "%ld", &value) != 1) return -1;
    return value;
}

long bench_peak_rss_kib(void) {
    // VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across execve, so a process
    // started with posix_spawn (vfork) reports at least its parent's RSS.
    return status_field("VmHWM:");
}

long bench_thread_count(void) {
    return status_field("Threads:");
}

int bench_open_descriptors(long *count, long *highest) {
    DIR *directory = opendir("/proc/self/fd");
    if (!directory) return -1;
    int own = dirfd(directory);
    *count = 0;
    *highest = -1;
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        long fd = strtol(entry->d_name, NULL, 10);
        if (fd == own) continue;
        *count += 1;
        if (fd > *highest) *highest = fd;
    }
    closedir(directory);
    return 0;
}

int bench_raise_open_file_limit(uint64_t wanted, uint64_t *soft, uint64_t *hard) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return -1;
    if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted) {
        struct rlimit raised = {.rlim_cur = wanted, .rlim_max = wanted};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;  // EPERM without CAP_SYS_RESOURCE: keep the hard limit
    }
    if (limit.rlim_cur < limit.rlim_max) {
        struct rlimit raised = {.rlim_cur = limit.rlim_max, .rlim_max = limit.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) != 0) return -1;
        limit = raised;
    }
    *soft = limit.rlim_cur;
    *hard = limit.rlim_max;
    return limit.rlim_cur >= wanted ? 0 : 1;
}

long bench_current_rss_kib(void) {
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buffer[128];
    ssize_t length = read(fd, buffer, sizeof(buffer) - 1);
    close(fd);
    if (length <= 0) return -1;
    buffer[length] = 0;
    long size = 0, resident = 0;
    if (sscanf(buffer, "%ld %ld", &size, &resident) != 2) return -1;
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

void bench_rss_samples_init(bench_rss_samples *samples, uint64_t total) {
    memset(samples, 0, sizeof(*samples));
    if (total == 0) return;
    samples->marks[0] = total / 10 > 0 ? total / 10 : 1;
    samples->marks[1] = total / 2 > 0 ? total / 2 : 1;
    samples->marks[2] = total;
}

void bench_rss_samples_note(bench_rss_samples *samples, uint64_t count) {
    if (samples->next >= 3 || samples->marks[samples->next] == 0 || count < samples->marks[samples->next]) return;
    samples->rss_kib[samples->next] = bench_current_rss_kib();
    samples->next += 1;
}

void bench_announce_ready(void) {
    static const char line[] = "ready\n";
    ssize_t ignored = write(STDOUT_FILENO, line, sizeof(line) - 1);
    (void)ignored;
}
