/*
 * test_sniff.c - content type detection from a file's first bytes: magic
 * numbers, ISO BMFF brands, markup and text, the fields of each answer.
 * (Files written by libvips' own savers are sniffed in test_image.c.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "sniff.h"

static void expect_sniff(const void *head, size_t n, const char *mime,
			 const char *kind, int decodable)
{
	dr_sniff s;

	sniff_head(head, n, &s);
	if (strcmp(s.mime, mime) != 0 || strcmp(s.kind, kind) != 0 ||
	    s.decodable != decodable)
		fail_msg("sniff %.*s...: got %s/%s/%d, want %s/%s/%d",
			 (int)(n < 12 ? n : 12), (const char *)head, s.mime,
			 s.kind, s.decodable, mime, kind, decodable);
}

#define SNIFF(lit, mime, kind, dec) \
	expect_sniff(lit, sizeof(lit) - 1, mime, kind, dec)

static void test_sniff_magic(void **state)
{
	(void)state;
	SNIFF("\x89PNG\r\n\x1A\n\0\0\0\rIHDR", "image/png", "image", 1);
	SNIFF("\xFF\xD8\xFF\xE0\0\x10JFIF", "image/jpeg", "image", 1);
	SNIFF("GIF87a\x01\0\x01\0", "image/gif", "image", 1);
	SNIFF("GIF89a\x01\0\x01\0", "image/gif", "image", 1);
	SNIFF("GIF88a\x01\0\x01\0", "application/octet-stream", "file", 0);
	SNIFF("RIFF\x24\0\0\0WEBPVP8 ", "image/webp", "image", 1);
	SNIFF("RIFF\x24\0\0\0WAVEfmt ", "audio/wav", "audio", 0);
	SNIFF("RIFF\x24\0\0\0AVI LIST", "video/x-msvideo", "video", 0);
	SNIFF("RIFF\x24\0\0\0XXXX", "application/octet-stream", "file", 0);
	SNIFF("\0\0\0\x1C" "ftypavif\0\0\0\0avifmif1miaf", "image/avif",
	      "image", 1);
	SNIFF("\0\0\0\x1C" "ftypavis\0\0\0\0avismif1miaf", "image/avif",
	      "image", 1);
	SNIFF("\0\0\0\x1C" "ftypmif1\0\0\0\0mif1avifmiaf", "image/avif",
	      "image", 1);
	SNIFF("\0\0\0\x18" "ftypheic\0\0\0\0mif1heic", "image/heic", "image",
	      1);
	SNIFF("\0\0\0\x18" "ftypheix\0\0\0\0mif1heix", "image/heic", "image",
	      1);
	SNIFF("\0\0\0\x18" "ftypmif1\0\0\0\0mif1heic", "image/heic", "image",
	      1);
	SNIFF("\0\0\0\x18" "ftypmsf1\0\0\0\0msf1iso8", "image/heic", "image",
	      1);
	SNIFF("\0\0\0\x20" "ftypisom\0\0\x02\0isomiso2avc1mp41", "video/mp4",
	      "video", 0);
	SNIFF("\0\0\0\x18" "ftypmp42\0\0\0\0mp42isom", "video/mp4", "video", 0);
	SNIFF("\0\0\0\x14" "ftypqt  \0\0\0\0qt  ", "video/quicktime", "video",
	      0);
	SNIFF("\0\0\0\x18" "ftypM4V \0\0\0\0M4V mp42", "video/mp4", "video", 0);
	SNIFF("\0\0\0\x18" "ftypM4A \0\0\0\0M4A mp42", "audio/mp4", "audio", 0);
	SNIFF("\0\0\0\x18" "ftyp3gp5\0\0\0\0" "3gp5isom", "video/3gpp", "video",
	      0);
	/* Unknown major brand: the compatible ones decide, else nothing. */
	SNIFF("\0\0\0\x18" "ftypXYZW\0\0\0\0XYZWisom", "video/mp4", "video", 0);
	SNIFF("\0\0\0\x14" "ftypXYZW\0\0\0\0XYZW", "application/octet-stream",
	      "file", 0);
	SNIFF("II*\0\x08\0\0\0", "image/tiff", "image", 1);
	SNIFF("MM\0*\0\0\0\x08", "image/tiff", "image", 1);
	SNIFF("II+\0\x08\0\0\0", "image/tiff", "image", 1);
	SNIFF("BM\x36\x30\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0", "image/bmp", "file",
	      0);
	SNIFF("BMW makes cars and motorbikes.\n", "text/plain", "text", 0);
	SNIFF("%PDF-1.7\n%\xE2\xE3\xCF\xD3", "application/pdf", "file", 0);
	SNIFF("PK\x03\x04\x14\0\0\0", "application/zip", "file", 0);
	SNIFF("\x1F\x8B\x08\0\0\0\0\0", "application/gzip", "file", 0);
	SNIFF("\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\x82\x84webm",
	      "video/webm", "video", 0);
	SNIFF("\x1A\x45\xDF\xA3\xA3\x42\x86\x81\x01\x42\x82\x88matroska",
	      "video/x-matroska", "video", 0);
	SNIFF("ID3\x04\0\0\0\0\0\x23", "audio/mpeg", "audio", 0);
	SNIFF("\xFF\xFB\x90\x64\0\0", "audio/mpeg", "audio", 0);
	SNIFF("\xFF\xF3\x48\xC4\0\0", "audio/mpeg", "audio", 0);
	SNIFF("\xFF\xF1\x50\x80\x02\x1F", "audio/aac", "audio", 0);
	SNIFF("\xFF\xFF\xFF\xFF", "application/octet-stream", "file", 0);
	SNIFF("OggS\0\x02\0\0\0\0\0\0\0\0\x01\x1E\x01vorbis", "audio/ogg",
	      "audio", 0);
	SNIFF("OggS\0\x02\0\0\0\0\0\0\0\0\x01\x2A\x80theora", "video/ogg",
	      "video", 0);
	SNIFF("fLaC\0\0\0\x22", "audio/flac", "audio", 0);
}

static void test_sniff_markup_and_text(void **state)
{
	(void)state;
	SNIFF("<svg xmlns=\"http://www.w3.org/2000/svg\"/>", "image/svg+xml",
	      "file", 0);
	SNIFF("\xEF\xBB\xBF  <?xml version=\"1.0\"?>\n<svg>", "image/svg+xml",
	      "file", 0);
	SNIFF("<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\"",
	      "image/svg+xml", "file", 0);
	SNIFF("<?xml version=\"1.0\"?><feed>", "application/xml", "text", 0);
	SNIFF("<!DOCTYPE html>\n<html>", "text/html", "text", 0);
	SNIFF("\n\n  <HTML><body>", "text/html", "text", 0);
	SNIFF("<script>alert(1)</script>", "text/html", "text", 0);
	SNIFF("<p>hello</p>", "text/html", "text", 0);
	SNIFF("<pre>not an html sniff pattern", "text/plain", "text", 0);
	SNIFF("A cat on a mat.\n", "text/plain", "text", 0);
	SNIFF("h\xC3\xA9llo w\xC3\xB6rld \xE2\x82\xAC \xF0\x9F\x98\x80\r\n\t",
	      "text/plain", "text", 0);
	SNIFF("\xEF\xBB\xBFwith a BOM", "text/plain", "text", 0);
	/* A multi-byte sequence cut off by the end of the head. */
	SNIFF("caf\xC3", "text/plain", "text", 0);
	SNIFF("euro \xE2\x82", "text/plain", "text", 0);
	SNIFF("", "text/plain", "text", 0);
	/* Not text: NUL, other controls, DEL, C1, invalid UTF-8. */
	SNIFF("hello\0world", "application/octet-stream", "file", 0);
	SNIFF("bell\x07", "application/octet-stream", "file", 0);
	SNIFF("del\x7F", "application/octet-stream", "file", 0);
	SNIFF("c1 \xC2\x85", "application/octet-stream", "file", 0);
	SNIFF("overlong \xC0\xAF", "application/octet-stream", "file", 0);
	SNIFF("surrogate \xED\xA0\x80", "application/octet-stream", "file", 0);
	SNIFF("bad \xC3(", "application/octet-stream", "file", 0);
	SNIFF("\xF5\x80\x80\x80", "application/octet-stream", "file", 0);
	SNIFF("\x00\x01\x02\x03", "application/octet-stream", "file", 0);
}

static void test_sniff_fields_and_null(void **state)
{
	dr_sniff s;

	(void)state;
	sniff_head((const unsigned char *)"\x89PNG\r\n\x1A\n", 8, &s);
	assert_string_equal(s.ext, "png");
	assert_string_equal(s.format, "png");
	sniff_head((const unsigned char *)"\xFF\xD8\xFF", 3, &s);
	assert_string_equal(s.ext, "jpg");
	assert_string_equal(s.format, "jpeg");
	sniff_head((const unsigned char *)"\x00\x01", 2, &s);
	assert_string_equal(s.ext, "bin");
	assert_string_equal(s.format, "bin");
	sniff_head(NULL, 10, &s); /* nothing: empty, so text */
	assert_string_equal(s.kind, "text");
	/* A truncated magic is not the format. */
	sniff_head((const unsigned char *)"\x89PN", 3, &s);
	assert_false(s.decodable);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sniff_magic),
		cmocka_unit_test(test_sniff_markup_and_text),
		cmocka_unit_test(test_sniff_fields_and_null),
	};

	return cmocka_run_group_tests_name("sniff", tests, NULL, NULL);
}
