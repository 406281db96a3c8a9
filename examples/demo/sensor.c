/*
 * sensor.c: the demo's temperature sensor, an IoT Edge module in C on libedgemodule.
 *
 * Emits SENSOR_READINGS readings (default 40), one every SENSOR_INTERVAL_MS ms (default 250), on
 * output "readings" as JSON {"seq":N,"temperature":T,"unit":"C"} with the application property
 * quality=good. Every 9th reading simulates a glitch: an implausible value tagged quality=bad,
 * which the deployment's route condition keeps away from the filter. Exits 0 when done, or
 * early on SIGINT/SIGTERM.
 *
 * Build (from the repository root, after `cargo build --release -p edgemodule-ffi`):
 *   gcc -std=c11 -O2 -Wall -Wextra -pthread -I include examples/demo/sensor.c \
 *       -L target/release -ledgemodule -Wl,-rpath,$PWD/target/release -lm -o sensor
 * Run it as a module: edgemodule-hub run --module sensor -- ./sensor
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgemodule.h"

#define TAG "sensor (C)       |"

static volatile sig_atomic_t stop = 0;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

/* Prints the failed call, its status name and the library's detail, and exits 1. */
static void fail(const char *what, edge_status st) {
  char detail[512];
  size_t n = 0;
  if (edge_last_error_message(detail, sizeof detail, &n) != EDGE_STATUS_OK) detail[0] = 0;
  fprintf(stderr, "%s %s failed: %s: %s\n", TAG, what, edge_status_name((int)st), detail);
  exit(1);
}

static long env_long(const char *name, long fallback, long min, long max) {
  const char *text = getenv(name);
  if (text == NULL || *text == 0) return fallback;
  char *end = NULL;
  long v = strtol(text, &end, 10);
  if (*end != 0 || v < min || v > max) {
    fprintf(stderr, "%s %s=%s is not a number in %ld..%ld\n", TAG, name, text, min, max);
    exit(2);
  }
  return v;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && !stop) {
  }
}

/* A slow wave between 15 and 45 degrees with a little deterministic jitter. */
static double temperature_at(long seq) {
  double wave = 30.0 + 15.0 * sin((double)seq / 4.0);
  double jitter = (double)((seq * 7919) % 11 - 5) / 20.0; /* -0.25 .. +0.25 */
  return round((wave + jitter) * 10.0) / 10.0;
}

static edge_status send_reading(const edge_client *client, long seq, double temperature, const char *quality) {
  char body[128];
  int len = snprintf(body, sizeof body, "{\"seq\":%ld,\"temperature\":%.1f,\"unit\":\"C\"}", seq, temperature);
  edge_message *msg = NULL;
  edge_status st = edge_message_new((const uint8_t *)body, (size_t)len, &msg);
  if (st != EDGE_STATUS_OK) return st;
  /* JSON + UTF-8 lets routes query the body ($body.temperature). */
  if ((st = edge_message_set_content_type(msg, "application/json")) == EDGE_STATUS_OK &&
      (st = edge_message_set_content_encoding(msg, "utf-8")) == EDGE_STATUS_OK &&
      (st = edge_message_set_property(msg, "quality", quality)) == EDGE_STATUS_OK) {
    /* Blocks until the hub has stored the message (its PUBACK). */
    st = edge_client_send_to_output(client, "readings", msg, 0);
  }
  edge_message_free(msg);
  return st;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  long readings = env_long("SENSOR_READINGS", 40, 1, 1000000);
  long interval_ms = env_long("SENSOR_INTERVAL_MS", 250, 0, 60000);

  edge_client *client = NULL;
  edge_status st = edge_client_new_from_environment(NULL, &client);
  if (st != EDGE_STATUS_OK) fail("edge_client_new_from_environment", st);
  char module_id[128];
  size_t n = 0;
  if ((st = edge_client_module_id(client, module_id, sizeof module_id, &n)) != EDGE_STATUS_OK) fail("module id", st);
  printf("%s connected as '%s' (libedgemodule %s); %ld readings, one every %ld ms\n", TAG, module_id, edge_version(),
         readings, interval_ms);

  long sent = 0, glitches = 0;
  for (long seq = 0; seq < readings && !stop; seq++) {
    if (seq % 9 == 8) {
      double bogus = 85.0 + (double)(seq % 5);
      if ((st = send_reading(client, seq, bogus, "bad")) != EDGE_STATUS_OK) fail("send", st);
      glitches++;
      printf("%s reading %ld is a glitch (%.1f C), sent with quality=bad: the route's WHERE drops it\n", TAG, seq,
             bogus);
    } else {
      if ((st = send_reading(client, seq, temperature_at(seq), "good")) != EDGE_STATUS_OK) fail("send", st);
    }
    sent++;
    if (interval_ms > 0) sleep_ms(interval_ms);
  }

  edge_client_free(client); /* closes the connection cleanly */
  printf("%s done: %ld readings sent (%ld glitches)%s\n", TAG, sent, glitches, stop ? ", stopped by a signal" : "");
  return 0;
}
