/*
 * embedchat from C: the "echo bot in the lobby" scenario.
 *
 *   cargo build --release && make -C examples/c && examples/c/host 127.0.0.1:8080
 *
 * Waits in poll() on chat_event_fd, takes events with chat_poll_event on this thread, answers
 * "/time" with chat_send, and on Ctrl-C (SIGINT) or SIGTERM stops and frees the engine.
 * Messages starting with "/" wait for this host (config "command_prefix"): the bot answers
 * "/time" privately and keeps it out of the room; any other is published as sent.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "embedchat.h"

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void handle(chat_engine *e, const chat_event *ev) {
    printf("%s\n", ev->json);
    if (ev->kind != CHAT_EVENT_MESSAGE || ev->reply_token == 0) {
        return;
    }
    int rc;
    if (ev->text_len == 5 && memcmp(ev->text, "/time", 5) == 0) {
        char reply[64];
        snprintf(reply, sizeof reply, "server time: %lld (Unix seconds)", (long long)time(NULL));
        rc = chat_send(e, ev->conn_id, reply);
        if (rc != CHAT_OK) {
            fprintf(stderr, "chat_send: %s: %s\n", chat_result_str(rc), chat_last_error());
        }
        rc = chat_reject(e, ev->reply_token, "answered privately");
    } else {
        rc = chat_approve(e, ev->reply_token);
    }
    if (rc != CHAT_OK) {
        fprintf(stderr, "decision: %s: %s\n", chat_result_str(rc), chat_last_error());
    }
}

int main(int argc, char **argv) {
    const char *listen = argc > 1 ? argv[1] : "127.0.0.1:8080";
    if (chat_abi_version() != CHAT_ABI_VERSION) {
        fprintf(stderr, "libembedchat ABI %u, header ABI %u: rebuild\n", chat_abi_version(), CHAT_ABI_VERSION);
        return 1;
    }
    char config[256];
    snprintf(config, sizeof config, "{\"listen\": \"%s\", \"command_prefix\": \"/\"}", listen);
    chat_engine *e = chat_start(config);
    if (e == NULL) {
        fprintf(stderr, "chat_start: %s\n", chat_last_error());
        return 1;
    }
    printf("listening on http://127.0.0.1:%u (embedchat %s)\n", chat_port(e), chat_version());
    fflush(stdout);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct pollfd pfd = {.fd = chat_event_fd(e), .events = POLLIN, .revents = 0};
    while (!stop_requested) {
        int n = poll(&pfd, 1, 1000);
        if (n < 0 && errno != EINTR) {
            perror("poll");
            break;
        }
        chat_event *ev = NULL;
        while (!stop_requested && chat_poll_event(e, 0, &ev) == 1) {
            handle(e, ev);
            chat_event_free(ev);
        }
        fflush(stdout);
    }

    int rc = chat_stop(e);
    char *stats = chat_stats_json(e);
    printf("stopped (%s): %s\n", chat_result_str(rc), stats ? stats : "?");
    chat_string_free(stats);
    chat_free(e);
    return rc == CHAT_OK ? 0 : 1;
}
