/* Integration test of the WebSocket transport against a real hub: MQTT over WebSocket over TLS
 * on the hub's HTTPS port. The MQTT port given is one nothing listens on, so nothing can fall
 * back to MQTT over TLS.
 * argv: sender-connection-string receiver-connection-string ca-pem-path closed-mqtt-port https-port
 * Prints "WAIT desired" when the harness should patch the receiver's desired threshold to 30. */
#include "check.h"

/* ---- input handler: records each body and the first message's properties ---- */
static waiter inputs = WAITER_INIT;
static uint8_t *bodies[2] = {NULL, NULL};
static size_t body_lens[2] = {0, 0};
static int first_props_ok = 0;

static void on_in1(void *user_data, const edge_message *msg) {
  (void)user_data;
  int i = waiter_count(&inputs);
  const uint8_t *body = NULL;
  size_t len = 0;
  CHECK_OK(edge_message_body(msg, &body, &len));
  if (i < 2) {
    bodies[i] = malloc(len + 1);
    CHECK(bodies[i] != NULL);
    memcpy(bodies[i], body, len);
    body_lens[i] = len;
  }
  if (i == 0) {
    const char *p = NULL;
    size_t n = 0;
    int ok = 1;
    CHECK_OK(edge_message_message_id(msg, &p, &n));
    ok = ok && eq(p, n, "mid-ws");
    CHECK_OK(edge_message_input_name(msg, &p, &n));
    ok = ok && eq(p, n, "in1");
    CHECK_OK(edge_message_connection_module_id(msg, &p, &n));
    ok = ok && eq(p, n, "sender");
    CHECK_OK(edge_message_property(msg, "k/2", &p, &n));
    ok = ok && eq(p, n, "a&b=c");
    first_props_ok = ok;
  }
  waiter_bump(&inputs);
}

static waiter desired = WAITER_INIT;
static char desired_json[512];
static void on_desired(void *user_data, const char *json, size_t len) {
  (void)user_data;
  CHECK(len < sizeof desired_json && json[len] == 0);
  memcpy(desired_json, json, len + 1);
  waiter_bump(&desired);
}

int main(int argc, char **argv) {
  CHECK(argc == 6);
  setvbuf(stdout, NULL, _IOLBF, 0);
  char *ca = read_file(argv[3]);
  edge_options *opts = NULL;
  CHECK_OK(edge_options_new(&opts));
  CHECK_OK(edge_options_set_transport(opts, "mqtt_ws"));
  CHECK_OK(edge_options_set_mqtt_port(opts, (uint16_t)atoi(argv[4])));
  CHECK_OK(edge_options_set_https_port(opts, (uint16_t)atoi(argv[5])));
  CHECK_OK(edge_options_set_default_timeout(opts, 10000));
  CHECK_OK(edge_options_set_connect_timeout(opts, 5000));

  edge_client *sender = NULL, *receiver = NULL;
  CHECK_OK(edge_client_new_from_connection_string(argv[1], ca, opts, &sender));
  CHECK_OK(edge_client_new_from_connection_string(argv[2], ca, opts, &receiver));

  /* 1. send -> route -> input over WebSocket, properties intact; then 200 KB in one message. */
  CHECK_OK(edge_client_set_input_handler(receiver, "in1", on_in1, NULL, NULL));
  edge_message *m = NULL;
  CHECK_OK(edge_message_new((const uint8_t *)"{\"t\":21}", 8, &m));
  CHECK_OK(edge_message_set_message_id(m, "mid-ws"));
  CHECK_OK(edge_message_set_property(m, "k/2", "a&b=c"));
  CHECK_OK(edge_client_send_to_output(sender, "out1", m, 0));
  edge_message_free(m);
  CHECK(waiter_wait(&inputs, 1, 10));
  CHECK(first_props_ok);
  CHECK(body_lens[0] == 8 && memcmp(bodies[0], "{\"t\":21}", 8) == 0);

  size_t big_len = 200 * 1024;
  uint8_t *big = malloc(big_len);
  CHECK(big != NULL);
  for (size_t i = 0; i < big_len; i++) big[i] = (uint8_t)(i % 251);
  CHECK_OK(edge_message_new(big, big_len, &m));
  CHECK_OK(edge_client_send_to_output(sender, "out1", m, 0));
  edge_message_free(m);
  CHECK(waiter_wait(&inputs, 2, 10));
  CHECK(body_lens[1] == big_len && memcmp(bodies[1], big, big_len) == 0);
  free(big);

  /* 2. Twin over WebSocket: get, reported patch read back, desired patch delivered. */
  edge_string *s = NULL;
  CHECK_OK(edge_client_get_twin_string(receiver, 0, &s));
  CHECK(strstr(edge_string_ptr(s), "\"threshold\":25") != NULL);
  edge_string_free(s);
  CHECK_OK(edge_client_update_reported(receiver, "{\"transport\":\"mqtt_ws\"}", 23, 0));
  CHECK_OK(edge_client_get_twin_string(receiver, 0, &s));
  CHECK(strstr(edge_string_ptr(s), "\"transport\":\"mqtt_ws\"") != NULL);
  edge_string_free(s);
  CHECK_OK(edge_client_set_desired_handler(receiver, on_desired, NULL, NULL));
  printf("WAIT desired\n");
  CHECK(waiter_wait(&desired, 1, 15));
  CHECK(strstr(desired_json, "\"threshold\":30") != NULL);

  /* 3. From the environment (EdgeHubConnectionString fallback set by the harness): the
   *    WebSocket port comes from EDGEMODULE_HTTPS_PORT. */
  if (getenv("EdgeHubConnectionString") != NULL) {
    edge_options *env_opts = NULL;
    CHECK_OK(edge_options_new(&env_opts));
    CHECK_OK(edge_options_set_transport(env_opts, "mqtt_ws"));
    CHECK_OK(edge_options_set_connect_timeout(env_opts, 5000));
    edge_client *env = NULL;
    CHECK_OK(edge_client_new_from_environment(env_opts, &env));
    CHECK_OK(edge_client_get_twin_string(env, 10000, &s));
    edge_string_free(s);
    edge_client_free(env);
    edge_options_free(env_opts);
  }

  /* 4. Closing races the hub's own close of the connection, so the last writes of a close can
   *    hit a socket the hub has already closed. That must be an EPIPE for the library, never a
   *    SIGPIPE killing this process (C programs do not ignore SIGPIPE as Rust, Python and Node
   *    do). Before the library's threads blocked SIGPIPE, a few cycles were enough to die. */
  for (int i = 0; i < 20; i++) {
    edge_client *c = NULL;
    CHECK_OK(edge_client_new_from_connection_string(argv[1], ca, opts, &c));
    CHECK_OK(edge_client_update_reported(c, "{\"cycle\":1}", 11, 0));
    edge_client_free(c);
  }

  edge_client_free(receiver);
  edge_client_free(sender);
  edge_options_free(opts);
  free(bodies[0]);
  free(bodies[1]);
  free(ca);
  printf("int_transport: ok\n");
  return 0;
}
