/*
 * download.h - fetching provider outputs, treating every URL as hostile.
 *
 * Outputs come from URLs a provider (or an attacker posing as one) chose.
 * A download is allowed only over https (http when configured), to a host
 * on the adapter's allowlist, and to a public address: every address curl
 * is about to connect to is checked in its open-socket callback, so a
 * redirect or a DNS answer that changes between lookups cannot reach
 * loopback, private or link-local ranges. Size is capped while receiving
 * (chunked bodies too); connect, total and low-speed timeouts apply; no
 * proxy is taken from the environment; no credentials are sent.
 *
 * Local files (an adapter that runs a program on this machine) are read
 * in place, but only from the job's own folder under the work folder the
 * adapter declared (download_local): a path is never trusted because it
 * starts with '/'.
 */
#ifndef DR_DOWNLOAD_H
#define DR_DOWNLOAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "error.h"
#include "netpolicy.h"

/*
 * Download `url` into `fd` (written from its current offset; the caller
 * passes an empty temp file). On success *size holds the byte count and
 * content_type the server's Content-Type (informational only: types are
 * decided from the bytes). Failures, with err->code:
 *   url_not_allowed      bad URL, scheme or host not allowed
 *   address_not_allowed  the host resolves to a refused address
 *   output_too_large     more than max_bytes
 *   output_expired       404 or 410 (the provider deleted it)
 *   download_timeout     the connect timeout or total_timeout passed
 *                        (retryable)
 *   download_too_slow    under low_speed_limit bytes/s for low_speed_time
 *                        seconds (retryable; the caller limits how often)
 *   download_failed      another HTTP status (5xx retryable)
 *   download_network     connection failure (retryable)
 *   lease_lost           the policy's beat answered nonzero
 *                        (DR_ERR_CONFLICT: the caller no longer holds the
 *                        job)
 * With pol->sha256_hex, a successful call also gives the body's SHA-256,
 * hashed as it arrived; pol->beat and pol->mark are called from inside
 * the call (netpolicy.h).
 */
dr_status download_url(const char *url, const dr_download_policy *pol, int fd,
		       uint64_t *size, char *content_type, size_t ctsz,
		       dr_error *err) DR_WARN_UNUSED;

/*
 * Decode a data: URI (RFC 2397; base64 or percent-encoded) into `fd`,
 * capped at max_bytes. mediatype receives the declared type
 * (informational). Codes: bad_data_uri, output_too_large.
 */
dr_status download_data_uri(const char *uri, uint64_t max_bytes, int fd,
			    uint64_t *size, char *mediatype, size_t mtsz,
			    dr_error *err) DR_WARN_UNUSED;

/*
 * Open the local file `path` that an adapter handed over (DR_OUTPUT_PATH)
 * for reading in place, after checking that it is a regular file inside
 * job `job_id`'s own folder under `root`, the work folder the adapter
 * instance declared (host->local_root; NULL when it declared none): the
 * path must be `root`/<job folder>/<name>[/<name>...], where the job
 * folder is named `job_id` or `job_id` followed by '-'. Each component
 * below `root` is opened with openat() and O_NOFOLLOW, so no symlink is
 * followed (a swapped-in symlink, file or folder, is refused, not
 * resolved), and "." and ".." are refused. On success *fd_out is a
 * read-only descriptor the caller closes and *size the file's size.
 * Codes: local_file_not_allowed (DR_ERR_INVALID: no root, outside it,
 * another job's folder, a symlink, "..", not a regular file),
 * output_missing (DR_ERR_NOT_FOUND), output_too_large (over max_bytes),
 * io_error.
 */
dr_status download_local(const char *path, const char *root, const char *job_id,
			 uint64_t max_bytes, int *fd_out, uint64_t *size,
			 dr_error *err) DR_WARN_UNUSED;

/*
 * POST `body` (len bytes) to `url` under the same rules as download_url
 * (scheme, allowlist, address check at connect time, timeouts; redirects
 * are not followed), with the extra request header lines in `headers`
 * ("Name: value", NULL-terminated). The answer's body is discarded after
 * 64 KiB. *http_status gets the status (0 when none came). When
 * `retry_after` is not NULL it gets the answer's Retry-After header value
 * (at most n - 1 bytes; "" when the answer had none). Codes as for
 * download_url; any HTTP status is DR_OK here.
 */
dr_status download_post(const char *url, const dr_download_policy *pol,
			const char *const *headers, const void *body,
			size_t len, long *http_status, char *retry_after,
			size_t n, dr_error *err) DR_WARN_UNUSED;

#endif
