/*
 * filter_module.c: an IoT Edge module in C using libedgemodule.
 *
 * Messages arriving on input "in1" whose JSON body has a number "t" above the threshold are
 * forwarded to output "alerts" with the property alert=true; the others are dropped. The
 * threshold comes from the desired property "threshold" (updated live). Direct method "reset"
 * zeroes the forwarded counter.
 *
 * Callbacks run on the library's dispatcher thread, where blocking calls such as sending are
 * refused (EDGE_STATUS_WOULD_DEADLOCK); so the input callback keeps a copy of each message and
 * queues it, and the main thread sends and completes it.
 *
 * Build: gcc -std=c11 -pthread -I include filter_module.c -L target/debug -ledgemodule
 * Run inside IoT Edge (or with EdgeHubConnectionString + EdgeModuleCACertificateFile set).
 * Options: --max-messages N exits after N input messages and one reset (used by the tests).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgemodule.h"

#define QUEUE_CAP 64

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static edge_message *queue[QUEUE_CAP];
static size_t queue_len = 0;
static double threshold = 0;
static long forwarded = 0;
static long resets = 0;
static volatile sig_atomic_t stop = 0;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void fail(const char *what, edge_status st) {
  char buf[512];
  size_t n = 0;
  if (edge_last_error_message(buf, sizeof buf, &n) != EDGE_STATUS_OK) buf[0] = 0;
  fprintf(stderr, "filter: %s failed: %s: %s\n", what, edge_status_name((int)st), buf);
  exit(1);
}

/* Finds "key": <number> in a JSON text (enough for this example; use a JSON parser in real code). */
static int json_number(const char *json, size_t len, const char *key, double *out) {
  char text[1024], pattern[64];
  if (len >= sizeof text) return 0;
  memcpy(text, json, len);
  text[len] = 0;
  snprintf(pattern, sizeof pattern, "\"%s\"", key);
  const char *p = strstr(text, pattern);
  if (p == NULL) return 0;
  p = strchr(p + strlen(pattern), ':');
  if (p == NULL) return 0;
  char *end = NULL;
  double v = strtod(p + 1, &end);
  if (end == p + 1) return 0;
  *out = v;
  return 1;
}

static void on_desired(void *user_data, const char *json, size_t len) {
  (void)user_data;
  double t;
  if (json_number(json, len, "threshold", &t)) {
    pthread_mutex_lock(&mu);
    threshold = t;
    pthread_mutex_unlock(&mu);
    printf("filter: threshold %g\n", t);
  }
}

static void on_input(void *user_data, const edge_message *msg) {
  (void)user_data;
  edge_message *copy = NULL;
  /* Keeping a copy defers completion: the main thread completes it after forwarding. */
  if (edge_message_clone(msg, &copy) != EDGE_STATUS_OK) return;
  pthread_mutex_lock(&mu);
  if (queue_len < QUEUE_CAP) {
    queue[queue_len++] = copy;
    copy = NULL;
  }
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
  if (copy != NULL) { /* queue full: let the hub redeliver it later */
    edge_message_abandon(copy);
    edge_message_free(copy);
  }
}

static void on_reset(void *user_data, const edge_method_request *req) {
  (void)user_data;
  char body[64];
  pthread_mutex_lock(&mu);
  int n = snprintf(body, sizeof body, "{\"reset\":true,\"forwarded\":%ld}", forwarded);
  forwarded = 0;
  pthread_mutex_unlock(&mu);
  /* Answer first, then let the main thread finish: a client freed before the response is
   * handed over would close the connection with the caller still waiting. Responding is
   * allowed inside callbacks. */
  edge_method_request_respond(req, 200, body, (size_t)n);
  pthread_mutex_lock(&mu);
  resets++;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
}

static void handle(const edge_client *client, edge_message *msg) {
  const uint8_t *body = NULL;
  size_t len = 0;
  double t = 0;
  edge_status st;
  if (edge_message_body(msg, &body, &len) == EDGE_STATUS_OK &&
      json_number((const char *)body, len, "t", &t)) {
    pthread_mutex_lock(&mu);
    double limit = threshold;
    pthread_mutex_unlock(&mu);
    if (t > limit) {
      edge_message *alert = NULL;
      if ((st = edge_message_new(body, len, &alert)) != EDGE_STATUS_OK) fail("edge_message_new", st);
      edge_message_set_content_type(alert, "application/json");
      edge_message_set_content_encoding(alert, "utf-8");
      edge_message_set_property(alert, "alert", "true");
      st = edge_client_send_to_output(client, "alerts", alert, 0);
      edge_message_free(alert);
      if (st != EDGE_STATUS_OK) { /* not forwarded: leave it for redelivery */
        edge_message_abandon(msg);
        edge_message_free(msg);
        return;
      }
      pthread_mutex_lock(&mu);
      forwarded++;
      pthread_mutex_unlock(&mu);
    }
  }
  edge_message_complete(msg);
  edge_message_free(msg);
}

int main(int argc, char **argv) {
  long max_messages = 0;
  if (argc == 3 && strcmp(argv[1], "--max-messages") == 0) max_messages = atol(argv[2]);
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);

  edge_client *client = NULL;
  edge_status st = edge_client_new_from_environment(NULL, &client);
  if (st != EDGE_STATUS_OK) fail("edge_client_new_from_environment", st);

  edge_string *twin = NULL;
  if ((st = edge_client_get_twin_string(client, 0, &twin)) != EDGE_STATUS_OK) fail("get twin", st);
  /* The twin is {"desired":{...},"reported":{...}}; desired comes first. */
  on_desired(NULL, edge_string_ptr(twin), edge_string_len(twin));
  edge_string_free(twin);

  if ((st = edge_client_set_desired_handler(client, on_desired, NULL, NULL)) != EDGE_STATUS_OK) fail("desired", st);
  if ((st = edge_client_set_method_handler(client, "reset", on_reset, NULL, NULL)) != EDGE_STATUS_OK) fail("reset", st);
  if ((st = edge_client_set_input_handler(client, "in1", on_input, NULL, NULL)) != EDGE_STATUS_OK) fail("in1", st);
  printf("filter: ready\n");

  long handled = 0;
  while (!stop) {
    pthread_mutex_lock(&mu);
    if (queue_len == 0) {
      struct timespec deadline;
      clock_gettime(CLOCK_REALTIME, &deadline);
      deadline.tv_nsec += 200 * 1000000L;
      if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&cv, &mu, &deadline);
    }
    edge_message *msg = NULL;
    if (queue_len > 0) {
      msg = queue[0];
      memmove(queue, queue + 1, (queue_len - 1) * sizeof queue[0]);
      queue_len--;
    }
    int done = max_messages > 0 && handled >= max_messages && resets > 0;
    pthread_mutex_unlock(&mu);
    if (msg != NULL) {
      handle(client, msg);
      handled++;
    } else if (done) {
      break;
    }
  }

  edge_client_free(client);
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < queue_len; i++) edge_message_free(queue[i]);
  pthread_mutex_unlock(&mu);
  printf("filter: done (%ld messages)\n", handled);
  return 0;
}
