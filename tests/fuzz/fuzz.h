/*
 * fuzz.h - the libFuzzer entry points every harness in tests/fuzz/
 * defines, declared once so the harnesses build with
 * -Wmissing-prototypes. A harness is linked two ways: with libFuzzer's
 * main (make fuzz, clang, build-fuzz/fuzz/fuzz_<name>) and with
 * replay_main.c (make check, build/tests/fuzz/replay_<name>), which runs
 * each file of the corpus and of the crash folder once.
 */
#ifndef DR_FUZZ_H
#define DR_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional: once, before the first input. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A harness found its own contract broken: print and abort, so libFuzzer
 * saves the input and the replay counts it as failed. */
#define FUZZ_CHECK(cond)                                                    \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: fuzz check failed: %s\n",   \
				__FILE__, __LINE__, #cond);                 \
			abort();                                            \
		}                                                           \
	} while (0)

#endif
