/*
 * replay_main.c - libFuzzer's main for `make check`: run a harness once
 * over each file named on the command line, so the seed corpus and every
 * crash ever found stay regression tests without clang or libFuzzer.
 *
 * For each file it prints "ok <file>" or, when the harness returned
 * non-zero, "FAIL <file>"; a crash or sanitizer report ends the process
 * (tests/fuzz/replay.sh runs one process per file for that reason).
 * Exit status: 0 when every input passed, 1 otherwise, 2 on a read error.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"

/* Only some harnesses define it; gcc and clang both take a weak
 * declaration that resolves to NULL when absent. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

#define REPLAY_MAX_INPUT (16u << 20)/* larger than any harness looks at */

/* Read all of `path` into a malloc'd buffer; NULL on error. */
static unsigned char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	size_t n = 0, cap = 0, got;

	if (!f)
		return NULL;
	for (;;) {
		if (n == cap) {
			unsigned char *nb;

			cap = cap ? cap * 2 : 4096;
			if (cap > REPLAY_MAX_INPUT + 1)
				goto err;
			nb = realloc(buf, cap);
			if (!nb)
				goto err;
			buf = nb;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f) || n > REPLAY_MAX_INPUT)
		goto err;
	fclose(f);
	*len = n;
	return buf;
err:
	free(buf);
	fclose(f);
	return NULL;
}

int main(int argc, char **argv)
{
	int failed = 0;

	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		size_t len = 0;
		unsigned char *data = read_file(argv[i], &len);

		if (!data) {
			fprintf(stderr, "replay: cannot read %s\n", argv[i]);
			return 2;
		}
		if (LLVMFuzzerTestOneInput(data, len) != 0) {
			printf("FAIL %s\n", argv[i]);
			failed = 1;
		} else {
			printf("ok %s\n", argv[i]);
		}
		free(data);
	}
	return failed;
}
