/*
 * digest.h - SHA-256 of bytes in memory, raw or as lowercase hex.
 *
 * The one place the core computes a SHA-256 of a buffer or of a file and
 * spells bytes as hex (API key hashes, request-body hashes, migration
 * checksums, stored outputs, webhook delivery keys). A
 * foundation: it depends on libcrypto and error.h only. Plugins do not
 * link it; they reach the core only through the services table.
 */
#ifndef DR_DIGEST_H
#define DR_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define DR_SHA256_LEN 32
#define DR_SHA256_HEX_LEN 64

/* The SHA-256 of `len` bytes at `data` into `out`. libcrypto failing to
 * hash memory is not recoverable: it aborts with a message (dr_die). */
void digest_sha256(const void *data, size_t len,
		   unsigned char out[DR_SHA256_LEN]);

/* `n` bytes of `in` as 2n lowercase hex digits and a NUL into `out`,
 * which holds at least 2n + 1 bytes. */
void digest_hex(const unsigned char *in, size_t n, char *out);

/* The SHA-256 of `len` bytes at `data` as 64 lowercase hex digits and a
 * NUL. Aborts like digest_sha256. */
void digest_sha256_hex(const void *data, size_t len,
		       char out[DR_SHA256_HEX_LEN + 1]);

/* The SHA-256 of the first `size` bytes of the file open as `fd`, read
 * with pread in 64 KiB pieces (the file offset does not move, the file is
 * never held in memory), as hex into `out`. DR_ERR_IO (io_error) when the
 * file cannot be read or is shorter than `size`. */
dr_status digest_sha256_fd_hex(int fd, uint64_t size,
			       char out[DR_SHA256_HEX_LEN + 1],
			       dr_error *err) DR_WARN_UNUSED;

#endif
