/*
 * fuzz_data_uri.c - the data: URI decoder (download_data_uri,
 * core/download.c) into a memfd, capped at 1 MiB. Checks the contract of
 * download.h: on success the reported size is what was written and at
 * most the cap; a refused URI leaves the file untouched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "download.h"
#include "fuzz.h"

#define FUZZ_MAX_INPUT (2u << 20)
#define CAP (1u << 20)

static int fd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char mediatype[128];
	uint64_t got = 0;
	struct stat st;
	dr_error err;
	char *uri;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	if (fd < 0) {
		fd = memfd_create("fuzz_data_uri", 0);
		if (fd < 0)
			abort();
	}
	if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
		abort();
	uri = malloc(size + 1);
	if (!uri)
		abort();
	memcpy(uri, data, size);
	uri[size] = '\0';
	memset(&err, 0, sizeof(err));
	if (download_data_uri(uri, CAP, fd, &got, mediatype, sizeof(mediatype),
			      &err) == DR_OK) {
		FUZZ_CHECK(fstat(fd, &st) == 0);
		FUZZ_CHECK((uint64_t)st.st_size == got);
		FUZZ_CHECK(got <= CAP);
		FUZZ_CHECK(memchr(mediatype, '\0', sizeof(mediatype)) != NULL);
	} else {
		FUZZ_CHECK(err.message[0] != '\0');
		FUZZ_CHECK(fstat(fd, &st) == 0);
		FUZZ_CHECK(st.st_size == 0);
	}
	free(uri);
	return 0;
}
