/*
 * The C ABI from C: NULL and bad UTF-8 everywhere, calls after stop, double stop, and a
 * start -> traffic -> stop loop, meant to run under valgrind (tests/c_host.rs does).
 * Exit 0 = every check held; each failed check prints the line.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "embedchat.h"

static int failures = 0;
#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: CHECK(%s) failed; last error: %s\n",   \
                    __FILE__, __LINE__, #cond, chat_last_error());         \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* A WebSocket client by hand: handshake, then one masked text frame. */
static int ws_connect_and_say(uint16_t port, const char *text) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) return -1;
    const char *req = "GET /ws?name=c HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (write(fd, req, strlen(req)) < 0) return -1;
    char buf[512];
    if (read(fd, buf, sizeof buf) <= 0) return -1;
    unsigned char frame[136];
    size_t n = strlen(text);
    frame[0] = 0x81;
    frame[1] = (unsigned char)(0x80 | n);
    memset(frame + 2, 0, 4); /* zero mask: payload unchanged */
    memcpy(frame + 6, text, n);
    if (write(fd, frame, 6 + n) < 0) return -1;
    return fd;
}

static void contract(void) {
    CHECK(chat_broadcast(NULL, NULL, "x") == CHAT_ERR_NULL);
    CHECK(chat_send(NULL, 1, "x") == CHAT_ERR_NULL);
    CHECK(chat_kick(NULL, 1, NULL) == CHAT_ERR_NULL);
    CHECK(chat_dispatch(NULL, 0) == CHAT_ERR_NULL);
    CHECK(chat_event_fd(NULL) == CHAT_ERR_NULL);
    CHECK(chat_stop(NULL) == CHAT_ERR_NULL);
    CHECK(chat_reload_tls(NULL) == CHAT_ERR_NULL);
    CHECK(chat_stats_json(NULL) == NULL);
    CHECK(chat_port(NULL) == 0);
    chat_free(NULL);
    chat_event_free(NULL);
    chat_string_free(NULL);

    CHECK(chat_start("{\"listen\": \"127.0.0.1:0\", \"nope\": 1}") == NULL);
    CHECK(strstr(chat_last_error(), "nope") != NULL);
    CHECK(chat_last_result() == CHAT_ERR_CONFIG);

    chat_engine *e = chat_start("{\"listen\": \"127.0.0.1:0\"}");
    CHECK(e != NULL);
    if (!e) return;
    const char bad[] = {'a', (char)0xff, 0};
    CHECK(chat_broadcast(e, bad, "x") == CHAT_ERR_UTF8);
    CHECK(chat_broadcast(e, NULL, bad) == CHAT_ERR_UTF8);
    CHECK(chat_broadcast(e, NULL, NULL) == CHAT_ERR_NULL);
    CHECK(chat_send(e, 424242, "x") == CHAT_ERR_UNKNOWN_CONN);
    CHECK(chat_poll_event(e, 0, NULL) == CHAT_ERR_NULL);
    CHECK(chat_reload_tls(e) == CHAT_ERR_INVALID); /* no `tls` in the config */
    CHECK(chat_stop(e) == CHAT_OK);
    CHECK(chat_stop(e) == CHAT_ERR_STOPPED);
    CHECK(chat_broadcast(e, NULL, "x") == CHAT_ERR_STOPPED);
    chat_event *ev = NULL;
    CHECK(chat_poll_event(e, 0, &ev) == CHAT_ERR_STOPPED && ev == NULL);
    chat_free(e);
}

/* A daemon's handle (chat_connect): what it can do, what it refuses, and that a vanished daemon
 * is an error code. Under valgrind this also checks the remote path frees everything. */
static void control_socket(void) {
    char path[64], cfg[160];
    snprintf(path, sizeof path, "/tmp/embedchat-contract-%d.sock", (int)getpid());
    snprintf(cfg, sizeof cfg, "{\"listen\": \"127.0.0.1:0\", \"control_socket\": \"%s\"}", path);
    CHECK(chat_connect(NULL) == NULL);
    CHECK(chat_connect("/nonexistent/embedchat.sock") == NULL);
    CHECK(strstr(chat_last_error(), "cannot reach") != NULL);
    chat_engine *daemon = chat_start(cfg);
    CHECK(daemon != NULL);
    if (!daemon) return;
    CHECK(chat_restore(daemon, "kept", 7, 1700000000000ULL, "ann", "from the database") == CHAT_OK);
    CHECK(chat_restore(daemon, "kept", 7, 0, "ann", "again") == CHAT_ERR_INVALID);
    CHECK(chat_restore(daemon, NULL, 8, 0, "ann", "x") == CHAT_ERR_NULL);
    chat_engine *site = chat_connect(path);
    CHECK(site != NULL);
    if (site) {
        CHECK(chat_port(site) == chat_port(daemon));
        CHECK(chat_broadcast(site, "lobby", "nobody here yet") == 0);
        CHECK(chat_send(site, 424242, "x") == CHAT_ERR_UNKNOWN_CONN);
        CHECK(chat_dispatch(site, 0) == CHAT_ERR_UNSUPPORTED);
        CHECK(chat_approve(site, 1) == CHAT_ERR_UNSUPPORTED);
        CHECK(chat_restore(site, "kept", 9, 0, "x", "y") == CHAT_ERR_UNSUPPORTED);
        char *stats = chat_stats_json(site);
        CHECK(stats != NULL && strstr(stats, "connections_open") != NULL);
        chat_string_free(stats);
        CHECK(chat_stop(daemon) == CHAT_OK);
        CHECK(chat_broadcast(site, NULL, "x") == CHAT_ERR_CONTROL);
        CHECK(chat_stop(site) == CHAT_OK);
        CHECK(chat_broadcast(site, NULL, "x") == CHAT_ERR_STOPPED);
        chat_free(site);
    }
    chat_free(daemon);
    CHECK(access(path, F_OK) != 0);
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Entries in a /proc/self folder: open descriptors, or threads. */
static int count_entries(const char *path) {
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void host_misuse(void) {
    chat_engine *e = chat_start("{\"listen\": \"127.0.0.1:0\", \"max_message_bytes\": 64}");
    CHECK(e != NULL);
    if (!e) return;
    char big[200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK(chat_broadcast(e, NULL, big) == CHAT_ERR_INVALID);
    CHECK(chat_send(e, 1, big) == CHAT_ERR_INVALID);
    CHECK(chat_broadcast(e, "", "x") == CHAT_ERR_INVALID);
    CHECK(chat_kick(e, 99999, "bye") == CHAT_ERR_UNKNOWN_CONN);
    CHECK(chat_result_str(CHAT_ERR_INVALID)[0] != 0);
    chat_free(e);
}

struct dispatcher {
    chat_engine *e;
    int last;
    int calls;
};

static void slow_callback(void *userdata, const chat_event *ev) {
    (void)ev;
    struct dispatcher *d = userdata;
    d->calls++;
    sleep_ms(20); /* the stop arrives while we are in here */
}

static void *dispatch_until_stopped(void *arg) {
    struct dispatcher *d = arg;
    for (int i = 0; i < 500; i++) {
        d->last = chat_dispatch(d->e, 50);
        if (d->last < 0) break;
    }
    return NULL;
}

static void *poll_forever(void *arg) {
    chat_event *ev = NULL;
    long rc = chat_poll_event((chat_engine *)arg, -1, &ev);
    return (void *)rc;
}

static int ws_connect_and_say(uint16_t port, const char *text);

/* chat_stop on one thread while another is inside a dispatch callback; chat_free while another
   thread waits in chat_poll_event. Both waiting threads must return CHAT_ERR_STOPPED. */
static void cross_thread_stop(void) {
    chat_engine *e = chat_start("{\"listen\": \"127.0.0.1:0\", \"close_timeout_ms\": 100}");
    CHECK(e != NULL);
    if (!e) return;
    struct dispatcher d = {.e = e, .last = 0, .calls = 0};
    CHECK(chat_set_callback(e, slow_callback, &d) == CHAT_OK);
    pthread_t t;
    pthread_create(&t, NULL, dispatch_until_stopped, &d);
    int fds[5];
    for (int i = 0; i < 5; i++) fds[i] = ws_connect_and_say(chat_port(e), "hi");
    sleep_ms(100);
    CHECK(chat_stop(e) == CHAT_OK);
    pthread_join(t, NULL);
    CHECK(d.calls > 0);
    CHECK(d.last == CHAT_ERR_STOPPED);
    for (int i = 0; i < 5; i++) if (fds[i] >= 0) close(fds[i]);
    chat_free(e);

    e = chat_start("{\"listen\": \"127.0.0.1:0\"}");
    CHECK(e != NULL);
    if (!e) return;
    pthread_create(&t, NULL, poll_forever, e);
    sleep_ms(50);
    chat_free(e); /* the waiting poll keeps what it uses alive and returns */
    void *rc = NULL;
    pthread_join(t, &rc);
    CHECK((long)rc == CHAT_ERR_STOPPED);
}

/* Clients that reset their connections while the engine writes to them: the engine's write
   then fails with EPIPE/ECONNRESET. That must never raise SIGPIPE in the host (its default action
   would kill this process). */
static void clients_vanish_mid_write(void) {
    chat_engine *e = chat_start("{\"listen\": \"127.0.0.1:0\", \"max_connections_per_ip\": 0, "
                                "\"max_message_bytes\": 65536, \"max_backlog_bytes\": 16777216}");
    CHECK(e != NULL);
    if (!e) return;
    static char text[60001];
    memset(text, 'x', 60000);
    text[60000] = 0;
    for (int round = 0; round < 4; round++) {
        int fds[20];
        for (int i = 0; i < 20; i++) fds[i] = ws_connect_and_say(chat_port(e), "hi");
        sleep_ms(20);
        /* Megabytes queued for clients that never read and then close (FIN): the engine's
           writes keep going after the peer is gone and end in EPIPE. */
        for (int k = 0; k < 25; k++) chat_broadcast(e, NULL, text);
        for (int i = 0; i < 20; i++) {
            if (fds[i] >= 0) close(fds[i]);
        }
        for (int k = 0; k < 25; k++) chat_broadcast(e, NULL, text);
        sleep_ms(30);
    }
    CHECK(chat_stop(e) == CHAT_OK);
    chat_free(e);
}

/* Start, one client says something, the host takes every event, stop, free. */
static void round_trip(int i) {
    chat_engine *e = chat_start("{\"listen\": \"127.0.0.1:0\", \"close_timeout_ms\": 200}");
    CHECK(e != NULL);
    if (!e) return;
    int fd = ws_connect_and_say(chat_port(e), "hello from C");
    CHECK(fd >= 0);
    int got_message = 0;
    for (int tries = 0; tries < 50 && !got_message; tries++) {
        chat_event *ev = NULL;
        if (chat_poll_event(e, 100, &ev) == 1) {
            if (ev->kind == CHAT_EVENT_MESSAGE) {
                got_message = ev->text_len == 12 && memcmp(ev->text, "hello from C", 12) == 0;
                CHECK(chat_broadcast(e, ev->room, "hi back") == 1);
            }
            chat_event_free(ev);
        }
    }
    CHECK(got_message);
    if (i % 2 == 0) {
        char *stats = chat_stats_json(e);
        CHECK(stats != NULL && strstr(stats, "\"messages_in\":1") != NULL);
        chat_string_free(stats);
    }
    if (fd >= 0) close(fd);
    CHECK(chat_stop(e) == CHAT_OK);
    chat_free(e);
}

int main(int argc, char **argv) {
    int loops = argc > 1 ? atoi(argv[1]) : 50;
    contract();
    control_socket();
    clients_vanish_mid_write();
    host_misuse();
    cross_thread_stop();
    /* Warm up once so one-time allocations (thread-local error text) are not counted. */
    round_trip(1);
    int fds_before = count_entries("/proc/self/fd");
    int threads_before = count_entries("/proc/self/task");
    for (int i = 0; i < loops; i++) round_trip(i);
    int fds_after = count_entries("/proc/self/fd");
    int threads_after = count_entries("/proc/self/task");
    printf("%d loops: fds %d -> %d, threads %d -> %d\n", loops, fds_before, fds_after, threads_before, threads_after);
    CHECK(fds_after == fds_before);
    CHECK(threads_after == threads_before);
    printf("%d checks failed\n", failures);
    return failures == 0 ? 0 : 1;
}
