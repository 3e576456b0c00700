/*
 * netpolicy.c - which hosts and addresses darkroom may connect to for a
 * URL someone else chose (see netpolicy.h).
 *
 * Address classes follow IANA's special-purpose registries (IPv4 and
 * IPv6); IPv4-mapped and IPv4-compatible IPv6 addresses are judged as
 * their IPv4 address. Nothing here opens a connection: download.c and the
 * plugin host's HTTP client apply these rules at connect time.
 */
#include "netpolicy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"

/* ------------------------------------------------------------------
 * Addresses
 */

enum addr_class {
	ADDR_PUBLIC,  /* always allowed */
	ADDR_PRIVATE, /* loopback, private, link-local: allowed on request */
	ADDR_NEVER    /* unspecified, multicast, broadcast, reserved */
};

/* Class of an IPv4 address in host byte order. */
static enum addr_class classify_ipv4(uint32_t a)
{
	static const struct {
		uint32_t net;
		int bits;
		enum addr_class cls;
	} ranges[] = {
		/* clang-format off */
		{0x00000000u, 8, ADDR_NEVER},   /* 0/8 "this network" */
		{0x0a000000u, 8, ADDR_PRIVATE}, /* 10/8 */
		{0x64400000u, 10, ADDR_PRIVATE}, /* 100.64/10 shared (CGNAT) */
		{0x7f000000u, 8, ADDR_PRIVATE}, /* 127/8 loopback */
		{0xa9fe0000u, 16, ADDR_PRIVATE}, /* 169.254/16 link-local */
		{0xac100000u, 12, ADDR_PRIVATE}, /* 172.16/12 */
		{0xc0000000u, 24, ADDR_NEVER},  /* 192.0.0/24 IETF protocol */
		{0xc0000200u, 24, ADDR_NEVER},  /* 192.0.2/24 TEST-NET-1 */
		{0xc0586300u, 24, ADDR_NEVER},  /* 192.88.99/24 6to4 relay */
		{0xc0a80000u, 16, ADDR_PRIVATE}, /* 192.168/16 */
		{0xc6120000u, 15, ADDR_NEVER},  /* 198.18/15 benchmarking */
		{0xc6336400u, 24, ADDR_NEVER},  /* 198.51.100/24 TEST-NET-2 */
		{0xcb007100u, 24, ADDR_NEVER},  /* 203.0.113/24 TEST-NET-3 */
		{0xe0000000u, 4, ADDR_NEVER},   /* 224/4 multicast */
		{0xf0000000u, 4, ADDR_NEVER},   /* 240/4 reserved, broadcast */
		/* clang-format on */
	};
	size_t i;

	for (i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		uint32_t mask = 0xffffffffu << (32 - ranges[i].bits);

		if ((a & mask) == ranges[i].net)
			return ranges[i].cls;
	}
	return ADDR_PUBLIC;
}

/* 1 when the first `bits` bits of `a` equal those of `prefix`. */
static int in_prefix6(const unsigned char *a, const unsigned char *prefix,
		      int bits)
{
	int whole = bits / 8, rest = bits % 8;

	if (memcmp(a, prefix, (size_t)whole) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((a[whole] ^ prefix[whole]) & (0xff << (8 - rest)) & 0xff) == 0;
}

static enum addr_class classify_ipv6(const unsigned char *a)
{
	static const struct {
		unsigned char net[16];
		int bits;
		enum addr_class cls;
	} ranges[] = {
		/* clang-format off */
		{{0x00, 0x64, 0xff, 0x9b}, 96, ADDR_NEVER}, /* 64:ff9b::/96 */
		{{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48, ADDR_NEVER},
		{{0x01, 0x00}, 64, ADDR_NEVER},             /* 100::/64 */
		{{0x20, 0x01, 0x00, 0x00}, 32, ADDR_NEVER}, /* 2001::/32 */
		{{0x20, 0x01, 0x0d, 0xb8}, 32, ADDR_NEVER}, /* 2001:db8::/32 */
		{{0x20, 0x02}, 16, ADDR_NEVER},             /* 2002::/16 */
		{{0xfc}, 7, ADDR_PRIVATE},                  /* fc00::/7 */
		{{0xfe, 0x80}, 10, ADDR_PRIVATE},           /* fe80::/10 */
		{{0xfe, 0xc0}, 10, ADDR_NEVER},             /* fec0::/10 */
		{{0xff}, 8, ADDR_NEVER},                    /* ff00::/8 */
		/* clang-format on */
	};
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0,    0,
						  0, 0, 0, 0, 0xff, 0xff };
	static const unsigned char zero[16];
	size_t i;

	if (memcmp(a, zero, 15) == 0) /* :: and ::1 before ::/96 */
		return a[15] == 1 ? ADDR_PRIVATE : ADDR_NEVER;
	if (memcmp(a, mapped, 12) == 0 || memcmp(a, zero, 12) == 0)
		return classify_ipv4((uint32_t)a[12] << 24 |
				     (uint32_t)a[13] << 16 |
				     (uint32_t)a[14] << 8 | a[15]);
	for (i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		if (in_prefix6(a, ranges[i].net, ranges[i].bits))
			return ranges[i].cls;
	return ADDR_PUBLIC;
}

/* Class of any socket address; other families are never allowed. */
static enum addr_class classify(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		return classify_ipv4(ntohl(in->sin_addr.s_addr));
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 =
			(const struct sockaddr_in6 *)sa;

		return classify_ipv6(in6->sin6_addr.s6_addr);
	}
	return ADDR_NEVER;
}

int netpolicy_address_allowed(const struct sockaddr *sa, int allow_private)
{
	enum addr_class cls;

	if (!sa)
		return 0;
	cls = classify(sa);
	return cls == ADDR_PUBLIC || (cls == ADDR_PRIVATE && allow_private);
}

const char *netpolicy_refusal(const struct sockaddr *sa)
{
	switch (classify(sa)) {
	case ADDR_PRIVATE:
		return "a loopback, private or link-local address";
	case ADDR_NEVER:
		return "an unspecified, multicast, broadcast or reserved "
		       "address";
	default:
		return "not allowed"; /* only the unit test's check */
	}
}

/* ------------------------------------------------------------------
 * Hosts
 */

/* Length of `s` without one pair of IPv6 brackets and one trailing dot;
 * *start receives where the name begins. */
static size_t host_span(const char *s, const char **start)
{
	size_t n = strlen(s);

	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	if (n > 0 && s[n - 1] == '.')
		n--;
	*start = s;
	return n;
}

int netpolicy_host_allowed(const char *host, const char *const *hosts)
{
	const char *h;
	size_t hn, i;

	if (!host || !hosts)
		return 0;
	hn = host_span(host, &h);
	if (hn == 0)
		return 0;
	for (i = 0; hosts[i]; i++) {
		const char *p;
		size_t pn;

		if (strcmp(hosts[i], "*") == 0)
			return 1;
		pn = host_span(hosts[i], &p);
		if (pn > 2 && p[0] == '*' && p[1] == '.') {
			/* "*.example.com": a strict subdomain, so the host
			 * is longer than ".example.com" and ends with it. */
			if (hn > pn - 1 &&
			    strncasecmp(h + hn - (pn - 1), p + 1, pn - 1) == 0)
				return 1;
			continue;
		}
		if (pn == hn && pn > 0 && strncasecmp(h, p, hn) == 0)
			return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------
 * Policy from the environment
 */

/* The allowlist "a.com, *.b.com" as one malloc'd block: the pointer
 * array, then the strings. NULL when it names no host. */
static char **parse_hosts(const char *v)
{
	size_t len = strlen(v), max = 1, n = 0, i;
	char **list, *s, *item;

	for (i = 0; i < len; i++)
		if (v[i] == ',')
			max++;
	list = dr_xmalloc((max + 1) * sizeof(char *) + len + 1);
	s = (char *)(list + max + 1);
	memcpy(s, v, len + 1);
	item = s;
	for (;;) {
		char *end = strchr(item, ','), *last;

		if (end)
			*end = '\0';
		while (*item == ' ' || *item == '\t')
			item++;
		last = item + strlen(item);
		while (last > item && (last[-1] == ' ' || last[-1] == '\t'))
			*--last = '\0';
		if (*item)
			list[n++] = item;
		if (!end)
			break;
		item = end + 1;
	}
	list[n] = NULL;
	if (n == 0) {
		free(list);
		return NULL;
	}
	return list;
}

void netpolicy_env(dr_download_policy *pol, char ***hosts_buf)
{
	const char *v;

	if (hosts_buf)
		*hosts_buf = NULL;
	if (!pol)
		return;
	/* Exactly "1" turns a relaxation on; anything else set turns it
	 * off, so a typo fails closed. */
	v = getenv("DARKROOM_DOWNLOAD_ALLOW_PRIVATE");
	if (v)
		pol->allow_private = strcmp(v, "1") == 0;
	v = getenv("DARKROOM_DOWNLOAD_ALLOW_HTTP");
	if (v)
		pol->allow_http = strcmp(v, "1") == 0;
	/* An empty list (or only commas) keeps the adapter's: an empty
	 * variable usually means "not set". */
	v = getenv("DARKROOM_DOWNLOAD_HOSTS");
	if (v && hosts_buf) {
		char **list = parse_hosts(v);

		if (list) {
			*hosts_buf = list;
			pol->hosts = (const char *const *)list;
		}
	}
}

void netpolicy_free_hosts(char **hosts_buf)
{
	free(hosts_buf);
}

int netpolicy_callback_allow_private(void)
{
	const char *v = getenv("DARKROOM_CALLBACK_ALLOW_PRIVATE");

	return v && strcmp(v, "1") == 0;
}

/* 1 when `host` (no brackets, no trailing dot) is "localhost" or a name
 * under it: RFC 6761 reserves them for loopback. */
static int is_localhost(const char *host, size_t len)
{
	static const char lh[] = "localhost";
	size_t n = sizeof(lh) - 1;

	if (len < n || strncasecmp(host + len - n, lh, n) != 0)
		return 0;
	return len == n || host[len - n - 1] == '.';
}

int netpolicy_host_literal_allowed(const char *host, int allow_private)
{
	char buf[256];
	size_t len = host ? strlen(host) : 0;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	if (len && host[0] == '[' && host[len - 1] == ']') {
		host++;
		len -= 2;
	}
	while (len && host[len - 1] == '.')
		len--;
	if (len == 0 || len >= sizeof(buf))
		return len != 0; /* too long for an address: a name */
	memcpy(buf, host, len);
	buf[len] = '\0';
	if (is_localhost(buf, len))
		return allow_private;
	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	/* inet_aton takes the old spellings (2130706433, 0x7f.1, 127.1)
	 * that resolvers accept too. */
	if (inet_pton(AF_INET, buf, &sin.sin_addr) == 1 ||
	    inet_aton(buf, &sin.sin_addr) != 0) {
		sin.sin_family = AF_INET;
		return netpolicy_address_allowed((struct sockaddr *)&sin,
						 allow_private);
	}
	if (inet_pton(AF_INET6, buf, &sin6.sin6_addr) == 1) {
		sin6.sin6_family = AF_INET6;
		return netpolicy_address_allowed((struct sockaddr *)&sin6,
						 allow_private);
	}
	return 1; /* a host name: checked at connect time */
}
