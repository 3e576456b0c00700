/*
 * sniff.c - what a file is, from its first bytes (see sniff.h).
 *
 * Magic numbers first (images, video and audio containers, archives,
 * PDF), then ISO BMFF brands (AVIF/HEIC/MP4/MOV/3GP/M4A), MPEG audio
 * frame headers, markup after a BOM and white space (the WHATWG MIME
 * sniffing patterns for HTML, SVG, XML), and last printable UTF-8 (text).
 * Anything else is application/octet-stream. A header or a file name is
 * never consulted: a provider's Content-Type is not evidence.
 */
#include "sniff.h"

#include <stdint.h>
#include <string.h>

enum sniff_type {
	T_BIN,
	T_TEXT,
	T_PNG,
	T_JPEG,
	T_GIF,
	T_WEBP,
	T_AVIF,
	T_HEIC,
	T_TIFF,
	T_BMP,
	T_SVG,
	T_HTML,
	T_XML,
	T_PDF,
	T_ZIP,
	T_GZIP,
	T_MP4,
	T_MOV,
	T_3GP,
	T_WEBM,
	T_MKV,
	T_AVI,
	T_MP3,
	T_AAC,
	T_M4A,
	T_WAV,
	T_OGG,
	T_OGV,
	T_FLAC,
	T_COUNT
};

/* kind, mime, ext, format, decodable. BMP is an image but is not decoded
 * (no hardened loader); SVG never is: it is a program, not pixels. */
static const dr_sniff sniff_types[T_COUNT] = {
	[T_BIN] = { "file", "application/octet-stream", "bin", "bin", 0 },
	[T_TEXT] = { "text", "text/plain", "txt", "text", 0 },
	[T_PNG] = { "image", "image/png", "png", "png", 1 },
	[T_JPEG] = { "image", "image/jpeg", "jpg", "jpeg", 1 },
	[T_GIF] = { "image", "image/gif", "gif", "gif", 1 },
	[T_WEBP] = { "image", "image/webp", "webp", "webp", 1 },
	[T_AVIF] = { "image", "image/avif", "avif", "avif", 1 },
	[T_HEIC] = { "image", "image/heic", "heic", "heic", 1 },
	[T_TIFF] = { "image", "image/tiff", "tiff", "tiff", 1 },
	[T_BMP] = { "file", "image/bmp", "bmp", "bmp", 0 },
	[T_SVG] = { "file", "image/svg+xml", "svg", "svg", 0 },
	[T_HTML] = { "text", "text/html", "html", "html", 0 },
	[T_XML] = { "text", "application/xml", "xml", "xml", 0 },
	[T_PDF] = { "file", "application/pdf", "pdf", "pdf", 0 },
	[T_ZIP] = { "file", "application/zip", "zip", "zip", 0 },
	[T_GZIP] = { "file", "application/gzip", "gz", "gzip", 0 },
	[T_MP4] = { "video", "video/mp4", "mp4", "mp4", 0 },
	[T_MOV] = { "video", "video/quicktime", "mov", "mov", 0 },
	[T_3GP] = { "video", "video/3gpp", "3gp", "3gp", 0 },
	[T_WEBM] = { "video", "video/webm", "webm", "webm", 0 },
	[T_MKV] = { "video", "video/x-matroska", "mkv", "mkv", 0 },
	[T_AVI] = { "video", "video/x-msvideo", "avi", "avi", 0 },
	[T_MP3] = { "audio", "audio/mpeg", "mp3", "mp3", 0 },
	[T_AAC] = { "audio", "audio/aac", "aac", "aac", 0 },
	[T_M4A] = { "audio", "audio/mp4", "m4a", "m4a", 0 },
	[T_WAV] = { "audio", "audio/wav", "wav", "wav", 0 },
	[T_OGG] = { "audio", "audio/ogg", "ogg", "ogg", 0 },
	[T_OGV] = { "video", "video/ogg", "ogv", "ogv", 0 },
	[T_FLAC] = { "audio", "audio/flac", "flac", "flac", 0 },
};

/* Does head[off..] start with the m bytes of s? */
static int at(const unsigned char *head, size_t n, size_t off, const char *s,
	      size_t m)
{
	return n >= off && n - off >= m && memcmp(head + off, s, m) == 0;
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Case-insensitive prefix test of the NUL-terminated s at p[0..n). */
static int at_nocase(const unsigned char *p, size_t n, const char *s)
{
	size_t m = strlen(s);

	if (n < m)
		return 0;
	for (size_t i = 0; i < m; i++)
		if (lower(p[i]) != lower((unsigned char)s[i]))
			return 0;
	return 1;
}

/* Case-insensitive search for s anywhere in p[0..n). */
static int contains_nocase(const unsigned char *p, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (at_nocase(p + i, n - i, s))
			return 1;
	return 0;
}

/* ISO BMFF brands we know. */
static enum sniff_type bmff_brand(const unsigned char *b)
{
	static const struct {
		char brand[5];
		enum sniff_type type;
	} brands[] = {
		{ "avif", T_AVIF }, { "avis", T_AVIF }, { "heic", T_HEIC },
		{ "heix", T_HEIC }, { "heim", T_HEIC }, { "heis", T_HEIC },
		{ "hevc", T_HEIC }, { "hevx", T_HEIC }, { "qt  ", T_MOV },
		{ "M4A ", T_M4A },  { "M4B ", T_M4A },	{ "M4P ", T_M4A },
		{ "3gp4", T_3GP },  { "3gp5", T_3GP },	{ "3gp6", T_3GP },
		{ "3g2a", T_3GP },  { "isom", T_MP4 },	{ "iso2", T_MP4 },
		{ "iso3", T_MP4 },  { "iso4", T_MP4 },	{ "iso5", T_MP4 },
		{ "iso6", T_MP4 },  { "iso8", T_MP4 },	{ "mp41", T_MP4 },
		{ "mp42", T_MP4 },  { "mp71", T_MP4 },	{ "avc1", T_MP4 },
		{ "M4V ", T_MP4 },  { "M4VH", T_MP4 },	{ "M4VP", T_MP4 },
		{ "dash", T_MP4 },  { "f4v ", T_MP4 },	{ "mmp4", T_MP4 },
		{ "MSNV", T_MP4 },  { "NDAS", T_MP4 },	{ "XAVC", T_MP4 },
	};

	for (size_t i = 0; i < sizeof(brands) / sizeof(brands[0]); i++)
		if (memcmp(b, brands[i].brand, 4) == 0)
			return brands[i].type;
	return T_BIN;
}

/*
 * An ISO BMFF file: `ftyp` box with a major brand at 8 and compatible
 * brands from 16 to the end of the box. The major brand decides, except
 * the generic HEIF brands mif1/msf1, which are AVIF when an AV1 brand is
 * compatible and HEIC otherwise. An unknown major brand takes the first
 * known compatible one (AVIF first).
 */
static enum sniff_type sniff_bmff(const unsigned char *head, size_t n)
{
	uint32_t size = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 |
			(uint32_t)head[2] << 8 | head[3];
	size_t end = size < n ? size : n;
	enum sniff_type major = bmff_brand(head + 8);
	enum sniff_type found = T_BIN;
	int generic_heif =
		at(head, n, 8, "mif1", 4) || at(head, n, 8, "msf1", 4);

	if (major != T_BIN)
		return major;
	for (size_t off = 16; off + 4 <= end; off += 4) {
		enum sniff_type t = bmff_brand(head + off);

		if (t == T_AVIF)
			return T_AVIF;
		if (found == T_BIN && t != T_BIN)
			found = t;
	}
	if (generic_heif)
		return T_HEIC;
	return found;
}

/* An MPEG audio frame header (MP3, or ADTS AAC when the layer is 0). */
static enum sniff_type sniff_mpeg_audio(const unsigned char *h, size_t n)
{
	if (n < 4 || h[0] != 0xFF || (h[1] & 0xE0) != 0xE0)
		return T_BIN;
	if ((h[1] & 0x16) == 0x10) /* MPEG-4/2 ADTS: layer 00 */
		return (h[2] >> 2 & 0x0F) < 13 ? T_AAC : T_BIN;
	if ((h[1] >> 3 & 3) == 1 || (h[1] >> 1 & 3) == 0) /* reserved */
		return T_BIN;
	if ((h[2] >> 4) == 0 || (h[2] >> 4) == 15 || (h[2] >> 2 & 3) == 3)
		return T_BIN;
	return T_MP3;
}

/*
 * Printable UTF-8: no control characters but tab, newline, form feed and
 * carriage return, no C1 controls, no overlong forms or surrogates. A
 * sequence cut off by the end of the head is accepted (the head is usually
 * the first 64 bytes of a longer file).
 */
static int is_text(const unsigned char *p, size_t n)
{
	size_t i = 0;

	if (at(p, n, 0, "\xEF\xBB\xBF", 3))
		i = 3;
	while (i < n) {
		unsigned c = p[i];
		size_t len;
		uint32_t cp, min;

		if (c < 0x80) {
			if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' &&
			     c != '\f') ||
			    c == 0x7F)
				return 0;
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			len = 2, cp = c & 0x1F, min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			len = 3, cp = c & 0x0F, min = 0x800;
		} else if (c >= 0xF0 && c <= 0xF4) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		for (size_t k = 1; k < len; k++) {
			if (i + k >= n)
				return 1;
			if ((p[i + k] & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF) ||
		    (cp >= 0x80 && cp <= 0x9F))
			return 0;
		i += len;
	}
	return 1;
}

/*
 * Markup, after a BOM and white space: the HTML patterns of the WHATWG MIME
 * sniffing standard (a tag name followed by space or '>'), SVG, and XML
 * (an XML declaration; SVG when "<svg" follows within the head).
 */
static enum sniff_type sniff_markup(const unsigned char *p, size_t n)
{
	static const char *const html[] = {
		"<!doctype html",
		"<html",
		"<head",
		"<script",
		"<iframe",
		"<h1",
		"<div",
		"<font",
		"<table",
		"<a",
		"<style",
		"<title",
		"<b",
		"<body",
		"<br",
		"<p",
		"<!--",
	};
	size_t i = 0;

	if (at(p, n, 0, "\xEF\xBB\xBF", 3))
		i = 3;
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' ||
			 p[i] == '\r' || p[i] == '\f'))
		i++;
	p += i, n -= i;
	if (n == 0 || p[0] != '<')
		return T_BIN;
	if (at_nocase(p, n, "<svg") || at_nocase(p, n, "<!doctype svg"))
		return T_SVG;
	if (at_nocase(p, n, "<?xml"))
		return contains_nocase(p, n, "<svg") ? T_SVG : T_XML;
	for (size_t k = 0; k < sizeof(html) / sizeof(html[0]); k++) {
		size_t m = strlen(html[k]);

		if (at_nocase(p, n, html[k]) && n > m &&
		    (p[m] == ' ' || p[m] == '>'))
			return T_HTML;
	}
	return T_BIN;
}

static enum sniff_type sniff_type(const unsigned char *h, size_t n)
{
	enum sniff_type t;

	if (at(h, n, 0, "\x89PNG\r\n\x1A\n", 8))
		return T_PNG;
	if (at(h, n, 0, "\xFF\xD8\xFF", 3))
		return T_JPEG;
	if (at(h, n, 0, "GIF87a", 6) || at(h, n, 0, "GIF89a", 6))
		return T_GIF;
	if (at(h, n, 0, "RIFF", 4)) {
		if (at(h, n, 8, "WEBP", 4))
			return T_WEBP;
		if (at(h, n, 8, "WAVE", 4))
			return T_WAV;
		if (at(h, n, 8, "AVI ", 4))
			return T_AVI;
		return T_BIN;
	}
	if (at(h, n, 4, "ftyp", 4) && n >= 12)
		return sniff_bmff(h, n);
	if (at(h, n, 0, "II*\0", 4) || at(h, n, 0, "MM\0*", 4) ||
	    at(h, n, 0, "II+\0", 4) || at(h, n, 0, "MM\0+", 4))
		return T_TIFF;
	/* "BM" and a known DIB header size, so text starting "BM" is text. */
	if (at(h, n, 0, "BM", 2) && n >= 18 && h[15] == 0 && h[16] == 0 &&
	    h[17] == 0 &&
	    (h[14] == 12 || h[14] == 40 || h[14] == 52 || h[14] == 56 ||
	     h[14] == 64 || h[14] == 108 || h[14] == 124))
		return T_BMP;
	if (at(h, n, 0, "%PDF-", 5))
		return T_PDF;
	if (at(h, n, 0, "PK\x03\x04", 4) || at(h, n, 0, "PK\x05\x06", 4))
		return T_ZIP;
	if (at(h, n, 0, "\x1F\x8B", 2))
		return T_GZIP;
	if (at(h, n, 0, "\x1A\x45\xDF\xA3", 4))
		return contains_nocase(h, n, "matroska") ? T_MKV : T_WEBM;
	if (at(h, n, 0, "OggS", 4))
		return contains_nocase(h, n, "\x80theora") ? T_OGV : T_OGG;
	if (at(h, n, 0, "fLaC", 4))
		return T_FLAC;
	if (at(h, n, 0, "ID3", 3))
		return T_MP3;
	if ((t = sniff_mpeg_audio(h, n)) != T_BIN)
		return t;
	if ((t = sniff_markup(h, n)) != T_BIN)
		return t;
	if (is_text(h, n))
		return T_TEXT;
	return T_BIN;
}

void sniff_head(const unsigned char *head, size_t n, dr_sniff *out)
{
	static const unsigned char none[1];

	*out = sniff_types[sniff_type(head ? head : none, head ? n : 0)];
}
