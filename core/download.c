/*
 * download.c - fetching provider outputs, treating every URL as hostile.
 *
 * This module owns the only code that fetches a URL chosen by someone
 * else, and the only code that opens a local file an adapter hands over
 * (download_local, at the end). The URL rules (download.h) are enforced
 * in three places, so that no single oversight opens a hole:
 *
 *  1. Before a request: the URL is parsed with curl_url() (the parser curl
 *     itself uses, so there is no parser mismatch), and its scheme, user
 *     part, host (allowlist) and, for an IP-literal host, its address are
 *     checked. The request is then made from that parsed handle
 *     (CURLOPT_CURLU), not from the string.
 *  2. Redirects are followed by hand (CURLOPT_FOLLOWLOCATION stays off): the
 *     Location of a 3xx answer is resolved against the current URL with
 *     curl_url() and goes through step 1 again, up to max_redirects. curl's
 *     own follower would check the scheme of each hop but not its host.
 *  3. At connect time: curl calls open_socket() for every address it is
 *     about to connect to (each hop, each resolved address, both families
 *     of happy eyeballs), and a refused address never gets a socket. The
 *     resolver's answer is checked, not a lookup of ours, so DNS rebinding
 *     between a check and the connect is not possible.
 *
 * Bodies: only a 200 body is written to the caller's fd; other bodies are
 * read and dropped (at most DISCARD_MAX bytes, so a connection can be
 * kept alive after a redirect). "Accept-Encoding: identity" is sent and
 * curl decodes no content encoding, so the bytes counted against max_bytes
 * are the bytes received and stored: no decompression bomb, and a server
 * that compresses anyway gets its compressed bytes stored (types are
 * decided from the bytes later). CURLOPT_MAXFILESIZE_LARGE refuses a too
 * large Content-Length before the body; the write callback counts the
 * bytes too, which is what stops chunked and lying bodies.
 *
 * One curl easy handle is kept per process and reset (curl_easy_reset) at
 * each call: the reset clears every option but keeps the connection and
 * TLS session caches, so consecutive downloads from the same CDN reuse
 * their connection. A reused connection skips open_socket(), which is
 * safe because it was checked when opened; but one opened under
 * allow_private must not serve a call without it, so the handle is
 * replaced when a stricter call follows a permissive one. darkroom's
 * processes are single-threaded, so the handle is not locked; a forked
 * child does not use (or clean up: that could send a TLS close_notify on
 * a socket the parent still uses) a handle inherited from its parent.
 *
 * Statuses: url_not_allowed and address_not_allowed are DR_ERR_INVALID,
 * output_too_large DR_ERR_TOO_LARGE, output_expired (404, 410)
 * DR_ERR_NOT_FOUND, download_timeout and download_too_slow (the
 * low-speed check, told apart from the timeouts by ended_by_low_speed())
 * DR_ERR_TIMEOUT (retryable),
 * download_network DR_ERR_NETWORK (retryable, except certificate and TLS
 * set-up errors), download_failed DR_ERR_RATE_LIMITED (429),
 * DR_ERR_UNAVAILABLE (5xx, 408; both retryable, with Retry-After capped at
 * an hour) or DR_ERR_PROVIDER (any other status, too many redirects), and
 * write_failed DR_ERR_IO for the caller's fd. On failure fd may hold part
 * of a body; the caller throws its temp file away.
 *
 * Error messages name what was refused (scheme, host, address) and show a
 * URL only as scheme://host[:port]/path, truncated: query strings and user
 * parts may carry tokens and are never printed.
 */
#include "download.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "digest.h"
#include "webhook.h"

#ifndef DR_VERSION
#define DR_VERSION "unknown"
#endif

#define USER_AGENT	  "darkroom/" DR_VERSION
#define DISCARD_MAX	  (64 * 1024) /* body bytes of a non-200 answer read */
#define SHOWN_URL_MAX	  160	      /* URL text in a message, with "..." */
#define RETRY_AFTER_MAX	  3600.0      /* outputs expire in an hour anyway */
#define DATA_CHUNK	  12288	      /* decoded data: bytes per write */
#define DEFAULT_MEDIATYPE "text/plain;charset=US-ASCII" /* RFC 2397 */
/* Seconds: a timeout this near the call's deadline is the deadline's. */
#define DEADLINE_SLACK 0.05

/* The connect-time address rule. A pointer only so that the unit test,
 * which includes this file, can pretend its first server is public. */
static int (*address_check)(const struct sockaddr *sa,
			    int allow_private) = netpolicy_address_allowed;

/* The address of `sa` as text ("?" for another family). */
static void address_text(const struct sockaddr *sa, char *out, size_t outsz)
{
	const void *bin = NULL;

	if (sa->sa_family == AF_INET)
		bin = &((const struct sockaddr_in *)sa)->sin_addr;
	else if (sa->sa_family == AF_INET6)
		bin = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (!bin || !inet_ntop(sa->sa_family, bin, out, (socklen_t)outsz))
		snprintf(out, outsz, "?");
}

/* ------------------------------------------------------------------
 * Writing
 */

/* Write all `n` bytes of `p` to `fd`; 0, or -1 with errno set. */
static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (w == 0) {
			errno = EIO;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Copy `s` (at most `n` bytes) into out, replacing bytes that are not
 * printable ASCII with '?' (messages end up in JSON and logs). */
static void copy_printable(char *out, size_t outsz, const char *s, size_t n)
{
	size_t i;

	if (outsz == 0)
		return;
	for (i = 0; i < n && i + 1 < outsz && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];

		out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	out[i] = '\0';
}

/* ------------------------------------------------------------------
 * URLs
 */

/* The URL as scheme://host[:port]/path for messages: no user part, no
 * query, no fragment, printable ASCII, at most SHOWN_URL_MAX chars. */
static void show_url(CURLU *u, char *out, size_t outsz)
{
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
	char tmp[SHOWN_URL_MAX + 64];
	int n;

	curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	curl_url_get(u, CURLUPART_HOST, &host, 0);
	curl_url_get(u, CURLUPART_PORT, &port, 0);
	curl_url_get(u, CURLUPART_PATH, &path, 0);
	n = snprintf(tmp, sizeof(tmp), "%s://%s%s%s%s", scheme ? scheme : "?",
		     host ? host : "", port ? ":" : "", port ? port : "",
		     path ? path : "");
	if (n < 0)
		tmp[0] = '\0';
	if (n >= SHOWN_URL_MAX)
		memcpy(tmp + SHOWN_URL_MAX - 3, "...", 4);
	copy_printable(out, outsz, tmp, sizeof(tmp));
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
}

/* One hop of a download: the URL as checked and what to print of it. */
struct hop {
	int n; /* 0 for the given URL, then redirects */
	char shown[SHOWN_URL_MAX + 1];
	char host[256]; /* printable, for messages */
};

/* "URL" or "redirect", to say which hop was refused. */
static const char *hop_what(const struct hop *h)
{
	return h->n == 0 ? "URL" : "redirect";
}

/* Parse an IP-literal host ("[::1]" or "127.0.0.1") into `ss` with `port`;
 * 1 when it is one. inet_aton also takes the old spellings (2130706433,
 * 0x7f.1, 0177.0.0.1, 127.1) that resolvers accept, should curl ever pass
 * one through unnormalised. */
static int ip_literal(const char *host, unsigned port,
		      struct sockaddr_storage *ss)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	char buf[64];
	size_t n = strlen(host);

	memset(ss, 0, sizeof(*ss));
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		if (n - 2 >= sizeof(buf))
			return 0;
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1)
			return 0;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		return 1;
	}
	/* "127.0.0.1." is the same address (one trailing dot, as for the
	 * allowlist); refuse it here rather than leave it to the resolver. */
	if (n > 0 && host[n - 1] == '.')
		n--;
	if (n == 0 || n >= sizeof(buf))
		return 0;
	memcpy(buf, host, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, &in->sin_addr) == 1 ||
	    inet_aton(buf, &in->sin_addr) != 0) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		return 1;
	}
	return 0;
}

/* Check the URL of one hop against the policy: scheme, no user part, no
 * zone id, host on the allowlist, an IP-literal host's address. Fills
 * h->shown and h->host. */
static dr_status check_url(CURLU *u, const dr_download_policy *pol,
			   struct hop *h, dr_error *err)
{
	char *scheme = NULL, *part = NULL, *host = NULL, *port = NULL;
	struct sockaddr_storage ss;
	char addr[INET6_ADDRSTRLEN];
	dr_status st = DR_OK;
	int https, http;

	show_url(u, h->shown, sizeof(h->shown));
	h->host[0] = '\0';
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
		st = dr_fail(err, DR_ERR_INVALID, "url_not_allowed",
			     "%s rejected: no scheme", hop_what(h));
		goto out;
	}
	https = strcasecmp(scheme, "https") == 0;
	http = strcasecmp(scheme, "http") == 0;
	if (!https && !(http && pol->allow_http)) {
		char shown_scheme[17];

		copy_printable(shown_scheme, sizeof(shown_scheme), scheme,
			       strlen(scheme));
		st = dr_fail(err, DR_ERR_INVALID, "url_not_allowed",
			     "%s rejected: scheme \"%s\" is not allowed "
			     "(allowed: %s): %s",
			     hop_what(h), shown_scheme,
			     pol->allow_http ? "https, http" : "https",
			     h->shown);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PASSWORD, &part, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_OPTIONS, &part, 0) == CURLUE_OK) {
		st = dr_fail(err, DR_ERR_INVALID, "url_not_allowed",
			     "%s rejected: credentials in the URL are not "
			     "allowed: %s",
			     hop_what(h), h->shown);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    !host[0]) {
		st = dr_fail(err, DR_ERR_INVALID, "url_not_allowed",
			     "%s rejected: no host: %s", hop_what(h), h->shown);
		goto out;
	}
	copy_printable(h->host, sizeof(h->host), host, strlen(host));
	if (curl_url_get(u, CURLUPART_ZONEID, &part, 0) == CURLUE_OK) {
		st = dr_fail(err, DR_ERR_INVALID, "url_not_allowed",
			     "%s rejected: IPv6 zone ids are not allowed: %s",
			     hop_what(h), h->shown);
		goto out;
	}
	if (!netpolicy_host_allowed(host, pol->hosts)) {
		st = dr_fail(err, DR_ERR_INVALID, "url_not_allowed",
			     "%s rejected: host %s is not on the download "
			     "allowlist: %s",
			     hop_what(h), h->host, h->shown);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
	    CURLUE_OK) {
		st = dr_fail(err, DR_ERR_INVALID, "url_not_allowed",
			     "%s rejected: no port: %s", hop_what(h), h->shown);
		goto out;
	}
	if (ip_literal(host, (unsigned)strtoul(port, NULL, 10), &ss) &&
	    !address_check((const struct sockaddr *)&ss, pol->allow_private)) {
		address_text((const struct sockaddr *)&ss, addr, sizeof(addr));
		st = dr_fail(err, DR_ERR_INVALID, "address_not_allowed",
			     "%s rejected: %s is %s: %s", hop_what(h), addr,
			     netpolicy_refusal((const struct sockaddr *)&ss),
			     h->shown);
		goto out;
	}
out:
	curl_free(scheme);
	curl_free(part);
	curl_free(host);
	curl_free(port);
	return st;
}

/* ------------------------------------------------------------------
 * Transfers
 */

/* State of one request, seen by the callbacks. */
struct transfer {
	CURL *curl;
	int fd;
	int allow_private;
	uint64_t max_bytes;
	uint64_t written; /* bytes of the 200 body written to fd */
	size_t discarded; /* bytes of another answer's body dropped */
	int too_large;	  /* the body passed max_bytes */
	int discard_full; /* stopped dropping after DISCARD_MAX */
	int write_errno;  /* writing to fd failed */
	int opened;	  /* sockets handed to curl */
	int too_slow;	  /* curl's low-speed check ended the request */
	int refused;	  /* addresses refused */
	char refused_addr[INET6_ADDRSTRLEN]; /* the first one */
	const char *refused_why;
	const dr_download_policy *pol;
	double began;	/* when the call began */
	double mark_at; /* when to call pol->mark; 0: never, or done */
	double beat_at; /* when pol->beat is due next; 0: never */
	uint64_t beat_written; /* t->written at the last beat */
	int beat_lost;	       /* pol->beat answered nonzero */
	EVP_MD_CTX *md; /* the SHA-256 of the 200 body (pol->sha256_hex) */
	int md_failed;	/* hashing failed: no digest is given */
};

/* CURLOPT_OPENSOCKETFUNCTION: the last word on every address. */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose,
				 struct curl_sockaddr *a)
{
	struct transfer *t = clientp;

	if (purpose != CURLSOCKTYPE_IPCXN ||
	    !address_check(&a->addr, t->allow_private)) {
		if (t->refused++ == 0) {
			address_text(&a->addr, t->refused_addr,
				     sizeof(t->refused_addr));
			t->refused_why = netpolicy_refusal(&a->addr);
		}
		return CURL_SOCKET_BAD;
	}
	t->opened++;
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* CURLOPT_WRITEFUNCTION: a 200 body goes to fd, capped; others are
 * dropped. Returning less than n makes curl stop with CURLE_WRITE_ERROR. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *p)
{
	struct transfer *t = p;
	size_t n = size * nmemb;
	long code = 0;

	curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
	if (code != 200) {
		t->discarded += n;
		if (t->discarded > DISCARD_MAX) {
			t->discard_full = 1;
			return 0;
		}
		return n;
	}
	if (n > t->max_bytes - t->written) {
		t->too_large = 1;
		return 0;
	}
	if (write_all(t->fd, data, n) != 0) {
		t->write_errno = errno ? errno : EIO;
		return 0;
	}
	if (t->md && !EVP_DigestUpdate(t->md, data, n))
		t->md_failed = 1;
	t->written += n;
	return n;
}

static CURL *handle;	/* the process's handle, see the top */
static CURL *inherited; /* a parent's handle: kept, never touched */
static pid_t handle_pid;
static int handle_private; /* it has connected under allow_private */

/* The process's easy handle, reset; NULL when curl cannot make one. */
static CURL *get_handle(int allow_private)
{
	static int global_done;

	if (!global_done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return NULL;
		global_done = 1;
	}
	if (handle && handle_pid != getpid()) {
		inherited = handle;
		handle = NULL;
	}
	if (handle && handle_private && !allow_private) {
		curl_easy_cleanup(handle);
		handle = NULL;
	}
	if (!handle) {
		handle = curl_easy_init();
		if (!handle)
			return NULL;
		handle_pid = getpid();
		handle_private = 0;
	}
	if (allow_private)
		handle_private = 1;
	curl_easy_reset(handle);
	return handle;
}

/* Seconds as milliseconds for curl, within [1, one day]. */
static long to_ms(double s)
{
	if (s * 1000.0 < 1.0)
		return 1;
	if (s > 86400.0)
		return 86400000L;
	return (long)(s * 1000.0);
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CURLOPT_XFERINFOFUNCTION (download_url with a policy's `mark` or
 * `beat`): called during the transfer at least once a second; calls
 * `mark` once, and `beat` every beat_every seconds while bytes arrive. */
static int on_progress(void *p, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct transfer *t = p;
	double now;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	if (t->mark_at <= 0 && t->beat_at <= 0)
		return 0;
	now = now_seconds();
	if (t->beat_at > 0 && now >= t->beat_at &&
	    t->written > t->beat_written) {
		t->beat_at = now + t->pol->beat_every;
		t->beat_written = t->written;
		if (t->pol->beat(t->pol->beat_arg) != 0) {
			t->beat_lost = 1;
			return 1; /* CURLE_ABORTED_BY_CALLBACK */
		}
	}
	if (t->mark_at > 0 && now >= t->mark_at) {
		t->mark_at = 0;
		t->pol->mark(t->pol->mark_arg, now - t->began);
	}
	return 0;
}

/* Options that stay the same for every hop of a call. */
static dr_status set_options(CURL *c, const dr_download_policy *pol,
			     struct transfer *t, struct curl_slist *headers,
			     char *errbuf, dr_error *err)
{
	const char *protocols = pol->allow_http ? "http,https" : "https";
	CURLcode rc = CURLE_OK;

#define SET(opt, val)                                                          \
	do {                                                                   \
		if (rc == CURLE_OK)                                            \
			rc = curl_easy_setopt(c, opt, val);                    \
	} while (0)
	SET(CURLOPT_PROTOCOLS_STR, protocols);
	SET(CURLOPT_REDIR_PROTOCOLS_STR, protocols);
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_OPENSOCKETFUNCTION, open_socket);
	SET(CURLOPT_OPENSOCKETDATA, t);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, t);
	SET(CURLOPT_PROXY, "");
	SET(CURLOPT_NOPROXY, "*");
	SET(CURLOPT_HTTPHEADER, headers);
	SET(CURLOPT_USERAGENT, USER_AGENT);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_FAILONERROR, 0L);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	if (pol->connect_timeout > 0)
		SET(CURLOPT_CONNECTTIMEOUT_MS, to_ms(pol->connect_timeout));
	if (pol->low_speed_limit > 0 && pol->low_speed_time > 0) {
		long secs = (long)(pol->low_speed_time + 0.999);

		SET(CURLOPT_LOW_SPEED_LIMIT, pol->low_speed_limit);
		SET(CURLOPT_LOW_SPEED_TIME, secs < 1 ? 1L : secs);
	}
	/* 0 means "no limit" to curl; the write callback enforces 0. */
	if (pol->max_bytes > 0)
		SET(CURLOPT_MAXFILESIZE_LARGE,
		    (curl_off_t)(pol->max_bytes > (uint64_t)INT64_MAX
					 ? INT64_MAX
					 : (int64_t)pol->max_bytes));
#undef SET
	if (rc != CURLE_OK)
		return dr_fail(err, DR_ERR_INTERNAL, "internal",
			       "libcurl refused an option: %s",
			       curl_easy_strerror(rc));
	return DR_OK;
}

/* 1 for curl errors about a certificate or TLS set-up that repeating the
 * request will not fix. CURLE_SSL_CONNECT_ERROR is not one: it also
 * reports a handshake cut by the network. */
static int tls_permanent(CURLcode rc)
{
	switch (rc) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_USE_SSL_FAILED:
		return 1;
	default:
		return 0;
	}
}

/* Map a failed transfer (rc != CURLE_OK, not one of ours) to an error. */
static dr_status transport_error(CURLcode rc, const struct transfer *t,
				 const struct hop *h, const char *errbuf,
				 dr_error *err)
{
	char detail[CURL_ERROR_SIZE];
	dr_status st;

	copy_printable(detail, sizeof(detail),
		       errbuf[0] ? errbuf : curl_easy_strerror(rc),
		       CURL_ERROR_SIZE);
	if (t->refused > 0 && t->opened == 0)
		return dr_fail(err, DR_ERR_INVALID, "address_not_allowed",
			       "connection refused: host %s resolves to %s, "
			       "%s: %s",
			       h->host, t->refused_addr,
			       t->refused_why ? t->refused_why : "not allowed",
			       h->shown);
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		if (t->too_slow) {
			st = dr_fail(err, DR_ERR_TIMEOUT, "download_too_slow",
				     "download abandoned as too slow: %s: %s",
				     detail, h->shown);
			if (err)
				err->retryable = 1;
			return st;
		}
		st = dr_fail(err, DR_ERR_TIMEOUT, "download_timeout",
			     "download timed out: %s: %s", detail, h->shown);
		if (err)
			err->retryable = 1;
		return st;
	case CURLE_OUT_OF_MEMORY:
		return dr_fail(err, DR_ERR_NOMEM, "out_of_memory",
			       "out of memory in libcurl");
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		return dr_fail(err, DR_ERR_INVALID, "url_not_allowed",
			       "%s rejected by libcurl: %s: %s", hop_what(h),
			       detail, h->shown);
	default:
		break;
	}
	st = dr_fail(err, DR_ERR_NETWORK, "download_network",
		     "download failed: %s: %s", detail, h->shown);
	if (err)
		err->retryable = !tls_permanent(rc);
	return st;
}

/* Map a final HTTP status other than 200 to an error. */
static dr_status status_error(CURL *c, long code, const struct hop *h,
			      dr_error *err)
{
	curl_off_t ra = 0;
	dr_status st;

	if (code == 404 || code == 410)
		return dr_fail(err, DR_ERR_NOT_FOUND, "output_expired",
			       "the output is gone (HTTP %ld): %s", code,
			       h->shown);
	if (code == 429 || code == 408 || (code >= 500 && code <= 599)) {
		st = dr_fail(
			err,
			code == 429 ? DR_ERR_RATE_LIMITED : DR_ERR_UNAVAILABLE,
			"download_failed", "download failed with HTTP %ld: %s",
			code, h->shown);
		if (err) {
			err->retryable = 1;
			if (curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &ra) ==
				    CURLE_OK &&
			    ra > 0)
				err->retry_after = (double)ra > RETRY_AFTER_MAX
							   ? RETRY_AFTER_MAX
							   : (double)ra;
		}
		return st;
	}
	return dr_fail(err, DR_ERR_PROVIDER, "download_failed",
		       "download failed with HTTP %ld: %s", code, h->shown);
}

/* The Content-Length of the last answer, or -1. (The transfer info does
 * not hold it when curl stopped at the header.) */
static curl_off_t declared_length(CURL *c)
{
	struct curl_header *cl = NULL;
	long long v;
	char *end;

	if (curl_easy_header(c, "Content-Length", 0, CURLH_HEADER, -1, &cl) !=
	    CURLHE_OK)
		return -1;
	errno = 0;
	v = strtoll(cl->value, &end, 10);
	if (errno || end == cl->value || *end || v < 0)
		return -1;
	return (curl_off_t)v;
}

/*
 * Whether the CURLE_OPERATION_TIMEDOUT of the request just made came from
 * curl's low-speed check (CURLOPT_LOW_SPEED_LIMIT/TIME) rather than from
 * the connect timeout or the call's deadline, which curl reports alike:
 * the check was on, the request had been sent (so the connect and TLS
 * set-up were done) and the deadline had not come.
 */
static int ended_by_low_speed(CURL *c, const dr_download_policy *pol,
			      double deadline)
{
	long sent = 0;

	if (pol->low_speed_limit <= 0 || pol->low_speed_time <= 0)
		return 0;
	if (curl_easy_getinfo(c, CURLINFO_REQUEST_SIZE, &sent) != CURLE_OK ||
	    sent <= 0)
		return 0;
	return deadline <= 0 || now_seconds() < deadline - DEADLINE_SLACK;
}

static int is_redirect(long code)
{
	return code == 301 || code == 302 || code == 303 || code == 307 ||
	       code == 308;
}

/*
 * Run one request for `u`. DR_OK with *location set (free it) for a
 * redirect, DR_OK with *location NULL for a 200 written to fd, or an
 * error.
 */
static dr_status fetch(CURL *c, CURLU *u, struct transfer *t,
		       const struct hop *h, const dr_download_policy *pol,
		       double deadline, char *errbuf, char **location,
		       dr_error *err)
{
	struct curl_header *loc = NULL;
	curl_off_t declared = -1;
	CURLcode rc;
	long code = 0;

	*location = NULL;
	t->discarded = 0;
	t->discard_full = 0;
	t->opened = 0;
	t->refused = 0;
	if (deadline > 0) {
		double left = deadline - now_seconds();

		if (left <= 0) {
			dr_status st =
				dr_fail(err, DR_ERR_TIMEOUT, "download_timeout",
					"download timed out (limit %.0f s): %s",
					pol->total_timeout, h->shown);
			if (err)
				err->retryable = 1;
			return st;
		}
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, to_ms(left));
	}
	rc = curl_easy_setopt(c, CURLOPT_CURLU, u);
	if (rc == CURLE_OK) {
		errbuf[0] = '\0';
		rc = curl_easy_perform(c);
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	t->too_slow = rc == CURLE_OPERATION_TIMEDOUT &&
		      ended_by_low_speed(c, pol, deadline);
	if (t->beat_lost)
		return dr_fail(err, DR_ERR_CONFLICT, "lease_lost",
			       "download stopped: the job's lease was lost");
	if (t->write_errno)
		return dr_fail(err, DR_ERR_IO, "write_failed",
			       "cannot write the download: %s",
			       strerror(t->write_errno));
	if (code == 200 && (t->too_large || rc == CURLE_FILESIZE_EXCEEDED)) {
		declared = declared_length(c);
		if (declared > 0)
			return dr_fail(
				err, DR_ERR_TOO_LARGE, "output_too_large",
				"output of %" PRId64 " bytes is over "
				"the limit of %" PRIu64 " bytes: %s",
				(int64_t)declared, pol->max_bytes, h->shown);
		return dr_fail(err, DR_ERR_TOO_LARGE, "output_too_large",
			       "output is over the limit of %" PRIu64
			       " bytes: %s",
			       pol->max_bytes, h->shown);
	}
	/* A too large or too long body of another answer does not matter:
	 * its status decides. */
	if (rc != CURLE_OK && !(code != 200 && code != 0 &&
				(rc == CURLE_FILESIZE_EXCEEDED ||
				 (rc == CURLE_WRITE_ERROR && t->discard_full))))
		return transport_error(rc, t, h, errbuf, err);
	if (code == 200)
		return DR_OK;
	if (is_redirect(code) &&
	    curl_easy_header(c, "Location", 0, CURLH_HEADER, -1, &loc) ==
		    CURLHE_OK &&
	    loc->value[0]) {
		*location = dr_xstrdup(loc->value);
		return DR_OK;
	}
	return status_error(c, code, h, err);
}

dr_status download_url(const char *url, const dr_download_policy *pol, int fd,
		       uint64_t *size, char *content_type, size_t ctsz,
		       dr_error *err)
{
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *headers = NULL, *more;
	struct transfer t;
	struct hop h;
	char *location = NULL, *ct = NULL;
	double deadline = 0;
	CURLU *u = NULL;
	CURLUcode uc;
	CURL *c;
	dr_status st;

	if (size)
		*size = 0;
	if (content_type && ctsz > 0)
		content_type[0] = '\0';
	if (!url || !pol || fd < 0)
		return dr_fail(err, DR_ERR_INVALID, "invalid_argument",
			       "download_url: missing URL, policy or file");
	memset(&h, 0, sizeof(h));
	u = curl_url();
	if (!u)
		dr_die("out of memory");
	uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (uc != CURLUE_OK) {
		st = dr_fail(err, DR_ERR_INVALID, "url_not_allowed",
			     "URL rejected: it cannot be parsed (%s)",
			     curl_url_strerror(uc));
		goto err_url;
	}
	st = check_url(u, pol, &h, err);
	if (st != DR_OK)
		goto err_url;

	c = get_handle(pol->allow_private);
	if (!c) {
		st = dr_fail(err, DR_ERR_INTERNAL, "internal",
			     "libcurl failed to initialise");
		goto err_url;
	}
	memset(&t, 0, sizeof(t));
	t.curl = c;
	t.fd = fd;
	t.allow_private = pol->allow_private;
	t.max_bytes = pol->max_bytes;
	headers = curl_slist_append(NULL, "Accept-Encoding: identity");
	if (!headers)
		dr_die("out of memory");
	more = curl_slist_append(headers, "Accept: */*");
	if (!more)
		dr_die("out of memory");
	headers = more;
	st = set_options(c, pol, &t, headers, errbuf, err);
	if (st != DR_OK)
		goto err_handle;
	t.pol = pol;
	t.began = now_seconds();
	if (pol->sha256_hex) {
		pol->sha256_hex[0] = '\0';
		t.md = EVP_MD_CTX_new();
		if (!t.md || !EVP_DigestInit_ex(t.md, EVP_sha256(), NULL))
			t.md_failed = 1;
	}
	if (pol->beat && pol->beat_every > 0)
		t.beat_at = t.began + pol->beat_every;
	if (pol->mark && pol->mark_after > 0)
		t.mark_at = t.began + pol->mark_after;
	if (t.mark_at > 0 || t.beat_at > 0) {
		if (curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION,
				     on_progress) != CURLE_OK ||
		    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t) != CURLE_OK ||
		    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L) != CURLE_OK) {
			st = dr_fail(err, DR_ERR_INTERNAL, "internal",
				     "libcurl refused the progress callback");
			goto err_handle;
		}
	}
	if (pol->total_timeout > 0)
		deadline = now_seconds() + pol->total_timeout;

	for (;;) {
		st = fetch(c, u, &t, &h, pol, deadline, errbuf, &location, err);
		if (st != DR_OK)
			goto err_handle;
		if (!location)
			break;
		if (h.n >= pol->max_redirects) {
			st = dr_fail(err, DR_ERR_PROVIDER, "download_failed",
				     "too many redirects (more than %d): %s",
				     pol->max_redirects, h.shown);
			goto err_handle;
		}
		/* Relative to the current URL, like a browser would. */
		uc = curl_url_set(u, CURLUPART_URL, location,
				  CURLU_NON_SUPPORT_SCHEME);
		free(location);
		location = NULL;
		h.n++;
		if (uc != CURLUE_OK) {
			st = dr_fail(err, DR_ERR_INVALID, "url_not_allowed",
				     "redirect rejected: its Location cannot "
				     "be parsed (%s) (from %s)",
				     curl_url_strerror(uc), h.shown);
			goto err_handle;
		}
		st = check_url(u, pol, &h, err);
		if (st != DR_OK)
			goto err_handle;
	}

	if (size)
		*size = t.written;
	if (t.md && !t.md_failed) {
		unsigned char d[DR_SHA256_LEN];
		unsigned int n = 0;

		if (EVP_DigestFinal_ex(t.md, d, &n) && n == DR_SHA256_LEN)
			digest_hex(d, DR_SHA256_LEN, pol->sha256_hex);
	}
	if (content_type && ctsz > 0 &&
	    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
		copy_printable(content_type, ctsz, ct, strlen(ct));
	st = DR_OK;
err_handle:
	EVP_MD_CTX_free(t.md);
	/* The handle must not keep pointers into this frame. */
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(c, CURLOPT_CURLU, NULL);
	curl_slist_free_all(headers);
	free(location);
err_url:
	curl_url_cleanup(u);
	return st;
}

/* CURLOPT_WRITEFUNCTION of download_post: keep nothing, at most 64 KiB. */
static size_t discard_body(char *data, size_t size, size_t nmemb, void *p)
{
	struct transfer *t = p;
	size_t n = size * nmemb;

	(void)data;
	t->discarded += n;
	if (t->discarded > DISCARD_MAX) {
		t->discard_full = 1;
		return 0;
	}
	return n;
}

dr_status download_post(const char *url, const dr_download_policy *pol,
			const char *const *headers, const void *body,
			size_t len, long *http_status, char *retry_after,
			size_t n, dr_error *err)
{
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *list = NULL, *more;
	struct transfer t;
	struct hop h;
	CURLU *u;
	CURLUcode uc;
	CURLcode rc;
	CURL *c;
	dr_status st;

	*http_status = 0;
	if (retry_after && n)
		retry_after[0] = '\0';
	memset(&h, 0, sizeof(h));
	u = curl_url();
	if (!u)
		dr_die("out of memory");
	uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (uc != CURLUE_OK) {
		st = dr_fail(err, DR_ERR_INVALID, "url_not_allowed",
			     "URL rejected: it cannot be parsed (%s)",
			     curl_url_strerror(uc));
		goto err_url;
	}
	st = check_url(u, pol, &h, err);
	if (st != DR_OK)
		goto err_url;
	c = get_handle(pol->allow_private);
	if (!c) {
		st = dr_fail(err, DR_ERR_INTERNAL, "internal",
			     "libcurl failed to initialise");
		goto err_url;
	}
	memset(&t, 0, sizeof(t));
	t.curl = c;
	t.fd = -1;
	t.allow_private = pol->allow_private;
	for (size_t i = 0; headers && headers[i]; i++) {
		more = curl_slist_append(list, headers[i]);
		if (!more)
			dr_die("out of memory");
		list = more;
	}
	/* No "Expect: 100-continue" round trip. */
	more = curl_slist_append(list, "Expect:");
	if (!more)
		dr_die("out of memory");
	list = more;
	st = set_options(c, pol, &t, list, errbuf, err);
	if (st != DR_OK)
		goto err_handle;
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	if (pol->total_timeout > 0)
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
				 to_ms(pol->total_timeout));
	curl_easy_setopt(c, CURLOPT_CURLU, u);
	errbuf[0] = '\0';
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http_status);
	if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && t.discard_full))
		st = transport_error(rc, &t, &h, errbuf, err);
	else
		st = DR_OK;
	if (st == DR_OK && retry_after && n) {
		struct curl_header *ra = NULL;

		if (curl_easy_header(c, "Retry-After", 0, CURLH_HEADER, -1,
				     &ra) == CURLHE_OK &&
		    ra && ra->value)
			snprintf(retry_after, n, "%s", ra->value);
	}
err_handle:
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(c, CURLOPT_CURLU, NULL);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
	curl_slist_free_all(list);
err_url:
	curl_url_cleanup(u);
	return st;
}

/* ------------------------------------------------------------------
 * data: URIs
 */

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Buffered writes of decoded bytes. */
struct out {
	int fd;
	size_t n;
	uint64_t total;
	int failed;
	unsigned char buf[DATA_CHUNK];
};

static void out_flush(struct out *o)
{
	if (o->n > 0 && !o->failed && write_all(o->fd, o->buf, o->n) != 0)
		o->failed = errno ? errno : EIO;
	o->n = 0;
}

static void out_byte(struct out *o, unsigned char b)
{
	if (o->n == sizeof(o->buf))
		out_flush(o);
	o->buf[o->n++] = b;
	o->total++;
}

/*
 * data: URIs (RFC 2397). Base64 is the standard alphabet only, strictly:
 * no white space, no percent-escapes, no URL-safe "-_"; padding may be
 * left out, but when present it must be right. Anything else is
 * bad_data_uri, because a URI that is malformed in one way is more likely
 * truncated or tampered with than meant. Without ";base64" the data is
 * percent-decoded ('+' stays '+'); a malformed escape is bad_data_uri.
 * The size is checked from the encoded length before anything is decoded
 * (exactly for base64, a lower bound for percent-encoding, which is then
 * counted exactly), and every character is validated before the first
 * byte is written, so a refused URI leaves fd untouched.
 */
dr_status download_data_uri(const char *uri, uint64_t max_bytes, int fd,
			    uint64_t *size, char *mediatype, size_t mtsz,
			    dr_error *err)
{
	const char *hdr, *comma, *data;
	size_t hlen, dlen, i, body;
	uint64_t decoded;
	struct out *o;
	int base64;

	if (size)
		*size = 0;
	if (mediatype && mtsz > 0)
		mediatype[0] = '\0';
	if (!uri || strncasecmp(uri, "data:", 5) != 0)
		return dr_fail(err, DR_ERR_INVALID, "bad_data_uri",
			       "not a data: URI");
	hdr = uri + 5;
	comma = strchr(hdr, ',');
	if (!comma)
		return dr_fail(err, DR_ERR_INVALID, "bad_data_uri",
			       "data: URI without a comma before its data");
	hlen = (size_t)(comma - hdr);
	base64 = hlen >= 7 && strncasecmp(comma - 7, ";base64", 7) == 0;
	if (base64)
		hlen -= 7;
	if (mediatype && mtsz > 0) {
		if (hlen == 0)
			snprintf(mediatype, mtsz, "%s", DEFAULT_MEDIATYPE);
		else if (hdr[0] == ';') /* parameters only: text/plain */
			snprintf(mediatype, mtsz, "text/plain%.*s", (int)hlen,
				 hdr);
		else
			snprintf(mediatype, mtsz, "%.*s", (int)hlen, hdr);
		copy_printable(mediatype, mtsz, mediatype, mtsz);
	}
	data = comma + 1;
	dlen = strlen(data);

	/* Check the size from the encoded length first, then validate
	 * every character, then write: nothing reaches fd from a URI that
	 * is malformed or too large. */
	if (base64) {
		size_t pad = 0;

		while (pad < 2 && pad < dlen && data[dlen - 1 - pad] == '=')
			pad++;
		body = dlen - pad;
		decoded = (uint64_t)body / 4 * 3 + (body % 4 == 3   ? 2
						    : body % 4 == 2 ? 1
								    : 0);
		if (decoded > max_bytes)
			goto too_large;
		if (body % 4 == 1 || (pad > 0 && (body + pad) % 4 != 0))
			return dr_fail(err, DR_ERR_INVALID, "bad_data_uri",
				       "data: URI has a bad base64 length");
		for (i = 0; i < body; i++)
			if (webhook_b64_value((unsigned char)data[i]) < 0)
				return dr_fail(err, DR_ERR_INVALID,
					       "bad_data_uri",
					       "data: URI has a character that "
					       "is not base64 at offset %zu",
					       i);
	} else {
		body = dlen;
		decoded = (uint64_t)(dlen + 2) / 3; /* at least */
		if (decoded > max_bytes)
			goto too_large;
		decoded = 0;
		for (i = 0; i < dlen; i++, decoded++) {
			if (data[i] != '%')
				continue;
			if (hex_value((unsigned char)data[i + 1]) < 0 ||
			    hex_value((unsigned char)data[i + 2]) < 0)
				return dr_fail(err, DR_ERR_INVALID,
					       "bad_data_uri",
					       "data: URI has a bad percent "
					       "escape at offset %zu",
					       i);
			i += 2;
		}
		if (decoded > max_bytes)
			goto too_large;
	}

	o = dr_xmalloc(sizeof(*o));
	o->fd = fd;
	o->n = 0;
	o->total = 0;
	o->failed = 0;
	if (base64) {
		uint32_t acc = 0;
		int bits = 0;

		for (i = 0; i < body; i++) {
			acc = (acc << 6) | (uint32_t)webhook_b64_value(
						   (unsigned char)data[i]);
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				out_byte(o, (unsigned char)(acc >> bits));
				acc &= (1u << bits) - 1;
			}
		}
	} else {
		for (i = 0; i < body; i++) {
			unsigned char b = (unsigned char)data[i];

			if (b == '%') {
				b = (unsigned char)(hex_value(
							    (unsigned char)
								    data[i + 1])
							    << 4 |
						    hex_value((unsigned char)
								      data[i +
									   2]));
				i += 2;
			}
			out_byte(o, b);
		}
	}
	out_flush(o);
	if (o->failed) {
		int e = o->failed;

		free(o);
		return dr_fail(err, DR_ERR_IO, "write_failed",
			       "cannot write the data: URI: %s", strerror(e));
	}
	if (size)
		*size = o->total;
	free(o);
	return DR_OK;

too_large:
	return dr_fail(err, DR_ERR_TOO_LARGE, "output_too_large",
		       "data: URI holds %" PRIu64 " bytes or more, over the "
		       "limit of %" PRIu64 " bytes",
		       decoded, max_bytes);
}

/* ------------------------------------------------------------------
 * Local files
 */

/* A refused local path, with the path shown printable and truncated. */
static dr_status local_refused(const char *path, const char *why, dr_error *err)
{
	char shown[SHOWN_URL_MAX + 1];

	copy_printable(shown, sizeof(shown), path, strlen(path));
	return dr_fail(err, DR_ERR_INVALID, "local_file_not_allowed",
		       "local file refused: %s: %s", why, shown);
}

/* Whether `name`, a folder right under the adapter's work folder, is job
 * `job_id`'s: the id itself or the id followed by '-'. */
static int job_folder(const char *name, size_t len, const char *job_id)
{
	size_t n = strlen(job_id);

	return n > 0 && len >= n && memcmp(name, job_id, n) == 0 &&
	       (len == n || name[n] == '-');
}

dr_status download_local(const char *path, const char *root, const char *job_id,
			 uint64_t max_bytes, int *fd_out, uint64_t *size,
			 dr_error *err)
{
	char name[NAME_MAX + 1];
	const char *c;
	struct stat sb;
	size_t rlen, depth = 0;
	int dfd, fd;

	*fd_out = -1;
	*size = 0;
	if (!path || !job_id)
		return dr_fail(err, DR_ERR_INVALID, "invalid_argument",
			       "download_local: missing path or job");
	if (!root || root[0] != '/')
		return local_refused(path,
				     "this adapter hands over no local "
				     "files",
				     err);
	rlen = strlen(root);
	if (strncmp(path, root, rlen) != 0 || path[rlen] != '/')
		return local_refused(path, "outside the adapter's work folder",
				     err);
	if (path[strlen(path) - 1] == '/')
		return local_refused(path, "not a regular file", err);
	dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return dr_fail(err, DR_ERR_NOT_FOUND, "output_missing",
			       "the adapter's work folder is gone: %s",
			       strerror(errno));
	/* Walk down one component at a time, never following a symlink:
	 * what is checked is what is opened. */
	for (c = path + rlen + 1;;) {
		const char *end = strchrnul(c, '/');
		size_t k = (size_t)(end - c);
		int last;

		if (k == 0) { /* "//" */
			c = end + 1;
			continue;
		}
		if (k > NAME_MAX || (k == 1 && c[0] == '.') ||
		    (k == 2 && c[0] == '.' && c[1] == '.')) {
			close(dfd);
			return local_refused(path,
					     "a '.', '..' or overlong "
					     "component",
					     err);
		}
		if (depth == 0 && !job_folder(c, k, job_id)) {
			close(dfd);
			return local_refused(path, "not in this job's folder",
					     err);
		}
		memcpy(name, c, k);
		name[k] = '\0';
		last = *end == '\0';
		fd = openat(dfd, name,
			    O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
				    (last ? O_NONBLOCK : O_DIRECTORY));
		if (fd < 0) {
			int e = errno;

			close(dfd);
			if (e == ENOENT)
				return dr_fail(err, DR_ERR_NOT_FOUND,
					       "output_missing",
					       "the local output file is gone");
			if (e == ELOOP || e == ENOTDIR)
				return local_refused(
					path,
					"a symlink or not a folder on the "
					"way",
					err);
			return dr_fail(err, DR_ERR_IO, "io_error",
				       "cannot open the local output: %s",
				       strerror(e));
		}
		close(dfd);
		dfd = fd;
		depth++;
		if (last)
			break;
		c = end + 1;
	}
	/* dfd is now the file itself, unless the path named the job's
	 * folder itself. */
	if (depth < 2 || fstat(dfd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(dfd);
		return local_refused(path, "not a regular file", err);
	}
	/* Regular files ignore O_NONBLOCK; clear it anyway for readers. */
	if (fcntl(dfd, F_SETFL, 0) != 0) {
		close(dfd);
		return dr_fail(err, DR_ERR_IO, "io_error",
			       "cannot use the local output: %s",
			       strerror(errno));
	}
	if ((uint64_t)sb.st_size > max_bytes) {
		close(dfd);
		return dr_fail(err, DR_ERR_TOO_LARGE, "output_too_large",
			       "the output is %llu bytes, over the limit of "
			       "%" PRIu64 " bytes",
			       (unsigned long long)sb.st_size, max_bytes);
	}
	*size = (uint64_t)sb.st_size;
	*fd_out = dfd;
	return DR_OK;
}
