/* The C conformance agent: one command per stdin line (`verb key=value ...`, values
 * percent-encoded), one public edgemodule.h call per command, one result line (`ok ...` or
 * `err CODE message`), plus `event ...` lines from callbacks. See tests/xlang/README.md. */
#include "edgemodule.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 64
#define MAX_HELD 4096

typedef struct { char *p; size_t len, cap; } buf;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER, held_mu = PTHREAD_MUTEX_INITIALIZER;
static edge_client *client;
static void *held[MAX_HELD];
static int held_kind[MAX_HELD]; /* 1 message, 2 method request */
static int next_id;
static char *keys[MAX_ARGS], *vals[MAX_ARGS];
static size_t vlens[MAX_ARGS], nargs;

static void put(buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }
static void put_enc(buf *b, const char *s, size_t n) {
    char tmp[4];
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-_.~", c)) {
            put(b, (const char *)&c, 1);
        } else {
            snprintf(tmp, sizeof tmp, "%%%02X", c);
            put(b, tmp, 3);
        }
    }
}
static void field(buf *b, const char *key, const char *v, size_t n) {
    puts_(b, " ");
    puts_(b, key);
    puts_(b, "=");
    put_enc(b, v, n);
}
static void emit(buf *b) {
    pthread_mutex_lock(&out_mu);
    fwrite(b->p, 1, b->len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
    free(b->p);
}
static void say(const char *s) {
    buf b = {0};
    puts_(&b, s);
    emit(&b);
}

static size_t dec(char *s) {
    char *o = s;
    for (char *i = s; *i; i++) {
        unsigned v;
        if (i[0] == '%' && i[1] && i[2] && sscanf(i + 1, "%2x", &v) == 1) {
            *o++ = (char)v;
            i += 2;
        } else {
            *o++ = *i;
        }
    }
    *o = 0;
    return (size_t)(o - s);
}
static const char *arg(const char *k) {
    for (size_t i = 0; i < nargs; i++)
        if (strcmp(keys[i], k) == 0) return vals[i];
    return NULL;
}
static size_t arg_len(const char *k) {
    for (size_t i = 0; i < nargs; i++)
        if (strcmp(keys[i], k) == 0) return vlens[i];
    return 0;
}
static unsigned long num(const char *k, unsigned long dflt) {
    const char *v = arg(k);
    return v ? strtoul(v, NULL, 10) : dflt;
}

static int hold(void *p, int kind) {
    pthread_mutex_lock(&held_mu);
    int id = ++next_id;
    if (p && id < MAX_HELD) {
        held[id] = p;
        held_kind[id] = kind;
    }
    pthread_mutex_unlock(&held_mu);
    return id;
}
static void *take(int kind, int keep) {
    const char *v = arg("id");
    int id = v ? atoi(v) : 0;
    void *p = NULL;
    pthread_mutex_lock(&held_mu);
    if (id > 0 && id < MAX_HELD && held_kind[id] == kind) {
        p = held[id];
        if (!keep) {
            held[id] = NULL;
            held_kind[id] = 0;
        }
    }
    pthread_mutex_unlock(&held_mu);
    return p;
}

typedef edge_status (*getter)(const edge_message *, const char **, size_t *);
static void message_fields(buf *b, const edge_message *m) {
    const uint8_t *body;
    size_t n;
    edge_message_body(m, &body, &n);
    field(b, "body", (const char *)body, body ? n : 0);
    const char *names[] = {"input", "mid", "cid", "ct", "ce", "cmid"};
    getter get[] = {edge_message_input_name, edge_message_message_id, edge_message_correlation_id,
                    edge_message_content_type, edge_message_content_encoding, edge_message_connection_module_id};
    for (int i = 0; i < 6; i++) {
        const char *v;
        if (get[i](m, &v, &n) == EDGE_STATUS_OK && v) field(b, names[i], v, n);
    }
    size_t count = edge_message_property_count(m);
    char tmp[32];
    snprintf(tmp, sizeof tmp, " nprops=%zu", count);
    puts_(b, tmp);
    for (size_t i = 0; i < count; i++) {
        const char *k, *v;
        size_t kl, vl;
        if (edge_message_property_at(m, i, &k, &kl, &v, &vl) != EDGE_STATUS_OK) continue;
        puts_(b, " p.");
        put_enc(b, k, kl);
        puts_(b, "=");
        put_enc(b, v, vl);
    }
}

typedef struct { char name[160]; int defer; int status; } reg;
static reg *new_reg(const char *name) {
    reg *r = calloc(1, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name ? name : "*");
    const char *mode = arg("mode");
    r->defer = mode && strcmp(mode, "defer") == 0;
    r->status = (int)num("status", 200);
    return r;
}

static void on_message(void *ud, const edge_message *m) {
    reg *r = ud;
    edge_message *copy = NULL;
    if (r->defer) edge_message_clone(m, &copy);
    char tmp[64];
    buf b = {0};
    snprintf(tmp, sizeof tmp, "event msg id=%d", hold(copy, 1));
    puts_(&b, tmp);
    field(&b, "handler", r->name, strlen(r->name));
    message_fields(&b, m);
    emit(&b);
    if (!r->defer) edge_message_complete(m);
}

static void on_method(void *ud, const edge_method_request *req) {
    reg *r = ud;
    edge_method_request *copy = NULL;
    if (r->defer) edge_method_request_clone(req, &copy);
    const char *name, *payload;
    size_t nl, pl;
    edge_method_request_name(req, &name, &nl);
    edge_method_request_payload(req, &payload, &pl);
    char tmp[64];
    buf b = {0};
    snprintf(tmp, sizeof tmp, "event method id=%d", hold(copy, 2));
    puts_(&b, tmp);
    field(&b, "handler", r->name, strlen(r->name));
    field(&b, "name", name, nl);
    field(&b, "payload", payload ? payload : "null", payload ? pl : 4);
    emit(&b);
    if (!r->defer) {
        buf reply = {0};
        puts_(&reply, "{\"handler\":\"");
        puts_(&reply, r->name); /* test names need no JSON escaping */
        puts_(&reply, "\",\"request\":");
        if (payload && pl) put(&reply, payload, pl); else puts_(&reply, "null");
        puts_(&reply, "}");
        edge_method_request_respond(req, r->status, reply.p, reply.len);
        free(reply.p);
    }
}

static void on_desired(void *ud, const char *json, size_t len) {
    (void)ud;
    buf b = {0};
    puts_(&b, "event desired");
    field(&b, "patch", json, len);
    emit(&b);
}

static void on_topic(void *ud, const char *topic, size_t topic_len, const uint8_t *payload, size_t payload_len,
                     edge_qos qos, bool retain) {
    reg *r = ud;
    buf b = {0};
    puts_(&b, "event topic");
    field(&b, "filter", r->name, strlen(r->name));
    field(&b, "topic", topic, topic_len);
    field(&b, "payload", (const char *)payload, payload_len);
    puts_(&b, qos == EDGE_QOS_AT_MOST_ONCE ? " qos=0" : " qos=1");
    puts_(&b, retain ? " retain=true" : " retain=false");
    emit(&b);
}

/* The connect verbs' options; a setter's failure (an unknown transport name) is the command's. */
static edge_status options(edge_options **out) {
    edge_options *o = NULL;
    edge_status st = edge_options_new(&o);
    if (st != EDGE_STATUS_OK) return st;
    if (arg("timeout_ms")) edge_options_set_default_timeout(o, (uint32_t)num("timeout_ms", 0));
    if (arg("connect_timeout_ms")) edge_options_set_connect_timeout(o, (uint32_t)num("connect_timeout_ms", 0));
    if (arg("sas_ttl")) edge_options_set_sas_ttl(o, (uint32_t)num("sas_ttl", 0), (uint32_t)num("sas_margin", 0));
    if (arg("mqtt_port")) edge_options_set_mqtt_port(o, (uint16_t)num("mqtt_port", 0));
    if (arg("https_port")) edge_options_set_https_port(o, (uint16_t)num("https_port", 0));
    if (arg("amqp_port")) edge_options_set_amqp_port(o, (uint16_t)num("amqp_port", 0));
    if (arg("transport")) st = edge_options_set_transport(o, arg("transport"));
    if (st == EDGE_STATUS_OK && arg("proxy")) st = edge_options_set_proxy(o, arg("proxy"));
    if (st != EDGE_STATUS_OK) {
        edge_options_free(o);
        return st;
    }
    *out = o;
    return EDGE_STATUS_OK;
}

/* Runs one command; returns its status and appends result fields to `out`. */
static edge_status run(const char *verb, buf *out, const char **agent_err) {
    edge_status st;
    uint32_t timeout = (uint32_t)num("timeout_ms", 0);
    if (strcmp(verb, "connect_env") == 0 || strcmp(verb, "connect_cs") == 0) {
        edge_options *o = NULL;
        if ((st = options(&o)) != EDGE_STATUS_OK) return st;
        if (verb[8] == 'e') st = edge_client_new_from_environment(o, &client);
        else st = edge_client_new_from_connection_string(arg("cs"), arg("ca"), o, &client);
        edge_options_free(o);
        return st;
    }
    if (!client) return *agent_err = "not connected", EDGE_STATUS_OK;
    if (strcmp(verb, "ids") == 0) {
        char d[256], m[256];
        size_t dl, ml;
        if ((st = edge_client_device_id(client, d, sizeof d, &dl)) != EDGE_STATUS_OK) return st;
        if ((st = edge_client_module_id(client, m, sizeof m, &ml)) != EDGE_STATUS_OK) return st;
        field(out, "device", d, dl);
        field(out, "module", m, ml);
        return st;
    }
    if (strcmp(verb, "close") == 0) return edge_client_close(client);
    if (strcmp(verb, "send") == 0) {
        edge_message *m = NULL;
        size_t size = (size_t)num("body_size", 0);
        char *big = arg("body_size") ? malloc(size + 1) : NULL;
        if (big) memset(big, 'x', size);
        st = big ? edge_message_new((const uint8_t *)big, size, &m)
                 : edge_message_new((const uint8_t *)arg("body"), arg_len("body"), &m);
        free(big);
        if (st == EDGE_STATUS_OK && arg("mid")) st = edge_message_set_message_id(m, arg("mid"));
        if (st == EDGE_STATUS_OK && arg("cid")) st = edge_message_set_correlation_id(m, arg("cid"));
        if (st == EDGE_STATUS_OK && arg("ct")) st = edge_message_set_content_type(m, arg("ct"));
        if (st == EDGE_STATUS_OK && arg("ce")) st = edge_message_set_content_encoding(m, arg("ce"));
        for (size_t i = 0; i < nargs && st == EDGE_STATUS_OK; i++)
            if (strncmp(keys[i], "p.", 2) == 0) st = edge_message_set_property(m, keys[i] + 2, vals[i]);
        if (st == EDGE_STATUS_OK) st = edge_client_send_to_output(client, arg("output"), m, timeout);
        edge_message_free(m);
        return st;
    }
    if (strcmp(verb, "on_input") == 0) {
        reg *r = new_reg(arg("input"));
        st = edge_client_set_input_handler(client, arg("input"), on_message, r, free);
        if (st != EDGE_STATUS_OK) free(r);
        return st;
    }
    if (strcmp(verb, "complete") == 0 || strcmp(verb, "abandon") == 0 || strcmp(verb, "reject") == 0) {
        edge_message *m = take(1, 1); /* kept: a second settle must reach the library */
        if (!m) return *agent_err = "unknown id", EDGE_STATUS_OK;
        if (verb[0] == 'c') return edge_message_complete(m);
        return verb[0] == 'a' ? edge_message_abandon(m) : edge_message_reject(m);
    }
    if (strcmp(verb, "on_method") == 0) {
        reg *r = new_reg(arg("name"));
        st = edge_client_set_method_handler(client, arg("name"), on_method, r, free);
        if (st != EDGE_STATUS_OK) free(r);
        return st;
    }
    if (strcmp(verb, "respond") == 0) {
        edge_method_request *req = take(2, 0);
        if (!req) return *agent_err = "unknown id", EDGE_STATUS_OK;
        st = edge_method_request_respond(req, (int64_t)num("status", 0), arg("payload"), arg_len("payload"));
        edge_method_request_free(req);
        return st;
    }
    if (strcmp(verb, "on_desired") == 0) return edge_client_set_desired_handler(client, on_desired, NULL, NULL);
    if (strcmp(verb, "get_twin") == 0) {
        edge_string *s = NULL;
        if ((st = edge_client_get_twin_string(client, timeout, &s)) != EDGE_STATUS_OK) return st;
        field(out, "twin", edge_string_ptr(s), edge_string_len(s));
        edge_string_free(s);
        return st;
    }
    if (strcmp(verb, "patch_reported") == 0)
        return edge_client_update_reported(client, arg("patch"), arg_len("patch"), timeout);
    if (strcmp(verb, "invoke") == 0) {
        int64_t status = 0;
        edge_string *payload = NULL;
        st = edge_client_invoke_method(client, arg("device"), arg("module"), arg("method"), arg("payload"),
                                       arg_len("payload"), (uint32_t)num("response_timeout", 30) * 1000,
                                       (uint32_t)num("connect_timeout", 0) * 1000, &status, &payload);
        if (st != EDGE_STATUS_OK) return st;
        char tmp[64];
        snprintf(tmp, sizeof tmp, " status=%lld", (long long)status);
        puts_(out, tmp);
        field(out, "payload", edge_string_ptr(payload), edge_string_len(payload));
        edge_string_free(payload);
        return st;
    }
    if (strcmp(verb, "publish") == 0) {
        size_t size = (size_t)num("payload_size", 0);
        char *big = arg("payload_size") ? malloc(size + 1) : NULL;
        if (big) memset(big, 'x', size);
        const char *retain = arg("retain");
        st = edge_client_publish(client, arg("topic"), (const uint8_t *)(big ? big : arg("payload")),
                                 big ? size : arg_len("payload"),
                                 arg("qos") ? atoi(arg("qos")) : EDGE_QOS_AT_LEAST_ONCE,
                                 retain && strcmp(retain, "true") == 0, timeout);
        free(big);
        return st;
    }
    if (strcmp(verb, "subscribe") == 0) {
        reg *r = new_reg(arg("filter"));
        st = edge_client_subscribe(client, arg("filter"), on_topic, r, free, timeout);
        if (st != EDGE_STATUS_OK) free(r);
        return st;
    }
    if (strcmp(verb, "unsubscribe") == 0) return edge_client_unsubscribe(client, arg("filter"), timeout);
    *agent_err = "unknown verb";
    return EDGE_STATUS_OK;
}

int main(void) {
    static char line[1 << 20];
    say("hello lang=c features=handler_defer,method_defer,invoke");
    while (fgets(line, sizeof line, stdin)) {
        char *save = NULL, *verb = strtok_r(line, " \r\n", &save);
        if (!verb) continue;
        if (strcmp(verb, "quit") == 0) break;
        nargs = 0;
        for (char *w; (w = strtok_r(NULL, " \r\n", &save)) && nargs < MAX_ARGS;) {
            char *eq = strchr(w, '=');
            if (!eq) continue;
            *eq = 0;
            dec(w); /* key segments are encoded separately, but '.' itself never is */
            keys[nargs] = w;
            vals[nargs] = eq + 1;
            vlens[nargs] = dec(eq + 1);
            nargs++;
        }
        buf out = {0};
        const char *agent_err = NULL;
        edge_status st = run(verb, &out, &agent_err);
        buf b = {0};
        if (agent_err) {
            puts_(&b, "err AGENT ");
            puts_(&b, agent_err);
        } else if (st == EDGE_STATUS_OK) {
            puts_(&b, "ok");
            if (out.p) puts_(&b, out.p);
        } else {
            char msg[1024] = "";
            size_t n = 0;
            if (edge_last_error_message(msg, sizeof msg, &n) != EDGE_STATUS_OK) msg[0] = 0;
            for (char *c = msg; *c; c++)
                if (*c == '\n') *c = ' ';
            const char *name = edge_status_name(st);
            puts_(&b, "err ");
            puts_(&b, strncmp(name, "EDGE_STATUS_", 12) == 0 ? name + 12 : name);
            puts_(&b, " ");
            puts_(&b, msg);
        }
        free(out.p);
        emit(&b);
    }
    edge_client_free(client);
    return 0;
}
