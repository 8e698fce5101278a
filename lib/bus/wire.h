/* What the buses share: a fixed list of subscribers, and for the buses
 * between processes one event as bytes (a JSON header, a newline, the
 * payload exactly as clients receive it). */
#ifndef CHAT_BUS_WIRE_H
#define CHAT_BUS_WIRE_H

#include <pthread.h>

#include <chat/bus.h>

#include "core/internal.h"

#define CHAT__BUS_MAX_SUBS 16

typedef struct chat__subs {
    pthread_mutex_t lock;
    int n;
    struct {
        chat_event_fn fn;
        void *userdata;
    } s[CHAT__BUS_MAX_SUBS];
} chat__subs;

void chat__subs_init(chat__subs *s);
void chat__subs_destroy(chat__subs *s);
/* CHAT_OK or CHAT_ELIMIT. */
int chat__subs_add(chat__subs *s, chat_event_fn fn, void *userdata);
/* Call every subscriber with ev, on this thread. CHAT_OK, or the first
 * refusal (a subscriber's non-OK answer; the others are still called). */
int chat__subs_call(chat__subs *s, const chat_event *ev);

/* ev as bytes into out (reset first). CHAT_OK or CHAT_ENOMEM. */
int chat__event_encode(const chat_event *ev, chat__buf *out);

/* Decode data[0..len) and call every subscriber with it, received_us
 * as chat_event.received_us. CHAT_OK; CHAT_EPROTO for bytes that are not
 * an event (nobody is called); CHAT_EAGAIN when a subscriber did not
 * handle it. */
int chat__event_dispatch(chat__subs *s, const char *data, size_t len,
                         int64_t received_us);

#endif /* CHAT_BUS_WIRE_H */
