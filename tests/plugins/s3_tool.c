/*
 * s3_tool.c - drive a sink plugin from the command line through the real
 * plugin host (core/plugin.c), for tests/integration/test_s3.sh.
 *
 * The config file is loaded with config_load() and the plugins with
 * plugins_init(), exactly as the service does, so the test covers the
 * plugin's key table, defaults, environment overrides (DARKROOM_S3_*) and
 * dlopen of build/plugins/s3.so, not only the plugin's code.
 *
 *   s3_tool [-c CONF] [-s SINK] put KEY FILE [-t TYPE] [-C CACHE]
 *           [-m NAME=VALUE]... [-M]      (-M: from memory, not the fd)
 *   s3_tool [-c CONF] [-s SINK] get KEY [OUT] [-n MAX_BYTES]
 *   s3_tool [-c CONF] [-s SINK] stat KEY        prints the size
 *   s3_tool [-c CONF] [-s SINK] rm KEY
 *   s3_tool [-c CONF] [-s SINK] url KEY         prints the public URL
 *
 * CONF defaults to $DARKROOM_CONF, SINK to the config's [server] sink.
 * Exit 0 on success; 1 when the operation failed, after one line on
 * stderr: "s3_tool: OP failed: status=NAME code=CODE retryable=N: MSG";
 * 2 for usage, config or start-up errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "log.h"
#include "plugin.h"

#define TOOL_META_MAX 32

static void usage(void)
{
	fputs("usage: s3_tool [-c CONF] [-s SINK] put KEY FILE [-t TYPE] "
	      "[-C CACHE] [-m NAME=VALUE]... [-M]\n"
	      "       s3_tool [-c CONF] [-s SINK] get KEY [OUT] "
	      "[-n MAX_BYTES]\n"
	      "       s3_tool [-c CONF] [-s SINK] stat|rm|url KEY\n",
	      stderr);
}

static int report(const char *op, dr_status st, const dr_error *err)
{
	fprintf(stderr,
		"s3_tool: %s failed: status=%s code=%s retryable=%d: %s\n", op,
		dr_strerror(st), err->code[0] ? err->code : "-", err->retryable,
		err->message);
	return 1;
}

/* The whole of fd into a malloc'd buffer. */
static void *slurp_fd(int fd, size_t size)
{
	unsigned char *buf = malloc(size ? size : 1);
	size_t got = 0;

	if (!buf)
		return NULL;
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return NULL;
		}
		got += (size_t)n;
	}
	return buf;
}

static int do_put(const dr_sink_ops *ops, void *state, const char *key,
		  const char *file, const char *type, const char *cache,
		  const char **names, const char **values, size_t n_meta,
		  int from_memory)
{
	dr_object_meta meta;
	dr_source src;
	dr_error err;
	struct stat sb;
	void *mem = NULL;
	dr_status st;
	int fd;

	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		fprintf(stderr, "s3_tool: %s: %s\n", file, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 2;
	}
	memset(&src, 0, sizeof(src));
	src.fd = fd;
	src.size = (uint64_t)sb.st_size;
	if (from_memory) {
		mem = slurp_fd(fd, (size_t)sb.st_size);
		if (!mem) {
			fprintf(stderr, "s3_tool: cannot read %s\n", file);
			close(fd);
			return 2;
		}
		src.data = mem;
		src.fd = -1;
	}
	memset(&meta, 0, sizeof(meta));
	meta.content_type = type;
	meta.cache_control = cache;
	meta.n_meta = n_meta;
	meta.meta_names = names;
	meta.meta_values = values;
	dr_error_clear(&err);
	st = ops->put(state, key, &src, &meta, &err);
	free(mem);
	close(fd);
	return st == DR_OK ? 0 : report("put", st, &err);
}

static int do_get(const dr_sink_ops *ops, void *state, const char *key,
		  const char *out, uint64_t max_bytes)
{
	void *data = NULL;
	size_t len = 0;
	dr_error err;
	dr_status st;
	FILE *f;
	int rc = 0;

	dr_error_clear(&err);
	st = ops->get(state, key, max_bytes, &data, &len, &err);
	if (st != DR_OK)
		return report("get", st, &err);
	f = out ? fopen(out, "wb") : stdout;
	if (!f || fwrite(data, 1, len, f) != len) {
		fprintf(stderr, "s3_tool: cannot write %s\n",
			out ? out : "stdout");
		rc = 2;
	}
	if (f && f != stdout && fclose(f) != 0)
		rc = 2;
	free(data);
	return rc;
}

int main(int argc, char **argv)
{
	const char *conf = NULL, *sink_name = NULL, *type = NULL, *cache = NULL;
	const char *names[TOOL_META_MAX], *values[TOOL_META_MAX];
	char *meta_copy[TOOL_META_MAX];
	size_t n_meta = 0;
	uint64_t max_bytes = UINT64_C(1) << 32;
	int from_memory = 0, opt, rc = 2;
	dr_config *cfg = NULL;
	dr_plugins *plugins = NULL;
	struct dr_instance *inst;
	const dr_sink_ops *ops;
	const char *op, *key;
	dr_error err;

	dr_log_init("s3_tool", DR_LOG_WARNING, 0);
	while ((opt = getopt(argc, argv, "c:s:t:C:m:Mn:h")) != -1) {
		switch (opt) {
		case 'c':
			conf = optarg;
			break;
		case 's':
			sink_name = optarg;
			break;
		case 't':
			type = optarg;
			break;
		case 'C':
			cache = optarg;
			break;
		case 'm': {
			char *eq, *copy;

			if (n_meta == TOOL_META_MAX ||
			    !(eq = strchr(optarg, '='))) {
				usage();
				goto out;
			}
			copy = dr_xstrdup(optarg);
			eq = copy + (eq - optarg);
			*eq = '\0';
			meta_copy[n_meta] = copy;
			names[n_meta] = copy;
			values[n_meta] = eq + 1;
			n_meta++;
			break;
		}
		case 'M':
			from_memory = 1;
			break;
		case 'n': {
			char *end;

			errno = 0;
			max_bytes = strtoull(optarg, &end, 10);
			if (errno || *end || end == optarg) {
				usage();
				goto out;
			}
			break;
		}
		default:
			usage();
			goto out;
		}
	}
	if (argc - optind < 2) {
		usage();
		goto out;
	}
	op = argv[optind];
	key = argv[optind + 1];

	dr_error_clear(&err);
	if (config_load(config_default_path(conf ? conf : "darkroom.conf"),
			&cfg, &err) != DR_OK) {
		fprintf(stderr, "s3_tool: %s\n", err.message);
		goto out;
	}
	if (plugins_init(cfg, 1, &plugins, &err) != DR_OK) {
		fprintf(stderr, "s3_tool: code=%s: %s\n", err.code,
			err.message);
		goto out;
	}
	inst = plugins_sink(plugins, sink_name ? sink_name : cfg->server.sink);
	if (!inst) {
		fprintf(stderr, "s3_tool: no sink '%s' in the config\n",
			sink_name ? sink_name : cfg->server.sink);
		goto out;
	}
	ops = inst->plugin->desc->sink;

	if (strcmp(op, "put") == 0 && argc - optind == 3) {
		rc = do_put(ops, inst->state, key, argv[optind + 2], type,
			    cache, names, values, n_meta, from_memory);
	} else if (strcmp(op, "get") == 0 && argc - optind <= 3) {
		rc = do_get(ops, inst->state, key,
			    argc - optind == 3 ? argv[optind + 2] : NULL,
			    max_bytes);
	} else if (strcmp(op, "stat") == 0 && argc - optind == 2) {
		uint64_t size = 0;
		dr_status st;

		if (!ops->stat) {
			fputs("s3_tool: the sink has no stat\n", stderr);
			goto out;
		}
		st = ops->stat(inst->state, key, &size, &err);
		rc = st == DR_OK ? 0 : report("stat", st, &err);
		if (st == DR_OK)
			printf("%" PRIu64 "\n", size);
	} else if (strcmp(op, "rm") == 0 && argc - optind == 2) {
		dr_status st = ops->remove(inst->state, key, &err);

		rc = st == DR_OK ? 0 : report("rm", st, &err);
	} else if (strcmp(op, "url") == 0 && argc - optind == 2) {
		char url[4096];
		dr_status st =
			ops->public_url(inst->state, key, url, sizeof(url));

		if (st == DR_OK) {
			printf("%s\n", url);
			rc = 0;
		} else {
			fprintf(stderr, "s3_tool: url failed: %s\n",
				dr_strerror(st));
			rc = 1;
		}
	} else {
		usage();
	}

out:
	plugins_free(plugins);
	config_free(cfg);
	for (size_t i = 0; i < n_meta; i++)
		free(meta_copy[i]);
	return rc;
}
