/* Tiny assertion helpers shared by the C tests (not part of the library). */
#ifndef EDGE_TEST_CHECK_H
#define EDGE_TEST_CHECK_H

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgemodule.h"

static inline const char *last_error(void) {
  static char buf[1024];
  size_t n = 0;
  if (edge_last_error_message(buf, sizeof buf, &n) != EDGE_STATUS_OK) {
    return "(last error too long)";
  }
  return buf;
}

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);       \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)

#define CHECK_STATUS(expr, expected)                                                 \
  do {                                                                               \
    edge_status got_ = (expr);                                                       \
    if (got_ != (expected)) {                                                        \
      fprintf(stderr, "%s:%d: %s gave %s, expected %s (last error: %s)\n", __FILE__, \
              __LINE__, #expr, edge_status_name((int)got_),                          \
              edge_status_name((int)(expected)), last_error());                     \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, EDGE_STATUS_OK)

/* Whether len bytes at p equal the NUL-terminated text s. */
static inline int eq(const char *p, size_t len, const char *s) {
  return p != NULL && strlen(s) == len && memcmp(p, s, len) == 0;
}

/* A counter plus condition variable to wait for callbacks with a deadline. */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int count;
} waiter;

#define WAITER_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0}

static inline void waiter_bump(waiter *w) {
  pthread_mutex_lock(&w->mu);
  w->count++;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static inline int waiter_count(waiter *w) {
  pthread_mutex_lock(&w->mu);
  int n = w->count;
  pthread_mutex_unlock(&w->mu);
  return n;
}

/* Waits until the count reaches at least n; returns 0 on timeout. */
static inline int waiter_wait(waiter *w, int n, int seconds) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += seconds;
  pthread_mutex_lock(&w->mu);
  while (w->count < n) {
    if (pthread_cond_timedwait(&w->cv, &w->mu, &deadline) == ETIMEDOUT) {
      break;
    }
  }
  int ok = w->count >= n;
  pthread_mutex_unlock(&w->mu);
  return ok;
}

static inline void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

/* Reads a whole file into a NUL-terminated malloc'd buffer. */
static inline char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  CHECK(buf != NULL);
  CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
  buf[n] = 0;
  fclose(f);
  return buf;
}

#endif
