/*
 * s3.h - internals of the `s3` sink, shared by its files:
 *
 *   s3.c      descriptor, configuration, keys and URLs, error mapping, the
 *             retry loop and the sink operations;
 *   digest.c  MD5 and SHA-256 of a source, base64 and hex, metadata
 *             encoding, the minimal XML reading of S3 error bodies;
 *   sigv4.c   the transport for AWS Signature V4: libcurl with
 *             CURLOPT_AWS_SIGV4;
 *   sigv2_load.c  loads the transport for AWS Signature V2 when an
 *             instance asks for it;
 *   sigv2/sigv2.c the transport for AWS Signature V2: libs3 2.0, built
 *             into a companion object of its own, s3/sigv2.so beside
 *             s3.so, so that s3.so does not link libs3.
 *
 * The plugin is built with -fvisibility=hidden, so the s3_ functions
 * declared here stay inside s3.so (only dr_plugin_entry is exported; the
 * companion exports only s3_sigv2_entry); the unit test links the same
 * objects, the companion's included, and calls them directly.
 *
 * A request goes through three layers: s3.c checks the key and metadata,
 * computes the digests and fills an s3_request; a transport performs it
 * once and describes the outcome in an s3_result (HTTP status, S3 error
 * Code, transport failure); s3.c decides whether to try again and finally
 * maps the result to a dr_status and dr_error (s3_classify).
 */
#ifndef DR_S3_H
#define DR_S3_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "darkroom-plugin.h"

/* A single PUT stores at most 5 GiB; larger needs multipart upload. */
#define S3_MAX_PUT ((uint64_t)5 << 30)
/* Longest object key S3 accepts (prefix included), in bytes. */
#define S3_KEY_MAX 1024
/* Longest prefix, so that a prefix always leaves room for keys. */
#define S3_PREFIX_MAX 256
/* S3 allows 2 KiB of user metadata: names and values together. */
#define S3_META_MAX 2048
/* Most metadata entries, and the longest Content-Type / Cache-Control. */
#define S3_META_COUNT_MAX 64
#define S3_HEADER_MAX	  1024
/* Longest metadata name; the value buffer of one encoded value. */
#define S3_META_NAME_MAX  128
#define S3_META_VALUE_MAX (3 * S3_META_MAX + 1)
/* The most of an error body kept for its <Code> and <Message>. */
#define S3_ERRBODY_MAX (16 * 1024)
/* Longest URL built for a request or given out as a public URL. */
#define S3_URL_MAX 8192
/* Most retries a config may ask for. */
#define S3_RETRIES_MAX 10
/* Read size when digesting or streaming a file descriptor. */
#define S3_IO_CHUNK (64 * 1024)

/* Digest text sizes, NUL included. */
#define S3_SHA256_HEX_SIZE 65
#define S3_MD5_B64_SIZE	   25

typedef enum s3_op { S3_PUT = 1, S3_GET, S3_HEAD, S3_DELETE } s3_op;

/* Why a transport aborted a transfer itself. */
typedef enum s3_abort {
	S3_ABORT_NONE = 0,
	S3_ABORT_SOURCE,   /* the source ended early or could not be read */
	S3_ABORT_TOO_LARGE /* a GET body went over max_bytes */
} s3_abort;

/* One configured sink instance. Strings are malloc'd unless noted. */
typedef struct s3_sink {
	const dr_host *host;
	const dr_instance *inst;
	int sigv2;	    /* signature = v2: libs3, in s3/sigv2.so */
	int virtual_host;   /* addressing = virtual */
	int https;	    /* the endpoint's scheme */
	char *host_name;    /* endpoint host as in the URL ("[::1]" for v6) */
	char *host_port;    /* host[:port], what libs3 takes as hostName */
	char *base_url;	    /* scheme://host[:port], no trailing '/' */
	char *public_base;  /* no trailing '/' */
	char *prefix;	    /* "" or ending with '/' */
	const char *bucket; /* borrowed from the host's config */
	const char *region; /* borrowed */
	const char *access_key; /* borrowed, secret */
	const char *secret_key; /* borrowed, secret */
	char sigv4_param[96];	/* "aws:amz:<region>:s3" */
	long timeout_ms;
	long connect_timeout_ms;
	int retries;
	void *curl; /* CURL *, reused for keep-alive (sigv4.c) */
} s3_sink;

/* What s3.c asks a transport to do. Borrowed for the call. */
typedef struct s3_request {
	s3_op op;
	const char *key; /* the full object key: prefix + key, not encoded */
	/* PUT */
	const dr_source *src;
	const char *content_type;  /* never NULL for PUT */
	const char *cache_control; /* or NULL */
	const char *md5_b64;	   /* Content-MD5 */
	const char *sha256_hex;	   /* x-amz-content-sha256 */
	size_t n_meta;
	const char *const *meta_names;	/* valid lower-case names */
	const char *const *meta_values; /* encoded, ASCII-safe */
	/* GET */
	uint64_t max_bytes;
	int probe; /* GET of the first byte only, for an error code */
} s3_request;

/* What came of one attempt. */
typedef struct s3_result {
	long http;	   /* HTTP status, 0 when no answer was received */
	int transport;	   /* 1: no usable answer (connect, timeout, reset) */
	s3_abort abort;	   /* set when a callback stopped the transfer */
	char code[64];	   /* S3 error Code from the body, or "" */
	char message[256]; /* S3 error Message or transport detail, no
			      secrets */
	/* GET: the body (malloc, owned by the caller once returned) */
	unsigned char *body;
	size_t body_len;
	/* HEAD: Content-Length, or -1 when the answer had none */
	int64_t content_length;
} s3_result;

/* ------------------------------------------------------------------------
 * s3.c
 */

/*
 * The request URL of `key` (the full key, not encoded) for this sink:
 * path style base_url/bucket/key or virtual scheme://bucket.host/key, the
 * key encoded per segment. Writes into buf; 0, or -1 when it does not fit.
 */
int s3_object_url(const s3_sink *s, const char *key, char *buf, size_t bufsz);

/*
 * Fill `err` for the final outcome `r` of operation `op` on `key` after
 * `attempts` tries, and return its status. DR_OK when the outcome is a
 * success for that operation (2xx; a DELETE answered 404 NoSuchKey).
 */
dr_status s3_classify(const s3_sink *s, s3_op op, const char *key,
		      const s3_result *r, int attempts, dr_error *err);

/* 1 when the outcome `r` is worth another attempt (transport failures,
 * 5xx, 429, 400 RequestTimeout). */
int s3_retryable(const s3_result *r);

/* ------------------------------------------------------------------------
 * digest.c
 */

/*
 * Read the source once and compute the base64 MD5 of its bytes into md5
 * (S3_MD5_B64_SIZE) and, when sha256 is not NULL, the lower-case hex
 * SHA-256 into sha256 (S3_SHA256_HEX_SIZE). File descriptors are read with
 * pread from offset 0. Returns 0; -1 with errno set on a read error, EIO
 * when the file is shorter than src->size, ENOMEM.
 */
int s3_digest_source(const dr_source *src, char *md5, char *sha256);

/* Hex SHA-256 and base64 MD5 of a buffer (tests, empty bodies). */
void s3_sha256_hex(const void *data, size_t len, char out[S3_SHA256_HEX_SIZE]);
void s3_md5_b64(const void *data, size_t len, char out[S3_MD5_B64_SIZE]);

/* 1 when `hex` is 64 hex digits. */
int s3_is_sha256_hex(const char *hex);

/*
 * Append `in` to buf (NUL-terminated, at offset *len) encoded as a URL
 * path: every byte but the unreserved A-Z a-z 0-9 - . _ ~ and '/' becomes
 * %XX (upper-case hex). 0, or -1 when it does not fit.
 */
int s3_encode_path(const char *in, char *buf, size_t bufsz, size_t *len);

/* 1 when `name` is a valid user metadata name: 1..S3_META_NAME_MAX of
 * a-z 0-9 '-'. */
int s3_meta_name_ok(const char *name);

/*
 * Encode a user metadata value so that it is a safe, signable header
 * value: bytes outside printable ASCII, '%', and spaces at either end or
 * after another space become %XX (so "a b" stays, "a  b" is "a %20b").
 * Returns the length, or -1 when it does not fit in outsz.
 */
int s3_meta_encode(const char *in, char *out, size_t outsz);

/* 1 when `v` is printable ASCII (0x20..0x7e) throughout: a header value
 * that cannot split the header block. */
int s3_header_value_ok(const char *v);

/*
 * The text of the first <tag>...</tag> element of an XML body (not
 * NUL-terminated), with the five predefined entities decoded and anything
 * outside printable ASCII dropped, into out. 0, or -1 when absent.
 */
int s3_xml_text(const char *body, size_t len, const char *tag, char *out,
		size_t outsz);

/* ------------------------------------------------------------------------
 * presign.c
 */

/*
 * A presigned GET of `url` (an object URL as s3_object_url() makes it:
 * scheme://host[:port]/encoded path) with AWS Signature V4 query
 * parameters: signed at `now` for `expires` seconds (1 to 604800), with
 * the host header only and UNSIGNED-PAYLOAD. Writes the URL into out; 0,
 * or -1 when an argument is out of range or it does not fit.
 */
int s3_presign_v4(const char *url, const char *region, const char *access_key,
		  const char *secret_key, time_t now, long expires, char *out,
		  size_t outsz);

/* ------------------------------------------------------------------------
 * sigv4.c (libcurl) and the SigV2 transport (libs3): perform `req` once.
 * r is zeroed by the caller; on return it describes the outcome.
 */
void s3v4_perform(s3_sink *s, const s3_request *req, s3_result *r);
void s3v4_close(s3_sink *s);

/* ------------------------------------------------------------------------
 * The SigV2 companion, s3/sigv2.so (sigv2/sigv2.c), and its loader
 * (sigv2_load.c).
 *
 * The companion's one exported symbol, S3_SIGV2_ENTRY_SYMBOL, returns its
 * table. It shares s3_sink, s3_request and s3_result with s3.so, so the
 * table carries its version and their sizes, and the loader refuses a
 * companion whose figures differ from its own (another build).
 */
#define S3_SIGV2_ENTRY_SYMBOL "s3_sigv2_entry"
/* The companion's path, relative to the folder s3.so was loaded from. */
#define S3_SIGV2_PATH	 "s3/sigv2.so"
#define S3_SIGV2_VERSION 1u

typedef struct s3_sigv2_ops {
	unsigned version; /* S3_SIGV2_VERSION */
	size_t sink_size; /* sizeof(s3_sink) where it was built */
	size_t request_size;
	size_t result_size;
	/* libs3's process-wide set-up and release (S3_initialize): 0, or
	 * -1 with a message in err. Called by the loader only, around the
	 * first and after the last v2 instance. */
	int (*init)(const s3_sink *s, dr_error *err);
	void (*deinit)(void);
	/* Perform `req` once, as s3v4_perform. */
	void (*perform)(s3_sink *s, const s3_request *req, s3_result *r);
} s3_sigv2_ops;

/* The type of the companion's entry point, s3_sigv2_entry (defined in
 * sigv2/sigv2.c only). */
typedef const s3_sigv2_ops *(*s3_sigv2_entry_fn)(void);

/*
 * The first v2 instance of the process loads the companion, checks it and
 * initialises libs3; later ones count. 0, or -1 with a message in err
 * (the companion missing or from another build, libs3 missing, libs3's
 * initialisation failing). Instances are created and destroyed on one
 * thread.
 */
int s3v2_acquire(s3_sink *s, dr_error *err);
/* One release per successful acquire; the last releases libs3 and
 * unloads the companion. */
void s3v2_release(void);
/* Perform `req` through the companion (only between acquire and
 * release). */
void s3v2_perform(s3_sink *s, const s3_request *req, s3_result *r);

#endif
