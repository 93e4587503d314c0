// The C baseline: publisher, subscriber and round-trip roles written directly against libmosquitto,
// the way a C program would use it (classic callbacks, `mosquitto_loop_start`, or a hand-run
// `mosquitto_loop` for the single-threaded round trip). Same settings as the Swift client's
// defaults: MQTT 3.1.1, clean session, keepalive 60 s, TCP_NODELAY on, the given max in-flight.

#define _GNU_SOURCE
#include "CMosquittoBaseline.h"

#include <mosquitto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// MARK: - Shared helpers

/// How long a publisher waits without progress before it calls the rest lost (ms).
static const int stall_ms = 3000;

/// Per-client state the callbacks update (they run on libmosquitto's thread, or the caller's
/// for the single-threaded round trip).
typedef struct client_state {
    pthread_mutex_t mutex;
    pthread_cond_t changed;
    int connect_rc;      // -1 until CONNACK
    int subscribed;
    int arrived;         // round trips: the message came back
    uint64_t acked;      // publisher: on_publish count (atomic)
    uint64_t received;   // subscriber: messages counted (callback thread only)
    bench_control *control;
    bench_rss_samples *rss;
    const char *topic;
    int qos;
} client_state;

static void fail(bench_role_result *result, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(result->error, sizeof(result->error), format, arguments);
    va_end(arguments);
}

static void library_init_once(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, (void (*)(void))mosquitto_lib_init);
}

static void signal_change(client_state *state, void (*update)(client_state *, int), int value) {
    pthread_mutex_lock(&state->mutex);
    update(state, value);
    pthread_cond_broadcast(&state->changed);
    pthread_mutex_unlock(&state->mutex);
}

static void set_connect_rc(client_state *state, int rc) { state->connect_rc = rc; }
static void set_subscribed(client_state *state, int value) { state->subscribed = value; }
static void set_arrived(client_state *state, int value) { state->arrived = value; }

/// Waits (on the condition variable) until `ready(state)` or `timeout_ms` passed; 0 when ready.
static int wait_until(client_state *state, int (*ready)(const client_state *), int timeout_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&state->mutex);
    int rc = 0;
    while (!ready(state) && rc == 0) {
        rc = pthread_cond_timedwait(&state->changed, &state->mutex, &deadline);
    }
    int result = ready(state) ? 0 : -1;
    pthread_mutex_unlock(&state->mutex);
    return result;
}

static int is_connected(const client_state *state) { return state->connect_rc >= 0; }
static int is_subscribed(const client_state *state) { return state->subscribed; }
static int has_arrived(const client_state *state) { return state->arrived; }

// MARK: - Callbacks

static void on_connect(struct mosquitto *mosq, void *userdata, int rc) {
    client_state *state = userdata;
    if (rc == 0 && state->topic) {
        mosquitto_subscribe(mosq, NULL, state->topic, state->qos);
    }
    signal_change(state, set_connect_rc, rc);
}

static void on_subscribe(struct mosquitto *mosq, void *userdata, int mid, int count, const int *granted) {
    (void)mosq; (void)mid; (void)count; (void)granted;
    signal_change(userdata, set_subscribed, 1);
}

static void on_publish(struct mosquitto *mosq, void *userdata, int mid) {
    (void)mosq; (void)mid;
    client_state *state = userdata;
    __atomic_add_fetch(&state->acked, 1, __ATOMIC_SEQ_CST);
}

static void on_message_count(struct mosquitto *mosq, void *userdata, const struct mosquitto_message *message) {
    (void)mosq; (void)message;
    client_state *state = userdata;
    bench_control_note_received(state->control);
    state->received += 1;
    bench_rss_samples_note(state->rss, state->received);
}

static void on_message_signal(struct mosquitto *mosq, void *userdata, const struct mosquitto_message *message) {
    (void)mosq; (void)message;
    signal_change(userdata, set_arrived, 1);
}

// MARK: - Client setup

static void state_init(client_state *state) {
    memset(state, 0, sizeof(*state));
    pthread_mutex_init(&state->mutex, NULL);
    pthread_cond_init(&state->changed, NULL);
    state->connect_rc = -1;
}

static void state_destroy(client_state *state) {
    pthread_cond_destroy(&state->changed);
    pthread_mutex_destroy(&state->mutex);
}

/// Creates and connects a client with `on_message` (may be NULL) in place before SUBSCRIBE goes
/// out. With `threaded`, starts `mosquitto_loop_start` and waits on the condition variable;
/// otherwise runs `mosquitto_loop` here. Either way returns once CONNACK (and SUBACK, when
/// `state->topic` is set) arrived, or NULL with `result->error` set.
static struct mosquitto *connect_client(
    const bench_role_options *options,
    client_state *state,
    int threaded,
    void (*on_message)(struct mosquitto *, void *, const struct mosquitto_message *),
    bench_role_result *result
) {
    library_init_once();
    struct mosquitto *mosq = mosquitto_new(NULL, true, state);
    if (!mosq) {
        fail(result, "mosquitto_new failed");
        return NULL;
    }
    mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_max_inflight_messages_set(mosq, (unsigned int)options->max_inflight);
    mosquitto_connect_callback_set(mosq, on_connect);
    mosquitto_subscribe_callback_set(mosq, on_subscribe);
    mosquitto_publish_callback_set(mosq, on_publish);
    if (on_message) mosquitto_message_callback_set(mosq, on_message);
    int rc = mosquitto_connect(mosq, options->host, options->port, 60);
    if (rc != MOSQ_ERR_SUCCESS) {
        fail(result, "connect: %s", mosquitto_strerror(rc));
        mosquitto_destroy(mosq);
        return NULL;
    }
    int ready;
    if (threaded) {
        rc = mosquitto_loop_start(mosq);
        if (rc != MOSQ_ERR_SUCCESS) {
            fail(result, "loop_start: %s", mosquitto_strerror(rc));
            mosquitto_destroy(mosq);
            return NULL;
        }
        ready = wait_until(state, is_connected, 10000) == 0 && state->connect_rc == 0;
        if (ready && state->topic) ready = wait_until(state, is_subscribed, 10000) == 0;
    } else {
        uint64_t deadline = bench_now_ns() + 10000000000ULL;
        while ((state->connect_rc != 0 || (state->topic && !state->subscribed)) && bench_now_ns() < deadline) {
            rc = mosquitto_loop(mosq, 100, 1);
            if (rc != MOSQ_ERR_SUCCESS || state->connect_rc > 0) break;
        }
        ready = state->connect_rc == 0 && (!state->topic || state->subscribed);
    }
    if (!ready) {
        fail(result, "no CONNACK/SUBACK within 10 s (rc %d)", state->connect_rc);
        mosquitto_disconnect(mosq);
        if (threaded) mosquitto_loop_stop(mosq, true);
        mosquitto_destroy(mosq);
        return NULL;
    }
    return mosq;
}

/// Disconnects, stops the loop thread (when threaded) and frees the client.
static void close_client(struct mosquitto *mosq, int threaded) {
    mosquitto_disconnect(mosq);
    if (threaded) {
        mosquitto_loop_stop(mosq, false);
    } else {
        for (int i = 0; i < 10 && mosquitto_loop(mosq, 10, 1) == MOSQ_ERR_SUCCESS; i++) {}
    }
    mosquitto_destroy(mosq);
}

// MARK: - Publisher

int bench_c_publisher(const bench_role_options *options, bench_role_result *result) {
    memset(result, 0, sizeof(*result));
    bench_rss_samples_init(&result->rss, options->count);
    client_state state;
    state_init(&state);
    struct mosquitto *mosq = connect_client(options, &state, 1, NULL, result);
    if (!mosq) {
        state_destroy(&state);
        return -1;
    }
    void *payload = malloc((size_t)options->payload_size);
    memset(payload, 'x', (size_t)options->payload_size);
    bench_control *control = options->control;

    uint64_t cpu_start = bench_cpu_ns();
    bench_control_publisher_started(control);
    result->start_ns = bench_now_ns();
    uint64_t deadline = options->seconds > 0 ? result->start_ns + (uint64_t)(options->seconds * 1e9) : UINT64_MAX;
    uint64_t sent = 0;
    int status = 0;
    while (options->count == 0 || sent < options->count) {
        if ((sent & 15) == 0 && bench_now_ns() >= deadline) break;
        if (bench_control_wait_window(control, sent, options->window, stall_ms) != 0) break;  // losses: reported
        int rc = mosquitto_publish(mosq, NULL, options->topic, options->payload_size, payload, options->qos, false);
        if (rc != MOSQ_ERR_SUCCESS) {
            fail(result, "publish: %s", mosquitto_strerror(rc));
            status = -1;
            break;
        }
        sent += 1;
        bench_rss_samples_note(&result->rss, sent);
    }
    bench_control_publisher_finished(control, sent);
    // The window ends when everything was received and (QoS 1/2) acknowledged, or nothing moved for a while.
    uint64_t last_progress = bench_now_ns();
    uint64_t last_seen = 0;
    while (status == 0) {
        uint64_t received = bench_control_received(control);
        uint64_t acked = __atomic_load_n(&state.acked, __ATOMIC_SEQ_CST);
        if (received >= sent && (options->qos == 0 || acked >= sent)) break;
        uint64_t now = bench_now_ns();
        if (received + acked != last_seen) {
            last_seen = received + acked;
            last_progress = now;
        } else if (now - last_progress > (uint64_t)stall_ms * 1000000ULL) {
            break;
        }
        usleep(200);
    }
    result->end_ns = bench_now_ns();
    result->cpu_ns = bench_cpu_ns() - cpu_start;
    result->messages = sent;

    close_client(mosq, 1);
    free(payload);
    state_destroy(&state);
    return status;
}

// MARK: - Subscriber

int bench_c_subscriber(const bench_role_options *options, bench_role_result *result) {
    memset(result, 0, sizeof(*result));
    bench_rss_samples_init(&result->rss, options->count);
    client_state state;
    state_init(&state);
    state.topic = options->topic;
    state.qos = options->qos;
    state.control = options->control;
    state.rss = &result->rss;
    struct mosquitto *mosq = connect_client(options, &state, 1, on_message_count, result);
    if (!mosq) {
        state_destroy(&state);
        return -1;
    }

    uint64_t cpu_start = bench_cpu_ns();
    result->start_ns = bench_now_ns();
    bench_announce_ready();
    while (!bench_control_subscriber_should_stop(options->control, options->idle_ms)) {
        usleep(10000);
    }
    result->cpu_ns = bench_cpu_ns() - cpu_start;
    result->end_ns = __atomic_load_n(&options->control->last_receive_ns, __ATOMIC_SEQ_CST);
    result->messages = bench_control_received(options->control);

    close_client(mosq, 1);
    state_destroy(&state);
    return 0;
}

// MARK: - Round trips

int bench_c_round_trips(
    const bench_role_options *options, int threaded, uint64_t warmup, uint64_t *latencies_ns, bench_role_result *result
) {
    memset(result, 0, sizeof(*result));
    client_state state;
    state_init(&state);
    state.topic = options->topic;
    state.qos = 0;
    struct mosquitto *mosq = connect_client(options, &state, threaded, on_message_signal, result);
    if (!mosq) {
        state_destroy(&state);
        return -1;
    }
    char payload[64];
    memset(payload, 'x', sizeof(payload));
    int size = options->payload_size < (int)sizeof(payload) ? options->payload_size : (int)sizeof(payload);
    int status = 0;
    uint64_t cpu_start = 0;
    for (uint64_t i = 0; i < warmup + options->count; i++) {
        if (i == warmup) {
            cpu_start = bench_cpu_ns();
            result->start_ns = bench_now_ns();
        }
        if (threaded) {
            pthread_mutex_lock(&state.mutex);
            state.arrived = 0;
            pthread_mutex_unlock(&state.mutex);
        } else {
            state.arrived = 0;
        }
        uint64_t start = bench_now_ns();
        int rc = mosquitto_publish(mosq, NULL, options->topic, size, payload, 0, false);
        if (rc != MOSQ_ERR_SUCCESS) {
            fail(result, "publish: %s", mosquitto_strerror(rc));
            status = -1;
            break;
        }
        if (threaded) {
            if (wait_until(&state, has_arrived, 5000) != 0) {
                fail(result, "round trip %llu: no message within 5 s", (unsigned long long)i);
                status = -1;
                break;
            }
        } else {
            uint64_t deadline = start + 5000000000ULL;
            while (!state.arrived && bench_now_ns() < deadline) {
                rc = mosquitto_loop(mosq, 1000, 1);
                if (rc != MOSQ_ERR_SUCCESS) break;
            }
            if (!state.arrived) {
                fail(result, "round trip %llu: no message within 5 s (%s)", (unsigned long long)i, mosquitto_strerror(rc));
                status = -1;
                break;
            }
        }
        uint64_t end = bench_now_ns();
        if (i >= warmup) {
            latencies_ns[i - warmup] = end - start;
            result->messages += 1;
        }
    }
    result->end_ns = bench_now_ns();
    result->cpu_ns = bench_cpu_ns() - cpu_start;
    close_client(mosq, threaded);
    state_destroy(&state);
    return status;
}

// MARK: - Fan-out publisher (connections benchmark)

int bench_c_fanout_publisher(const bench_role_options *options, bench_role_result *result) {
    memset(result, 0, sizeof(*result));
    client_state state;
    state_init(&state);
    struct mosquitto *mosq = connect_client(options, &state, 1, NULL, result);
    if (!mosq) {
        state_destroy(&state);
        return -1;
    }
    char payload[64];
    memset(payload, 'x', sizeof(payload));
    int size = options->payload_size < (int)sizeof(payload) ? options->payload_size : (int)sizeof(payload);
    char topic[512];
    bench_control *control = options->control;

    uint64_t cpu_start = bench_cpu_ns();
    bench_control_publisher_started(control);
    result->start_ns = bench_now_ns();
    uint64_t sent = 0;
    int status = 0;
    for (; sent < options->count; sent++) {
        snprintf(topic, sizeof(topic), "%s%llu", options->topic, (unsigned long long)sent);
        int rc = mosquitto_publish(mosq, NULL, topic, size, payload, options->qos, false);
        if (rc != MOSQ_ERR_SUCCESS) {
            fail(result, "publish to %s: %s", topic, mosquitto_strerror(rc));
            status = -1;
            break;
        }
    }
    bench_control_publisher_finished(control, sent);
    // QoS 1/2: libmosquitto queues beyond max in-flight; wait until every message was acknowledged.
    uint64_t last_progress = bench_now_ns();
    uint64_t last_acked = 0;
    while (status == 0 && options->qos > 0) {
        uint64_t acked = __atomic_load_n(&state.acked, __ATOMIC_SEQ_CST);
        if (acked >= sent) break;
        uint64_t now = bench_now_ns();
        if (acked != last_acked) {
            last_acked = acked;
            last_progress = now;
        } else if (now - last_progress > (uint64_t)stall_ms * 1000000ULL) {
            fail(result, "only %llu of %llu publishes acknowledged", (unsigned long long)acked, (unsigned long long)sent);
            status = -1;
            break;
        }
        usleep(200);
    }
    result->end_ns = bench_now_ns();
    result->cpu_ns = bench_cpu_ns() - cpu_start;
    result->messages = sent;
    close_client(mosq, 1);
    state_destroy(&state);
    return status;
}
