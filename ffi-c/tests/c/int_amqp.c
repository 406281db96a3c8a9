/* Integration test of the AMQP transport and of settling messages three ways, against a real
 * hub. Over AMQP (MQTT port: one nothing listens on, so nothing can fall back to MQTT): send ->
 * route -> input, twin, a client from the environment; an abandoned message comes back without
 * a reconnect and a rejected one is gone. Over MQTT: a rejected message is not delivered again
 * after a reconnect.
 * argv: sender-cs receiver-cs ca-pem-path closed-mqtt-port https-port amqp-port mqtt-port
 * The environment (EdgeHubConnectionString fallback) points EDGEMODULE_AMQP_PORT at the hub and
 * EDGEMODULE_MQTT_PORT at nothing. */
#include "check.h"

/* ---- input handler: keeps a copy of every message (settled later by main) ---- */
#define MAX_HELD 16
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static edge_message *held[MAX_HELD];
static waiter inputs = WAITER_INIT;

static void on_in1(void *user_data, const edge_message *msg) {
  (void)user_data;
  edge_message *copy = NULL;
  CHECK_OK(edge_message_clone(msg, &copy));
  pthread_mutex_lock(&held_mu);
  int i = inputs.count;
  CHECK(i < MAX_HELD);
  held[i] = copy;
  pthread_mutex_unlock(&held_mu);
  waiter_bump(&inputs);
}

/* The i-th message received (0-based), waiting up to 10 s for it. */
static edge_message *nth(int i) {
  CHECK(waiter_wait(&inputs, i + 1, 10));
  pthread_mutex_lock(&held_mu);
  edge_message *m = held[i];
  pthread_mutex_unlock(&held_mu);
  return m;
}

static int body_is(const edge_message *m, const char *text) {
  const uint8_t *body = NULL;
  size_t len = 0;
  CHECK_OK(edge_message_body(m, &body, &len));
  if (eq((const char *)body, len, text)) return 1;
  fprintf(stderr, "expected body \"%s\", got \"%.*s\"\n", text, (int)len, (const char *)body);
  return 0;
}

static void free_held(void) {
  for (int i = 0; i < waiter_count(&inputs) && i < MAX_HELD; i++) {
    edge_message_free(held[i]);
    held[i] = NULL;
  }
  inputs.count = 0;
}

/* ---- connection-state handler: counts disconnections ---- */
static waiter disconnects = WAITER_INIT;
static void on_state(void *user_data, edge_connection_status status, edge_disconnect_reason reason) {
  (void)user_data;
  (void)reason;
  if (status == EDGE_CONNECTION_STATUS_DISCONNECTED) waiter_bump(&disconnects);
}

static void send_body(const edge_client *c, const char *body) {
  edge_message *m = NULL;
  CHECK_OK(edge_message_new((const uint8_t *)body, strlen(body), &m));
  CHECK_OK(edge_client_send_to_output(c, "out1", m, 0));
  edge_message_free(m);
}

static edge_options *options(const char *transport, uint16_t mqtt_port, uint16_t https_port, uint16_t amqp_port) {
  edge_options *o = NULL;
  CHECK_OK(edge_options_new(&o));
  CHECK_OK(edge_options_set_transport(o, transport));
  CHECK_OK(edge_options_set_mqtt_port(o, mqtt_port));
  CHECK_OK(edge_options_set_https_port(o, https_port));
  CHECK_OK(edge_options_set_amqp_port(o, amqp_port));
  CHECK_OK(edge_options_set_default_timeout(o, 10000));
  CHECK_OK(edge_options_set_connect_timeout(o, 15000));
  return o;
}

/* Connects `receiver` with the in1 handler; after a reconnect the first message must be the
 * marker sent now, so nothing settled away before came back. */
static void first_after_reconnect_is(const char *cs, const char *ca, const edge_options *opts,
                                     const edge_client *sender, const char *marker) {
  free_held();
  edge_client *again = NULL;
  CHECK_OK(edge_client_new_from_connection_string(cs, ca, opts, &again));
  CHECK_OK(edge_client_set_input_handler(again, "in1", on_in1, NULL, NULL));
  send_body(sender, marker);
  edge_message *m = nth(0);
  CHECK(body_is(m, marker));
  CHECK_OK(edge_message_complete(m));
  /* No round trip: over AMQP, closing must not overtake the disposition. */
  edge_client_free(again);
  free_held();
}

int main(int argc, char **argv) {
  CHECK(argc == 8);
  setvbuf(stdout, NULL, _IOLBF, 0);
  char *ca = read_file(argv[3]);
  uint16_t closed = (uint16_t)atoi(argv[4]), https = (uint16_t)atoi(argv[5]);
  uint16_t amqp = (uint16_t)atoi(argv[6]), mqtt = (uint16_t)atoi(argv[7]);

  /* 1. AMQP: both modules over AMQP, the MQTT port closed. */
  edge_options *opts = options("amqp", closed, https, amqp);
  edge_client *sender = NULL, *receiver = NULL;
  CHECK_OK(edge_client_new_from_connection_string(argv[1], ca, opts, &sender));
  CHECK_OK(edge_client_new_from_connection_string(argv[2], ca, opts, &receiver));
  CHECK_OK(edge_client_set_connection_state_handler(receiver, on_state, NULL, NULL));
  CHECK_OK(edge_client_set_input_handler(receiver, "in1", on_in1, NULL, NULL));

  /* Properties survive the AMQP mapping. */
  edge_message *m = NULL;
  CHECK_OK(edge_message_new((const uint8_t *)"a", 1, &m));
  CHECK_OK(edge_message_set_message_id(m, "mid-amqp"));
  CHECK_OK(edge_message_set_property(m, "k/2", "a&b=c"));
  CHECK_OK(edge_client_send_to_output(sender, "out1", m, 0));
  edge_message_free(m);
  edge_message *first = nth(0);
  const char *p = NULL;
  size_t n = 0;
  CHECK(body_is(first, "a"));
  CHECK_OK(edge_message_message_id(first, &p, &n));
  CHECK(eq(p, n, "mid-amqp"));
  CHECK_OK(edge_message_property(first, "k/2", &p, &n));
  CHECK(eq(p, n, "a&b=c"));
  CHECK_OK(edge_message_input_name(first, &p, &n));
  CHECK(eq(p, n, "in1"));

  /* Abandon: released, so the hub delivers it again at once, with no reconnect. */
  CHECK_OK(edge_message_abandon(first));
  edge_message *again = nth(1);
  CHECK(body_is(again, "a"));
  CHECK(waiter_count(&disconnects) == 0);
  CHECK_STATUS(edge_message_complete(first), EDGE_STATUS_INVALID_STATE);

  /* Reject: the hub drops it; the next message is the next one sent. */
  CHECK_OK(edge_message_reject(again));
  CHECK_STATUS(edge_message_reject(again), EDGE_STATUS_INVALID_STATE);
  send_body(sender, "b");
  edge_message *b = nth(2);
  CHECK(body_is(b, "b"));
  CHECK_OK(edge_message_complete(b));
  CHECK(waiter_count(&disconnects) == 0);

  /* Twin over AMQP. */
  edge_string *s = NULL;
  CHECK_OK(edge_client_get_twin_string(receiver, 0, &s));
  CHECK(strstr(edge_string_ptr(s), "\"threshold\":25") != NULL);
  edge_string_free(s);
  CHECK_OK(edge_client_update_reported(receiver, "{\"transport\":\"amqp\"}", 20, 0));
  CHECK_OK(edge_client_get_twin_string(receiver, 0, &s));
  CHECK(strstr(edge_string_ptr(s), "\"transport\":\"amqp\"") != NULL);
  edge_string_free(s);

  /* After a reconnect nothing rejected or completed comes back. */
  edge_client_free(receiver);
  first_after_reconnect_is(argv[2], ca, opts, sender, "after-amqp");

  /* From the environment: the AMQP port comes from EDGEMODULE_AMQP_PORT. */
  CHECK(getenv("EDGEMODULE_AMQP_PORT") != NULL);
  edge_options *env_opts = NULL;
  CHECK_OK(edge_options_new(&env_opts));
  CHECK_OK(edge_options_set_transport(env_opts, "amqp"));
  CHECK_OK(edge_options_set_connect_timeout(env_opts, 15000));
  edge_client *env = NULL;
  CHECK_OK(edge_client_new_from_environment(env_opts, &env));
  CHECK_OK(edge_client_get_twin_string(env, 10000, &s));
  edge_string_free(s);
  /* User topics are an MQTT broker feature. */
  CHECK_STATUS(edge_client_publish(env, "sensors/t", (const uint8_t *)"x", 1, EDGE_QOS_AT_LEAST_ONCE, false, 0),
               EDGE_STATUS_UNSUPPORTED);
  edge_client_free(env);
  edge_options_free(env_opts);
  edge_client_free(sender);
  edge_options_free(opts);

  /* 2. MQTT: a rejected message is acknowledged, so a reconnect does not bring it back. */
  opts = options("mqtt", mqtt, https, amqp);
  CHECK_OK(edge_client_new_from_connection_string(argv[1], ca, opts, &sender));
  CHECK_OK(edge_client_new_from_connection_string(argv[2], ca, opts, &receiver));
  CHECK_OK(edge_client_set_input_handler(receiver, "in1", on_in1, NULL, NULL));
  send_body(sender, "rejected");
  m = nth(0);
  CHECK(body_is(m, "rejected"));
  CHECK_OK(edge_message_reject(m));
  CHECK_STATUS(edge_message_complete(m), EDGE_STATUS_INVALID_STATE);
  /* One round trip after the acknowledgement, so it is on the wire before the close. */
  CHECK_OK(edge_client_get_twin_string(receiver, 0, &s));
  edge_string_free(s);
  edge_client_free(receiver);
  first_after_reconnect_is(argv[2], ca, opts, sender, "after-mqtt");
  edge_client_free(sender);
  edge_options_free(opts);

  free(ca);
  printf("int_amqp: ok\n");
  return 0;
}
