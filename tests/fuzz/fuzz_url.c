/*
 * fuzz_url.c - the download URL and address checks of core/download.c,
 * without network: the file is included to reach check_url() and
 * ip_literal(), the checks download_url() runs before it connects.
 *
 * Input: a flags byte (bit 0 allow_http, bit 1 allow_private), then
 * lines: the URL, then allowlist patterns (none: "*"). The URL is parsed
 * by curl as download_url() parses it and checked against the policy; its
 * host, and the raw bytes read as IPv4 and IPv6 addresses, go through the
 * address rule, whose invariants are checked:
 *   - whatever is allowed without allow_private is allowed with it;
 *   - ::ffff:a.b.c.d and ::a.b.c.d are judged as a.b.c.d (see the
 *     contract in download.h; ::a.b.c.d only for a.b.c.d not in 0/8,
 *     which :: and ::1 overlap);
 *   - a URL accepted by check_url() is https (or http when allowed), has
 *     an allowed host, and no refused IP-literal host.
 */
#include "../../core/download.c"

#include "fuzz.h"

#define FUZZ_MAX_INPUT 4096
#define MAX_PATTERNS 8

/* Check the invariants of the address rule for `sa`. */
static void check_address(const struct sockaddr *sa)
{
	int pub = netpolicy_address_allowed(sa, 0);
	int priv = netpolicy_address_allowed(sa, 1);

	FUZZ_CHECK(pub == 0 || pub == 1);
	FUZZ_CHECK(priv == 0 || priv == 1);
	FUZZ_CHECK(!pub || priv);
}

/* a (network order) as itself, IPv4-mapped and IPv4-compatible. */
static void check_ipv4(const unsigned char a[4])
{
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
	int v4pub, v4priv;

	memset(&in, 0, sizeof(in));
	in.sin_family = AF_INET;
	memcpy(&in.sin_addr, a, 4);
	check_address((const struct sockaddr *)&in);
	v4pub = netpolicy_address_allowed((const struct sockaddr *)&in, 0);
	v4priv = netpolicy_address_allowed((const struct sockaddr *)&in, 1);

	memset(&in6, 0, sizeof(in6));
	in6.sin6_family = AF_INET6;
	in6.sin6_addr.s6_addr[10] = 0xff;
	in6.sin6_addr.s6_addr[11] = 0xff;
	memcpy(&in6.sin6_addr.s6_addr[12], a, 4);
	check_address((const struct sockaddr *)&in6);
	FUZZ_CHECK(netpolicy_address_allowed((const struct sockaddr *)&in6, 0) ==
		   v4pub);
	FUZZ_CHECK(netpolicy_address_allowed((const struct sockaddr *)&in6, 1) ==
		   v4priv);
	if (a[0] != 0) {
		in6.sin6_addr.s6_addr[10] = 0;
		in6.sin6_addr.s6_addr[11] = 0;
		check_address((const struct sockaddr *)&in6);
		FUZZ_CHECK(netpolicy_address_allowed(
				   (const struct sockaddr *)&in6, 0) == v4pub);
		FUZZ_CHECK(netpolicy_address_allowed(
				   (const struct sockaddr *)&in6, 1) == v4priv);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *patterns[MAX_PATTERNS + 1];
	dr_download_policy pol;
	struct sockaddr_storage ss;
	struct sockaddr_in6 in6;
	char text[FUZZ_MAX_INPUT + 1], *url, *p, *nl;
	size_t n_patterns = 0;
	struct hop h;
	dr_error err;
	CURLU *u;

	if (size < 1 || size > FUZZ_MAX_INPUT)
		return 0;
	/* Raw bytes as addresses. */
	if (size >= 5)
		check_ipv4(data + 1);
	if (size >= 17) {
		memset(&in6, 0, sizeof(in6));
		in6.sin6_family = AF_INET6;
		memcpy(&in6.sin6_addr, data + 1, 16);
		check_address((const struct sockaddr *)&in6);
	}

	memset(&pol, 0, sizeof(pol));
	pol.allow_http = data[0] & 1;
	pol.allow_private = (data[0] >> 1) & 1;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	url = text;
	p = strchr(text, '\n');
	if (p)
		*p++ = '\0';
	while (p && *p && n_patterns < MAX_PATTERNS) {
		nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		patterns[n_patterns++] = p;
		p = nl ? nl + 1 : NULL;
	}
	if (n_patterns == 0)
		patterns[n_patterns++] = "*";
	patterns[n_patterns] = NULL;
	pol.hosts = patterns;

	(void)netpolicy_host_allowed(url, pol.hosts);
	if (ip_literal(url, 443, &ss))
		check_address((const struct sockaddr *)&ss);

	u = curl_url();
	if (!u)
		abort();
	memset(&h, 0, sizeof(h));
	memset(&err, 0, sizeof(err));
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) ==
	    CURLUE_OK) {
		if (check_url(u, &pol, &h, &err) == DR_OK) {
			char *scheme = NULL, *host = NULL;

			FUZZ_CHECK(curl_url_get(u, CURLUPART_SCHEME, &scheme,
						0) == CURLUE_OK);
			FUZZ_CHECK(strcasecmp(scheme, "https") == 0 ||
				   (pol.allow_http &&
				    strcasecmp(scheme, "http") == 0));
			FUZZ_CHECK(curl_url_get(u, CURLUPART_HOST, &host, 0) ==
				   CURLUE_OK);
			FUZZ_CHECK(netpolicy_host_allowed(host, pol.hosts));
			if (ip_literal(host, 443, &ss))
				FUZZ_CHECK(netpolicy_address_allowed(
					(const struct sockaddr *)&ss,
					pol.allow_private));
			curl_free(scheme);
			curl_free(host);
		} else {
			FUZZ_CHECK(err.message[0] != '\0');
		}
		FUZZ_CHECK(memchr(h.shown, '\0', sizeof(h.shown)) != NULL);
	}
	curl_url_cleanup(u);
	return 0;
}
