/*
 * ids.h - job ids: sortable by creation time and unguessable.
 *
 * A job id is "j_" followed by a ULID: 26 Crockford base32 characters
 * encoding a 48-bit millisecond timestamp and 80 random bits from the
 * kernel's CSPRNG. Ids made in the same millisecond by one process are
 * made monotonic by incrementing the random part, so they still sort in
 * creation order.
 */
#ifndef DR_IDS_H
#define DR_IDS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define DR_JOB_ID_LEN 28 /* "j_" + 26 */

/* Write a new job id (NUL-terminated) into buf, which holds at least
 * DR_JOB_ID_LEN + 1 bytes. DR_ERR_INTERNAL if the kernel gives no random
 * bytes (never in practice). */
dr_status ids_new_job_id(char buf[DR_JOB_ID_LEN + 1]) DR_WARN_UNUSED;

/* Same, from an explicit time and random bytes (for tests). */
void ids_format_job_id(char buf[DR_JOB_ID_LEN + 1], uint64_t ms,
		       const unsigned char random[10]);

/* 1 when `s` has the shape of a job id, else 0. */
int ids_is_job_id(const char *s);

/* A batch id: "b_" and a ULID, made and checked like a job id (the same
 * length, DR_JOB_ID_LEN). */
dr_status ids_new_batch_id(char buf[DR_JOB_ID_LEN + 1]) DR_WARN_UNUSED;
int ids_is_batch_id(const char *s);

/* An uploaded file's id: "f_" and a ULID, made and checked like a job
 * id. */
dr_status ids_new_file_id(char buf[DR_JOB_ID_LEN + 1]) DR_WARN_UNUSED;
int ids_is_file_id(const char *s);

/* Fill buf with `len` random bytes from getrandom(2), the kernel's
 * CSPRNG, however many calls that takes. DR_ERR_IO (buf partly filled)
 * when the kernel gives none (never in practice). The one getrandom loop
 * of the core: the plugin host's random_bytes has the same contract. */
dr_status ids_random(void *buf, size_t len) DR_WARN_UNUSED;

#endif
