/* Contract tests that need no hub: free(NULL), NULL arguments, buffer sizing, statuses, version. */
#include "check.h"

static int freed = 0;
static void count_free(void *p) {
  (void)p;
  freed++;
}

int main(void) {
  /* Version macros match the runtime version. */
  char expected[64];
  snprintf(expected, sizeof expected, "%d.%d.%d", EDGE_VERSION_MAJOR, EDGE_VERSION_MINOR,
           EDGE_VERSION_PATCH);
  CHECK(strcmp(edge_version(), expected) == 0);
  CHECK(strcmp(edge_version(), EDGE_VERSION) == 0);

  /* Status names. */
  CHECK(EDGE_STATUS_OK == 0);
  CHECK(strcmp(edge_status_name(EDGE_STATUS_TIMEOUT), "EDGE_STATUS_TIMEOUT") == 0);
  CHECK(strcmp(edge_status_name(EDGE_STATUS_WOULD_DEADLOCK), "EDGE_STATUS_WOULD_DEADLOCK") == 0);
  CHECK(strcmp(edge_status_name(12345), "EDGE_STATUS_UNKNOWN") == 0);
  CHECK(strcmp(edge_disconnect_reason_name(EDGE_DISCONNECT_REASON_NO_NETWORK), "NO_NETWORK") == 0);

  /* _free(NULL) is a no-op. */
  edge_client_free(NULL);
  edge_message_free(NULL);
  edge_options_free(NULL);
  edge_string_free(NULL);
  edge_method_request_free(NULL);

  /* NULL arguments. */
  CHECK_STATUS(edge_options_new(NULL), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_close(NULL), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_set_input_handler(NULL, "in", NULL, NULL, count_free),
               EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_subscribe(NULL, "sensors/#", NULL, NULL, count_free, 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_client_publish(NULL, "sensors/x", (const uint8_t *)"x", 1, EDGE_QOS_AT_LEAST_ONCE, false, 0),
               EDGE_STATUS_INVALID_ARGUMENT);
  CHECK(strcmp(last_error(), "client is NULL") == 0);
  CHECK_STATUS(edge_client_unsubscribe(NULL, "sensors/#", 0), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK(freed == 0); /* a failed registration never takes ownership of user_data */
  edge_client *client = NULL;
  CHECK_STATUS(edge_client_new_from_connection_string(NULL, NULL, NULL, &client),
               EDGE_STATUS_INVALID_ARGUMENT);
  CHECK(client == NULL);

  /* Last-error sizing: NULL buffer reports the length, small buffer is untouched. */
  CHECK_STATUS(edge_options_set_retry_none(NULL), EDGE_STATUS_INVALID_ARGUMENT);
  size_t n = 0;
  CHECK_STATUS(edge_last_error_message(NULL, 0, &n), EDGE_STATUS_INSUFFICIENT_SIZE);
  CHECK(n == strlen("opts is NULL"));
  char small[4] = {'x', 'x', 'x', 'x'};
  CHECK_STATUS(edge_last_error_message(small, sizeof small, &n), EDGE_STATUS_INSUFFICIENT_SIZE);
  CHECK(small[0] == 'x');
  char *buf = malloc(n + 1);
  CHECK_OK(edge_last_error_message(buf, n + 1, &n));
  CHECK(strcmp(buf, "opts is NULL") == 0);
  free(buf);

  /* Options builder. */
  edge_options *opts = NULL;
  CHECK_OK(edge_options_new(&opts));
  CHECK_OK(edge_options_set_default_timeout(opts, 5000));
  CHECK_OK(edge_options_set_connect_timeout(opts, 2000));
  CHECK_OK(edge_options_set_keepalive(opts, 30));
  CHECK_OK(edge_options_set_sas_ttl(opts, 600, 60));
  CHECK_OK(edge_options_set_max_in_flight(opts, 16));
  CHECK_OK(edge_options_set_queue_bound(opts, 100));
  CHECK_OK(edge_options_set_product_info(opts, "api-test/1"));
  CHECK_OK(edge_options_set_mqtt_port(opts, 1));
  CHECK_OK(edge_options_set_https_port(opts, 2));
  CHECK_OK(edge_options_set_amqp_port(opts, 3));
  CHECK_STATUS(edge_options_set_amqp_port(NULL, 3), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_OK(edge_options_set_retry_exponential(opts, 100, 1000, 0));
  CHECK_OK(edge_options_set_retry_none(opts));
  CHECK_STATUS(edge_options_set_product_info(opts, "\xff\xfe"), EDGE_STATUS_INVALID_ARGUMENT);

  /* Validation is the core's: bad values are caught at client creation, not by setters. */
  CHECK_OK(edge_options_set_keepalive(opts, 0));
  CHECK_STATUS(edge_client_new_from_connection_string(
                   "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=AAAA", NULL, opts, &client),
               EDGE_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(last_error(), "keep_alive") != NULL);
  edge_options_free(opts);

  /* Transport names are the core's: case-insensitive, an unknown one names the accepted ones. */
  CHECK_OK(edge_options_new(&opts));
  CHECK_OK(edge_options_set_transport(opts, "mqtt_ws"));
  CHECK_OK(edge_options_set_transport(opts, "amqp"));
  CHECK_OK(edge_options_set_transport(opts, "MQTT"));
  CHECK_STATUS(edge_options_set_transport(opts, "bogus"), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(last_error(), "unknown transport 'bogus'") != NULL);
  CHECK(strstr(last_error(), "mqtt_ws") != NULL);
  CHECK_STATUS(edge_options_set_transport(opts, NULL), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_options_set_transport(NULL, "mqtt"), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(edge_options_set_transport(opts, "\xff"), EDGE_STATUS_INVALID_ARGUMENT);
  /* A proxy is checked by the core at client creation: only WebSocket uses one... */
  CHECK_OK(edge_options_set_proxy(opts, "http://127.0.0.1:3128"));
  CHECK_STATUS(edge_client_new_from_connection_string(
                   "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=AAAA", NULL, opts, &client),
               EDGE_STATUS_CONFIGURATION);
  CHECK(strstr(last_error(), "WebSocket") != NULL);
  /* ...and it must be an http:// URL; NULL removes it. */
  CHECK_OK(edge_options_set_transport(opts, "mqtt_ws"));
  CHECK_OK(edge_options_set_proxy(opts, "127.0.0.1:3128"));
  CHECK_STATUS(edge_client_new_from_connection_string(
                   "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=AAAA", NULL, opts, &client),
               EDGE_STATUS_CONFIGURATION);
  CHECK_OK(edge_options_set_proxy(opts, NULL));
  CHECK_OK(edge_options_set_transport(opts, "mqtt"));
  CHECK_STATUS(edge_options_set_proxy(NULL, NULL), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK(client == NULL);
  edge_options_free(opts);

  /* A malformed connection string is the core's INVALID_ARGUMENT. */
  CHECK_STATUS(edge_client_new_from_connection_string("nonsense", NULL, NULL, &client),
               EDGE_STATUS_INVALID_ARGUMENT);

  /* Message builder and getters. */
  edge_message *msg = NULL;
  CHECK_STATUS(edge_message_new(NULL, 5, &msg), EDGE_STATUS_INVALID_ARGUMENT);
  CHECK_OK(edge_message_new((const uint8_t *)"hello", 5, &msg));
  CHECK_OK(edge_message_set_message_id(msg, "id-1"));
  CHECK_OK(edge_message_set_correlation_id(msg, "c-1"));
  CHECK_OK(edge_message_set_content_type(msg, "text/plain"));
  CHECK_OK(edge_message_set_content_encoding(msg, "utf-8"));
  CHECK_OK(edge_message_set_property(msg, "k", "v"));
  const char *p = NULL;
  size_t len = 0;
  CHECK_OK(edge_message_message_id(msg, &p, &len));
  CHECK(eq(p, len, "id-1"));
  CHECK_OK(edge_message_input_name(msg, &p, &len));
  CHECK(p == NULL && len == 0);
  CHECK_OK(edge_message_property(msg, "missing", &p, &len));
  CHECK(p == NULL);
  CHECK(edge_message_property_count(msg) == 1);
  const char *k = NULL, *v = NULL;
  size_t kl = 0, vl = 0;
  CHECK_OK(edge_message_property_at(msg, 0, &k, &kl, &v, &vl));
  CHECK(eq(k, kl, "k") && eq(v, vl, "v"));
  CHECK_STATUS(edge_message_property_at(msg, 1, &k, &kl, &v, &vl), EDGE_STATUS_INVALID_ARGUMENT);
  const uint8_t *body = NULL;
  CHECK_OK(edge_message_body(msg, &body, &len));
  CHECK(len == 5 && memcmp(body, "hello", 5) == 0);
  /* Only received messages can be settled. */
  CHECK_STATUS(edge_message_complete(msg), EDGE_STATUS_INVALID_STATE);
  CHECK_STATUS(edge_message_abandon(msg), EDGE_STATUS_INVALID_STATE);
  CHECK_STATUS(edge_message_reject(msg), EDGE_STATUS_INVALID_STATE);
  CHECK_STATUS(edge_message_reject(NULL), EDGE_STATUS_INVALID_ARGUMENT);
  edge_message *copy = NULL;
  CHECK_OK(edge_message_clone(msg, &copy));
  edge_message_free(msg);
  CHECK_OK(edge_message_body(copy, &body, &len));
  CHECK(len == 5);
  edge_message_free(copy);

  /* The environment is not configured in this process. */
  CHECK_STATUS(edge_client_new_from_environment(NULL, &client), EDGE_STATUS_CONFIGURATION);
  CHECK(client == NULL);

  printf("api_contract: ok\n");
  return 0;
}
