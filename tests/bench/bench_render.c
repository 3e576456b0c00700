/*
 * bench_render.c - the rendition timer of `make bench`: image_process()
 * of core/image.c (or with -f image_process_fd(), the very function a
 * worker calls on a downloaded output), timed in process.
 *
 *   bench_render [-c CONF] [-p PRESET,...] [-t THREADS] [-n N] [-o DIR]
 *                [-f] FILE...
 *   bench_render [options] -          commands "N FILE" on standard input
 *
 * Each iteration is what the worker's render step does with a file:
 * decode once, the metadata (size, BlurHash,
 * dominant colour, pHash), one rendition per preset, encoded, then the
 * renditions freed. The limits and presets come from the configuration
 * (CONF, default $DARKROOM_CONF or conf/darkroom.conf) exactly as the
 * worker takes them; the presets are its default_renditions unless -p
 * names others. -t sets libvips' thread count after image_init() (the
 * worker keeps image_init()'s one thread); for comparisons only. With -f
 * the file is not read into memory: image_process_fd() decodes it from
 * its descriptor, as the worker does with its downloaded file.
 *
 * For every file it prints one line: the file, the N iteration times in
 * milliseconds, the word "cpu" and the N iterations' CPU times in
 * milliseconds (the process's, every thread). With "-" it reads "N FILE" lines
 * and answers each with such a line, so a benchmark can keep one process warm
 * and interleave it with other tools. With -o DIR it also writes the renditions
 * of the last iteration as DIR/<file name>.<preset>.<ext> and prints their
 * sizes and the metadata on standard error.
 *
 * Exit status 0, or 1 with a message when a file fails (the error text
 * of image_process), 2 for bad usage.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vips/vips.h>

#include "config.h"
#include "error.h"
#include "image.h"
#include "jobs.h"

/* The largest image file read; above the default max_image_bytes. */
#define BENCH_MAX_FILE ((size_t)1 << 30)

typedef struct bench {
	const dr_config *cfg;
	const dr_preset *presets[DR_MAX_RENDITIONS];
	size_t n_presets;
	const char *out_dir;
	int from_fd; /* -f: image_process_fd() */
} bench;

/* Milliseconds of `clock` (CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID). */
static double clock_ms(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The whole of `path` in a malloc'd buffer of exactly its size (as the
 * worker reads a download), its size in *len; NULL with a message on
 * stderr. */
static void *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	unsigned char *buf = NULL;
	struct stat sb;
	size_t n = 0;

	if (fd < 0 || fstat(fd, &sb) != 0) {
		fprintf(stderr, "bench_render: %s: %s\n", path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > BENCH_MAX_FILE) {
		fprintf(stderr,
			"bench_render: %s: not a file under %zu bytes\n", path,
			BENCH_MAX_FILE);
		close(fd);
		return NULL;
	}
	buf = dr_xmalloc(sb.st_size ? (size_t)sb.st_size : 1);
	while (n < (size_t)sb.st_size) {
		ssize_t r = read(fd, buf + n, (size_t)sb.st_size - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "bench_render: %s: read error\n", path);
			free(buf);
			close(fd);
			return NULL;
		}
		n += (size_t)r;
	}
	close(fd);
	*len = n;
	return buf;
}

/* Write the renditions of `path` into b->out_dir and describe them. */
static int write_outputs(const bench *b, const char *path,
			 const dr_image_info *info, const dr_rendition *r)
{
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	fprintf(stderr, "%s: %dx%d %s blurhash=%s color=%s phash=%s\n", base,
		info->width, info->height, info->format, info->blurhash,
		info->dominant_color, info->phash);
	for (size_t i = 0; i < b->n_presets; i++) {
		char out[4096];
		FILE *f;

		snprintf(out, sizeof(out), "%s/%s.%s.%s", b->out_dir, base,
			 r[i].preset->name, r[i].ext);
		if (!(f = fopen(out, "wb")) ||
		    fwrite(r[i].data, 1, r[i].len, f) != r[i].len) {
			fprintf(stderr, "bench_render: cannot write %s\n", out);
			if (f)
				fclose(f);
			return -1;
		}
		fclose(f);
		fprintf(stderr, "  %s: %dx%d %s, %zu bytes\n",
			r[i].preset->name, r[i].width, r[i].height, r[i].mime,
			r[i].len);
	}
	return 0;
}

/* One image_process() (or image_process_fd()) of the file, as bytes in
 * buf or open as fd. */
static dr_status process_once(const bench *b, const void *buf, size_t len,
			      int fd, dr_image_info *info, dr_rendition *rends,
			      dr_error *err)
{
	dr_image_limits lim = { b->cfg->limits.max_pixels,
				b->cfg->limits.max_image_bytes,
				b->cfg->limits.max_pages };

	if (b->from_fd)
		return image_process_fd(fd, &lim, b->presets, b->n_presets,
					info, rends, err);
	return image_process(buf, len, &lim, b->presets, b->n_presets, info,
			     rends, err);
}

/* Time n iterations of image_process on the file at `path` and print the
 * line. 0, or -1 with a message. */
static int time_file(const bench *b, const char *path, long n)
{
	size_t len = 0;
	void *buf = NULL;
	double *cpu;
	int fd = -1, rc = 0;

	if (b->from_fd) {
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
			fprintf(stderr, "bench_render: %s: %s\n", path,
				strerror(errno));
			return -1;
		}
	} else if (!(buf = read_file(path, &len))) {
		return -1;
	}
	cpu = dr_xcalloc((size_t)n, sizeof(*cpu));
	printf("%s", path);
	for (long it = 0; it < n && rc == 0; it++) {
		dr_rendition rends[DR_MAX_RENDITIONS];
		dr_image_info info;
		dr_error err;
		double t0, t1, c0;

		dr_error_clear(&err);
		t0 = clock_ms(CLOCK_MONOTONIC);
		c0 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
		if (process_once(b, buf, len, fd, &info, rends, &err) !=
		    DR_OK) {
			printf("\n");
			fprintf(stderr, "bench_render: %s: %s: %s\n", path,
				err.code, err.message);
			rc = -1;
			break;
		}
		if (b->out_dir && it == n - 1 &&
		    write_outputs(b, path, &info, rends) != 0)
			rc = -1;
		for (size_t i = 0; i < b->n_presets; i++)
			image_rendition_free(&rends[i]);
		t1 = clock_ms(CLOCK_MONOTONIC);
		cpu[it] = clock_ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
		printf(" %.3f", t1 - t0);
	}
	if (rc == 0) {
		printf(" cpu");
		for (long it = 0; it < n; it++)
			printf(" %.3f", cpu[it]);
		printf("\n");
	}
	free(cpu);
	fflush(stdout);
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Commands "N FILE" from stdin until its end. */
static int serve(const bench *b)
{
	char line[4096];

	while (fgets(line, sizeof(line), stdin)) {
		char *end, *file;
		long n;

		line[strcspn(line, "\r\n")] = '\0';
		if (!line[0])
			continue;
		n = strtol(line, &end, 10);
		if (end == line || *end != ' ' || n < 1 || n > 100000) {
			fprintf(stderr, "bench_render: bad command: %s\n",
				line);
			return 1;
		}
		file = end + 1;
		if (time_file(b, file, n) != 0)
			return 1;
	}
	return 0;
}

/* Resolve the comma-separated preset names of `list` into b. */
static int pick_presets(bench *b, const char *list)
{
	b->n_presets = 0;
	while (*list) {
		size_t m = strcspn(list, ",");
		char name[64];
		const dr_preset *p;

		snprintf(name, sizeof(name), "%.*s", (int)m, list);
		p = config_preset(b->cfg, name);
		if (!p || b->n_presets == DR_MAX_RENDITIONS) {
			fprintf(stderr, "bench_render: no preset %s\n", name);
			return -1;
		}
		b->presets[b->n_presets++] = p;
		list += m;
		if (*list == ',')
			list++;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_render [-c CONF] [-p PRESET,...] "
			"[-t THREADS] [-n N] [-o DIR] [-f] FILE... | -\n");
}

int main(int argc, char **argv)
{
	const char *conf = config_default_path("conf/darkroom.conf");
	const char *preset_list = NULL;
	long n = 10, threads = 0;
	dr_config *cfg = NULL;
	dr_error err;
	bench b;
	int i, rc = 0;

	memset(&b, 0, sizeof(b));
	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		const char *opt = argv[i];

		if (strcmp(opt, "-f") == 0) {
			b.from_fd = 1;
			continue;
		}
		if (i + 1 >= argc) {
			usage();
			return 2;
		}
		if (strcmp(opt, "-c") == 0)
			conf = argv[++i];
		else if (strcmp(opt, "-p") == 0)
			preset_list = argv[++i];
		else if (strcmp(opt, "-n") == 0)
			n = strtol(argv[++i], NULL, 10);
		else if (strcmp(opt, "-t") == 0)
			threads = strtol(argv[++i], NULL, 10);
		else if (strcmp(opt, "-o") == 0)
			b.out_dir = argv[++i];
		else {
			usage();
			return 2;
		}
	}
	if (i >= argc || n < 1 || threads < 0) {
		usage();
		return 2;
	}
	dr_error_clear(&err);
	if (config_load(conf, &cfg, &err) != DR_OK) {
		fprintf(stderr, "bench_render: %s\n", err.message);
		return 2;
	}
	b.cfg = cfg;
	if (preset_list) {
		if (pick_presets(&b, preset_list) != 0) {
			config_free(cfg);
			return 2;
		}
	} else {
		for (size_t k = 0; k < cfg->server.n_default_renditions &&
				   k < DR_MAX_RENDITIONS;
		     k++) {
			const dr_preset *p = config_preset(
				cfg, cfg->server.default_renditions[k]);

			if (p)
				b.presets[b.n_presets++] = p;
		}
	}
	if (image_init(argv[0]) != DR_OK) {
		fprintf(stderr, "bench_render: libvips did not start\n");
		config_free(cfg);
		return 1;
	}
	if (threads > 0)
		vips_concurrency_set((int)threads);
	if (strcmp(argv[i], "-") == 0)
		rc = serve(&b);
	else
		for (; i < argc && rc == 0; i++)
			rc = time_file(&b, argv[i], n) != 0;
	config_free(cfg);
	return rc;
}
