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
 * one logged (event=callback.failed with code= and reason=); a worker
 * that lost the job's lease meanwhile logs its try but writes nothing to
 * the job. A job object that cannot be built (too large, unreadable)
 * counts as a failed try like a refused POST. After [worker]
 * max_attempts the callback is marked failed (the job keeps its status:
 * the callback is a notification, not part of the job's work); a URL or
 * address that can never be reached ends it at once.
 *
 * Who may call whom: the engine calls callback; callback calls jobstate,
 * jobs (the job object), download (the POST), webhook (the signature) and
 * queue (the backoff), never the engine.
 */
#ifndef DR_CALLBACK_H
#define DR_CALLBACK_H

#include "step.h"

/*
 * Deliver the callback of the claimed, ended job of `x`. The callback's
 * own state (delivered, failed, tried again later) is recorded by this
 * step through jobstate.h, since it never changes the job's status: the
 * outcome is always DONE.
 */
dr_step_outcome callback_deliver(const dr_step_ctx *x);

#endif
