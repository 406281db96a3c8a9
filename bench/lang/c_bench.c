/* One benchmark workload of the C API (libedgemodule) against a running edgemodule-hub.
 *
 * Usage: c_bench a|b|c|d|e CONNECTION_STRING CA_FILE MQTT_PORT N
 *
 * Workloads as in python_bench.py: (a) N sends, each blocking until stored, (b) N sends through
 * edge_client_send_batch_to_output in batches of 100, (c) receive N pre-loaded messages on input
 * "in" (first -> last at the callback), (d) N sequential round trips output "loop" -> route ->
 * input "loop" (p50/p99), (e) RSS before creating the client and of a connected client with an
 * input handler after a 2 s settle. Prints one JSON line.
 *
 * Build: gcc -std=c11 -O2 -pthread -I include bench/lang/c_bench.c -L target/release -ledgemodule
 *        -Wl,-rpath,$PWD/target/release */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgemodule.h"

#define WINDOW 100
#define TIMEOUT_S 300

static uint8_t body[256];

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = 0;
  if (!f) return 0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kib = strtol(line + 6, NULL, 10);
      break;
    }
  }
  fclose(f);
  return kib;
}

static void die(const char *what, enum edge_status st) {
  char err[1024];
  size_t n = 0;
  err[0] = 0;
  edge_last_error_message(err, sizeof err, &n);
  fprintf(stderr, "%s: %s (%s)\n", what, edge_status_name((int)st), err);
  exit(1);
}

#define CHECK(call)                         \
  do {                                      \
    enum edge_status st_ = (call);          \
    if (st_ != EDGE_STATUS_OK) die(#call, st_); \
  } while (0)

/* Shared with the callbacks (which run on the client's dispatcher thread). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long received;
static long target;
static double first_at, last_at;

static void on_input(void *user_data, const struct edge_message *msg) {
  double t = now_s();
  (void)user_data;
  (void)msg; /* returning completes the message */
  pthread_mutex_lock(&mu);
  if (received == 0) first_at = t;
  received++;
  if (received >= target) {
    last_at = t;
    pthread_cond_signal(&cv);
  }
  pthread_mutex_unlock(&mu);
}

static void on_idle(void *user_data, const struct edge_message *msg) {
  (void)user_data;
  (void)msg;
}

/* Waits until `received >= want`; exits on timeout. */
static void wait_for(long want) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += TIMEOUT_S;
  pthread_mutex_lock(&mu);
  target = want;
  while (received < want) {
    if (pthread_cond_timedwait(&cv, &mu, &deadline) != 0) {
      fprintf(stderr, "timed out: received %ld of %ld\n", received, want);
      exit(1);
    }
  }
  pthread_mutex_unlock(&mu);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  long rss_bare = rss_kib();
  if (argc != 6) {
    fprintf(stderr, "usage: %s a|b|c|d|e CONNECTION_STRING CA_FILE MQTT_PORT N\n", argv[0]);
    return 2;
  }
  char w = argv[1][0];
  const char *cs = argv[2];
  long port = strtol(argv[4], NULL, 10);
  long n = strtol(argv[5], NULL, 10);
  memset(body, 'x', sizeof body);

  FILE *f = fopen(argv[3], "rb");
  if (!f) {
    perror(argv[3]);
    return 1;
  }
  static char ca[65536];
  size_t ca_len = fread(ca, 1, sizeof ca - 1, f);
  ca[ca_len] = 0;
  fclose(f);

  edge_options *opts = NULL;
  CHECK(edge_options_new(&opts));
  CHECK(edge_options_set_mqtt_port(opts, (uint16_t)port));
  edge_client *client = NULL;
  CHECK(edge_client_new_from_connection_string(cs, ca, opts, &client));
  edge_options_free(opts);

  edge_message *msg = NULL;
  CHECK(edge_message_new(body, sizeof body, &msg));
  char out[256];
  double t0;
  switch (w) {
    case 'a':
      t0 = now_s();
      for (long i = 0; i < n; i++) CHECK(edge_client_send_to_output(client, "sink", msg, 0));
      snprintf(out, sizeof out, "\"rate\": %.1f", (double)n / (now_s() - t0));
      break;
    case 'b': {
      const edge_message *batch[WINDOW];
      for (int i = 0; i < WINDOW; i++) batch[i] = msg;
      t0 = now_s();
      for (long left = n; left > 0; left -= WINDOW) {
        size_t k = left < WINDOW ? (size_t)left : WINDOW;
        CHECK(edge_client_send_batch_to_output(client, "sink", batch, k, 0));
      }
      snprintf(out, sizeof out, "\"rate\": %.1f, \"how\": \"edge_client_send_batch_to_output, batches of 100\"",
               (double)n / (now_s() - t0));
      break;
    }
    case 'c':
      pthread_mutex_lock(&mu);
      target = n;
      pthread_mutex_unlock(&mu);
      CHECK(edge_client_set_input_handler(client, "in", on_input, NULL, NULL));
      wait_for(n);
      snprintf(out, sizeof out, "\"rate\": %.1f", (double)(n - 1) / (last_at - first_at));
      break;
    case 'd': {
      double *samples = malloc(sizeof(double) * (size_t)n);
      CHECK(edge_client_set_input_handler(client, "loop", on_input, NULL, NULL));
      for (long i = 0; i < n; i++) {
        t0 = now_s();
        CHECK(edge_client_send_to_output(client, "loop", msg, 0));
        wait_for(i + 1);
        samples[i] = now_s() - t0;
      }
      qsort(samples, (size_t)n, sizeof(double), cmp_double);
      snprintf(out, sizeof out, "\"p50_us\": %.1f, \"p99_us\": %.1f",
               samples[(long)((double)(n - 1) * 0.5 + 0.5)] * 1e6, samples[(long)((double)(n - 1) * 0.99 + 0.5)] * 1e6);
      free(samples);
      break;
    }
    case 'e': {
      CHECK(edge_client_set_input_handler(client, "in", on_idle, NULL, NULL));
      struct timespec settle = {2, 0};
      nanosleep(&settle, NULL);
      snprintf(out, sizeof out, "\"rss_bare_kib\": %ld, \"rss_loaded_kib\": %ld, \"rss_idle_kib\": %ld", rss_bare,
               rss_bare, rss_kib());
      break;
    }
    default:
      fprintf(stderr, "unknown workload %c\n", w);
      return 2;
  }
  edge_message_free(msg);
  edge_client_free(client);
  double cpu = (double)clock() / CLOCKS_PER_SEC;
  printf("{\"impl\": \"c\", \"mode\": \"sync\", \"workload\": \"%c\", \"n\": %ld, %s, \"cpu_s\": %.3f}\n", w, n, out, cpu);
  return 0;
}
