// The C baseline's role process: one libmosquitto client, nothing else (no Swift runtime), so that
// its CPU time and peak RSS are what a plain C program using libmosquitto pays.
//
//   MosquittoBenchmarkCRole (publisher|subscriber|rtt|fanout) --host H --port P ... [--single-thread]
//
// Prints one `result ...` line; on failure a line on standard error and exit status 1 (2 for a
// bad command line). Started by `mqtt-bench`.

#include "CMosquittoBaseline.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long floor_rss_kib = bench_current_rss_kib();
    bench_role_spec spec;
    char error[256];
    if (bench_role_parse(argc, argv, &spec, error, sizeof(error)) != 0) {
        fprintf(stderr, "c role: %s\n", error);
        return 2;
    }
    bench_role_result result;
    uint64_t p50 = 0, p99 = 0;
    int status;
    if (spec.kind == BENCH_ROLE_ROUND_TRIPS) {
        uint64_t *latencies = calloc((size_t)spec.options.count, sizeof(uint64_t));
        if (!latencies) {
            fprintf(stderr, "c rtt: out of memory\n");
            return 1;
        }
        status = bench_c_round_trips(&spec.options, spec.threaded, bench_round_trip_warmup(spec.options.count), latencies, &result);
        if (status == 0) bench_latency_percentiles(latencies, result.messages, &p50, &p99);
        free(latencies);
    } else {
        spec.options.control = bench_control_map(spec.control_path, 0);
        if (!spec.options.control) {
            perror("c role: cannot map the control block");
            return 1;
        }
        switch (spec.kind) {
        case BENCH_ROLE_PUBLISHER: status = bench_c_publisher(&spec.options, &result); break;
        case BENCH_ROLE_FANOUT: status = bench_c_fanout_publisher(&spec.options, &result); break;
        default: status = bench_c_subscriber(&spec.options, &result); break;
        }
        bench_control_unmap(spec.options.control);
    }
    if (status != 0) {
        fprintf(stderr, "c role: %s\n", result.error);
        return 1;
    }
    bench_print_result(&result, floor_rss_kib, p50, p99);
    return 0;
}
