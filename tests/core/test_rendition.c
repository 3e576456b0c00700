/*
 * test_rendition.c - a rendition stored: the preset hash (pinned, so rows
 * stored by earlier versions stay current), the key, and what reaches a
 * sink (a recording mock): headers, metadata, the size shortcut, errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "digest.h"
#include "rendition.h"

/* What the mock sink saw and holds. */
static struct {
	int puts, stats;
	char key[DR_KEY_MAX];
	char content_type[64], cache_control[64], sha[DR_SHA256_HEX_LEN + 1];
	char meta[2][2][64];
	size_t n_meta;
	uint64_t size;
	uint64_t have; /* size of the object under any key, 0: none */
	dr_status put_status;
} sink;

static dr_status mock_put(void *state, const char *key, const dr_source *src,
			  const dr_object_meta *meta, dr_error *err)
{
	(void)state;
	sink.puts++;
	snprintf(sink.key, sizeof(sink.key), "%s", key);
	snprintf(sink.content_type, sizeof(sink.content_type), "%s",
		 meta->content_type);
	snprintf(sink.cache_control, sizeof(sink.cache_control), "%s",
		 meta->cache_control);
	snprintf(sink.sha, sizeof(sink.sha), "%s",
		 meta->sha256_hex ? meta->sha256_hex : "");
	sink.n_meta = meta->n_meta;
	for (size_t i = 0; i < meta->n_meta && i < 2; i++) {
		snprintf(sink.meta[i][0], 64, "%s", meta->meta_names[i]);
		snprintf(sink.meta[i][1], 64, "%s", meta->meta_values[i]);
	}
	sink.size = src->size;
	if (sink.put_status != DR_OK)
		return dr_fail(err, sink.put_status, "sink_unavailable",
			       "mock put failed");
	return DR_OK;
}

static dr_status mock_url(void *state, const char *key, char *buf,
			  size_t bufsz)
{
	(void)state;
	return (size_t)snprintf(buf, bufsz, "https://cdn.example/%s", key) <
			       bufsz
		       ? DR_OK
		       : DR_ERR_TOO_LARGE;
}

static dr_status mock_stat(void *state, const char *key, uint64_t *size,
			   dr_error *err)
{
	(void)state;
	(void)key;
	sink.stats++;
	if (!sink.have)
		return dr_fail(err, DR_ERR_NOT_FOUND, "not_found", "absent");
	*size = sink.have;
	return DR_OK;
}

static const dr_sink_ops ops = {
	.put = mock_put, .public_url = mock_url, .stat = mock_stat};
static const dr_plugin desc = {.name = "mock", .sink = &ops};
static const dr_loaded_plugin loaded = {.desc = &desc};
static struct dr_instance inst = {.name = "mock", .plugin = &loaded};
static const dr_store_dest dest = {&inst, "j_123", "acme/flux"};

static const dr_preset thumb = {"thumb", 256, 256, DR_FIT_INSIDE,
				DR_FORMAT_WEBP, 80};
#define SHA "ab12000000000000000000000000000000000000000000000000000000000000"
/* sha256("r1:256:256:1:1:80")[:8]: the renderer version and settings. */
#define TAG "18f58125"
#define KEY "ab/" SHA "/thumb." TAG ".webp"
static const char sha[] = SHA;
static const char bytes[] = "RIFF....WEBPVP8 rendition bytes";

static dr_rendition rend(void)
{
	dr_rendition r = {&thumb, (void *)bytes, sizeof(bytes), 256, 192,
			  "image/webp", "webp"};

	return r;
}

static int reset(void **state)
{
	(void)state;
	memset(&sink, 0, sizeof(sink));
	return 0;
}

static void test_preset_hash_pinned(void **state)
{
	dr_preset other = thumb;
	char h[17], h2[17];

	(void)state;
	/* sha256("256:256:1:1:80")[:16]: the hash rows already hold. */
	rendition_preset_hash(&thumb, h);
	assert_string_equal(h, "757ef12e47c5fe1b");
	other.quality = 81;
	rendition_preset_hash(&other, h2);
	assert_string_not_equal(h, h2);
	other = thumb;
	other.name = "renamed"; /* the name is not a setting */
	rendition_preset_hash(&other, h2);
	assert_string_equal(h, h2);
}

static void test_key(void **state)
{
	char key[DR_KEY_MAX], name[DR_KEY_MAX];
	dr_preset long_name = thumb;
	dr_error err;

	(void)state;
	assert_int_equal(rendition_key(sha, &thumb, "webp", key, &err), DR_OK);
	assert_int_equal(strlen(sha), DR_SHA256_HEX_LEN);
	assert_string_equal(key, KEY);
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	long_name.name = name;
	dr_error_clear(&err);
	assert_int_equal(rendition_key(sha, &long_name, "webp", key, &err),
			 DR_ERR_TOO_LARGE);
	assert_string_equal(err.code, "key_too_long");
}

/* Every setting that changes the bytes changes the key; the name does
 * not change the tag. */
static void test_key_tag_follows_settings(void **state)
{
	dr_preset p[5];
	char tag[DR_TAG_LEN + 1], other[DR_TAG_LEN + 1];
	char k1[DR_KEY_MAX], k2[DR_KEY_MAX];
	dr_error err;

	(void)state;
	rendition_preset_tag(&thumb, tag);
	assert_string_equal(tag, TAG);
	for (int i = 0; i < 5; i++)
		p[i] = thumb;
	p[0].width = 255;
	p[1].height = 255;
	p[2].fit = DR_FIT_COVER;
	p[3].format = DR_FORMAT_JPEG;
	p[4].quality = 79;
	for (int i = 0; i < 5; i++) {
		rendition_preset_tag(&p[i], other);
		assert_string_not_equal(tag, other);
		assert_int_equal(rendition_key(sha, &p[i], "webp", k2, &err),
				 DR_OK);
		assert_int_equal(rendition_key(sha, &thumb, "webp", k1, &err),
				 DR_OK);
		assert_string_not_equal(k1, k2);
	}
	p[0] = thumb;
	p[0].name = "renamed";
	rendition_preset_tag(&p[0], other);
	assert_string_equal(tag, other);
}

static void test_store_puts_with_headers(void **state)
{
	dr_rendition r = rend();
	dr_rendition_row row;
	char want_sha[DR_SHA256_HEX_LEN + 1];
	dr_error err;

	(void)state;
	sink.have = sizeof(bytes); /* ignored: check is 0 */
	assert_int_equal(rendition_store(&dest, sha, &r, 0, &row, &err),
			 DR_OK);
	assert_int_equal(sink.puts, 1);
	assert_int_equal(sink.stats, 0);
	assert_true(row.uploaded);
	assert_string_equal(sink.key, row.key);
	assert_string_equal(row.key, KEY);
	assert_string_equal(row.url, "https://cdn.example/" KEY);
	assert_string_equal(sink.content_type, "image/webp");
	assert_string_equal(sink.cache_control, DR_CACHE_CONTROL);
	digest_sha256_hex(bytes, sizeof(bytes), want_sha);
	assert_string_equal(sink.sha, want_sha);
	assert_int_equal(sink.n_meta, 2);
	assert_string_equal(sink.meta[0][0], "job-id");
	assert_string_equal(sink.meta[0][1], "j_123");
	assert_string_equal(sink.meta[1][0], "model");
	assert_string_equal(sink.meta[1][1], "acme/flux");
	assert_int_equal(sink.size, sizeof(bytes));
	assert_ptr_equal(row.preset, &thumb);
	assert_string_equal(row.mime, "image/webp");
	assert_int_equal(row.width, 256);
	assert_int_equal(row.height, 192);
	assert_int_equal(row.bytes, sizeof(bytes));
	assert_string_equal(row.preset_hash, "757ef12e47c5fe1b");
}

static void test_store_check_skips_same_size(void **state)
{
	dr_rendition r = rend();
	dr_rendition_row row;
	dr_error err;

	(void)state;
	sink.have = sizeof(bytes);
	assert_int_equal(rendition_store(&dest, sha, &r, 1, &row, &err),
			 DR_OK);
	assert_int_equal(sink.stats, 1);
	assert_int_equal(sink.puts, 0);
	assert_false(row.uploaded);
	assert_string_equal(row.url, "https://cdn.example/" KEY);
	/* Another size, or nothing there: put. */
	sink.have = sizeof(bytes) + 1;
	assert_int_equal(rendition_store(&dest, sha, &r, 1, &row, &err),
			 DR_OK);
	assert_int_equal(sink.puts, 1);
	assert_true(row.uploaded);
	sink.have = 0;
	assert_int_equal(rendition_store(&dest, sha, &r, 1, &row, &err),
			 DR_OK);
	assert_int_equal(sink.puts, 2);
}

static void test_store_put_failure(void **state)
{
	dr_rendition r = rend();
	dr_rendition_row row;
	dr_error err;

	(void)state;
	sink.put_status = DR_ERR_UNAVAILABLE;
	dr_error_clear(&err);
	assert_int_equal(rendition_store(&dest, sha, &r, 0, &row, &err),
			 DR_ERR_UNAVAILABLE);
	assert_string_equal(err.code, "sink_unavailable");
	assert_false(row.uploaded);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_preset_hash_pinned),
		cmocka_unit_test(test_key),
		cmocka_unit_test(test_key_tag_follows_settings),
		cmocka_unit_test_setup(test_store_puts_with_headers, reset),
		cmocka_unit_test_setup(test_store_check_skips_same_size, reset),
		cmocka_unit_test_setup(test_store_put_failure, reset),
	};
	return cmocka_run_group_tests_name("rendition", tests, NULL, NULL);
}
