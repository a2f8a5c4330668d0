/*
 * The C ABI from C: NULL and bad UTF-8 everywhere, calls after stop, double stop, and a
 * start -> traffic -> stop loop, meant to run under valgrind (tests/c_host.rs does).
 * Exit 0 = every check held; each failed check prints the line.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
    CHECK(chat_stats_json(NULL) == NULL);
    CHECK(chat_port(NULL) == 0);
    chat_free(NULL);
    chat_event_free(NULL);
    chat_string_free(NULL);

    CHECK(chat_start("{\"listen\": \"127.0.0.1:0\", \"nope\": 1}") == NULL);
    CHECK(strstr(chat_last_error(), "nope") != NULL);

    chat_engine *e = chat_start("{\"listen\": \"127.0.0.1:0\"}");
    CHECK(e != NULL);
    if (!e) return;
    const char bad[] = {'a', (char)0xff, 0};
    CHECK(chat_broadcast(e, bad, "x") == CHAT_ERR_UTF8);
    CHECK(chat_broadcast(e, NULL, bad) == CHAT_ERR_UTF8);
    CHECK(chat_broadcast(e, NULL, NULL) == CHAT_ERR_NULL);
    CHECK(chat_send(e, 424242, "x") == CHAT_ERR_UNKNOWN_CONN);
    CHECK(chat_poll_event(e, 0, NULL) == CHAT_ERR_NULL);
    CHECK(chat_stop(e) == CHAT_OK);
    CHECK(chat_stop(e) == CHAT_ERR_STOPPED);
    CHECK(chat_broadcast(e, NULL, "x") == CHAT_ERR_STOPPED);
    chat_event *ev = NULL;
    CHECK(chat_poll_event(e, 0, &ev) == CHAT_ERR_STOPPED && ev == NULL);
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
    int loops = argc > 1 ? atoi(argv[1]) : 20;
    contract();
    for (int i = 0; i < loops; i++) round_trip(i);
    printf("%d checks failed\n", failures);
    return failures == 0 ? 0 : 1;
}
