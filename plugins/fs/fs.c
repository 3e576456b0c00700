/*
 * fs.c - the `fs` sink: stores objects as files under a local directory.
 *
 * The directory is meant to be served by the web server (CONTRACT §1:
 * `make run` serves it under /media/), which derives Content-Type from the
 * file extension, so no metadata sidecar is written and `meta` is unused.
 *
 * Keys come from the core, but the sink checks them anyway and resolves
 * them without trusting the tree: every directory of a key is opened with
 * openat(O_NOFOLLOW | O_DIRECTORY) relative to the one before, starting at
 * the root, so neither a ".." nor a symbolic link planted inside the root
 * can make a write land outside it.
 *
 * A put is atomic (readers see the old object or the new one, never a
 * part): the bytes go to ".tmp.<random>" in the object's directory, are
 * fsync'd, renamed over the final name, and the directory is fsync'd so
 * the rename survives a crash. The temporary file is removed on every
 * error. Keys may not have segments starting with '.', so no key can name
 * a temporary file (or a ".htaccess" the web server would obey).
 *
 * Configuration ([sink "fs"]):
 *   root      directory to store under (required; created when missing)
 *   base_url  public URL of `root` (required; env DARKROOM_CDN_BASE_URL)
 *   dir_mode  octal mode of directories the sink creates (0755)
 *   file_mode octal mode of stored files (0644)
 *
 * Errors carry the codes "invalid_key", "sink_full" (ENOSPC, EDQUOT;
 * retryable), "sink_io" and "invalid_config".
 *
 * The plugin uses only the host table: no core symbol.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "darkroom-plugin.h"

/* Longest key, longest segment of a key, and the copy buffer for fd
 * sources. */
#define FS_KEY_MAX     512
#define FS_SEGMENT_MAX 255
#define FS_COPY_BUF    (64 * 1024)
/* Attempts at a fresh temporary name before giving up. */
#define FS_TMP_TRIES 8

typedef struct fs_sink {
	const dr_host *host;
	const dr_instance *inst;
	const char *root; /* borrowed from the host's config */
	char *base_url;	  /* without trailing '/' */
	mode_t dir_mode;
	mode_t file_mode;
} fs_sink;

static const dr_config_key fs_keys[] = {
	{ "root", DR_CFG_PATH, NULL, NULL, DR_CFG_REQUIRED,
	  "directory the objects are stored under (created when missing)" },
	{ "base_url", DR_CFG_URL, NULL, "DARKROOM_CDN_BASE_URL",
	  DR_CFG_REQUIRED,
	  "public URL of the root directory, e.g. https://cdn.example.com" },
	{ "dir_mode", DR_CFG_STRING, "0755", NULL, 0,
	  "octal mode of the directories the sink creates" },
	{ "file_mode", DR_CFG_STRING, "0644", NULL, 0,
	  "octal mode of stored files" },
	{ NULL, 0, NULL, NULL, 0, NULL },
};

/* ------------------------------------------------------------------------
 * Errors
 */

/*
 * Fail with the errno `e` of a file system call: ENOSPC and EDQUOT are
 * "sink_full" and retryable (space may be freed), everything else is
 * "sink_io". The message names the operation and the key, not the root.
 */
static dr_status fail_errno(const fs_sink *s, dr_error *err, int e,
			    const char *what, const char *key)
{
	dr_status st;

	if (e == ENOSPC || e == EDQUOT) {
		st = s->host->fail(err, DR_ERR_IO, "sink_full",
				   "cannot %s '%s': %s", what, key,
				   strerror(e));
		if (err)
			err->retryable = 1;
		return st;
	}
	return s->host->fail(err, DR_ERR_IO, "sink_io", "cannot %s '%s': %s",
			     what, key, strerror(e));
}

/* ------------------------------------------------------------------------
 * Keys and paths
 */

static int key_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
	       c == '/';
}

/*
 * 1 when `key` is a relative path of 1..FS_KEY_MAX bytes of
 * [A-Za-z0-9._/-] whose '/'-separated segments are non-empty (no leading
 * or trailing '/', no "//"), at most FS_SEGMENT_MAX bytes, and do not
 * start with '.' (so no "." or "..", temporary or hidden files).
 */
static int valid_key(const char *key)
{
	size_t seg = 0, n = 0;

	if (!key)
		return 0;
	for (const char *p = key; *p; p++, n++) {
		if (n >= FS_KEY_MAX || !key_char_ok(*p))
			return 0;
		if (*p == '/') {
			if (seg == 0)
				return 0;
			seg = 0;
			continue;
		}
		if (seg == 0 && *p == '.')
			return 0;
		if (++seg > FS_SEGMENT_MAX)
			return 0;
	}
	return n > 0 && seg > 0;
}

static dr_status check_key(const fs_sink *s, const char *key, dr_error *err)
{
	char shown[65];
	size_t i = 0;

	if (valid_key(key))
		return DR_OK;
	/* The key may be anything: show a printable prefix of it. */
	for (; key && key[i] && i < sizeof(shown) - 1; i++)
		shown[i] = (key[i] >= 0x20 && key[i] < 0x7f) ? key[i] : '?';
	shown[i] = '\0';
	return s->host->fail(err, DR_ERR_INVALID, "invalid_key",
			     "invalid object key '%s%s': keys are relative "
			     "paths of A-Z a-z 0-9 . _ - / without empty "
			     "segments or segments starting with '.', at most "
			     "%d bytes",
			     shown, key && key[i] ? "..." : "", FS_KEY_MAX);
}

static int open_root(const fs_sink *s)
{
	return open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/*
 * Open the directory holding `key` (already valid), walking its segments
 * from the root with O_NOFOLLOW; with `create`, make missing directories.
 * On success *dirfd is open and *leaf points at the last segment of key.
 * Returns 0; -1 with errno set when the walk fails (ENOENT when a
 * directory is missing and `create` is 0, ENOTDIR when a file is in the
 * way); -2 with errno set when the root itself cannot be opened, which is
 * never "no such object".
 */
static int open_parent(const fs_sink *s, const char *key, int create,
		       int *dirfd, const char **leaf)
{
	char seg[FS_SEGMENT_MAX + 1];
	const char *p = key, *slash;
	int dfd, nfd, made, e;

	dfd = open_root(s);
	if (dfd < 0)
		return -2;
	while ((slash = strchr(p, '/')) != NULL) {
		size_t len = (size_t)(slash - p);

		memcpy(seg, p, len);
		seg[len] = '\0';
		made = 0;
		if (create) {
			if (mkdirat(dfd, seg, s->dir_mode) == 0)
				made = 1;
			else if (errno != EEXIST)
				goto err_dfd;
		}
		nfd = openat(dfd, seg,
			     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0)
			goto err_dfd;
		/* mkdirat() applies the umask; give new directories the
		 * configured mode exactly. */
		if (made && fchmod(nfd, s->dir_mode) != 0) {
			e = errno;
			close(nfd);
			errno = e;
			goto err_dfd;
		}
		close(dfd);
		dfd = nfd;
		p = slash + 1;
	}
	*dirfd = dfd;
	*leaf = p;
	return 0;

err_dfd:
	e = errno;
	close(dfd);
	errno = e;
	return -1;
}

/* ------------------------------------------------------------------------
 * Writing
 */

static int write_all(int fd, const unsigned char *p, uint64_t len)
{
	while (len > 0) {
		size_t chunk = len > SSIZE_MAX ? SSIZE_MAX : (size_t)len;
		ssize_t n = write(fd, p, chunk);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) { /* not for files, but never spin */
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (uint64_t)n;
	}
	return 0;
}

/*
 * Copy src->size bytes from src->fd (from offset 0, with pread, so the
 * caller's file offset is untouched) to `out`. A source shorter than its
 * declared size is an error (EIO with *short_src set), not a short object.
 */
static int copy_fd(int out, const dr_source *src, int *short_src)
{
	unsigned char *buf = malloc(FS_COPY_BUF);
	uint64_t off = 0;
	int rc = -1, e = 0;

	if (!buf) {
		errno = ENOMEM;
		return -1;
	}
	while (off < src->size) {
		uint64_t left = src->size - off;
		size_t want = left < FS_COPY_BUF ? (size_t)left : FS_COPY_BUF;
		ssize_t n = pread(src->fd, buf, want, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			e = errno;
			goto out;
		}
		if (n == 0) {
			*short_src = 1;
			e = EIO;
			goto out;
		}
		if (write_all(out, buf, (uint64_t)n) != 0) {
			e = errno;
			goto out;
		}
		off += (uint64_t)n;
	}
	rc = 0;
out:
	free(buf);
	errno = e;
	return rc;
}

/* A fresh ".tmp.<16 hex>" file in dfd, opened for writing. */
static dr_status open_temp(const fs_sink *s, int dfd, char *name, size_t namesz,
			   int *fd, const char *key, dr_error *err)
{
	unsigned char rnd[8];
	dr_status st;

	for (int i = 0; i < FS_TMP_TRIES; i++) {
		st = s->host->random_bytes(rnd, sizeof(rnd));
		if (st != DR_OK)
			return s->host->fail(err, st, "sink_io",
					     "cannot make a temporary name "
					     "for '%s': no random bytes",
					     key);
		snprintf(name, namesz, ".tmp.%02x%02x%02x%02x%02x%02x%02x%02x",
			 rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6],
			 rnd[7]);
		*fd = openat(dfd, name,
			     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
				     O_CLOEXEC,
			     s->file_mode);
		if (*fd >= 0)
			return DR_OK;
		if (errno != EEXIST)
			return fail_errno(s, err, errno, "create a file for",
					  key);
	}
	return s->host->fail(err, DR_ERR_IO, "sink_io",
			     "cannot create a temporary file for '%s'", key);
}

/*
 * put: see the file comment. On any error the temporary file is unlinked
 * and an object already stored under `key` is left as it was.
 */
static dr_status fs_put(void *state, const char *key, const dr_source *src,
			const dr_object_meta *meta, dr_error *err)
{
	fs_sink *s = state;
	char tmp[32];
	const char *leaf;
	int dfd, fd = -1, short_src = 0, rc;
	dr_status st;

	(void)meta; /* the web server derives Content-Type from the name */
	st = check_key(s, key, err);
	if (st != DR_OK)
		return st;
	if (!src || (!src->data && src->fd < 0 && src->size > 0))
		return s->host->fail(err, DR_ERR_INVALID, "invalid_source",
				     "no bytes given for '%s'", key);
	if (open_parent(s, key, 1, &dfd, &leaf) != 0)
		return fail_errno(s, err, errno, "make the directories of",
				  key);
	st = open_temp(s, dfd, tmp, sizeof(tmp), &fd, key, err);
	if (st != DR_OK)
		goto err_dfd;

	/* open() applies the umask; set the configured mode exactly. */
	if (fchmod(fd, s->file_mode) != 0) {
		st = fail_errno(s, err, errno, "write", key);
		goto err_tmp;
	}
	if (src->data)
		rc = write_all(fd, src->data, src->size);
	else
		rc = copy_fd(fd, src, &short_src);
	if (rc != 0) {
		if (short_src)
			st = s->host->fail(err, DR_ERR_IO, "sink_io",
					   "cannot write '%s': the source is "
					   "shorter than %" PRIu64 " bytes",
					   key, src->size);
		else
			st = fail_errno(s, err, errno, "write", key);
		goto err_tmp;
	}
	if (fsync(fd) != 0) {
		st = fail_errno(s, err, errno, "write", key);
		goto err_tmp;
	}
	rc = close(fd);
	fd = -1;
	if (rc != 0) {
		st = fail_errno(s, err, errno, "write", key);
		goto err_tmp;
	}
	if (renameat(dfd, tmp, dfd, leaf) != 0) {
		st = fail_errno(s, err, errno, "store", key);
		goto err_tmp;
	}
	/* The rename is durable once the directory is. The object is in
	 * place either way, so a failure here is only logged. */
	if (fsync(dfd) != 0)
		s->host->log(s->inst, DR_LOG_WARNING,
			     "event=fs.fsync_dir_failed key=%s errno=%d", key,
			     errno);
	close(dfd);
	return DR_OK;

err_tmp:
	if (fd >= 0)
		close(fd);
	unlinkat(dfd, tmp, 0);
err_dfd:
	close(dfd);
	return st;
}

/* ------------------------------------------------------------------------
 * Reading, removing, URLs
 */

/*
 * Open the regular file stored under `key` for reading. DR_ERR_NOT_FOUND
 * when it, a directory on the way, or a regular file at that name is
 * missing.
 */
static dr_status open_object(const fs_sink *s, const char *key, int *fd,
			     struct stat *sb, dr_error *err)
{
	const char *leaf;
	int dfd, e, rc;
	dr_status st;

	st = check_key(s, key, err);
	if (st != DR_OK)
		return st;
	rc = open_parent(s, key, 0, &dfd, &leaf);
	if (rc == -2)
		return fail_errno(s, err, errno, "read", key);
	if (rc != 0) {
		e = errno;
		goto fail;
	}
	*fd = openat(dfd, leaf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	e = errno;
	close(dfd);
	if (*fd < 0)
		goto fail;
	if (fstat(*fd, sb) != 0) {
		e = errno;
		close(*fd);
		return fail_errno(s, err, e, "read", key);
	}
	if (!S_ISREG(sb->st_mode)) {
		close(*fd);
		return s->host->fail(err, DR_ERR_NOT_FOUND, "not_found",
				     "no object '%s'", key);
	}
	return DR_OK;

fail:
	if (e == ENOENT || e == ENOTDIR || e == ELOOP)
		return s->host->fail(err, DR_ERR_NOT_FOUND, "not_found",
				     "no object '%s'", key);
	return fail_errno(s, err, e, "read", key);
}

static dr_status fs_get(void *state, const char *key, uint64_t max_bytes,
			void **data, size_t *len, dr_error *err)
{
	fs_sink *s = state;
	struct stat sb;
	unsigned char *buf;
	size_t size, got = 0;
	int fd;
	dr_status st;

	*data = NULL;
	*len = 0;
	st = open_object(s, key, &fd, &sb, err);
	if (st != DR_OK)
		return st;
	if ((uint64_t)sb.st_size > max_bytes ||
	    (uint64_t)sb.st_size > SIZE_MAX - 1) {
		close(fd);
		return s->host->fail(err, DR_ERR_TOO_LARGE, "too_large",
				     "object '%s' has %jd bytes, over the "
				     "limit of %" PRIu64,
				     key, (intmax_t)sb.st_size, max_bytes);
	}
	size = (size_t)sb.st_size;
	/* One spare byte so an empty object still gets a real buffer. */
	buf = malloc(size + 1);
	if (!buf) {
		close(fd);
		return s->host->fail(err, DR_ERR_NOMEM, "out_of_memory",
				     "cannot allocate %zu bytes for '%s'", size,
				     key);
	}
	/* Objects are replaced by rename, so the open file keeps its size;
	 * stop at its stat size or at end of file, whichever comes first. */
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			st = fail_errno(s, err, errno, "read", key);
			free(buf);
			close(fd);
			return st;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*data = buf;
	*len = got;
	return DR_OK;
}

static dr_status fs_stat(void *state, const char *key, uint64_t *size,
			 dr_error *err)
{
	fs_sink *s = state;
	struct stat sb;
	int fd;
	dr_status st;

	st = open_object(s, key, &fd, &sb, err);
	if (st != DR_OK)
		return st;
	close(fd);
	*size = (uint64_t)sb.st_size;
	return DR_OK;
}

/* The object's open file, for the core to read in place (a private file
 * it serves without loading it whole). */
static dr_status fs_open(void *state, const char *key, int *fd, uint64_t *size,
			 dr_error *err)
{
	fs_sink *s = state;
	struct stat sb;
	dr_status st;

	*fd = -1;
	st = open_object(s, key, fd, &sb, err);
	if (st != DR_OK)
		return st;
	*size = (uint64_t)sb.st_size;
	return DR_OK;
}

/* Unlink the file; a missing file or directory is success. Empty
 * directories are left in place: removing them would race with a put
 * creating a file in them. */
static dr_status fs_remove(void *state, const char *key, dr_error *err)
{
	fs_sink *s = state;
	const char *leaf;
	int dfd, e, rc;
	dr_status st;

	st = check_key(s, key, err);
	if (st != DR_OK)
		return st;
	rc = open_parent(s, key, 0, &dfd, &leaf);
	if (rc != 0) {
		e = errno;
		if (rc == -2)
			return fail_errno(s, err, e, "remove", key);
		/* A missing directory or a file where one would be: no
		 * object under this key. */
		if (e == ENOENT || e == ENOTDIR)
			return DR_OK;
		return fail_errno(s, err, e, "remove", key);
	}
	if (unlinkat(dfd, leaf, 0) != 0 && errno != ENOENT) {
		e = errno;
		close(dfd);
		return fail_errno(s, err, e, "remove", key);
	}
	close(dfd);
	return DR_OK;
}

static dr_status fs_public_url(void *state, const char *key, char *buf,
			       size_t bufsz)
{
	fs_sink *s = state;
	int n;

	if (bufsz > 0)
		buf[0] = '\0';
	if (!valid_key(key))
		return DR_ERR_INVALID;
	if (bufsz == 0)
		return DR_ERR_TOO_LARGE;
	n = snprintf(buf, bufsz, "%s/%s", s->base_url, key);
	if (n < 0 || (size_t)n >= bufsz) {
		buf[0] = '\0';
		return DR_ERR_TOO_LARGE;
	}
	return DR_OK;
}

/* ------------------------------------------------------------------------
 * Instances
 */

/* Parse an octal mode "0755" (1 to 4 octal digits, at most 07777). */
static int parse_mode(const char *text, mode_t *out)
{
	unsigned v = 0;
	size_t n = 0;

	if (!text)
		return -1;
	for (const char *p = text; *p; p++, n++) {
		if (*p < '0' || *p > '7' || n >= 5)
			return -1;
		v = v * 8 + (unsigned)(*p - '0');
	}
	if (n == 0 || v > 07777)
		return -1;
	*out = (mode_t)v;
	return 0;
}

/* Make `path` (absolute) and its missing parents, like mkdir -p. */
static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, mode) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

static void fs_destroy(void *state)
{
	fs_sink *s = state;

	if (!s)
		return;
	free(s->base_url);
	free(s);
}

static dr_status fs_create(const dr_host *host, const dr_instance *inst,
			   void **state, dr_error *err)
{
	const char *root, *base_url, *dir_mode, *file_mode;
	fs_sink *s;
	size_t len;
	int fd, e;
	dr_status st;

	*state = NULL;
	/* The core refuses plugins of another ABI, so this only guards
	 * against a host table that is not what it says; err is filled by
	 * hand since the table itself is in doubt. */
	if (host->abi_version != DR_PLUGIN_ABI_VERSION ||
	    host->size < sizeof(dr_host)) {
		if (err) {
			memset(err, 0, sizeof(*err));
			err->status = DR_ERR_PLUGIN;
			snprintf(err->code, sizeof(err->code), "plugin_abi");
			snprintf(err->message, sizeof(err->message),
				 "the fs sink needs plugin ABI %u",
				 DR_PLUGIN_ABI_VERSION);
		}
		return DR_ERR_PLUGIN;
	}
	root = host->config_get(inst, "root");
	base_url = host->config_get(inst, "base_url");
	dir_mode = host->config_get(inst, "dir_mode");
	file_mode = host->config_get(inst, "file_mode");
	if (!root || root[0] != '/')
		return host->fail(err, DR_ERR_CONFIG, "invalid_config",
				  "root must be set to an absolute directory");
	if (!base_url || !base_url[0])
		return host->fail(err, DR_ERR_CONFIG, "invalid_config",
				  "base_url must be set (or "
				  "DARKROOM_CDN_BASE_URL)");

	s = host->mem_calloc(1, sizeof(*s));
	s->host = host;
	s->inst = inst;
	s->root = root;
	s->dir_mode = 0755;
	s->file_mode = 0644;
	if (dir_mode && parse_mode(dir_mode, &s->dir_mode) != 0) {
		st = host->fail(err, DR_ERR_CONFIG, "invalid_config",
				"dir_mode '%.16s' is not an octal mode such as "
				"0755",
				dir_mode);
		goto err_state;
	}
	if (file_mode && parse_mode(file_mode, &s->file_mode) != 0) {
		st = host->fail(
			err, DR_ERR_CONFIG, "invalid_config",
			"file_mode '%.16s' is not an octal mode such as "
			"0644",
			file_mode);
		goto err_state;
	}
	len = strlen(base_url);
	while (len > 0 && base_url[len - 1] == '/')
		len--;
	s->base_url = host->mem_strndup(base_url, len);

	/* Fail at start rather than at the first upload. */
	if (mkdir_p(root, s->dir_mode) != 0) {
		e = errno;
		st = host->fail(err, DR_ERR_IO, "sink_io",
				"cannot create the root directory %s: %s", root,
				strerror(e));
		goto err_state;
	}
	fd = open_root(s);
	if (fd < 0) {
		e = errno;
		st = host->fail(err, DR_ERR_IO, "sink_io",
				"cannot open the root directory %s: %s", root,
				strerror(e));
		goto err_state;
	}
	close(fd);
	host->log(inst, DR_LOG_DEBUG, "event=fs.ready root=%s", root);
	*state = s;
	return DR_OK;

err_state:
	fs_destroy(s);
	return st;
}

static const dr_sink_ops fs_ops = {
	.size = sizeof(dr_sink_ops),
	.put = fs_put,
	.get = fs_get,
	.remove = fs_remove,
	.public_url = fs_public_url,
	.stat = fs_stat,
	.open = fs_open,
};

static const dr_plugin fs_plugin = {
	.abi_version = DR_PLUGIN_ABI_VERSION,
	.size = sizeof(dr_plugin),
	.name = "fs",
	.kind = DR_PLUGIN_SINK,
	.version = "1.0",
	.description = "stores outputs as files under a local directory",
	.config_keys = fs_keys,
	.create = fs_create,
	.destroy = fs_destroy,
	.sink = &fs_ops,
};

DR_PLUGIN_DEFINE(fs_plugin)
