/*
 * grpc-load: a unary gRPC load generator (HTTP/2 cleartext, prior knowledge),
 * closed loop or open loop. Closed, it sends a different pre-encoded request on
 * every call, which h2load cannot do; open, it sends calls evenly spaced in
 * time, which h2load's --rps does not (it sends them in bursts). Written in C
 * so that the load generator costs little CPU next to the service and the
 * database it measures, and has no pauses of its own (a garbage collector's).
 *
 *   grpc-load HOST PORT PATH FRAMES_FILE CONNECTIONS STREAMS SECONDS [RATE]
 *
 * FRAMES_FILE is a concatenation of gRPC-framed request messages (a 0 flag
 * byte, a 4-byte big-endian length, the protobuf bytes). Each call sends the
 * next one; none is sent twice, and once they run out no call starts. Each of
 * CONNECTIONS connections keeps STREAMS calls in flight until SECONDS have
 * passed, then waits for those in flight. A call succeeds only if the
 * response ends with grpc-status 0. Prints one JSON line:
 *   {"calls":N,"failed":N,"seconds":S,"callsPerSecond":R,"framesExhausted":B}
 *
 * With RATE (calls per second), the loop is open: call i is due at
 * start + i / RATE for SECONDS, and goes out at that time on connection
 * i mod CONNECTIONS, whether or not the earlier calls have been answered. The
 * frames are sent in turn, cyclically. STREAMS is then the most calls a
 * connection may have in flight: a call due on a full connection is not sent
 * and counts as "saturated" (not delayed, which would close the loop). A
 * call's latency runs from the time it was due, not the time it went out, so
 * that a stall of the load generator shows in it too (no coordinated
 * omission). Prints one JSON line, calls + failed + saturated being the calls
 * due, "seconds" the sending phase as measured (SECONDS, give or take the
 * wake-up), "rate" the calls that succeeded per second of it, the percentiles
 * (nearest rank) and the max in ms over the calls that succeeded:
 *   {"calls":N,"failed":N,"saturated":N,"seconds":S,"rate":R,
 *    "p50":MS,"p90":MS,"p99":MS,"p999":MS,"max":MS}
 *
 * Exit status 2 on wrong arguments or when it cannot connect.
 *
 * Build: cc -O2 -o grpc-load bench/grpc-load.c -lnghttp2
 */
#define _GNU_SOURCE /* ppoll, to sleep to the microsecond */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_SECONDS 10.0 /* how long to wait for in-flight calls after SECONDS */
#define EARLY_WAKE 50e-6   /* open loop: wake this long before a due time, then spin */

/* One in-flight call: a slot of its connection, the stream's user data. */
struct call {
  int busy;
  int32_t id; /* its stream */
  const uint8_t *body; /* the gRPC frame this call sends */
  size_t length, sent;
  int ok_status; /* the last grpc-status seen was "0" */
  double due; /* open loop: when the call was due (now()) */
};

struct conn {
  int fd, dead, draining; /* draining: the session refuses new streams */
  nghttp2_session *session;
  struct call *calls; /* STREAMS slots */
  int inflight;
  uint8_t *out; /* open loop: bytes to send, those from out_sent to out_length */
  size_t out_length, out_sent, out_capacity;
};

/* The frames, and the run's counters. */
static const uint8_t **frame_at;
static size_t *frame_length, frame_count, next_frame;
static long succeeded, failed;
static int frames_exhausted;
static int streams;
/* Open loop only: the calls due on a full connection, and the latencies (ms)
 * of the calls that succeeded, one slot per call due. */
static long saturated;
static double *latencies;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *message) {
  fprintf(stderr, "grpc-load: %s\n", message);
  exit(2);
}

/* Ends a call once (several callbacks may report the same end). */
static void finish(struct conn *c, struct call *call, int ok) {
  if (!call || !call->busy) return;
  call->busy = 0;
  c->inflight--;
  if (ok && latencies) latencies[succeeded] = (now() - call->due) * 1e3;
  if (ok) succeeded++; else failed++;
}

/* Connection lost: its in-flight calls fail. */
static void kill_conn(struct conn *c) {
  for (int i = 0; i < streams; i++) finish(c, &c->calls[i], 0);
  c->dead = 1;
  close(c->fd);
}

static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t length, int flags, void *user) {
  (void)s, (void)flags;
  ssize_t n = send(((struct conn *)user)->fd, data, length, MSG_NOSIGNAL);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? NGHTTP2_ERR_WOULDBLOCK : NGHTTP2_ERR_CALLBACK_FAILURE;
  return n;
}

/* The request body: the call's frame, in one DATA frame ending the stream. */
static ssize_t body_cb(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                       nghttp2_data_source *source, void *user) {
  (void)s, (void)id, (void)user;
  struct call *call = source->ptr;
  size_t n = call->length - call->sent < length ? call->length - call->sent : length;
  memcpy(buf, call->body + call->sent, n);
  call->sent += n;
  if (call->sent == call->length) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

/* grpc-status, in trailers or in a trailers-only response's headers. */
static int header_cb(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user) {
  (void)flags, (void)user;
  struct call *call = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
  if (call && frame->hd.type == NGHTTP2_HEADERS && namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
    call->ok_status = valuelen == 1 && value[0] == '0';
  return 0;
}

/* The stream ended: a clean close with grpc-status 0 is a success. */
static int close_cb(nghttp2_session *s, int32_t id, uint32_t error_code, void *user) {
  struct call *call = nghttp2_session_get_stream_user_data(s, id);
  finish(user, call, call && error_code == NGHTTP2_NO_ERROR && call->ok_status);
  return 0;
}

/* A request that could not be sent (e.g. after GOAWAY) fails. Its stream
 * never opened, so the call is found by its stream id. */
static int not_sent_cb(nghttp2_session *s, const nghttp2_frame *frame, int error, void *user) {
  (void)s, (void)error;
  struct conn *c = user;
  for (int i = 0; frame->hd.type == NGHTTP2_HEADERS && i < streams; i++)
    if (c->calls[i].busy && c->calls[i].id == frame->hd.stream_id) finish(c, &c->calls[i], 0);
  return 0;
}

/* Reads FRAMES_FILE into memory and indexes its frames. */
static void load_frames(const char *file) {
  FILE *f = fopen(file, "rb");
  if (!f) die("cannot open the frames file");
  size_t size = 0, capacity = 1 << 20, n;
  uint8_t *data = malloc(capacity);
  while (data && (n = fread(data + size, 1, capacity - size, f)) > 0)
    if ((size += n) == capacity) data = realloc(data, capacity *= 2);
  fclose(f);
  if (!data) die("out of memory");
  frame_at = malloc(sizeof *frame_at * (size / 5 + 1));
  frame_length = malloc(sizeof *frame_length * (size / 5 + 1));
  for (size_t at = 0; at < size; frame_count++) {
    if (size - at < 5) die("the frames file ends in the middle of a frame");
    size_t length = 5 + ((size_t)data[at + 1] << 24 | (size_t)data[at + 2] << 16 | (size_t)data[at + 3] << 8 | data[at + 4]);
    if (data[at] != 0 || length > size - at) die("the frames file holds a malformed frame");
    frame_at[frame_count] = data + at;
    frame_length[frame_count] = length;
    at += length;
  }
}

/* A TCP connection (TCP_NODELAY, non-blocking) with an HTTP/2 client session. */
static void open_conn(struct conn *c, const char *host, const char *port, nghttp2_session_callbacks *callbacks) {
  struct addrinfo hints = {0}, *addresses, *a;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, port, &hints, &addresses) != 0) die("cannot resolve the host");
  for (c->fd = -1, a = addresses; a && c->fd < 0; a = a->ai_next) {
    c->fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (c->fd >= 0 && connect(c->fd, a->ai_addr, a->ai_addrlen) != 0) close(c->fd), c->fd = -1;
  }
  freeaddrinfo(addresses);
  if (c->fd < 0) die("cannot connect");
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
  c->calls = calloc((size_t)streams, sizeof *c->calls);
  nghttp2_session_client_new(&c->session, callbacks, c);
  nghttp2_settings_entry no_push = {NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
  nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, &no_push, 1);
}

/* Tops the connection up to STREAMS calls in flight, each with the next frame. */
static void start_calls(struct conn *c, const nghttp2_nv *headers, size_t header_count) {
  for (int i = 0; i < streams && !c->draining && c->inflight < streams; i++) {
    struct call *call = &c->calls[i];
    if (call->busy) continue;
    if (next_frame == frame_count) {
      frames_exhausted = 1;
      return;
    }
    *call = (struct call){1, 0, frame_at[next_frame], frame_length[next_frame], 0, 0, 0};
    nghttp2_data_provider body = {.source.ptr = call, .read_callback = body_cb};
    if ((call->id = nghttp2_submit_request(c->session, NULL, headers, header_count, &body, call)) < 0) {
      call->busy = 0; /* not sent: the frame stays for another connection */
      c->draining = 1;
      return;
    }
    next_frame++;
    c->inflight++;
  }
}

/* Feeds what the socket has to the session; false when the connection is lost. */
static int receive(struct conn *c) {
  uint8_t buffer[65536];
  for (;;) {
    ssize_t n = read(c->fd, buffer, sizeof buffer);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
    if (n <= 0 || nghttp2_session_mem_recv(c->session, buffer, (size_t)n) < 0) return 0;
  }
}

/* Open loop: sends what the session has to send, a loop turn's frames in one
 * send(), not one per frame as nghttp2_session_send does (a call's HEADERS
 * and DATA would then go in two TCP segments, waking the server twice per
 * call). False when the connection is lost. */
static int flush(struct conn *c) {
  for (;;) {
    const uint8_t *data;
    ssize_t n = 0;
    while (c->out_length < 16384 && (n = nghttp2_session_mem_send(c->session, &data)) > 0) {
      if (c->out_length + (size_t)n > c->out_capacity) {
        c->out_capacity = c->out_length + (size_t)n + 16384;
        if (!(c->out = realloc(c->out, c->out_capacity))) die("out of memory");
      }
      memcpy(c->out + c->out_length, data, (size_t)n);
      c->out_length += (size_t)n;
    }
    if (n < 0) return 0;
    if (c->out_sent == c->out_length) return 1;
    n = send(c->fd, c->out + c->out_sent, c->out_length - c->out_sent, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    if ((c->out_sent += (size_t)n) == c->out_length) c->out_sent = c->out_length = 0;
  }
}

/* Open loop: starts call `i`, due at `due`, on its connection with the next
 * frame (cyclically). A connection that is lost, or that refuses new streams,
 * fails it; a full one counts it as saturated. Neither delays it. */
static void start_due_call(struct conn *c, long i, double due, const nghttp2_nv *headers, size_t header_count) {
  if (c->dead || c->draining) {
    failed++;
    return;
  }
  if (c->inflight == streams) {
    saturated++;
    return;
  }
  struct call *call = c->calls;
  while (call->busy) call++;
  size_t frame = (size_t)i % frame_count;
  *call = (struct call){1, 0, frame_at[frame], frame_length[frame], 0, 0, due};
  nghttp2_data_provider body = {.source.ptr = call, .read_callback = body_cb};
  if ((call->id = nghttp2_submit_request(c->session, NULL, headers, header_count, &body, call)) < 0) {
    call->busy = 0;
    c->draining = 1;
    failed++;
    return;
  }
  c->inflight++;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* `,"name":ms`, the nearest-rank per-mille percentile of the sorted latencies. */
static void print_percentile(const char *name, long per_mille) {
  long rank = (per_mille * succeeded + 999) / 1000;
  if (succeeded == 0) printf(",\"%s\":null", name);
  else printf(",\"%s\":%.3f", name, latencies[rank < 1 ? 0 : rank - 1]);
}

/* The open loop: every due call goes out at its time (sleeping in ppoll, whose
 * timeout, unlike poll's, is finer than a millisecond: the calls are 500 µs
 * apart at 2,000/s), then the calls in flight are waited for. */
static void open_loop(struct conn *conns, struct pollfd *polls, int connections, double seconds, double rate,
                      const nghttp2_nv *headers, size_t header_count) {
  long total = (long)(seconds * rate);
  if ((double)total < seconds * rate) total++; /* i / RATE < SECONDS */
  latencies = malloc(sizeof *latencies * (size_t)total);
  if (!latencies) die("out of memory");
  /* Timers then expire when asked, not up to 50 µs later (the default slack). */
  prctl(PR_SET_TIMERSLACK, 1UL);

  long next = 0; /* the next call due */
  double start = now(), end = start + seconds, sent = 0; /* sent: when the sending phase ended */
  for (;;) {
    double t = now();
    for (; next < total && start + (double)next / rate <= t; next++)
      start_due_call(&conns[next % connections], next, start + (double)next / rate, headers, header_count);
    if (next == total && t >= end && sent == 0) sent = t;
    int inflight = 0, live = 0;
    for (int i = 0; i < connections; i++) {
      struct conn *c = &conns[i];
      if (c->dead) continue;
      if (!flush(c)) kill_conn(c);
      /* A session that wants neither to read nor to write is over (GOAWAY). */
      else if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) kill_conn(c);
      if (c->dead) continue;
      live++;
      inflight += c->inflight;
      int writing = c->out_sent < c->out_length || nghttp2_session_want_write(c->session);
      polls[i] = (struct pollfd){c->fd, POLLIN | (writing ? POLLOUT : 0), 0};
    }
    if (sent != 0 && inflight == 0) break;
    if (!live) { /* every connection is lost: so are the calls still to come */
      failed += total - next;
      break;
    }
    if (t >= end + DRAIN_SECONDS) { /* calls that never end fail */
      for (int i = 0; i < connections; i++) if (!conns[i].dead) kill_conn(&conns[i]);
      break;
    }
    for (int i = 0; i < connections; i++) if (conns[i].dead) polls[i].fd = -1;
    /* Sleep until a little before the next due time (or the end of the
     * sending phase, or of the drain), answers waking it earlier; the last
     * EARLY_WAKE is spent polling without a timeout, so that a call goes out
     * on time rather than a scheduler's wake-up late. */
    double wake = next < total ? start + (double)next / rate : t < end ? end : end + DRAIN_SECONDS;
    double wait = wake - now() - EARLY_WAKE;
    struct timespec timeout = {0, 0};
    if (wait > 0) timeout = (struct timespec){(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
    ppoll(polls, (nfds_t)connections, &timeout, NULL);
    for (int i = 0; i < connections; i++)
      if (!conns[i].dead && polls[i].revents && !receive(&conns[i])) kill_conn(&conns[i]);
  }
  double elapsed = (sent != 0 ? sent : now()) - start;
  qsort(latencies, (size_t)succeeded, sizeof *latencies, by_value);
  printf("{\"calls\":%ld,\"failed\":%ld,\"saturated\":%ld,\"seconds\":%.6f,\"rate\":%.3f", succeeded, failed,
         saturated, elapsed, (double)succeeded / elapsed);
  print_percentile("p50", 500);
  print_percentile("p90", 900);
  print_percentile("p99", 990);
  print_percentile("p999", 999);
  print_percentile("max", 1000);
  printf("}\n");
}

#define NV(name, value) {(uint8_t *)(name), (uint8_t *)(value), strlen(name), strlen(value), NGHTTP2_NV_FLAG_NONE}

int main(int argc, char **argv) {
  if (argc != 8 && argc != 9) die("usage: grpc-load HOST PORT PATH FRAMES_FILE CONNECTIONS STREAMS SECONDS [RATE]");
  const char *host = argv[1], *port = argv[2], *path = argv[3];
  int connections = atoi(argv[5]);
  double seconds = strtod(argv[7], NULL), rate = argc == 9 ? strtod(argv[8], NULL) : 0;
  streams = atoi(argv[6]);
  if (connections < 1 || streams < 1 || !(seconds > 0) || path[0] != '/') die("wrong arguments");
  if (argc == 9 && !(rate > 0 && seconds * rate < 1e9)) die("wrong arguments");
  load_frames(argv[4]);
  if (rate > 0 && frame_count == 0) die("the frames file is empty");
  signal(SIGPIPE, SIG_IGN);

  char authority[512];
  snprintf(authority, sizeof authority, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
  const nghttp2_nv headers[] = {
      NV(":method", "POST"), NV(":scheme", "http"), NV(":path", path), NV(":authority", authority),
      NV("content-type", "application/grpc"), NV("te", "trailers"),
  };
  nghttp2_session_callbacks *callbacks;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_send_callback(callbacks, send_cb);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, header_cb);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, close_cb);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks, not_sent_cb);
  struct conn *conns = calloc((size_t)connections, sizeof *conns);
  struct pollfd *polls = calloc((size_t)connections, sizeof *polls);
  for (int i = 0; i < connections; i++) open_conn(&conns[i], host, port, callbacks);
  if (rate > 0) {
    open_loop(conns, polls, connections, seconds, rate, headers, sizeof headers / sizeof *headers);
    return 0;
  }

  double start = now(), end = start + seconds;
  for (;;) {
    double t = now();
    int stopping = t >= end, inflight = 0;
    for (int i = 0; i < connections; i++) {
      struct conn *c = &conns[i];
      if (c->dead) continue;
      if (!stopping) start_calls(c, headers, sizeof headers / sizeof *headers);
      if (nghttp2_session_send(c->session) != 0) kill_conn(c);
      /* A session that wants neither to read nor to write is over (GOAWAY). */
      else if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) kill_conn(c);
      if (c->dead) continue;
      inflight += c->inflight;
      polls[i] = (struct pollfd){c->fd, POLLIN | (nghttp2_session_want_write(c->session) ? POLLOUT : 0), 0};
    }
    if (inflight == 0 && (stopping || frames_exhausted)) break;
    if (inflight == 0 && !stopping) {
      int live = 0;
      for (int i = 0; i < connections; i++) live += !conns[i].dead;
      if (!live) break; /* every connection is lost */
    }
    if (t >= end + DRAIN_SECONDS) { /* calls that never end fail */
      for (int i = 0; i < connections; i++) if (!conns[i].dead) kill_conn(&conns[i]);
      break;
    }
    for (int i = 0; i < connections; i++) if (conns[i].dead) polls[i].fd = -1;
    double wait = (stopping ? end + DRAIN_SECONDS : end) - t;
    poll(polls, (nfds_t)connections, (int)(wait * 1000) + 1);
    for (int i = 0; i < connections; i++)
      if (!conns[i].dead && polls[i].revents && !receive(&conns[i])) kill_conn(&conns[i]);
  }
  double elapsed = now() - start;
  printf("{\"calls\":%ld,\"failed\":%ld,\"seconds\":%.6f,\"callsPerSecond\":%.3f,\"framesExhausted\":%s}\n",
         succeeded, failed, elapsed, (double)succeeded / elapsed, frames_exhausted ? "true" : "false");
  return 0;
}
