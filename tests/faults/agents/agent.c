/* The C API's fault agent (tests/faults/README.md): configured by FAULT_* environment
 * variables, one event per line on stdout.
 *
 * FAULT_MODE=send: N numbered sends to output "out", each blocking in one of FAULT_WINDOW
 * threads (so up to WINDOW are unacknowledged), optionally paced at FAULT_RATE per second.
 * Prints "ack SEQ T" / "err SEQ CODE T" per send, "state 1|0 REASON T" per connection change
 * (T = CLOCK_MONOTONIC ns), "ready" once connected and "done" at the end.
 *
 * FAULT_MODE=deadlines: after "ready" waits for "go" on stdin (the driver has stalled the hub),
 * calls every blocking function that takes a deadline and prints "op NAME CODE MS" each; then
 * "stalled-done", waits for "go" again and sends once more ("op after_send ..."), "done".
 *
 * Built by the fault harness: gcc -std=c11 -Wall -Wextra -Werror -pthread -I include
 *   tests/faults/agents/agent.c -L target/<profile> -ledgemodule */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgemodule.h"

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static unsigned long long mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&out_mu);
  vfprintf(stdout, fmt, ap);
  fputc('\n', stdout);
  fflush(stdout);
  pthread_mutex_unlock(&out_mu);
  va_end(ap);
}

static long env_num(const char *name, long dflt) {
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : dflt;
}

static const char *env_str(const char *name) {
  const char *v = getenv(name);
  if (!v) {
    fprintf(stderr, "%s is not set\n", name);
    exit(2);
  }
  return v;
}

static void die(const char *what, enum edge_status st) {
  char err[1024];
  size_t n = 0;
  err[0] = 0;
  edge_last_error_message(err, sizeof err, &n);
  fprintf(stderr, "%s: %s (%s)\n", what, edge_status_name((int)st), err);
  exit(1);
}

#define CHECK(call)                                 \
  do {                                              \
    enum edge_status st_ = (call);                  \
    if (st_ != EDGE_STATUS_OK) die(#call, st_);     \
  } while (0)

/* "EDGE_STATUS_TIMEOUT" -> "TIMEOUT": the canonical name every binding reports. */
static const char *code(enum edge_status st) {
  const char *name = edge_status_name((int)st);
  return strncmp(name, "EDGE_STATUS_", 12) == 0 ? name + 12 : name;
}

static void on_state(void *user_data, enum edge_connection_status status, enum edge_disconnect_reason reason) {
  (void)user_data;
  say("state %d %s %llu", status == EDGE_CONNECTION_STATUS_CONNECTED ? 1 : 0,
      edge_disconnect_reason_name((int)reason), mono_ns());
}

static edge_client *client;

/* ---- send mode ---- */

static long total, rate, next_seq;
static unsigned long long start_ns;
static pthread_mutex_t seq_mu = PTHREAD_MUTEX_INITIALIZER;

static void *sender(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&seq_mu);
    long seq = next_seq < total ? next_seq++ : -1;
    pthread_mutex_unlock(&seq_mu);
    if (seq < 0) return NULL;
    if (rate > 0) { /* pacing */
      unsigned long long due = start_ns + (unsigned long long)((double)seq * 1e9 / (double)rate);
      struct timespec ts = {(time_t)(due / 1000000000ULL), (long)(due % 1000000000ULL)};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
      }
    }
    char body[32];
    int len = snprintf(body, sizeof body, "%ld", seq);
    edge_message *msg = NULL;
    CHECK(edge_message_new((const uint8_t *)body, (size_t)len, &msg));
    enum edge_status st = edge_client_send_to_output(client, "out", msg, 0);
    unsigned long long at = mono_ns();
    edge_message_free(msg);
    if (st == EDGE_STATUS_OK)
      say("ack %ld %llu", seq, at);
    else
      say("err %ld %s %llu", seq, code(st), at);
  }
}

static int run_send(void) {
  total = env_num("FAULT_N", 1000);
  rate = env_num("FAULT_RATE", 0);
  long window = env_num("FAULT_WINDOW", 100);
  if (window < 1) window = 1;
  pthread_t *threads = calloc((size_t)window, sizeof *threads);
  say("ready");
  start_ns = mono_ns();
  for (long i = 0; i < window; i++) pthread_create(&threads[i], NULL, sender, NULL);
  for (long i = 0; i < window; i++) pthread_join(threads[i], NULL);
  free(threads);
  say("done");
  return 0;
}

/* ---- deadlines mode ---- */

static uint32_t deadline_ms;

static double ms_since(unsigned long long t0) { return (double)(mono_ns() - t0) / 1e6; }

static void report(const char *op, unsigned long long t0, enum edge_status st) {
  say("op %s %s %.1f", op, code(st), ms_since(t0));
}

static void *invoke_thread(void *arg) {
  (void)arg;
  char device[256];
  size_t n = 0;
  CHECK(edge_client_device_id(client, device, sizeof device, &n));
  int64_t status = 0;
  edge_string *payload = NULL;
  unsigned long long t0 = mono_ns();
  uint32_t response_ms = (uint32_t)env_num("FAULT_INVOKE_RESPONSE_S", 5) * 1000;
  enum edge_status st =
      edge_client_invoke_method(client, device, "receiver", "ping", "null", 4, response_ms, 0, &status, &payload);
  report("invoke", t0, st);
  edge_string_free(payload);
  return NULL;
}

static void on_topic(void *user_data, const char *topic, size_t topic_len, const uint8_t *payload,
                     size_t payload_len, enum edge_qos qos, bool retain) {
  (void)user_data, (void)topic, (void)topic_len, (void)payload, (void)payload_len, (void)qos, (void)retain;
}

static void expect_go(void) {
  char line[64];
  if (!fgets(line, sizeof line, stdin) || strncmp(line, "go", 2) != 0) {
    fprintf(stderr, "expected go on stdin\n");
    exit(1);
  }
}

static int run_deadlines(void) {
  deadline_ms = (uint32_t)env_num("FAULT_DEADLINE_MS", 1000);
  edge_string *twin = NULL;
  CHECK(edge_client_get_twin_string(client, 0, &twin));
  edge_string_free(twin);
  say("ready");
  expect_go();

  pthread_t invoker;
  pthread_create(&invoker, NULL, invoke_thread, NULL);
  edge_message *m = NULL;
  CHECK(edge_message_new((const uint8_t *)"x", 1, &m));

  unsigned long long t0 = mono_ns();
  report("send", t0, edge_client_send_to_output(client, "out", m, deadline_ms));
  const edge_message *batch[3] = {m, m, m};
  t0 = mono_ns();
  report("send_batch", t0, edge_client_send_batch_to_output(client, "out", batch, 3, deadline_ms));
  char buf[4096];
  size_t n = 0;
  t0 = mono_ns();
  report("get_twin", t0, edge_client_get_twin(client, deadline_ms, buf, sizeof buf, &n));
  twin = NULL; /* untouched on failure */
  t0 = mono_ns();
  report("get_twin_string", t0, edge_client_get_twin_string(client, deadline_ms, &twin));
  edge_string_free(twin);
  const char *patch = "{\"stalled\":true}";
  t0 = mono_ns();
  report("patch_reported", t0, edge_client_update_reported(client, patch, strlen(patch), deadline_ms));
  t0 = mono_ns();
  report("publish", t0,
         edge_client_publish(client, "faults/x", (const uint8_t *)"x", 1, EDGE_QOS_AT_LEAST_ONCE, false, deadline_ms));
  t0 = mono_ns();
  report("subscribe", t0, edge_client_subscribe(client, "faults/#", on_topic, NULL, NULL, deadline_ms));
  t0 = mono_ns();
  report("unsubscribe", t0, edge_client_unsubscribe(client, "faults/#", deadline_ms));
  pthread_join(invoker, NULL);
  say("stalled-done");

  expect_go();
  t0 = mono_ns();
  report("after_send", t0, edge_client_send_to_output(client, "out", m, 0));
  edge_message_free(m);
  say("done");
  return 0;
}

int main(void) {
  const char *mode = env_str("FAULT_MODE");
  FILE *f = fopen(env_str("FAULT_CA_FILE"), "rb");
  if (!f) {
    perror("FAULT_CA_FILE");
    return 1;
  }
  static char ca[65536];
  size_t ca_len = fread(ca, 1, sizeof ca - 1, f);
  ca[ca_len] = 0;
  fclose(f);

  edge_options *opts = NULL;
  CHECK(edge_options_new(&opts));
  CHECK(edge_options_set_mqtt_port(opts, (uint16_t)env_num("FAULT_MQTT_PORT", 8883)));
  CHECK(edge_options_set_https_port(opts, (uint16_t)env_num("FAULT_HTTPS_PORT", 443)));
  const char *transport = env_str("FAULT_TRANSPORT");
#ifdef FAULT_HAVE_AMQP_PORT /* defined by the harness when include/edgemodule.h declares it */
  CHECK(edge_options_set_amqp_port(opts, (uint16_t)env_num("FAULT_AMQP_PORT", 5671)));
#else
  if (strcmp(transport, "amqp") == 0) {
    say("skip this libedgemodule has no edge_options_set_amqp_port (the hub's AMQPS port is not 5671 here)");
    return 0;
  }
#endif
  CHECK(edge_options_set_transport(opts, transport));
  CHECK(edge_options_set_default_timeout(opts, (uint32_t)env_num("FAULT_TIMEOUT_MS", 30000)));
  CHECK(edge_options_set_connect_timeout(opts, (uint32_t)env_num("FAULT_CONNECT_TIMEOUT_MS", 10000)));
  CHECK(edge_options_set_retry_exponential(opts, 20, 500, 0));
  long ttl = env_num("FAULT_SAS_TTL", 0);
  if (ttl > 0) CHECK(edge_options_set_sas_ttl(opts, (uint32_t)ttl, (uint32_t)env_num("FAULT_SAS_MARGIN", 1)));
  CHECK(edge_client_new_from_connection_string(env_str("FAULT_CS"), ca, opts, &client));
  edge_options_free(opts);
  CHECK(edge_client_set_connection_state_handler(client, on_state, NULL, NULL));

  int rc = strcmp(mode, "send") == 0 ? run_send() : strcmp(mode, "deadlines") == 0 ? run_deadlines() : 2;
  edge_client_free(client);
  return rc;
}
