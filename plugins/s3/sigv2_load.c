/*
 * sigv2_load.c - loads the `s3` sink's SigV2 transport, s3/sigv2.so.
 *
 * The transport is the one part of the sink that needs libs3, so it is a
 * companion object of its own (s3.h says what it shares with s3.so):
 * s3.so never links libs3, and a process maps libs3 only once one of its
 * instances says signature = v2. The companion is looked for in one place
 * only, by a fixed name: S3_SIGV2_PATH under the folder of the s3.so this
 * code runs in (found with dladdr), so no config value steers the path,
 * as none steers the plugin host's.
 *
 * Loading follows the plugin host's order: dlopen (RTLD_NOW | RTLD_LOCAL,
 * so libs3's symbols stay out of the process's namespace), the one entry
 * symbol, then the table's version and struct sizes before anything else
 * in it is used; each failure is a sentence naming the file. The v2
 * instances count: the first loads the companion and initialises libs3,
 * the last releases libs3 and unloads the companion.
 *
 * A program that links the transport in itself (the unit test,
 * tests/plugins/test_s3.c) defines s3_sigv2_entry, and the weak reference
 * below finds it: nothing is loaded then. In s3.so the reference stays
 * unresolved and is NULL.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "s3.h"

/* Weak and hidden: NULL in s3.so, never looked up at run time. */
extern const s3_sigv2_ops *s3_sigv2_entry(void)
	__attribute__((weak, visibility("hidden")));

/* Instances using the companion, its handle (NULL when linked in) and
 * its checked table. */
static int v2_users;
static void *v2_handle;
static const s3_sigv2_ops *v2_ops;

/*
 * The companion's path into buf: S3_SIGV2_PATH beside the object that
 * holds this code. 0, or -1 with a message in err.
 */
static int companion_path(const s3_sink *s, char *buf, size_t bufsz,
			  dr_error *err)
{
	Dl_info info;
	const char *slash;
	int n;

	if (!dladdr(&v2_users, &info) || !info.dli_fname ||
	    !(slash = strrchr(info.dli_fname, '/'))) {
		s->host->fail(err, DR_ERR_PLUGIN, "sink_init",
			      "signature = v2: cannot tell which folder s3.so "
			      "was loaded from, to load the SigV2 transport "
			      "%s from",
			      S3_SIGV2_PATH);
		return -1;
	}
	n = snprintf(buf, bufsz, "%.*s/%s", (int)(slash - info.dli_fname),
		     info.dli_fname, S3_SIGV2_PATH);
	if (n < 0 || (size_t)n >= bufsz) {
		s->host->fail(err, DR_ERR_PLUGIN, "sink_init",
			      "signature = v2: the path of the SigV2 "
			      "transport is too long");
		return -1;
	}
	return 0;
}

/* Load and check the companion into v2_handle and v2_ops. */
static int load_companion(const s3_sink *s, dr_error *err)
{
	char path[PATH_MAX];
	const s3_sigv2_ops *ops;
	s3_sigv2_entry_fn entry;
	struct stat sb;
	const char *msg;
	void *handle, *sym;

	if (companion_path(s, path, sizeof(path), err) != 0)
		return -1;
	if (stat(path, &sb) != 0 && errno == ENOENT) {
		s->host->fail(err, DR_ERR_PLUGIN, "sink_init",
			      "signature = v2 needs the SigV2 transport %s, "
			      "which does not exist (it is built and "
			      "installed with s3.so; signature = v4 does not "
			      "need it)",
			      path);
		return -1;
	}
	dlerror();
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!handle) {
		msg = dlerror();
		s->host->fail(err, DR_ERR_PLUGIN, "sink_init",
			      "signature = v2: cannot load the SigV2 "
			      "transport %s: %s (it needs libs3)",
			      path, msg ? msg : "unknown dlopen error");
		return -1;
	}
	dlerror();
	sym = dlsym(handle, S3_SIGV2_ENTRY_SYMBOL);
	if (!sym) {
		s->host->fail(err, DR_ERR_PLUGIN, "sink_init",
			      "%s does not export %s: not the s3 sink's "
			      "SigV2 transport",
			      path, S3_SIGV2_ENTRY_SYMBOL);
		goto err_handle;
	}
	/* POSIX: a data pointer from dlsym converts back to the function
	 * pointer it came from. */
	entry = (s3_sigv2_entry_fn)sym;
	ops = entry();
	if (!ops || ops->version != S3_SIGV2_VERSION ||
	    ops->sink_size != sizeof(s3_sink) ||
	    ops->request_size != sizeof(s3_request) ||
	    ops->result_size != sizeof(s3_result) || !ops->init ||
	    !ops->deinit || !ops->perform) {
		s->host->fail(err, DR_ERR_PLUGIN, "sink_init",
			      "%s is from another build of the s3 sink "
			      "(version %u, this s3.so needs %u with the same "
			      "structures); install the two together",
			      path, ops ? ops->version : 0u, S3_SIGV2_VERSION);
		goto err_handle;
	}
	v2_handle = handle;
	v2_ops = ops;
	return 0;

err_handle:
	dlclose(handle);
	return -1;
}

int s3v2_acquire(s3_sink *s, dr_error *err)
{
	if (v2_users > 0) {
		v2_users++;
		return 0;
	}
	if (s3_sigv2_entry)
		v2_ops = s3_sigv2_entry();
	else if (load_companion(s, err) != 0)
		return -1;
	if (v2_ops->init(s, err) != 0)
		goto err_ops;
	v2_users = 1;
	return 0;

err_ops:
	if (v2_handle)
		dlclose(v2_handle);
	v2_handle = NULL;
	v2_ops = NULL;
	return -1;
}

void s3v2_release(void)
{
	if (v2_users <= 0 || --v2_users > 0)
		return;
	v2_ops->deinit();
	if (v2_handle)
		dlclose(v2_handle);
	v2_handle = NULL;
	v2_ops = NULL;
}

void s3v2_perform(s3_sink *s, const s3_request *req, s3_result *r)
{
	v2_ops->perform(s, req, r);
}
