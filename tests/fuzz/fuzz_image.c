/*
 * fuzz_image.c - the image pipeline (core/image.c): bytes in, sniffing,
 * then image_process with the presets of the default configuration
 * (thumb: 256x256 inside, WebP; card: 1280x720 cover, WebP) and the real
 * default limits (100 Mpx, 64 MiB, 256 pages). Inputs are capped at
 * 256 KiB to keep executions fast; the pixel limit is what protects
 * against a small file declaring a huge image, and stays in force.
 * Renditions must be non-empty and within their preset's box.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "image.h"
#include "log.h"

#define FUZZ_MAX_INPUT (256u << 10)

static const dr_preset thumb = { "thumb", 256, 256, DR_FIT_INSIDE,
				 DR_FORMAT_WEBP, 80 };
static const dr_preset card = { "card", 1280, 720, DR_FIT_COVER,
				DR_FORMAT_WEBP, 82 };
static const dr_image_limits limits = { 100000000, 64u << 20, 256 };
static int ready;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	dr_log_init("fuzz_image", 0, 0);
	if (image_init("fuzz_image") != DR_OK) {
		fprintf(stderr, "fuzz_image: image_init failed\n");
		abort();
	}
	ready = 1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const dr_preset *ps[] = { &thumb, &card };
	dr_rendition out[2];
	dr_image_info info;
	dr_sniff sn;
	dr_error err;

	if (!ready)
		LLVMFuzzerInitialize(NULL, NULL);
	if (size > FUZZ_MAX_INPUT)
		return 0;
	sniff_head(data, size < 64 ? size : 64, &sn);
	FUZZ_CHECK(sn.kind && sn.mime && sn.ext && sn.format);
	memset(out, 0, sizeof(out));
	memset(&info, 0, sizeof(info));
	memset(&err, 0, sizeof(err));
	if (image_process(data, size, &limits, ps, 2, &info, out, &err) !=
	    DR_OK) {
		FUZZ_CHECK(err.message[0] != '\0');
		FUZZ_CHECK(out[0].data == NULL && out[1].data == NULL);
		return 0;
	}
	FUZZ_CHECK(sn.decodable);
	FUZZ_CHECK(info.width > 0 && info.height > 0);
	for (size_t i = 0; i < 2; i++) {
		FUZZ_CHECK(out[i].data && out[i].len > 0);
		FUZZ_CHECK(out[i].width >= 1 && out[i].width <= ps[i]->width);
		FUZZ_CHECK(out[i].height >= 1 &&
			   out[i].height <= ps[i]->height);
		image_rendition_free(&out[i]);
	}
	return 0;
}
