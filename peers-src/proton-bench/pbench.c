/*
 * pbench: a tuned Proton C benchmark peer (Proton C 0.37 proactor API), built by
 * scripts/bench into peers/bin/pbench with gcc + pkg-config libqpid-proton.
 *
 *   pbench send HOST PORT ADDR COUNT SIZE
 *       connect, attach a sender to ADDR, send COUNT messages (message-id ulong N, a
 *       SIZE-byte binary data body) as fast as credit allows, at-least-once; each
 *       outcome must be accepted. Prints "result elapsed_s=T rss_peak_kb=K" (T from the
 *       first credit to the last outcome) and exits 0 (1 on any error).
 *   pbench recv HOST PORT ADDR COUNT CREDIT       (connect, receive from ADDR)
 *   pbench recv-listen HOST PORT ADDR COUNT CREDIT (listen; PORT 0 = any; prints
 *       "listening on PORT"; receives on the first link a client attaches as sender)
 *       receive COUNT messages with a credit window of CREDIT (topped up when it falls
 *       below half), accept and settle each (bodies are not decoded), print
 *       "result received=COUNT", close and exit.
 *   pbench echo-listen HOST PORT
 *       listen (prints "listening on PORT"); every message received on a link the client
 *       attaches as sender is accepted and sent back, as it is, on the link the client
 *       attaches as receiver. Runs until the client closes.
 *   pbench ping HOST PORT COUNT WARMUP SIZE
 *       connect, attach a sender and a receiver (credit 1) to "echo", then WARMUP + COUNT
 *       round trips with one message in flight: send, wait for the echo (and the send's
 *       outcome). Prints "result p50_us=.. p99_us=.. p999_us=.. mean_us=..".
 */
#include <proton/connection.h>
#include <proton/condition.h>
#include <proton/delivery.h>
#include <proton/link.h>
#include <proton/listener.h>
#include <proton/message.h>
#include <proton/netaddr.h>
#include <proton/proactor.h>
#include <proton/sasl.h>
#include <proton/session.h>
#include <proton/transport.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum mode { SEND, RECV, RECV_LISTEN, ECHO_LISTEN, PING };

static enum mode mode;
static const char *address = "examples";
static long count, size, credit = 1000, warmup;
static long sent, acked, received;
static int exit_code = 0;
static pn_proactor_t *proactor;
static pn_listener_t *listener;
static char *body;
static pn_rwbytes_t buf;
static pn_message_t *msg;
static double t_start, t_end;
/* echo / ping */
static pn_link_t *out_link, *in_link;
static double ping_sent_at;
static int ping_got_echo, ping_got_outcome;
static double *lat;
static long rounds;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long rss_peak_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0) kb = atol(line + 6);
  fclose(f);
  return kb;
}

static void fail(pn_event_t *e, pn_condition_t *cond) {
  if (pn_condition_is_set(cond)) {
    fprintf(stderr, "%s: %s: %s\n", pn_event_type_name(pn_event_type(e)),
            pn_condition_get_name(cond), pn_condition_get_description(cond));
    if (pn_event_connection(e)) pn_connection_close(pn_event_connection(e));
    exit_code = 1;
  }
}

static void send_one(pn_link_t *l, long id, const char *data, size_t n) {
  pn_data_t *b;
  pn_message_clear(msg);
  pn_message_set_id(msg, (pn_atom_t){.type = PN_ULONG, .u.as_ulong = (uint64_t)id});
  b = pn_message_body(msg);
  pn_data_put_binary(b, pn_bytes(n, data));
  pn_delivery(l, pn_dtag((const char *)&id, sizeof id));
  if (pn_message_send(msg, l, &buf) < 0) {
    fprintf(stderr, "send: %s\n", pn_error_text(pn_message_error(msg)));
    exit(1);
  }
}

static void send_raw(pn_link_t *l, long id, const char *data, size_t n) {
  pn_delivery(l, pn_dtag((const char *)&id, sizeof id));
  pn_link_send(l, data, n);
  pn_link_advance(l);
}

static void ping_next(pn_connection_t *c) {
  double t = now();
  if (rounds > 0 && rounds > warmup) lat[rounds - warmup - 1] = (t - ping_sent_at) * 1e6;
  if (rounds == warmup + count) {
    pn_connection_close(c);
    return;
  }
  ++rounds;
  ping_got_echo = ping_got_outcome = 0;
  ping_sent_at = now();
  send_one(out_link, rounds, body, size);
}

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Reads a complete incoming message into buf; returns its length, or -1 if partial. */
static ssize_t read_delivery(pn_delivery_t *d) {
  pn_link_t *l = pn_delivery_link(d);
  size_t pending = pn_delivery_pending(d);
  if (pn_delivery_partial(d)) return -1;
  if (buf.size < pending) {
    buf.start = realloc(buf.start, pending);
    buf.size = pending;
  }
  ssize_t n = pn_link_recv(l, buf.start, pending);
  pn_link_advance(l);
  return n < 0 ? 0 : n;
}

static int handle(pn_event_t *e) {
  switch (pn_event_type(e)) {
  case PN_LISTENER_OPEN: {
    char port[64];
    pn_netaddr_host_port(pn_listener_addr(pn_event_listener(e)), NULL, 0, port, sizeof port);
    printf("listening on %s\n", port);
    fflush(stdout);
    break;
  }
  case PN_LISTENER_ACCEPT:
    pn_listener_accept2(pn_event_listener(e), NULL, NULL);
    break;
  case PN_CONNECTION_BOUND:
    if (mode == RECV_LISTEN || mode == ECHO_LISTEN) {
      pn_transport_t *t = pn_event_transport(e);
      pn_transport_require_auth(t, false);
      pn_sasl_allowed_mechs(pn_sasl(t), "ANONYMOUS");
    }
    break;
  case PN_CONNECTION_INIT: {
    pn_connection_t *c = pn_event_connection(e);
    pn_connection_set_container(c, "pbench");
    if (mode == SEND || mode == RECV || mode == PING) {
      pn_session_t *s = pn_session(c);
      pn_connection_open(c);
      pn_session_open(s);
      if (mode == SEND || mode == PING) {
        out_link = pn_sender(s, "pbench-sender");
        pn_terminus_set_address(pn_link_target(out_link), mode == PING ? "echo" : address);
        pn_link_open(out_link);
      }
      if (mode == RECV || mode == PING) {
        in_link = pn_receiver(s, "pbench-receiver");
        pn_terminus_set_address(pn_link_source(in_link), mode == PING ? "echo" : address);
        pn_link_open(in_link);
        pn_link_flow(in_link, mode == PING ? 1 : credit);
      }
    }
    break;
  }
  case PN_CONNECTION_REMOTE_OPEN:
    pn_connection_open(pn_event_connection(e));
    break;
  case PN_SESSION_REMOTE_OPEN:
    pn_session_open(pn_event_session(e));
    break;
  case PN_LINK_REMOTE_OPEN: {
    pn_link_t *l = pn_event_link(e);
    if (pn_link_state(l) & PN_LOCAL_UNINIT) { /* a link the client attached */
      if (pn_link_is_sender(l)) {
        out_link = l;
        pn_terminus_copy(pn_link_source(l), pn_link_remote_source(l));
      } else {
        in_link = l;
        pn_terminus_copy(pn_link_target(l), pn_link_remote_target(l));
      }
      pn_link_open(l);
      if (pn_link_is_receiver(l)) pn_link_flow(l, mode == ECHO_LISTEN ? 100 : credit);
    }
    if (mode == PING && out_link && in_link && rounds == 0 && (pn_link_state(out_link) & PN_REMOTE_ACTIVE) &&
        (pn_link_state(in_link) & PN_REMOTE_ACTIVE) && pn_link_credit(out_link) > 0)
      ping_next(pn_event_connection(e));
    break;
  }
  case PN_LINK_FLOW: {
    pn_link_t *l = pn_event_link(e);
    if (mode == SEND && pn_link_is_sender(l)) {
      if (t_start == 0) t_start = now();
      while (pn_link_credit(l) > 0 && sent < count) {
        ++sent;
        send_one(l, sent, body, size);
      }
    } else if (mode == PING && rounds == 0 && pn_link_is_sender(l) && pn_link_credit(l) > 0 &&
               in_link && (pn_link_state(in_link) & PN_REMOTE_ACTIVE)) {
      ping_next(pn_event_connection(e));
    }
    break;
  }
  case PN_DELIVERY: {
    pn_delivery_t *d = pn_event_delivery(e);
    pn_link_t *l = pn_delivery_link(d);
    if (pn_link_is_sender(l)) { /* an outcome */
      if (!pn_delivery_updated(d)) break;
      if (mode == ECHO_LISTEN) {
        pn_delivery_settle(d);
        break;
      }
      if (pn_delivery_remote_state(d) != PN_ACCEPTED) {
        fprintf(stderr, "unexpected delivery state %d\n", (int)pn_delivery_remote_state(d));
        exit_code = 1;
        pn_connection_close(pn_event_connection(e));
        break;
      }
      pn_delivery_settle(d);
      if (mode == SEND && ++acked == count) {
        t_end = now();
        pn_connection_close(pn_event_connection(e));
      } else if (mode == PING) {
        ping_got_outcome = 1;
        if (ping_got_echo) ping_next(pn_event_connection(e));
      }
    } else if (pn_delivery_readable(d)) {
      ssize_t n = read_delivery(d);
      if (n < 0) break;
      pn_delivery_update(d, PN_ACCEPTED);
      pn_delivery_settle(d);
      if (mode == ECHO_LISTEN) {
        if (out_link) send_raw(out_link, ++sent, buf.start, n);
        pn_link_flow(l, 1);
      } else if (mode == PING) {
        ping_got_echo = 1;
        pn_link_flow(l, 1);
        if (ping_got_outcome) ping_next(pn_event_connection(e));
      } else {
        if (++received == count) {
          printf("result received=%ld\n", received);
          fflush(stdout);
          pn_connection_close(pn_event_connection(e));
        } else if (pn_link_credit(l) < credit / 2 && count - received > pn_link_credit(l)) {
          pn_link_flow(l, credit - pn_link_credit(l));
        }
      }
    }
    break;
  }
  case PN_TRANSPORT_CLOSED:
    fail(e, pn_transport_condition(pn_event_transport(e)));
    if (listener) {
      pn_listener_close(listener);
      listener = NULL;
    }
    break;
  case PN_CONNECTION_REMOTE_CLOSE:
    fail(e, pn_connection_remote_condition(pn_event_connection(e)));
    pn_connection_close(pn_event_connection(e));
    break;
  case PN_SESSION_REMOTE_CLOSE:
    fail(e, pn_session_remote_condition(pn_event_session(e)));
    pn_connection_close(pn_event_connection(e));
    break;
  case PN_LINK_REMOTE_CLOSE:
  case PN_LINK_REMOTE_DETACH:
    fail(e, pn_link_remote_condition(pn_event_link(e)));
    pn_connection_close(pn_event_connection(e));
    break;
  case PN_PROACTOR_INACTIVE:
    return 0;
  default:
    break;
  }
  return 1;
}

static void usage(void) {
  fprintf(stderr, "usage: pbench send HOST PORT ADDR COUNT SIZE | recv[-listen] HOST PORT ADDR COUNT CREDIT"
                  " | echo-listen HOST PORT | ping HOST PORT COUNT WARMUP SIZE\n");
  exit(2);
}

int main(int argc, char **argv) {
  char addr[PN_MAX_ADDR];
  if (argc < 4) usage();
  const char *m = argv[1];
  if (!strcmp(m, "send") && argc == 7) {
    mode = SEND; address = argv[4]; count = atol(argv[5]); size = atol(argv[6]);
  } else if ((!strcmp(m, "recv") || !strcmp(m, "recv-listen")) && argc == 7) {
    mode = strcmp(m, "recv") ? RECV_LISTEN : RECV;
    address = argv[4]; count = atol(argv[5]); credit = atol(argv[6]);
  } else if (!strcmp(m, "echo-listen") && argc == 4) {
    mode = ECHO_LISTEN;
  } else if (!strcmp(m, "ping") && argc == 7) {
    mode = PING; count = atol(argv[4]); warmup = atol(argv[5]); size = atol(argv[6]);
    lat = calloc(count, sizeof *lat);
  } else {
    usage();
  }
  body = malloc(size > 0 ? size : 1);
  memset(body, 'x', size > 0 ? size : 1);
  msg = pn_message();
  proactor = pn_proactor();
  pn_proactor_addr(addr, sizeof addr, argv[2], argv[3]);
  if (mode == RECV_LISTEN || mode == ECHO_LISTEN) {
    listener = pn_listener();
    pn_proactor_listen(proactor, listener, addr, 16);
  } else {
    pn_proactor_connect2(proactor, NULL, NULL, addr);
  }
  for (;;) {
    pn_event_batch_t *events = pn_proactor_wait(proactor);
    pn_event_t *e;
    int go = 1;
    while (go && (e = pn_event_batch_next(events))) go = handle(e);
    pn_proactor_done(proactor, events);
    if (!go) break;
  }
  if (exit_code == 0 && mode == SEND) {
    if (acked != count) { fprintf(stderr, "only %ld of %ld outcomes\n", acked, count); return 1; }
    printf("result elapsed_s=%.6f rss_peak_kb=%ld\n", t_end - t_start, rss_peak_kb());
  }
  if (exit_code == 0 && mode == PING) {
    if (rounds != warmup + count) { fprintf(stderr, "only %ld round trips\n", rounds); return 1; }
    qsort(lat, count, sizeof *lat, cmpd);
    double sum = 0;
    for (long i = 0; i < count; i++) sum += lat[i];
    printf("result p50_us=%.1f p99_us=%.1f p999_us=%.1f mean_us=%.1f\n", lat[count / 2],
           lat[(long)(count * 0.99)], lat[(long)(count * 0.999)], sum / count);
  }
  if (exit_code == 0 && (mode == RECV || mode == RECV_LISTEN) && received != count) {
    fprintf(stderr, "only %ld of %ld messages\n", received, count);
    return 1;
  }
  pn_proactor_free(proactor);
  pn_message_free(msg);
  return exit_code;
}
