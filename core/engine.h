/*
 * engine.h - the worker's step dispatch: what happens when a claimed job
 * is due.
 *
 * Steps (jobs.step) say what a worker does when the job is due:
 *   submit   start the prediction (or, after a crash mid-submit, find it)
 *   poll     ask the provider for news, as a safety net for lost webhooks
 *   persist  store the outputs (the persistence pipeline, pipeline.h)
 *   steps    a workflow: never due while it runs (its steps are jobs of
 *            their own; a step's submit resolves its references,
 *            workflow.h)
 * An ended job is due only for its client callback (callback.h). A cancel
 * request (cancel_requested) takes precedence over any step.
 *
 * The engine talks to the adapter itself (submit, poll, cancel), hands
 * the provider's answers to news.h, runs the step modules and records
 * their outcomes (step.h) through jobstate.h, with the claim's fencing
 * token. The statuses and their moves are jobstate.h's.
 *
 * Who may call whom: the worker calls the engine; the engine calls the
 * step modules (pipeline, callback), news, jobstate and queue. Nothing
 * calls back into the engine.
 */
#ifndef DR_ENGINE_H
#define DR_ENGINE_H

#include "config.h"
#include "db.h"
#include "error.h"
#include "plugin.h"
#include "queue.h"

typedef struct dr_engine {
	const dr_config *cfg;
	dr_plugins *plugins;
	dr_db *db;
	char owner[64]; /* lease owner name: host:pid */
} dr_engine;

/* A job whose step was left unfinished by this many workers in a row (a
 * plugin that crashes the process, a step that hangs) fails with code
 * "worker_crashed" instead of being tried again. High enough that workers
 * killed from outside (a SIGKILL storm, an OOM kill, a redeploy) do not
 * fail the jobs they held; low enough that a crashing plugin stops after
 * a few replaced workers. */
#define ENGINE_MAX_ABANDONED 6

/* Run the due step of a claimed job, recording every outcome (new state,
 * retry time, failure) with the claim's fencing token. Logs and swallows
 * errors: a failed write leaves the job to its lease. */
void engine_run(dr_engine *e, dr_claim *c);

#endif
