/*
 * pipeline.h - the persistence pipeline: a succeeded prediction's outputs
 * downloaded, typed, rendered, stored and indexed.
 *
 * For each output recorded 'pending' when the prediction succeeded:
 *   download  the URL (hostile-URL rules of download.h) or data: URI into
 *             a temporary file; text outputs need none; a local file only
 *             as the adapter handed it over (source_kind 'path') and only
 *             from the job's folder under the adapter's declared work
 *             folder (download_local), never because it starts with '/';
 *   type      from the first bytes (sniff.h), never from headers;
 *   render    images: metadata and one rendition per preset the job asked
 *             for, from one decode (image.h);
 *   upload    the original byte for byte and every rendition to the active
 *             sink under content-addressed keys
 *               ab/abcdef....png           the original (sha256 of bytes)
 *               ab/abcdef.../thumb.<tag>.webp  a rendition (rendition.h)
 *             so a retried step overwrites the same objects and equal files
 *             are stored once; Content-Type, Cache-Control immutable, and
 *             the job id and model as object metadata;
 *   index     every output and rendition with its metadata and storage key
 *             (URLs are made from keys when jobs are read, jobs.h), a
 *             reference to each key in `objects` (objects.h: the keys of
 *             an output are pinned before its sink check and uploads),
 *             and the job's move to `succeeded`, in one transaction.
 * A failure retries the whole step (idempotent by construction) with
 * backoff when it may pass, and fails the job with the step and a stable
 * code when it cannot (output_expired, output_too_large, image_too_large,
 * image_corrupt, unsupported_type, address_not_allowed,
 * local_file_not_allowed, sink_unavailable…). Downloads are retried within
 * limits kept in the output's row, so they hold across workers: a
 * download abandoned for low speed (download_too_slow) gets one more try,
 * and every try of one output shares [limits] download_budget, counted
 * from its first download.
 *
 * Who may call whom: the engine calls the pipeline; the pipeline calls
 * jobstate, queue, download, image, rendition (storing renditions, and
 * the headers of every object), objects (pins and references), the
 * plugin host (the sink) and db, never the engine.
 */
#ifndef DR_PIPELINE_H
#define DR_PIPELINE_H

#include "step.h"

/*
 * Run the persist step of the claimed job of `x` (in persisting). When
 * every output is stored the job's end is written by the step itself
 * (jobstate_succeed, in the index transaction) and the outcome is DONE,
 * as it is when the lease was lost. Otherwise RETRY (a failure that may
 * pass; counted) or FAIL, naming the sub-step that failed (download,
 * render, upload, index) and the error.
 */
dr_step_outcome pipeline_persist(const dr_step_ctx *x);

#endif
