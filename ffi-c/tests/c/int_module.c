/* Integration test against a real hub over TLS.
 * argv: sender-connection-string receiver-connection-string ca-pem-path mqtt-port https-port
 * Prints "WAIT desired" when the harness should patch the receiver's desired threshold to 30. */
#include "check.h"

#include <stdatomic.h>

static atomic_int freed_count = 0;
static void count_free(void *p) {
  (void)p;
  atomic_fetch_add(&freed_count, 1);
}

static const edge_client *receiver_client = NULL;

/* ---- input handler: checks the first message, keeps it for deferred completion ---- */
static waiter inputs = WAITER_INIT;
static edge_message *kept = NULL;
static edge_status send_in_callback = EDGE_STATUS_OK;
static edge_status twin_in_callback = EDGE_STATUS_OK;
static int first_ok = 0;

static void on_in1(void *user_data, const edge_message *msg) {
  CHECK(user_data == (void *)&inputs);
  if (waiter_count(&inputs) == 0) {
    const uint8_t *body = NULL;
    size_t len = 0;
    const char *p = NULL;
    CHECK_OK(edge_message_body(msg, &body, &len));
    int ok = len == 8 && memcmp(body, "{\"t\":21}", 8) == 0;
    CHECK_OK(edge_message_message_id(msg, &p, &len));
    ok = ok && eq(p, len, "mid-1");
    CHECK_OK(edge_message_correlation_id(msg, &p, &len));
    ok = ok && eq(p, len, "cid-1");
    CHECK_OK(edge_message_content_type(msg, &p, &len));
    ok = ok && eq(p, len, "application/json");
    CHECK_OK(edge_message_content_encoding(msg, &p, &len));
    ok = ok && eq(p, len, "utf-8");
    CHECK_OK(edge_message_input_name(msg, &p, &len));
    ok = ok && eq(p, len, "in1");
    CHECK_OK(edge_message_connection_module_id(msg, &p, &len));
    ok = ok && eq(p, len, "sender");
    CHECK_OK(edge_message_property(msg, "k/2", &p, &len));
    ok = ok && eq(p, len, "a&b=c");
    CHECK_OK(edge_message_property(msg, "k1", &p, &len));
    ok = ok && eq(p, len, "v 1");
    ok = ok && edge_message_property_count(msg) == 2;
    first_ok = ok;
    /* Blocking calls from a callback refuse instead of hanging. */
    send_in_callback = edge_client_send_to_output(receiver_client, "out", msg, 1000);
    size_t n = 0;
    twin_in_callback = edge_client_get_twin(receiver_client, 1000, NULL, 0, &n);
    /* Keep the message to complete it later from the main thread. */
    CHECK_OK(edge_message_clone(msg, &kept));
  }
  waiter_bump(&inputs);
}

static waiter replaced = WAITER_INIT;
static void on_in1_replacement(void *user_data, const edge_message *msg) {
  (void)user_data;
  (void)msg;
  waiter_bump(&replaced);
}

/* ---- desired ---- */
static waiter desired = WAITER_INIT;
static char desired_json[512];
static void on_desired(void *user_data, const char *json, size_t len) {
  (void)user_data;
  CHECK(len < sizeof desired_json && json[len] == 0);
  memcpy(desired_json, json, len + 1);
  waiter_bump(&desired);
}

/* ---- methods: "reset" answered late from another thread; default answers 404 ---- */
static edge_status invoke_in_callback = EDGE_STATUS_OK;

static void *respond_later(void *arg) {
  edge_method_request *req = arg;
  sleep_ms(50);
  const char *payload = NULL;
  size_t len = 0;
  CHECK_OK(edge_method_request_payload(req, &payload, &len));
  char body[256];
  int n = snprintf(body, sizeof body, "{\"echo\":%.*s}", (int)len, payload);
  CHECK_OK(edge_method_request_respond(req, 200, body, (size_t)n));
  CHECK_STATUS(edge_method_request_respond(req, 200, "{}", 2), EDGE_STATUS_INVALID_STATE);
  edge_method_request_free(req);
  return NULL;
}

static void on_reset(void *user_data, const edge_method_request *req) {
  (void)user_data;
  const char *name = NULL;
  size_t len = 0;
  CHECK_OK(edge_method_request_name(req, &name, &len));
  CHECK(eq(name, len, "reset"));
  int64_t st = 0;
  invoke_in_callback = edge_client_invoke_method(receiver_client, "d", "m", "x", NULL, 0, 0, 0, &st, NULL);
  edge_method_request *copy = NULL;
  CHECK_OK(edge_method_request_clone(req, &copy));
  pthread_t t;
  CHECK(pthread_create(&t, NULL, respond_later, copy) == 0);
  pthread_detach(t);
}

static void on_any_method(void *user_data, const edge_method_request *req) {
  (void)user_data;
  CHECK_OK(edge_method_request_respond(req, 404, "{\"unknown\":true}", 16));
}

/* ---- connection state ---- */
static waiter connected = WAITER_INIT;
static void on_state(void *user_data, edge_connection_status status, edge_disconnect_reason reason) {
  (void)user_data;
  if (status == EDGE_CONNECTION_STATUS_CONNECTED && reason == EDGE_DISCONNECT_REASON_OK) {
    waiter_bump(&connected);
  }
}

static edge_message *make_message(const char *body) {
  edge_message *m = NULL;
  CHECK_OK(edge_message_new((const uint8_t *)body, strlen(body), &m));
  return m;
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
  char module[64];
  size_t n = 0;
  CHECK_STATUS(edge_client_module_id(receiver, module, 3, &n), EDGE_STATUS_INSUFFICIENT_SIZE);
  CHECK(n == strlen("receiver"));
  CHECK_OK(edge_client_module_id(receiver, module, sizeof module, &n));
  CHECK(strcmp(module, "receiver") == 0);
  char device[128];
  CHECK_OK(edge_client_device_id(receiver, device, sizeof device, &n));

  CHECK_OK(edge_client_set_connection_state_handler(receiver, on_state, NULL, count_free));
  CHECK(waiter_wait(&connected, 1, 10));

  /* 1. Output routed to another module's input, properties intact, deferred completion. */
  CHECK_OK(edge_client_set_input_handler(receiver, "in1", on_in1, &inputs, count_free));
  edge_message *m = make_message("{\"t\":21}");
  CHECK_OK(edge_message_set_message_id(m, "mid-1"));
  CHECK_OK(edge_message_set_correlation_id(m, "cid-1"));
  CHECK_OK(edge_message_set_content_type(m, "application/json"));
  CHECK_OK(edge_message_set_content_encoding(m, "utf-8"));
  CHECK_OK(edge_message_set_property(m, "k/2", "a&b=c"));
  CHECK_OK(edge_message_set_property(m, "k1", "v 1"));
  CHECK_OK(edge_client_send_to_output(sender, "out1", m, 0));
  edge_message_free(m);
  CHECK(waiter_wait(&inputs, 1, 10));
  CHECK(first_ok);
  CHECK(send_in_callback == EDGE_STATUS_WOULD_DEADLOCK);
  CHECK(twin_in_callback == EDGE_STATUS_WOULD_DEADLOCK);
  CHECK(kept != NULL);
  CHECK_OK(edge_message_complete(kept));
  CHECK_STATUS(edge_message_complete(kept), EDGE_STATUS_INVALID_STATE);
  CHECK_STATUS(edge_message_abandon(kept), EDGE_STATUS_INVALID_STATE);
  edge_message_free(kept);

  /* 2. Batch send. */
  edge_message *batch[3] = {make_message("b0"), make_message("b1"), make_message("b2")};
  CHECK_OK(edge_client_send_batch_to_output(sender, "out1", (const edge_message *const *)batch, 3, 0));
  for (int i = 0; i < 3; i++) edge_message_free(batch[i]);
  CHECK(waiter_wait(&inputs, 4, 10));

  /* 3. Replacing a handler ends the old registration exactly once. */
  int before = freed_count;
  CHECK_OK(edge_client_set_input_handler(receiver, "in1", on_in1_replacement, NULL, count_free));
  for (int i = 0; i < 100 && freed_count == before; i++) sleep_ms(20);
  CHECK(freed_count == before + 1);
  m = make_message("after-replace");
  CHECK_OK(edge_client_send_to_output(sender, "out1", m, 0));
  edge_message_free(m);
  CHECK(waiter_wait(&replaced, 1, 10));
  CHECK(waiter_count(&inputs) == 4);

  /* 4. Twin: get (caller buffer and edge_string), reported patch, desired callback. */
  n = 0;
  CHECK_STATUS(edge_client_get_twin(receiver, 0, NULL, 0, &n), EDGE_STATUS_INSUFFICIENT_SIZE);
  CHECK(n > 10);
  char *twin = malloc(n + 1);
  CHECK_OK(edge_client_get_twin(receiver, 0, twin, n + 1, &n));
  CHECK(strstr(twin, "\"threshold\":25") != NULL);
  free(twin);
  CHECK_OK(edge_client_update_reported(receiver, "{\"c\":{\"ok\":true}}", 17, 0));
  edge_string *s = NULL;
  CHECK_OK(edge_client_get_twin_string(receiver, 0, &s));
  CHECK(strstr(edge_string_ptr(s), "\"ok\":true") != NULL);
  CHECK(edge_string_len(s) == strlen(edge_string_ptr(s)));
  edge_string_free(s);
  CHECK_STATUS(edge_client_update_reported(receiver, "[1,2]", 5, 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_update_reported(receiver, "not json", 8, 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_OK(edge_client_set_desired_handler(receiver, on_desired, NULL, count_free));
  printf("WAIT desired\n");
  CHECK(waiter_wait(&desired, 1, 15));
  CHECK(strstr(desired_json, "\"threshold\":30") != NULL);
  CHECK(strstr(desired_json, "\"$version\"") != NULL);

  /* 5. Methods: per-name handler answering late, default handler, invoke from the sender. */
  CHECK_OK(edge_client_set_method_handler(receiver, "reset", on_reset, NULL, count_free));
  CHECK_OK(edge_client_set_method_handler(receiver, NULL, on_any_method, NULL, count_free));
  int64_t status = 0;
  edge_string *result = NULL;
  CHECK_OK(edge_client_invoke_method(sender, device, "receiver", "reset", "{\"n\":1}", 7, 10000, 0,
                                     &status, &result));
  CHECK(status == 200);
  CHECK(strcmp(edge_string_ptr(result), "{\"echo\":{\"n\":1}}") == 0);
  edge_string_free(result);
  CHECK(invoke_in_callback == EDGE_STATUS_WOULD_DEADLOCK);
  CHECK_OK(edge_client_invoke_method(sender, device, "receiver", "other", NULL, 0, 10000, 0, &status, NULL));
  CHECK(status == 404);

  /* 6. Invalid inputs get their documented statuses (validated by the core). */
  m = make_message("x");
  CHECK_STATUS(edge_client_send_to_output(sender, "bad name", m, 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_send_to_output(sender, "", m, 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_send_to_output(sender, NULL, m, 0), EDGE_STATUS_INVALID_ARGUMENT);
  edge_message_free(m);
  size_t big_len = 256 * 1024 + 1;
  uint8_t *big = calloc(big_len, 1);
  CHECK_OK(edge_message_new(big, big_len, &m));
  free(big);
  CHECK_STATUS(edge_client_send_to_output(sender, "o", m, 0), EDGE_STATUS_MESSAGE_TOO_LARGE);
  edge_message_free(m);
  int freed_before = freed_count;
  CHECK_STATUS(edge_client_set_input_handler(receiver, "bad name", on_in1, NULL, count_free),
               EDGE_STATUS_INVALID_ARGUMENT);
  CHECK(freed_count == freed_before);
  CHECK_STATUS(edge_client_set_input_handler(receiver, "in2", NULL, NULL, NULL), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_invoke_method(sender, device, "nobody", "reset", NULL, 0, 5000, 0, &status, NULL),
               EDGE_STATUS_NOT_FOUND);
  CHECK_STATUS(edge_client_invoke_method(sender, device, "receiver", "reset", "{", 1, 5000, 0, &status, NULL),
               EDGE_STATUS_INVALID_ARGUMENT);

  /* 7. Client from the environment (EdgeHubConnectionString fallback set by the harness). */
  if (getenv("EdgeHubConnectionString") != NULL) {
    edge_client *env = NULL;
    CHECK_OK(edge_client_new_from_environment(opts, &env));
    CHECK_OK(edge_client_module_id(env, module, sizeof module, &n));
    CHECK(strcmp(module, "other") == 0);
    CHECK_OK(edge_client_close(env));
    m = make_message("x");
    CHECK_STATUS(edge_client_send_to_output(env, "o", m, 0), EDGE_STATUS_CLOSED);
    edge_message_free(m);
    edge_client_free(env);
  }

  /* 8. Freeing ends every registration exactly once: state, in1 (x2), desired, reset, default. */
  edge_client_free(receiver);
  CHECK(freed_count == 6);
  edge_client_free(sender);
  edge_options_free(opts);
  free(ca);
  printf("int_module: ok\n");
  return 0;
}
