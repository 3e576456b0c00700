/*
 * test_image.c - image processing through libvips: renditions,
 * orientation, colour, limits checked before decoding, corrupt and hostile
 * input, real files of every decodable type sniffed, and the image hashes
 * of decoded images. Every case that runs image_process() runs
 * image_process_fd() on the same bytes in a file too (run()), which must
 * answer the same. Sniffing itself is tested in test_sniff.c, the hash
 * arithmetic in test_imagehash.c.
 *
 * Includes image.c to reach its statics (the AVIF probe). Test images are
 * made here with libvips itself, so the test needs no files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/image.c"

/* ------------------------------------------------------------- helpers */

static const dr_preset thumb = { "thumb", 256, 256, DR_FIT_INSIDE,
				 DR_FORMAT_WEBP, 80 };
static const dr_preset card = { "card", 1280, 720, DR_FIT_COVER,
				DR_FORMAT_WEBP, 82 };
static const dr_preset png_box = { "png", 512, 512, DR_FIT_INSIDE,
				   DR_FORMAT_PNG, 90 };
static const dr_preset jpeg_box = { "jpeg", 512, 512, DR_FIT_INSIDE,
				    DR_FORMAT_JPEG, 85 };
static const dr_preset avif_box = { "avif", 320, 320, DR_FIT_INSIDE,
				    DR_FORMAT_AVIF, 50 };

static const dr_image_limits roomy = { 100000000, 64 << 20, 100 };

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static uint32_t lcg_next(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s;
}

/* A w x h sRGB scene: Perlin noise per band, fixed seeds. */
static VipsImage *scene(int w, int h, int seed)
{
	VipsImage *band[3] = { NULL, NULL, NULL }, *joined = NULL, *out = NULL;

	for (int i = 0; i < 3; i++) {
		VipsImage *p = NULL;

		assert_int_equal(vips_perlin(&p, w, h, "cell_size", 48, "seed",
					     seed * 3 + i, NULL),
				 0);
		assert_int_equal(vips_linear1(p, &band[i], 120, 128, "uchar",
					      TRUE, NULL),
				 0);
		g_object_unref(p);
	}
	assert_int_equal(vips_bandjoin(band, &joined, 3, NULL), 0);
	assert_int_equal(vips_copy(joined, &out, "interpretation",
				   VIPS_INTERPRETATION_sRGB, NULL),
			 0);
	for (int i = 0; i < 3; i++)
		g_object_unref(band[i]);
	g_object_unref(joined);
	return out;
}

/* A fast w x h sRGB gradient (x in red, y in green). */
static VipsImage *gradient(int w, int h)
{
	VipsImage *xy = NULL, *x = NULL, *y = NULL, *xs = NULL, *ys = NULL;
	VipsImage *b = NULL, *parts[3], *joined = NULL, *out = NULL;

	assert_int_equal(vips_xyz(&xy, w, h, NULL), 0);
	assert_int_equal(vips_extract_band(xy, &x, 0, NULL), 0);
	assert_int_equal(vips_extract_band(xy, &y, 1, NULL), 0);
	assert_int_equal(vips_linear1(x, &xs, 255.0 / w, 0, "uchar", TRUE,
				      NULL),
			 0);
	assert_int_equal(vips_linear1(y, &ys, 255.0 / h, 0, "uchar", TRUE,
				      NULL),
			 0);
	assert_int_equal(vips_linear1(xs, &b, -0.5, 200, "uchar", TRUE, NULL),
			 0);
	parts[0] = xs, parts[1] = ys, parts[2] = b;
	assert_int_equal(vips_bandjoin(parts, &joined, 3, NULL), 0);
	assert_int_equal(vips_copy(joined, &out, "interpretation",
				   VIPS_INTERPRETATION_sRGB, NULL),
			 0);
	g_object_unref(xy), g_object_unref(x), g_object_unref(y);
	g_object_unref(xs), g_object_unref(ys), g_object_unref(b);
	g_object_unref(joined);
	return out;
}

/* A solid w x h image of `bands` bands, each pixel `v`. */
static VipsImage *solid(int w, int h, int bands, const double *v,
			VipsInterpretation interp)
{
	VipsImage *black = NULL, *lin = NULL, *out = NULL;
	double a[4] = { 1, 1, 1, 1 };

	assert_int_equal(vips_black(&black, w, h, "bands", bands, NULL), 0);
	assert_int_equal(vips_linear(black, &lin, a, v, bands, "uchar", TRUE,
				     NULL),
			 0);
	assert_int_equal(vips_copy(lin, &out, "interpretation", interp, NULL),
			 0);
	g_object_unref(black);
	g_object_unref(lin);
	return out;
}

/* Encode with libvips, e.g. suffix ".png" or ".jpg[Q=90]". g_free it. */
static void *encode(VipsImage *im, const char *suffix, size_t *len)
{
	void *buf = NULL;

	assert_int_equal(vips_image_write_to_buffer(im, suffix, &buf, len,
						    NULL),
			 0);
	return buf;
}

/* Load a rendition back (the loaders of its format are allowed). */
static VipsImage *reload(const dr_rendition *r)
{
	VipsImage *im = vips_image_new_from_buffer(r->data, r->len, "", NULL);

	assert_non_null(im);
	return im;
}

/*
 * image_process_fd() of a temporary file holding buf[0..len) must answer
 * exactly as image_process() did: `want` and err's code, or the same
 * metadata and the same rendition bytes.
 */
static void expect_same_from_fd(const void *buf, size_t len,
				const dr_image_limits *lim,
				const dr_preset *const *ps, size_t n,
				dr_status want, const dr_image_info *info,
				const dr_rendition *out, const dr_error *err)
{
	char path[] = "/tmp/test_image_fd_XXXXXX";
	int fd = mkstemp(path);
	dr_rendition out2[16];
	dr_image_info info2;
	dr_error err2;
	dr_status st;

	assert_true(fd >= 0);
	assert_true(n <= 16);
	unlink(path);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	st = image_process_fd(fd, lim, ps, n, &info2, out2, &err2);
	close(fd);
	if (st != want)
		fail_msg("from a file: status %d (%s), from memory %d", st,
			 st == DR_OK ? "" : err2.message, want);
	if (st != DR_OK) {
		assert_string_equal(err2.code, err->code);
		return;
	}
	assert_memory_equal(&info2, info, sizeof(info2));
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(out2[i].len, out[i].len);
		assert_memory_equal(out2[i].data, out[i].data, out[i].len);
		assert_int_equal(out2[i].width, out[i].width);
		assert_int_equal(out2[i].height, out[i].height);
		assert_ptr_equal(out2[i].preset, out[i].preset);
	}
	for (size_t i = 0; i < n; i++)
		image_rendition_free(&out2[i]);
}

/* image_process(), and the same input through image_process_fd(). */
static dr_status run(const void *buf, size_t len, const dr_image_limits *lim,
		     const dr_preset *const *ps, size_t n, dr_image_info *info,
		     dr_rendition *out, dr_error *err)
{
	dr_status st = image_process(buf, len, lim, ps, n, info, out, err);

	if (buf)
		expect_same_from_fd(buf, len, lim, ps, n, st, info, out, err);
	return st;
}

static void free_all(dr_rendition *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		image_rendition_free(&out[i]);
}

static int hamming(const char *a, const char *b)
{
	uint64_t x = strtoull(a, NULL, 16) ^ strtoull(b, NULL, 16);
	int d = 0;

	for (; x; x &= x - 1)
		d++;
	return d;
}

/* ------------------------------------------------------------- sniffing */

/* Real files from libvips' own savers sniff as what they are. */
static void test_sniff_real_files(void **state)
{
	static const struct {
		const char *suffix, *mime;
	} cases[] = {
		{ ".png", "image/png" },   { ".jpg", "image/jpeg" },
		{ ".webp", "image/webp" }, { ".gif", "image/gif" },
		{ ".tif", "image/tiff" },  { ".avif", "image/avif" },
		{ ".heic", "image/heic" },
	};
	VipsImage *im = scene(64, 48, 1);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		void *buf;
		dr_sniff s;

		if (strcmp(cases[i].suffix, ".heic") == 0) {
			if (vips_heifsave_buffer(im, &buf, &len, "compression",
						 VIPS_FOREIGN_HEIF_COMPRESSION_HEVC,
						 NULL)) {
				vips_error_clear();
				continue; /* no HEVC encoder here */
			}
		} else {
			buf = encode(im, cases[i].suffix, &len);
		}
		sniff_head(buf, len < 64 ? len : 64, &s);
		assert_string_equal(s.mime, cases[i].mime);
		assert_true(s.decodable);
		g_free(buf);
	}
	g_object_unref(im);
}

/* ----------------------------------------------------------- processing */

static void test_init_idempotent_and_hardened(void **state)
{
	static const char svg[] = "<svg xmlns=\"http://www.w3.org/2000/svg\" "
				  "width=\"10\" height=\"10\"/>";
	static const char ppm[] = "P6\n2 2\n255\n0123456789AB";
	VipsImage *im = NULL;

	(void)state;
	assert_int_equal(image_init("again"), DR_OK);
	/* Loaders outside the six are blocked, even when asked for. */
	assert_int_not_equal(vips_svgload_buffer((void *)svg, sizeof(svg) - 1,
						 &im, NULL),
			     0);
	assert_null(im);
	vips_error_clear();
	assert_null(vips_image_new_from_buffer(ppm, sizeof(ppm) - 1, "",
					       NULL));
	vips_error_clear();
	/* The six stay open. */
	for (size_t i = 0; i < sizeof(allowed_loaders) / sizeof(*allowed_loaders);
	     i++)
		assert_true(g_type_from_name(allowed_loaders[i]) != 0);
}

static void test_large_jpeg(void **state)
{
	VipsImage *src = gradient(4000, 3000), *tagged = NULL;
	const dr_preset *ps[] = { &thumb, &card };
	dr_rendition out[2];
	dr_image_info info;
	dr_error err;
	size_t len;
	void *jpg;

	(void)state;
	/* EXIF, an XMP-ish comment: all must be gone from the output. */
	assert_int_equal(vips_copy(src, &tagged, NULL), 0);
	vips_image_set_string(tagged, "exif-ifd0-Artist", "someone");
	jpg = encode(tagged, ".jpg[Q=90]", &len);
	assert_int_equal(run(jpg, len, &roomy, ps, 2, &info, out, &err),
			 DR_OK);
	assert_int_equal(info.width, 4000);
	assert_int_equal(info.height, 3000);
	assert_string_equal(info.format, "jpeg");
	assert_int_equal(strlen(info.blurhash), 28);
	assert_int_equal(info.blurhash[0], 'L');
	assert_int_equal(strlen(info.dominant_color), 7);
	assert_int_equal(info.dominant_color[0], '#');
	assert_int_equal(strlen(info.phash), 16);

	assert_ptr_equal(out[0].preset, &thumb);
	assert_int_equal(out[0].width, 256);
	assert_int_equal(out[0].height, 192);
	assert_string_equal(out[0].mime, "image/webp");
	assert_string_equal(out[0].ext, "webp");
	assert_ptr_equal(out[1].preset, &card);
	assert_int_equal(out[1].width, 1280);
	assert_int_equal(out[1].height, 720);
	assert_string_equal(out[1].mime, "image/webp");
	for (int i = 0; i < 2; i++) {
		VipsImage *back = reload(&out[i]);
		dr_sniff s;

		sniff_head(out[i].data, 64, &s);
		assert_string_equal(s.mime, "image/webp");
		assert_int_equal(vips_image_get_width(back), out[i].width);
		assert_int_equal(vips_image_get_height(back), out[i].height);
		assert_int_equal(vips_image_get_bands(back), 3);
		assert_int_equal(vips_image_get_typeof(back, "exif-data"), 0);
		assert_int_equal(vips_image_get_typeof(back, "xmp-data"), 0);
		assert_int_equal(
			vips_image_get_typeof(back, VIPS_META_ICC_NAME), 0);
		g_object_unref(back);
	}
	free_all(out, 2);
	assert_null(out[0].data);
	g_free(jpg);
	g_object_unref(tagged);
	g_object_unref(src);
}

/* EXIF orientation 6 (rotate 90): output and info are upright. */
static void test_orientation(void **state)
{
	VipsImage *src = scene(400, 300, 2), *tagged = NULL;
	const dr_preset *ps[] = { &thumb };
	dr_rendition out[1];
	dr_image_info info;
	dr_error err;
	size_t len;
	void *jpg;

	(void)state;
	assert_int_equal(vips_copy(src, &tagged, NULL), 0);
	vips_image_set_int(tagged, VIPS_META_ORIENTATION, 6);
	jpg = encode(tagged, ".jpg", &len);
	assert_int_equal(run(jpg, len, &roomy, ps, 1, &info, out, &err),
			 DR_OK);
	assert_int_equal(info.width, 300);
	assert_int_equal(info.height, 400);
	assert_int_equal(out[0].width, 192);
	assert_int_equal(out[0].height, 256);
	free_all(out, 1);
	g_free(jpg);
	g_object_unref(tagged);
	g_object_unref(src);
}

/* Never enlarged; a cover box larger than the image keeps its aspect. */
static void test_small_image_not_enlarged(void **state)
{
	VipsImage *src = scene(100, 100, 3);
	const dr_preset *ps[] = { &thumb, &card };
	dr_rendition out[2];
	dr_image_info info;
	dr_error err;
	size_t len;
	void *png = encode(src, ".png", &len);

	(void)state;
	assert_int_equal(run(png, len, &roomy, ps, 2, &info, out, &err),
			 DR_OK);
	assert_int_equal(out[0].width, 100);
	assert_int_equal(out[0].height, 100);
	assert_int_equal(out[1].width, 100);
	assert_int_equal(out[1].height, 56);
	free_all(out, 2);
	g_free(png);

	/* Wider than the card box but not as tall: 2000x600 -> 1067x600. */
	g_object_unref(src);
	src = scene(2000, 600, 4);
	png = encode(src, ".png[compression=1]", &len);
	assert_int_equal(run(png, len, &roomy, ps + 1, 1, &info, out, &err),
			 DR_OK);
	assert_int_equal(out[0].width, 1067);
	assert_int_equal(out[0].height, 600);
	free_all(out, 1);
	g_free(png);
	g_object_unref(src);
}

/* One-pixel strips: every box and the metadata still come out. */
static void test_extreme_aspect(void **state)
{
	static const int sizes[][2] = { { 5000, 1 }, { 1, 5000 }, { 1, 1 } };
	const dr_preset *ps[] = { &thumb, &card };

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(*sizes); i++) {
		VipsImage *src = gradient(sizes[i][0], sizes[i][1]);
		dr_rendition out[2];
		dr_image_info info;
		dr_error err;
		size_t len;
		void *png = encode(src, ".png", &len);

		if (run(png, len, &roomy, ps, 2, &info, out, &err) != DR_OK)
			fail_msg("%dx%d: %s", sizes[i][0], sizes[i][1],
				 err.message);
		assert_true(out[0].width >= 1 && out[0].width <= 256);
		assert_true(out[0].height >= 1 && out[0].height <= 256);
		assert_true(out[1].width >= 1 && out[1].width <= 1280);
		assert_true(out[1].height >= 1 && out[1].height <= 720);
		assert_int_equal(strlen(info.blurhash), 28);
		assert_int_equal(strlen(info.phash), 16);
		free_all(out, 2);
		g_free(png);
		g_object_unref(src);
	}
}

/* Output is 8-bit sRGB whatever the input: grey, 16-bit, CMYK. */
static void check_srgb8(const void *buf, size_t len, int want_bands)
{
	const dr_preset *ps[] = { &png_box, &jpeg_box };
	dr_rendition out[2];
	dr_image_info info;
	dr_error err;

	assert_int_equal(run(buf, len, &roomy, ps, 2, &info, out, &err),
			 DR_OK);
	for (int i = 0; i < 2; i++) {
		VipsImage *back = reload(&out[i]);

		assert_int_equal(vips_image_get_format(back),
				 VIPS_FORMAT_UCHAR);
		assert_int_equal(vips_image_get_bands(back),
				 i == 0 ? want_bands : 3);
		assert_int_equal(vips_image_get_interpretation(back),
				 VIPS_INTERPRETATION_sRGB);
		g_object_unref(back);
	}
	assert_string_equal(out[0].mime, "image/png");
	assert_string_equal(out[0].ext, "png");
	assert_string_equal(out[1].mime, "image/jpeg");
	assert_string_equal(out[1].ext, "jpg");
	free_all(out, 2);
}

static void test_colour_spaces(void **state)
{
	VipsImage *rgb = scene(300, 200, 5), *grey = NULL, *rgb16 = NULL;
	VipsImage *tmp = NULL, *cmyk = NULL, *black = NULL;
	size_t len;
	void *buf;

	(void)state;
	assert_int_equal(vips_colourspace(rgb, &grey, VIPS_INTERPRETATION_B_W,
					  NULL),
			 0);
	buf = encode(grey, ".png", &len);
	check_srgb8(buf, len, 3);
	g_free(buf);
	buf = encode(grey, ".jpg", &len);
	check_srgb8(buf, len, 3);
	g_free(buf);

	assert_int_equal(vips_colourspace(rgb, &rgb16,
					  VIPS_INTERPRETATION_RGB16, NULL),
			 0);
	buf = encode(rgb16, ".png", &len);
	check_srgb8(buf, len, 3);
	g_free(buf);

	/* CMYK JPEG without a profile (libvips' fallback profile). */
	assert_int_equal(vips_black(&black, 200, 100, "bands", 4, NULL), 0);
	assert_int_equal(vips_linear1(black, &tmp, 1, 60, "uchar", TRUE,
				      NULL),
			 0);
	assert_int_equal(vips_copy(tmp, &cmyk, "interpretation",
				   VIPS_INTERPRETATION_CMYK, NULL),
			 0);
	buf = encode(cmyk, ".jpg", &len);
	check_srgb8(buf, len, 3);
	g_free(buf);

	g_object_unref(black), g_object_unref(tmp), g_object_unref(cmyk);
	g_object_unref(rgb16), g_object_unref(grey), g_object_unref(rgb);
}

/* An embedded Display P3 profile is converted, not ignored. */
static void test_icc_profile(void **state)
{
	static const double red[3] = { 255, 0, 0 };
	VipsImage *src = solid(64, 64, 3, red, VIPS_INTERPRETATION_sRGB);
	VipsImage *p3 = NULL;
	const dr_preset *ps[] = { &png_box };
	dr_rendition out[1];
	dr_image_info info;
	dr_error err;
	size_t len;
	void *png;

	(void)state;
	/* sRGB red in Display P3 numbers (about 234, 51, 35) with the P3
	 * profile attached: honouring the profile gives red back; ignoring
	 * it would keep the P3 numbers. The profile is gone afterwards. */
	if (vips_icc_transform(src, &p3, "p3", "input_profile", "srgb",
			       NULL)) {
		vips_error_clear();
		skip();
	}
	png = encode(p3, ".png", &len);
	assert_int_equal(run(png, len, &roomy, ps, 1, &info, out, &err),
			 DR_OK);
	{
		VipsImage *back = reload(&out[0]);
		double *px;
		int n;

		assert_int_equal(vips_image_get_typeof(back,
						       VIPS_META_ICC_NAME),
				 0);
		assert_int_equal(vips_getpoint(back, &px, &n, 10, 10, NULL),
				 0);
		assert_int_equal(n, 3);
		assert_true(px[0] >= 250 && px[1] <= 8 && px[2] <= 8);
		g_free(px);
		g_object_unref(back);
	}
	free_all(out, 1);
	g_free(png);
	g_object_unref(p3);
	g_object_unref(src);
}

static void test_alpha(void **state)
{
	static const double v[4] = { 10, 200, 30, 0 };
	VipsImage *src = solid(300, 200, 4, v, VIPS_INTERPRETATION_sRGB);
	const dr_preset *ps[] = { &thumb, &jpeg_box };
	dr_rendition out[2];
	dr_image_info info;
	dr_error err;
	size_t len;
	void *png = encode(src, ".png", &len);
	VipsImage *back;
	double *px;
	int n;

	(void)state;
	assert_int_equal(run(png, len, &roomy, ps, 2, &info, out, &err),
			 DR_OK);
	back = reload(&out[0]); /* webp keeps alpha */
	assert_int_equal(vips_image_get_bands(back), 4);
	assert_int_equal(vips_getpoint(back, &px, &n, 5, 5, NULL), 0);
	assert_int_equal(n, 4);
	assert_true(px[3] < 1);
	g_free(px);
	g_object_unref(back);
	back = reload(&out[1]); /* jpeg: flattened over white */
	assert_int_equal(vips_image_get_bands(back), 3);
	assert_int_equal(vips_getpoint(back, &px, &n, 5, 5, NULL), 0);
	assert_true(px[0] > 245 && px[1] > 245 && px[2] > 245);
	g_free(px);
	g_object_unref(back);
	/* All pixels transparent: the dominant colour is white. */
	assert_string_equal(info.dominant_color, "#ffffff");
	free_all(out, 2);
	g_free(png);
	g_object_unref(src);
}

static void test_formats(void **state)
{
	VipsImage *src = scene(640, 480, 6);
	const dr_preset *ps[] = { &jpeg_box, &png_box, &avif_box };
	dr_rendition out[3];
	dr_image_info info;
	dr_error err;
	size_t len;
	void *webp = encode(src, ".webp", &len);
	static const char *const mimes[] = { "image/jpeg", "image/png",
					     "image/avif" };

	(void)state;
	if (!avif_available())
		skip();
	assert_int_equal(run(webp, len, &roomy, ps, 3, &info, out, &err),
			 DR_OK);
	assert_string_equal(info.format, "webp");
	for (int i = 0; i < 3; i++) {
		VipsImage *back = reload(&out[i]);
		dr_sniff s;

		sniff_head(out[i].data, 64, &s);
		assert_string_equal(s.mime, mimes[i]);
		assert_string_equal(out[i].mime, mimes[i]);
		assert_int_equal(vips_image_get_width(back), out[i].width);
		assert_int_equal(vips_image_get_height(back), out[i].height);
		assert_int_equal(vips_image_get_typeof(back, "exif-data"), 0);
		assert_int_equal(vips_image_get_typeof(back, "xmp-data"), 0);
		assert_int_equal(
			vips_image_get_typeof(back, VIPS_META_ICC_NAME), 0);
		if (i == 0) {
			int multiscan = 1;

			/* Baseline, not progressive. */
			assert_int_equal(vips_image_get_int(back,
							    "jpeg-multiscan",
							    &multiscan),
					 0);
			assert_int_equal(multiscan, 0);
		}
		g_object_unref(back);
	}
	assert_int_equal(out[0].width, 512);
	assert_int_equal(out[0].height, 384);
	assert_int_equal(out[2].width, 320);
	assert_int_equal(out[2].height, 240);
	assert_string_equal(out[2].ext, "avif");
	free_all(out, 3);
	g_free(webp);
	g_object_unref(src);
}

/* Every decodable type goes through: GIF, TIFF, AVIF, HEIC as input. */
static void test_input_types(void **state)
{
	static const char *const suffixes[] = { ".gif", ".tif", ".avif",
						".png", ".jpg", ".webp" };
	VipsImage *src = scene(120, 90, 7);
	const dr_preset *ps[] = { &thumb };

	(void)state;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(*suffixes); i++) {
		dr_rendition out[1];
		dr_image_info info;
		dr_error err;
		size_t len;
		void *buf = encode(src, suffixes[i], &len);

		if (run(buf, len, &roomy, ps, 1, &info, out, &err) != DR_OK)
			fail_msg("%s: %s", suffixes[i], err.message);
		assert_int_equal(info.width, 120);
		assert_int_equal(info.height, 90);
		assert_int_equal(out[0].width, 120);
		free_all(out, 1);
		g_free(buf);
	}
	{
		dr_rendition out[1];
		dr_image_info info;
		dr_error err;
		size_t len;
		void *buf;

		if (vips_heifsave_buffer(src, &buf, &len, "compression",
					 VIPS_FOREIGN_HEIF_COMPRESSION_HEVC,
					 NULL) == 0) {
			assert_int_equal(run(buf, len, &roomy, ps, 1, &info,
					     out, &err),
					 DR_OK);
			assert_string_equal(info.format, "heic");
			free_all(out, 1);
			g_free(buf);
		}
		vips_error_clear();
	}
	g_object_unref(src);
}

/* ------------------------------------------------------------ limits */

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;

	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
	}
	return c ^ 0xFFFFFFFFu;
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}

/* A PNG chunk at p: length, type, data, CRC. Returns its size. */
static size_t chunk(unsigned char *p, const char *type,
		    const unsigned char *data, uint32_t n)
{
	put32(p, n);
	memcpy(p + 4, type, 4);
	if (n)
		memcpy(p + 8, data, n);
	put32(p + 8 + n, crc32_of(p + 4, 4 + n));
	return 12 + n;
}

/* 100000 x 100000 RGB declared, a few bytes of pixel data: a bomb. */
static void test_png_bomb(void **state)
{
	unsigned char png[128], ihdr[13] = { 0 };
	static const unsigned char idat[] = { 0x78, 0x9C, 0x63, 0x00, 0x00 };
	const dr_preset *ps[] = { &thumb, &card };
	dr_rendition out[2];
	dr_image_info info;
	dr_error err;
	size_t n = 8;
	double t0;

	(void)state;
	memcpy(png, "\x89PNG\r\n\x1A\n", 8);
	put32(ihdr, 100000);
	put32(ihdr + 4, 100000);
	ihdr[8] = 8, ihdr[9] = 2; /* 8-bit RGB */
	n += chunk(png + n, "IHDR", ihdr, 13);
	n += chunk(png + n, "IDAT", idat, sizeof(idat));
	n += chunk(png + n, "IEND", NULL, 0);

	t0 = now();
	assert_int_equal(run(png, n, &roomy, ps, 2, &info, out, &err),
			 DR_ERR_TOO_LARGE);
	assert_true(now() - t0 < 0.5);
	assert_string_equal(err.code, "image_too_large");
	assert_null(out[0].data);
	assert_null(out[1].data);
	/* Under a limit that lets it through, decoding the pixels fails:
	 * so too_large above came from the header alone. */
	{
		dr_image_limits huge = { UINT64_MAX, 1 << 20, 10 };

		assert_int_equal(run(png, n, &huge, ps, 1, &info, out, &err),
				 DR_ERR_INVALID);
		assert_string_equal(err.code, "image_corrupt");
	}
}

/* A real JPEG whose SOF claims 60000 x 60000. */
static void test_jpeg_bomb(void **state)
{
	VipsImage *src = scene(16, 16, 8);
	const dr_preset *ps[] = { &thumb };
	dr_rendition out[1];
	dr_image_info info;
	dr_error err;
	size_t len;
	unsigned char *jpg = encode(src, ".jpg", &len);
	int patched = 0;

	(void)state;
	for (size_t i = 2; i + 9 < len; i++)
		if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) {
			jpg[i + 5] = 60000 >> 8, jpg[i + 6] = 60000 & 0xFF;
			jpg[i + 7] = 60000 >> 8, jpg[i + 8] = 60000 & 0xFF;
			patched = 1;
			break;
		}
	assert_true(patched);
	assert_int_equal(run(jpg, len, &roomy, ps, 1, &info, out, &err),
			 DR_ERR_TOO_LARGE);
	assert_string_equal(err.code, "image_too_large");
	g_free(jpg);
	g_object_unref(src);
}

/* Progressive JPEGs count three times their pixels. */
static void test_progressive_jpeg_limit(void **state)
{
	VipsImage *src = scene(1000, 1000, 9);
	const dr_preset *ps[] = { &thumb };
	dr_image_limits lim = { 2500000, 64 << 20, 10 };
	dr_rendition out[1];
	dr_image_info info;
	dr_error err;
	size_t blen, plen;
	void *base = encode(src, ".jpg", &blen);
	void *prog = encode(src, ".jpg[interlace]", &plen);

	(void)state;
	assert_int_equal(run(base, blen, &lim, ps, 1, &info, out, &err),
			 DR_OK);
	free_all(out, 1);
	assert_int_equal(run(prog, plen, &lim, ps, 1, &info, out, &err),
			 DR_ERR_TOO_LARGE);
	assert_non_null(strstr(err.message, "progressive"));
	lim.max_pixels = 3000000;
	assert_int_equal(run(prog, plen, &lim, ps, 1, &info, out, &err),
			 DR_OK);
	free_all(out, 1);
	g_free(base);
	g_free(prog);
	g_object_unref(src);
}

static void test_byte_limit(void **state)
{
	VipsImage *src = scene(64, 64, 10);
	const dr_preset *ps[] = { &thumb };
	dr_image_limits lim = { 100000000, 100, 10 };
	dr_rendition out[1];
	dr_image_info info;
	dr_error err;
	size_t len;
	void *png = encode(src, ".png", &len);

	(void)state;
	assert_true(len > 100);
	assert_int_equal(run(png, len, &lim, ps, 1, &info, out, &err),
			 DR_ERR_TOO_LARGE);
	assert_string_equal(err.code, "image_too_large");
	g_free(png);
	g_object_unref(src);
}

/* An animated GIF: pages over the limit are refused from the header;
 * under it, renditions use the first frame only. */
static void test_animated_gif(void **state)
{
	VipsImage *strip = scene(40, 400, 11), *paged = NULL;
	const dr_preset *ps[] = { &thumb };
	dr_image_limits lim = { 100000000, 64 << 20, 5 };
	dr_rendition out[1];
	dr_image_info info;
	dr_error err;
	size_t len;
	void *gif;

	(void)state;
	assert_int_equal(vips_copy(strip, &paged, NULL), 0);
	vips_image_set_int(paged, VIPS_META_PAGE_HEIGHT, 40);
	gif = encode(paged, ".gif", &len);
	assert_int_equal(run(gif, len, &lim, ps, 1, &info, out, &err),
			 DR_ERR_TOO_LARGE);
	assert_non_null(strstr(err.message, "10 pages"));
	lim.max_pages = 10;
	assert_int_equal(run(gif, len, &lim, ps, 1, &info, out, &err), DR_OK);
	assert_int_equal(info.width, 40);
	assert_int_equal(info.height, 40);
	assert_int_equal(out[0].width, 40);
	assert_int_equal(out[0].height, 40);
	free_all(out, 1);
	/* Pixels count every page: 40 * 40 * 10 = 16000. */
	lim.max_pixels = 15999;
	assert_int_equal(run(gif, len, &lim, ps, 1, &info, out, &err),
			 DR_ERR_TOO_LARGE);
	g_free(gif);
	g_object_unref(paged);
	g_object_unref(strip);
}

/* 10001 pages: vips_image_get_n_pages() answers 1 from 10000 on, so the
 * raw field must be read. (libnsgif stops counting GIF frames at 4097;
 * a multi-page TIFF has no such cap.) */
static void test_many_pages(void **state)
{
	static const double grey[3] = { 90, 90, 90 };
	VipsImage *strip = solid(2, 10001, 3, grey, VIPS_INTERPRETATION_sRGB);
	const dr_preset *ps[] = { &thumb };
	dr_image_limits lim = { 100000000, 64 << 20, 100 };
	dr_rendition out[1];
	dr_image_info info;
	dr_error err;
	size_t len;
	void *tif = NULL;

	(void)state;
	assert_int_equal(vips_tiffsave_buffer(strip, &tif, &len, "page_height",
					      1, NULL),
			 0);
	assert_int_equal(run(tif, len, &lim, ps, 1, &info, out, &err),
			 DR_ERR_TOO_LARGE);
	if (!strstr(err.message, "10001 pages"))
		fail_msg("%s", err.message);
	g_free(tif);
	g_object_unref(strip);
}

/* ------------------------------------------------------- hostile input */

static void test_truncated(void **state)
{
	static const char *const suffixes[] = { ".png", ".jpg", ".webp",
						".gif" };
	VipsImage *src = scene(300, 200, 12);
	const dr_preset *ps[] = { &thumb, &card };

	(void)state;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(*suffixes); i++) {
		dr_rendition out[2];
		dr_image_info info;
		dr_error err;
		size_t len;
		void *buf = encode(src, suffixes[i], &len);
		dr_status st = run(buf, len / 2, &roomy, ps, 2, &info, out,
				   &err);

		if (st != DR_ERR_INVALID)
			fail_msg("truncated %s: %d %s", suffixes[i], st,
				 err.message);
		assert_string_equal(err.code, "image_corrupt");
		assert_true(err.message[0] != '\0');
		assert_null(strchr(err.message, '\n'));
		assert_null(out[0].data);
		assert_null(out[1].data);
		assert_int_equal(info.width, 0);
		/* libvips' error buffer is left clean. */
		assert_string_equal(vips_error_buffer(), "");
		g_free(buf);
	}
	g_object_unref(src);
}

static void test_unsupported(void **state)
{
	static const char svg[] = "<svg xmlns=\"http://www.w3.org/2000/svg\" "
				  "width=\"100\" height=\"100\"><rect "
				  "width=\"100\" height=\"100\"/></svg>";
	static const char bmp[] = "BM\x36\x30\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0"
				  "\x10\0\0\0\x10\0\0\0\x01\0\x18\0";
	const dr_preset *ps[] = { &thumb };
	dr_rendition out[1];
	dr_image_info info;
	dr_error err;

	(void)state;
	assert_int_equal(run(svg, sizeof(svg) - 1, &roomy, ps, 1, &info, out,
			     &err),
			 DR_ERR_UNSUPPORTED);
	assert_string_equal(err.code, "unsupported_type");
	assert_int_equal(run(bmp, sizeof(bmp) - 1, &roomy, ps, 1, &info, out,
			     &err),
			 DR_ERR_UNSUPPORTED);
	assert_int_equal(run("hello", 5, &roomy, ps, 1, &info, out, &err),
			 DR_ERR_UNSUPPORTED);
	assert_int_equal(run("", 0, &roomy, ps, 1, &info, out, &err),
			 DR_ERR_UNSUPPORTED);
}

static void test_bad_arguments(void **state)
{
	dr_preset bad = thumb;
	const dr_preset *ps[] = { &bad };
	dr_rendition out[1];
	dr_image_info info;
	dr_error err;

	(void)state;
	assert_int_equal(run(NULL, 0, &roomy, ps, 1, &info, out, &err),
			 DR_ERR_INVALID);
	assert_int_equal(run("x", 1, NULL, ps, 1, &info, out, &err),
			 DR_ERR_INVALID);
	bad.format = 0;
	assert_int_equal(run("\x89PNG\r\n\x1A\n", 8, &roomy, ps, 1, &info, out,
			     &err),
			 DR_ERR_INVALID);
	bad = thumb, bad.quality = 0;
	assert_int_equal(run("\x89PNG\r\n\x1A\n", 8, &roomy, ps, 1, &info, out,
			     &err),
			 DR_ERR_INVALID);
	image_rendition_free(NULL);
}

/* image_process_fd() reads regular files only. */
static void test_fd_not_a_file(void **state)
{
	const dr_preset *ps[] = { &thumb };
	dr_rendition out[1];
	dr_image_info info;
	dr_error err;
	int p[2];

	(void)state;
	assert_int_equal(image_process_fd(-1, &roomy, ps, 1, &info, out, &err),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "invalid_argument");
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "\x89PNG\r\n\x1A\n", 8), 8);
	assert_int_equal(image_process_fd(p[0], &roomy, ps, 1, &info, out,
					  &err),
			 DR_ERR_INVALID);
	assert_string_equal(err.code, "invalid_argument");
	assert_null(out[0].data);
	close(p[0]);
	close(p[1]);
}

/* AVIF presets fail cleanly when the encoder is missing. */
static void test_avif_unavailable(void **state)
{
	VipsImage *src = scene(64, 64, 13);
	const dr_preset *ps[] = { &thumb, &avif_box };
	dr_rendition out[2];
	dr_image_info info;
	dr_error err;
	size_t len;
	void *png = encode(src, ".png", &len);
	int saved = avif_state;

	(void)state;
	avif_state = -1;
	assert_int_equal(run(png, len, &roomy, ps, 2, &info, out, &err),
			 DR_ERR_UNSUPPORTED);
	assert_string_equal(err.code, "avif_unavailable");
	assert_null(out[0].data);
	avif_state = saved;
	g_free(png);
	g_object_unref(src);
}

/* Garbage, alone and behind every magic, and valid files with bytes
 * flipped: an error or a result, never a crash. */
static void test_garbage_and_mutations(void **state)
{
#define MAGIC(lit) { lit, sizeof(lit) - 1 }
	static const struct {
		const char *bytes;
		size_t n;
	} magics[] = {
		MAGIC(""),
		MAGIC("\x89PNG\r\n\x1A\n"),
		MAGIC("\xFF\xD8\xFF"),
		MAGIC("GIF89a"),
		MAGIC("RIFF\0\0\0\0WEBPVP8 "),
		MAGIC("II*\0"),
		MAGIC("MM\0*"),
		MAGIC("\0\0\0\x18" "ftypavif\0\0\0\0avifmif1"),
		MAGIC("\0\0\0\x18" "ftypheic\0\0\0\0heicmif1"),
	};
#undef MAGIC
	static const char *const suffixes[] = { ".png", ".jpg", ".gif",
						".webp", ".tif", ".avif" };
	const dr_preset *ps[] = { &thumb, &card };
	VipsImage *src = scene(96, 64, 14);
	uint32_t seed = 12345;
	unsigned char buf[4096];

	(void)state;
	for (size_t m = 0; m < sizeof(magics) / sizeof(*magics); m++)
		for (int round = 0; round < 20; round++) {
			size_t ml = magics[m].n;
			size_t len = ml + lcg_next(&seed) % (sizeof(buf) - ml);
			dr_rendition out[2];
			dr_image_info info;
			dr_error err;

			memcpy(buf, magics[m].bytes, ml);
			for (size_t i = ml; i < len; i++)
				buf[i] = (unsigned char)(lcg_next(&seed) >> 24);
			if (run(buf, len, &roomy, ps, 2, &info, out, &err) ==
			    DR_OK)
				free_all(out, 2);
			assert_string_equal(vips_error_buffer(), "");
		}
	for (size_t s = 0; s < sizeof(suffixes) / sizeof(*suffixes); s++) {
		size_t len;
		unsigned char *good = encode(src, suffixes[s], &len);
		unsigned char *bad = g_malloc(len);

		for (int round = 0; round < 15; round++) {
			dr_rendition out[2];
			dr_image_info info;
			dr_error err;

			memcpy(bad, good, len);
			for (int k = 0; k < 1 + round % 4; k++)
				bad[16 + lcg_next(&seed) % (len - 16)] ^=
					(unsigned char)(1 + lcg_next(&seed) % 255);
			if (run(bad, len, &roomy, ps, 2, &info, out, &err) ==
			    DR_OK)
				free_all(out, 2);
		}
		g_free(bad);
		g_free(good);
	}
	g_object_unref(src);
}

/* ---------------------------------------------------- image metadata */

static void test_phash(void **state)
{
	VipsImage *a = scene(800, 600, 20), *small = NULL, *other = NULL;
	const dr_preset *ps[] = { &thumb };
	dr_rendition out[1];
	dr_image_info ia, ia2, ib, ic;
	dr_error err;
	size_t la, lb, lc;
	void *ja, *jb, *jc;

	(void)state;
	assert_int_equal(vips_resize(a, &small, 0.5, NULL), 0);
	other = scene(800, 600, 21);
	ja = encode(a, ".jpg[Q=90]", &la);
	jb = encode(small, ".png", &lb); /* resized and another codec */
	jc = encode(other, ".jpg[Q=90]", &lc);

	assert_int_equal(run(ja, la, &roomy, ps, 1, &ia, out, &err), DR_OK);
	free_all(out, 1);
	assert_int_equal(run(ja, la, &roomy, ps, 1, &ia2, out, &err), DR_OK);
	free_all(out, 1);
	assert_int_equal(run(jb, lb, &roomy, ps, 1, &ib, out, &err), DR_OK);
	free_all(out, 1);
	assert_int_equal(run(jc, lc, &roomy, ps, 1, &ic, out, &err), DR_OK);
	free_all(out, 1);

	assert_string_equal(ia.phash, ia2.phash);
	assert_string_equal(ia.blurhash, ia2.blurhash);
	assert_true(hamming(ia.phash, ib.phash) <= 6);
	assert_true(hamming(ia.phash, ic.phash) >= 20);
	g_free(ja), g_free(jb), g_free(jc);
	g_object_unref(a), g_object_unref(small), g_object_unref(other);
}

static void test_dominant_color(void **state)
{
	static const double red[3] = { 255, 0, 0 };
	VipsImage *src = solid(200, 100, 3, red, VIPS_INTERPRETATION_sRGB);
	const dr_preset *ps[] = { &thumb };
	dr_rendition out[1];
	dr_image_info info;
	dr_error err;
	size_t len;
	void *png = encode(src, ".png", &len);
	void *jpg = encode(src, ".jpg[Q=95]", &len);
	unsigned px[3];

	(void)state;
	assert_int_equal(run(png, len, &roomy, ps, 1, &info, out, &err),
			 DR_OK);
	free_all(out, 1);
	assert_string_equal(info.dominant_color, "#ff0000");
	g_free(png);

	/* Through JPEG, within one step of #ff0000. */
	assert_int_equal(run(jpg, len, &roomy, ps, 1, &info, out, &err),
			 DR_OK);
	free_all(out, 1);
	assert_int_equal(sscanf(info.dominant_color, "#%2x%2x%2x", &px[0],
				&px[1], &px[2]),
			 3);
	assert_true(px[0] >= 254 && px[1] <= 1 && px[2] <= 1);
	g_free(jpg);
	g_object_unref(src);
}

/*
 * LeakSanitizer (make sanitize) reads this hook. libx265, which only this
 * test uses (to make a HEIC input), keeps two encoder allocations for the
 * life of the process; nothing of darkroom's is suppressed.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:libx265.so\n";
}

static int setup(void **state)
{
	(void)state;
	return image_init("test_image") == DR_OK ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sniff_real_files),
		cmocka_unit_test(test_init_idempotent_and_hardened),
		cmocka_unit_test(test_large_jpeg),
		cmocka_unit_test(test_orientation),
		cmocka_unit_test(test_small_image_not_enlarged),
		cmocka_unit_test(test_extreme_aspect),
		cmocka_unit_test(test_colour_spaces),
		cmocka_unit_test(test_icc_profile),
		cmocka_unit_test(test_alpha),
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_input_types),
		cmocka_unit_test(test_png_bomb),
		cmocka_unit_test(test_jpeg_bomb),
		cmocka_unit_test(test_progressive_jpeg_limit),
		cmocka_unit_test(test_byte_limit),
		cmocka_unit_test(test_animated_gif),
		cmocka_unit_test(test_many_pages),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_unsupported),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_fd_not_a_file),
		cmocka_unit_test(test_avif_unavailable),
		cmocka_unit_test(test_garbage_and_mutations),
		cmocka_unit_test(test_phash),
		cmocka_unit_test(test_dominant_color),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
