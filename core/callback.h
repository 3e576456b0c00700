/*
 * callback.h - client callbacks: when a job with a callback_url ends,
 * POST its job object there, signed with the Standard Webhooks scheme and
 * darkroom's own secret ([server] callback_secret), retried with backoff.
 *
 * The delivery's webhook-id is stable across retries of the same ending
 * (job id and completion time), so a client can drop duplicates. The
 * callback host gets the same guard as output downloads: https (http when
 * allowed), public addresses only (unless private ones are allowed), no
 * redirects. Each try is recorded in the job's events and each failed
 * one logged (event=callback.failed with code= and reason=); a job object
 * that cannot be built (too large, unreadable) counts as a failed try
 * like a refused POST. After [worker] max_attempts the callback is marked
 * failed (the job keeps its status: the callback is a notification, not
 * part of the job's work); a URL or address that can never be reached
 * ends it at once.
 */
#ifndef DR_CALLBACK_H
#define DR_CALLBACK_H

#include "engine.h"

/* Deliver the callback of a claimed, ended job. */
void callback_deliver(dr_engine *e, dr_claim *c);

#endif
