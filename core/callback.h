/*
 * callback.h - client callbacks: when a job with a callback_url ends,
 * POST {"type": "job.<status>", "timestamp": <when it ended>, "data": <its
 * job object>} there, signed with the Standard Webhooks scheme and
 * darkroom's own secret ([server] callback_secret; during a rotation
 * also with callback_secret_previous: two v1 signatures), retried on
 * Svix's schedule.
 *
 * Each end of a job with a callback_url is a delivery (a row of
 * callback_deliveries, opened by jobstate when the job ends) whose id is
 * the webhook-id, stable across its tries (job id and completion time),
 * so a client can drop duplicates; a new end of the job (after a retry)
 * is a new delivery with a new id. The callback host gets the download
 * guard: https (http when downloads allow it), public addresses only
 * (loopback and private ones with DARKROOM_CALLBACK_ALLOW_PRIVATE=1), no
 * redirects, each try cut off after CALLBACK_TIMEOUT seconds. Each try
 * updates its delivery (attempts, state, last status and error, next
 * try), adds a row to callback_attempts and an event to the job's events,
 * in one fenced transaction, and each failed one is logged
 * (event=callback.failed with code= and reason=); a worker that lost the
 * job's lease meanwhile logs its try but writes nothing. The message's
 * "data" is the job object without its own "callback" member, so every
 * try sends the same job. A job object that cannot be built (too large,
 * unreadable) counts as a failed try like a refused POST. After the
 * schedule's last try the delivery is marked failed (the job keeps its
 * status: the callback is a notification, not part of the job's work); a
 * 410 answer, or a URL or address that can never be reached, ends it at
 * once.
 *
 * Who may call whom: the engine calls callback; callback calls jobstate,
 * jobs (the job object), download (the POST), netpolicy, webhook (the
 * signature), never the engine.
 */
#ifndef DR_CALLBACK_H
#define DR_CALLBACK_H

#include <time.h>

#include "step.h"

/* Seconds one try may take, connecting included. */
#define CALLBACK_TIMEOUT 15

/* The longest wait a Retry-After answer may ask for, in seconds (the
 * schedule's longest step). */
#define CALLBACK_RETRY_AFTER_MAX (10 * 3600)

/* Tries of one delivery in all: the first, then one after each step of
 * the schedule (8). */
int callback_max_tries(void);

/* The schedule's wait, in seconds, after `tries` failed tries (1: 5 s, 2:
 * 5 min, 3: 30 min, 4: 2 h, 5: 5 h, 6 and 7: 10 h), or -1 when `tries`
 * was the last (8 or more; or below 1). */
double callback_schedule(int tries);

/* The wait a Retry-After header value asks for, in seconds from `now`:
 * delta-seconds or an HTTP date (a date past is 0), at most
 * CALLBACK_RETRY_AFTER_MAX; -1 when `value` is NULL, empty or neither. */
double callback_retry_after(const char *value, time_t now);

/* The wait before the next try after `tries` failed tries, the last
 * answered with Retry-After `retry_after` (NULL or "" for none): the
 * schedule's wait, or Retry-After's when that is longer (a receiver may
 * slow the schedule down, never speed it up); -1 when no try is left. */
double callback_delay(int tries, const char *retry_after, time_t now);

/*
 * Deliver the callback of the claimed, ended job of `x`. The callback's
 * own state (delivered, failed, tried again later) is recorded by this
 * step through jobstate.h, since it never changes the job's status: the
 * outcome is always DONE.
 */
dr_step_outcome callback_deliver(const dr_step_ctx *x);

#endif
