/*
 * step.h - what a worker's step module (pipeline.h, callback.h) is given
 * and what it answers: the step runs with a context, never with the
 * engine, and returns an outcome that the engine records through
 * jobstate.h. So a step never calls back up into the engine.
 *
 * Who may call whom: step modules call jobstate, queue, db, the plugin
 * host and the modules below them (the pipeline: rendition.h, which
 * reprocess shares); the engine calls the step modules and acts on their
 * outcomes. This header holds types only.
 */
#ifndef DR_STEP_H
#define DR_STEP_H

#include "config.h"
#include "db.h"
#include "error.h"
#include "plugin.h"
#include "queue.h"

/* What a step works with (all borrowed). */
typedef struct dr_step_ctx {
	dr_db *db;
	const dr_config *cfg;
	dr_plugins *plugins;
	dr_claim *claim; /* the claimed job */
} dr_step_ctx;

typedef enum dr_step_kind {
	DR_STEP_DONE = 0, /* recorded by the step itself, or the lease was
			     lost: nothing more to write */
	DR_STEP_RETRY,	  /* try the step again later */
	DR_STEP_FAIL	  /* the job fails */
} dr_step_kind;

/* A step's answer. */
typedef struct dr_step_outcome {
	dr_step_kind kind;
	char step[16];	   /* RETRY, FAIL: the (sub-)step that failed */
	double delay;	   /* RETRY: seconds until the next try */
	int count_attempt; /* RETRY: the try counts toward max_attempts (and
			      fails the job when they are used up) */
	int forget_submit; /* RETRY: the submit surely never reached the
			      provider */
	dr_error why;	   /* RETRY, FAIL: code and message */
} dr_step_outcome;

#endif
