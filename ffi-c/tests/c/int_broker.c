/* Integration test of the user-topic (MQTT broker) API against a real hub over TLS, with the
 * hub's authorization policy set by the harness (ffi-c/tests/c_api.rs, broker_deployment):
 * everyone connects; `sender` publishes on sensors/# and in/receiver/#; everyone subscribes to
 * sensors/# and in/<own module id>/#; nobody publishes or subscribes on sensors/secret/#.
 * argv: sender-connection-string receiver-connection-string ca-pem-path mqtt-port https-port */
#include "check.h"

#include <stdatomic.h>
#include <stdbool.h>

static const edge_client *receiver_client = NULL;

/* ---- user_data finalisers: one counter each, bumped (and waited for) through a waiter ---- */
static waiter freed = WAITER_INIT;
static void count_free(void *p) {
  (void)p;
  waiter_bump(&freed);
}

/* ---- a subscription's log of received messages ---- */
#define MAX_SEEN 16
typedef struct {
  char topic[64];
  char payload[64];
  size_t payload_len;
  int payload_null;
  edge_qos qos;
  bool retain;
} seen_msg;

typedef struct {
  const char *name;
  pthread_mutex_t mu;
  seen_msg msgs[MAX_SEEN];
  waiter count;
} sub_log;

#define SUB_LOG(n) {.name = n, .mu = PTHREAD_MUTEX_INITIALIZER, .count = WAITER_INIT}

static sub_log temps = SUB_LOG("temps"), doors = SUB_LOG("doors"), doors2 = SUB_LOG("doors2"),
               own = SUB_LOG("own"), after = SUB_LOG("after");

/* Blocking calls made from inside the callback (must refuse with WOULD_DEADLOCK). */
static edge_status publish_in_callback = EDGE_STATUS_OK;
static edge_status subscribe_in_callback = EDGE_STATUS_OK;
static edge_status unsubscribe_in_callback = EDGE_STATUS_OK;
static atomic_int frees_from_refused_callback_subscribe = 0;
static void refused_free(void *p) {
  (void)p;
  atomic_fetch_add(&frees_from_refused_callback_subscribe, 1);
}
static void never_called(void *user_data, const char *topic, size_t topic_len, const uint8_t *payload,
                         size_t payload_len, edge_qos qos, bool retain) {
  (void)user_data, (void)topic, (void)topic_len, (void)payload, (void)payload_len, (void)qos, (void)retain;
  fprintf(stderr, "a refused subscription's callback was called\n");
  exit(1);
}

static void on_topic(void *user_data, const char *topic, size_t topic_len, const uint8_t *payload,
                     size_t payload_len, edge_qos qos, bool retain) {
  sub_log *log = user_data;
  CHECK(topic != NULL && topic[topic_len] == 0 && strlen(topic) == topic_len);
  CHECK(topic_len < sizeof log->msgs[0].topic && payload_len < sizeof log->msgs[0].payload);
  CHECK((payload == NULL) == (payload_len == 0));
  int n = waiter_count(&log->count);
  CHECK(n < MAX_SEEN);
  pthread_mutex_lock(&log->mu);
  seen_msg *m = &log->msgs[n];
  memcpy(m->topic, topic, topic_len + 1);
  if (payload_len) memcpy(m->payload, payload, payload_len);
  m->payload_len = payload_len;
  m->payload_null = payload == NULL;
  m->qos = qos;
  m->retain = retain;
  pthread_mutex_unlock(&log->mu);
  if (log == &temps && n == 0) {
    publish_in_callback =
        edge_client_publish(receiver_client, "sensors/x", (const uint8_t *)"x", 1, EDGE_QOS_AT_LEAST_ONCE, false, 1000);
    subscribe_in_callback =
        edge_client_subscribe(receiver_client, "sensors/y", never_called, NULL, refused_free, 1000);
    unsubscribe_in_callback = edge_client_unsubscribe(receiver_client, "sensors/+/temp", 1000);
  }
  waiter_bump(&log->count);
}

/* Waits for message number `i` (0-based) of `log` and checks it. */
static void expect_msg(sub_log *log, int i, const char *topic, const char *payload, edge_qos qos, bool retain) {
  if (!waiter_wait(&log->count, i + 1, 15)) {
    fprintf(stderr, "%s: message %d (%s) never arrived\n", log->name, i, topic);
    exit(1);
  }
  pthread_mutex_lock(&log->mu);
  seen_msg m = log->msgs[i];
  pthread_mutex_unlock(&log->mu);
  if (strcmp(m.topic, topic) != 0 || !eq(m.payload, m.payload_len, payload) || m.qos != qos ||
      m.retain != retain) {
    fprintf(stderr, "%s: message %d is %s '%.*s' qos %d retain %d; expected %s '%s' qos %d retain %d\n",
            log->name, i, m.topic, (int)m.payload_len, m.payload, (int)m.qos, (int)m.retain, topic, payload,
            (int)qos, (int)retain);
    exit(1);
  }
}

static edge_status pub(const edge_client *c, const char *topic, const char *payload, int qos, bool retain) {
  return edge_client_publish(c, topic, (const uint8_t *)payload, strlen(payload), qos, retain, 0);
}

int main(int argc, char **argv) {
  CHECK(argc == 6);
  setvbuf(stdout, NULL, _IOLBF, 0);
  char *ca = read_file(argv[3]);
  edge_options *opts = NULL;
  CHECK_OK(edge_options_new(&opts));
  CHECK_OK(edge_options_set_mqtt_port(opts, (uint16_t)atoi(argv[4])));
  CHECK_OK(edge_options_set_https_port(opts, (uint16_t)atoi(argv[5])));
  CHECK_OK(edge_options_set_default_timeout(opts, 10000));
  CHECK_OK(edge_options_set_connect_timeout(opts, 5000));
  edge_client *sender = NULL, *receiver = NULL;
  CHECK_OK(edge_client_new_from_connection_string(argv[1], ca, opts, &sender));
  CHECK_OK(edge_client_new_from_connection_string(argv[2], ca, opts, &receiver));
  receiver_client = receiver;

  /* 1. A retained message published before anyone subscribed reaches a later subscriber, first. */
  CHECK_OK(pub(sender, "sensors/door/state", "closed", EDGE_QOS_AT_LEAST_ONCE, true));
  CHECK_OK(pub(sender, "sensors/door/state", "open", EDGE_QOS_AT_LEAST_ONCE, true));
  CHECK_OK(edge_client_subscribe(receiver, "sensors/door/#", on_topic, &doors, count_free, 0));
  expect_msg(&doors, 0, "sensors/door/state", "open", EDGE_QOS_AT_LEAST_ONCE, true);

  /* 2. Live messages: topic, payload and the delivered QoS; non-matching topics are not delivered. */
  CHECK_OK(edge_client_subscribe(receiver, "sensors/+/temp", on_topic, &temps, count_free, 0));
  CHECK_OK(edge_client_subscribe(receiver, "in/receiver/#", on_topic, &own, count_free, 5000));
  CHECK_OK(pub(sender, "sensors/kitchen/temp", "21", EDGE_QOS_AT_LEAST_ONCE, false));
  CHECK_OK(pub(sender, "sensors/hall/humidity", "40", EDGE_QOS_AT_LEAST_ONCE, false));
  CHECK_OK(pub(sender, "sensors/hall/temp", "19", EDGE_QOS_AT_MOST_ONCE, false));
  CHECK_OK(edge_client_publish(sender, "sensors/empty/temp", NULL, 0, EDGE_QOS_AT_LEAST_ONCE, false, 0));
  CHECK_OK(pub(sender, "in/receiver/cmd", "go", EDGE_QOS_AT_LEAST_ONCE, false));
  expect_msg(&temps, 0, "sensors/kitchen/temp", "21", EDGE_QOS_AT_LEAST_ONCE, false);
  expect_msg(&temps, 1, "sensors/hall/temp", "19", EDGE_QOS_AT_MOST_ONCE, false);
  expect_msg(&temps, 2, "sensors/empty/temp", "", EDGE_QOS_AT_LEAST_ONCE, false);
  CHECK(temps.msgs[2].payload_null);
  expect_msg(&own, 0, "in/receiver/cmd", "go", EDGE_QOS_AT_LEAST_ONCE, false);
  CHECK(waiter_count(&doors.count) == 1);

  /* 3. Blocking calls from inside a callback refuse instead of deadlocking the dispatcher; the
   *    refused subscription never owned its user_data. */
  CHECK(publish_in_callback == EDGE_STATUS_WOULD_DEADLOCK);
  CHECK(subscribe_in_callback == EDGE_STATUS_WOULD_DEADLOCK);
  CHECK(unsubscribe_in_callback == EDGE_STATUS_WOULD_DEADLOCK);
  CHECK(frees_from_refused_callback_subscribe == 0);

  /* 4. Unsubscribe ends the registration (user_data_free once) and the deliveries. */
  CHECK(waiter_count(&freed) == 0);
  CHECK_OK(edge_client_unsubscribe(receiver, "sensors/+/temp", 0));
  CHECK(waiter_wait(&freed, 1, 10));
  CHECK_OK(pub(sender, "sensors/kitchen/temp", "22", EDGE_QOS_AT_LEAST_ONCE, false));
  CHECK_OK(pub(sender, "sensors/door/state", "ajar", EDGE_QOS_AT_LEAST_ONCE, false));
  /* The door message was published after the temperature: once it is in, the other is not coming. */
  expect_msg(&doors, 1, "sensors/door/state", "ajar", EDGE_QOS_AT_LEAST_ONCE, false);
  CHECK(waiter_count(&temps.count) == 3);
  CHECK_OK(edge_client_unsubscribe(receiver, "never/subscribed", 0));
  CHECK(waiter_count(&freed) == 1);

  /* 5. Subscribing to the same filter again replaces the callback (the old user_data_free runs
   *    once) and the retained message is sent again. */
  CHECK_OK(edge_client_subscribe(receiver, "sensors/door/#", on_topic, &doors2, count_free, 0));
  CHECK(waiter_wait(&freed, 2, 10));
  expect_msg(&doors2, 0, "sensors/door/state", "open", EDGE_QOS_AT_LEAST_ONCE, true);
  CHECK_OK(pub(sender, "sensors/door/state", "shut", EDGE_QOS_AT_LEAST_ONCE, false));
  expect_msg(&doors2, 1, "sensors/door/state", "shut", EDGE_QOS_AT_LEAST_ONCE, false);
  CHECK(waiter_count(&doors.count) == 2);

  /* 6. Refusals by the policy: a subscription gets REJECTED (user_data untouched); a publish makes
   *    the hub drop the connection, and after one resend the client reports CONNECTION_LOST. */
  CHECK_STATUS(edge_client_subscribe(receiver, "sensors/secret/#", on_topic, &temps, count_free, 0),
               EDGE_STATUS_REJECTED);
  CHECK_STATUS(edge_client_subscribe(receiver, "in/sender/#", on_topic, &temps, count_free, 0),
               EDGE_STATUS_REJECTED);
  CHECK(strlen(last_error()) > 0);
  CHECK_STATUS(edge_client_publish(receiver, "sensors/x", (const uint8_t *)"y", 1, EDGE_QOS_AT_LEAST_ONCE, false,
                                   30000),
               EDGE_STATUS_CONNECTION_LOST);
  CHECK_STATUS(edge_client_publish(sender, "sensors/secret/code", (const uint8_t *)"1234", 4,
                                   EDGE_QOS_AT_LEAST_ONCE, false, 30000),
               EDGE_STATUS_CONNECTION_LOST);
  CHECK(waiter_count(&freed) == 2);
  /* Both clients are usable afterwards: a new subscription is granted (so the receiver is back)
   * and a message the sender publishes on it arrives. */
  CHECK_OK(edge_client_subscribe(receiver, "sensors/after/#", on_topic, &after, count_free, 0));
  CHECK_OK(pub(sender, "sensors/after/x", "still here", EDGE_QOS_AT_LEAST_ONCE, false));
  expect_msg(&after, 0, "sensors/after/x", "still here", EDGE_QOS_AT_LEAST_ONCE, false);

  /* 7. Invalid arguments are refused before anything is sent (validation is the core's). */
  const uint8_t x = 'x';
  CHECK_STATUS(edge_client_publish(sender, "a/+", &x, 1, 1, false, 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(last_error(), "wildcard") != NULL);
  CHECK_STATUS(edge_client_publish(sender, "a/#", &x, 1, 1, false, 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_publish(sender, "", &x, 1, 1, false, 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_publish(sender, "devices/d/modules/m/messages/events", &x, 1, 1, false, 0),
               EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_publish(sender, "$iothub/twin/GET/?$rid=1", &x, 1, 1, false, 0),
               EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_publish(sender, "sensors/q", &x, 1, 2, false, 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(last_error(), "qos") != NULL);
  CHECK_STATUS(edge_client_publish(sender, "sensors/q", &x, 1, -1, false, 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_publish(sender, NULL, &x, 1, 1, false, 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_publish(sender, "sensors/\xff", &x, 1, 1, false, 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_publish(sender, "sensors/q", NULL, 5, 1, false, 0), EDGE_STATUS_INVALID_ARGUMENT);
  size_t big_len = 256 * 1024 + 1;
  uint8_t *big = calloc(big_len, 1);
  CHECK_STATUS(edge_client_publish(sender, "sensors/big", big, big_len, 0, false, 0), EDGE_STATUS_MESSAGE_TOO_LARGE);
  free(big);
  const char *bad_filters[] = {"a/#/b", "a+", "#/a", "", "devices/#", "$iothub/#", "sensors/\xfe"};
  for (size_t i = 0; i < sizeof bad_filters / sizeof bad_filters[0]; i++) {
    CHECK_STATUS(edge_client_subscribe(receiver, bad_filters[i], on_topic, &temps, count_free, 0),
                 EDGE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(edge_client_unsubscribe(receiver, bad_filters[i], 0), EDGE_STATUS_INVALID_ARGUMENT);
  }
  CHECK_STATUS(edge_client_subscribe(receiver, NULL, on_topic, &temps, count_free, 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_subscribe(receiver, "sensors/#", NULL, &temps, count_free, 0),
               EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_unsubscribe(receiver, NULL, 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK(waiter_count(&freed) == 2);

  /* 8. Closing ends the remaining registrations (doors2, own, after) exactly once; then CLOSED. */
  CHECK_OK(edge_client_close(receiver));
  CHECK(waiter_count(&freed) == 5);
  CHECK_STATUS(edge_client_subscribe(receiver, "sensors/#", on_topic, &temps, count_free, 0), EDGE_STATUS_CLOSED);
  CHECK_STATUS(pub(receiver, "sensors/x", "y", 1, false), EDGE_STATUS_CLOSED);
  edge_client_free(receiver);
  edge_client_free(sender);
  CHECK(waiter_count(&freed) == 5);
  CHECK(frees_from_refused_callback_subscribe == 0);
  edge_options_free(opts);
  free(ca);
  printf("int_broker: ok\n");
  return 0;
}
