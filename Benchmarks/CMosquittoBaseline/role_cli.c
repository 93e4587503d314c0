// The role command line and result line, shared by the C and the Swift role executables so that
// both speak exactly the same protocol with the orchestrator.

#define _GNU_SOURCE
#include "CMosquittoBaseline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// MARK: - Parsing

/// Parses `text` as a whole non-negative number into `value`; 0 on success.
static int parse_unsigned(const char *text, uint64_t *value) {
    char *end = NULL;
    errno = 0;
    unsigned long long parsed = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != 0 || text[0] == '-') return -1;
    *value = parsed;
    return 0;
}

int bench_role_parse(int argc, char *const *argv, bench_role_spec *spec, char *error, size_t error_size) {
    memset(spec, 0, sizeof(*spec));
    spec->threaded = 1;
    bench_role_options *options = &spec->options;
    options->host = "127.0.0.1";
    options->port = 1883;
    options->topic = "bench";
    options->payload_size = 64;
    options->window = 1000;
    options->max_inflight = 20;
    options->idle_ms = 1000;
    if (argc < 2) {
        snprintf(error, error_size, "expected publisher, subscriber, rtt or fanout");
        return -1;
    }
    if (strcmp(argv[1], "publisher") == 0) spec->kind = BENCH_ROLE_PUBLISHER;
    else if (strcmp(argv[1], "subscriber") == 0) spec->kind = BENCH_ROLE_SUBSCRIBER;
    else if (strcmp(argv[1], "rtt") == 0) spec->kind = BENCH_ROLE_ROUND_TRIPS;
    else if (strcmp(argv[1], "fanout") == 0) spec->kind = BENCH_ROLE_FANOUT;
    else {
        snprintf(error, error_size, "unknown role %s (expected publisher, subscriber, rtt or fanout)", argv[1]);
        return -1;
    }
    for (int index = 2; index < argc; index++) {
        const char *flag = argv[index];
        if (strcmp(flag, "--single-thread") == 0) {
            spec->threaded = 0;
            continue;
        }
        if (index + 1 >= argc) {
            snprintf(error, error_size, "%s needs a value", flag);
            return -1;
        }
        const char *value = argv[++index];
        uint64_t number = 0;
        int is_number = parse_unsigned(value, &number) == 0;
        if (strcmp(flag, "--host") == 0) options->host = value;
        else if (strcmp(flag, "--topic") == 0) options->topic = value;
        else if (strcmp(flag, "--control") == 0) spec->control_path = value;
        else if (strcmp(flag, "--seconds") == 0) {
            char *end = NULL;
            options->seconds = strtod(value, &end);
            if (end == value || *end != 0 || options->seconds < 0) {
                snprintf(error, error_size, "--seconds: not a duration: %s", value);
                return -1;
            }
        } else if (!is_number) {
            snprintf(error, error_size, "%s: not a number or unknown flag: %s", flag, value);
            return -1;
        } else if (strcmp(flag, "--port") == 0) options->port = (int)number;
        else if (strcmp(flag, "--qos") == 0 && number <= 2) options->qos = (int)number;
        else if (strcmp(flag, "--payload") == 0 && number <= 268435455) options->payload_size = (int)number;
        else if (strcmp(flag, "--count") == 0) options->count = number;
        else if (strcmp(flag, "--window") == 0 && number >= 2) options->window = number;
        else if (strcmp(flag, "--inflight") == 0 && number <= 65535) options->max_inflight = (int)number;
        else if (strcmp(flag, "--idle-ms") == 0 && number <= 3600000) options->idle_ms = (int)number;
        else {
            snprintf(error, error_size, "unknown flag or value out of range: %s %s", flag, value);
            return -1;
        }
    }
    if (spec->kind != BENCH_ROLE_ROUND_TRIPS && !spec->control_path) {
        snprintf(error, error_size, "--control is required for publisher, subscriber and fanout");
        return -1;
    }
    if (spec->kind == BENCH_ROLE_ROUND_TRIPS && options->count == 0) {
        snprintf(error, error_size, "rtt needs --count");
        return -1;
    }
    return 0;
}

// MARK: - Latencies

uint64_t bench_round_trip_warmup(uint64_t count) {
    return count / 10 > 100 ? count / 10 : 100;
}

static int compare_u64(const void *left, const void *right) {
    uint64_t a = *(const uint64_t *)left, b = *(const uint64_t *)right;
    return (a > b) - (a < b);
}

/// The nearest-rank `percentile` of sorted `values`.
static uint64_t nearest_rank(const uint64_t *values, uint64_t count, double percentile) {
    if (count == 0) return 0;
    uint64_t rank = (uint64_t)(percentile / 100.0 * (double)count + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > count) rank = count;
    return values[rank - 1];
}

void bench_latency_percentiles(uint64_t *latencies_ns, uint64_t count, uint64_t *p50_ns, uint64_t *p99_ns) {
    qsort(latencies_ns, (size_t)count, sizeof(uint64_t), compare_u64);
    *p50_ns = nearest_rank(latencies_ns, count, 50);
    *p99_ns = nearest_rank(latencies_ns, count, 99);
}

// MARK: - Result line

void bench_print_result(const bench_role_result *result, long floor_rss_kib, uint64_t p50_ns, uint64_t p99_ns) {
    char samples[96] = "";
    size_t used = 0;
    for (int index = 0; index < result->rss.next && index < 3; index++) {
        used += (size_t)snprintf(samples + used, sizeof(samples) - used, "%s%ld", index ? "," : "", result->rss.rss_kib[index]);
    }
    char line[512];
    int length = snprintf(
        line, sizeof(line),
        "result messages=%llu cpu_ns=%llu start_ns=%llu end_ns=%llu peak_rss_kib=%ld floor_rss_kib=%ld rss_kib=%s p50_ns=%llu p99_ns=%llu\n",
        (unsigned long long)result->messages, (unsigned long long)result->cpu_ns, (unsigned long long)result->start_ns,
        (unsigned long long)result->end_ns, bench_peak_rss_kib(), floor_rss_kib, samples,
        (unsigned long long)p50_ns, (unsigned long long)p99_ns
    );
    ssize_t ignored = write(STDOUT_FILENO, line, (size_t)length);
    (void)ignored;
}
