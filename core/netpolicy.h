/*
 * netpolicy.h - the rules for connecting to a URL someone else chose: a
 * provider's output URL, a client's callback URL, a plugin's untrusted
 * request.
 *
 * Only https (http when configured), only hosts on an allowlist, and only
 * public addresses (loopback, private and link-local ones when
 * configured; never unspecified, multicast or reserved ones). The rules
 * are data and pure functions, so that the FastCGI app (whose plugins'
 * HTTP client applies them) links them without the downloader.
 *
 * Who may call whom: netpolicy calls only error; download, callback,
 * pipeline and the plugin host's HTTP client call it.
 */
#ifndef DR_NETPOLICY_H
#define DR_NETPOLICY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct dr_download_policy {
	int allow_http;          /* DARKROOM_DOWNLOAD_ALLOW_HTTP=1 */
	int allow_private;       /* DARKROOM_DOWNLOAD_ALLOW_PRIVATE=1 */
	const char *const *hosts; /* NULL-terminated allowlist: "example.com",
				     "*.example.com" (subdomains only), "*"
				     (any host); NULL or empty: no host */
	uint64_t max_bytes;      /* size cap */
	double connect_timeout;  /* seconds */
	double total_timeout;    /* seconds */
	long low_speed_limit;    /* bytes per second ... */
	double low_speed_time;   /* ... for this long, else abort */
	int max_redirects;
	/* With `mark` set: called once, from inside download_url, when the
	 * call has run `mark_after` seconds (so a quick download never calls
	 * it), with the seconds since the call began; the caller may record
	 * that a long download is under way. */
	void (*mark)(void *arg, double elapsed);
	void *mark_arg;
	double mark_after;
	/* With `beat` set: called from inside download_url at most every
	 * `beat_every` seconds while body bytes keep arriving (never while
	 * the transfer is stalled), so the caller can extend a lease during
	 * a long download; a nonzero return ends the download with
	 * DR_ERR_CONFLICT "lease_lost". */
	int (*beat)(void *arg);
	void *beat_arg;
	double beat_every;
	/* When not NULL: 65 bytes that a successful download_url fills with
	 * the lower-case hex SHA-256 of the bytes it wrote to the fd, hashed
	 * as they arrive, so the caller need not read the file again. */
	char *sha256_hex;
} dr_download_policy;

/* 1 when `host` matches the allowlist `hosts` (case-insensitive). */
int netpolicy_host_allowed(const char *host, const char *const *hosts);

/* 1 when connecting to `sa` is allowed: public unicast addresses only,
 * unless allow_private (then loopback and private ranges pass, but never
 * unspecified, multicast or reserved ones). IPv4-mapped and
 * IPv4-compatible IPv6 addresses are judged as their IPv4 address. */
int netpolicy_address_allowed(const struct sockaddr *sa, int allow_private);

/* Fill a policy from the environment over the given defaults: the
 * DARKROOM_DOWNLOAD_ALLOW_PRIVATE / _ALLOW_HTTP / _HOSTS variables.
 * `hosts_buf` receives parsed host storage (freed by
 * netpolicy_free_hosts). */
void netpolicy_env(dr_download_policy *pol, char ***hosts_buf);

/* Free what netpolicy_env() put in `hosts_buf`; NULL is a no-op. */
void netpolicy_free_hosts(char **hosts_buf);

/* 1 when DARKROOM_CALLBACK_ALLOW_PRIVATE is exactly "1": client callbacks
 * may then go to loopback, private and link-local addresses (a setting of
 * their own, apart from the download one). */
int netpolicy_callback_allow_private(void);

/*
 * Whether a URL's host `host` (as curl_url() gives it: an IPv6 literal in
 * brackets) may be accepted before any lookup: 0 for "localhost" (or a
 * name under it) and for an IPv4 or IPv6 literal that
 * netpolicy_address_allowed() refuses, unless allow_private lets
 * loopback and private ones through; 1 otherwise (host names are left to
 * the connect-time check).
 */
int netpolicy_host_literal_allowed(const char *host, int allow_private);

/* Why connecting to `sa` is refused, for messages (static text). */
const char *netpolicy_refusal(const struct sockaddr *sa);

#endif
