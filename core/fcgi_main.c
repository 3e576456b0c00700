/*
 * fcgi_main.c - darkroom.fcgi, the FastCGI application.
 *
 * Serves the HTTP API on the socket it inherits: the FastCGI listening
 * socket on fd 0 (spawned by a web server or spawn-fcgi), a systemd socket
 * (LISTEN_FDS, fd 3), or the address given with --listen. One request at a
 * time per process; run several processes for concurrency. Uses the
 * reentrant FCGX_* interface only: FCGI_Accept would replace `environ` with
 * each request's parameters, which libcurl and libvips read.
 */
#include <errno.h>
#include <fcgiapp.h>
#include <getopt.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "arena.h"
#include "config.h"
#include "db.h"
#include "files.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "plugin.h"

#define SYSTEMD_FIRST_FD 3

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t in_request;

static void on_term(int sig)
{
	(void)sig;
	/* Between requests, nothing is lost by leaving at once; during one,
	 * finish it first. */
	if (!in_request)
		_exit(0);
	stop_requested = 1;
}

static void usage(FILE *f)
{
	fputs("usage: darkroom.fcgi [--config FILE] [--listen ADDR]\n"
	      "\n"
	      "Serve the darkroom HTTP API over FastCGI.\n"
	      "\n"
	      "  --config FILE  config file (default $DARKROOM_CONF; run from a\n"
	      "                 checkout's build folder, its conf/darkroom.conf;\n"
	      "                 else " DR_SYSCONF ")\n"
	      "  --listen ADDR  listen on ADDR (host:port, :port or a unix socket\n"
	      "                 path) instead of the inherited socket\n"
	      "  --help         show this help\n"
	      "  --version      show the version\n",
	      f);
}

/* The listening socket: --listen, systemd's, or fd 0. -1 when none. */
static int listen_socket(const char *addr)
{
	const char *pid = getenv("LISTEN_PID");
	const char *fds = getenv("LISTEN_FDS");
	struct stat st;
	int type = 0;
	socklen_t len = sizeof(type);

	if (addr) {
		mode_t old = umask(0117); /* unix socket: owner and group */
		int fd = FCGX_OpenSocket(addr, 128);

		umask(old);
		return fd;
	}
	if (pid && fds && strtol(pid, NULL, 10) == (long)getpid() &&
	    strtol(fds, NULL, 10) >= 1) {
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_FDNAMES");
		return SYSTEMD_FIRST_FD;
	}
	if (fstat(0, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    getsockopt(0, SOL_SOCKET, SO_TYPE, &type, &len) == 0)
		return 0;
	return -1;
}

/* Copy the request's parameters into `req` (arena memory). */
static void read_params(FCGX_Request *fr, dr_request *req)
{
	const char *uri, *q;

	req->method = FCGX_GetParam("REQUEST_METHOD", fr->envp);
	if (!req->method)
		req->method = "GET";
	uri = FCGX_GetParam("REQUEST_URI", fr->envp);
	if (!uri)
		uri = "/";
	q = strchr(uri, '?');
	req->path = q ? arena_strndup(req->arena, uri, (size_t)(q - uri))
		      : arena_strdup(req->arena, uri);
	req->query = q ? arena_strdup(req->arena, q + 1) : "";
	req->method = arena_strdup(req->arena, req->method);
	req->content_type = FCGX_GetParam("CONTENT_TYPE", fr->envp);
	if (req->content_type)
		req->content_type = arena_strdup(req->arena, req->content_type);
	req->remote_addr = FCGX_GetParam("REMOTE_ADDR", fr->envp);
	if (req->remote_addr)
		req->remote_addr = arena_strdup(req->arena, req->remote_addr);
	req->authorization = NULL;
	req->n_headers = 0;
	for (char **e = fr->envp; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		char *name;
		size_t n;

		if (strncmp(*e, "HTTP_", 5) != 0 || !eq ||
		    req->n_headers == DR_MAX_HEADERS)
			continue;
		n = (size_t)(eq - *e) - 5;
		name = arena_strndup(req->arena, *e + 5, n);
		for (size_t i = 0; i < n; i++)
			name[i] = name[i] == '_' ? '-'
				  : (name[i] >= 'A' && name[i] <= 'Z')
					  ? (char)(name[i] + 32)
					  : name[i];
		req->headers[req->n_headers].name = name;
		req->headers[req->n_headers].value =
			arena_strdup(req->arena, eq + 1);
		if (strcmp(name, "authorization") == 0)
			req->authorization = req->headers[req->n_headers].value;
		req->n_headers++;
	}
}

/* The body's declared length, `cl` (CONTENT_LENGTH, NULL or "" when there
 * is none: *want stays 0), into *want: 0, or 400 when it is not a
 * number, 413 when it is over `limit`. */
static int declared_length(const char *cl, uint64_t limit,
			   unsigned long long *want)
{
	char *end;

	if (!cl || !*cl)
		return 0;
	errno = 0;
	*want = strtoull(cl, &end, 10);
	if (*end || errno || cl[0] == '-')
		return 400;
	return *want > limit ? 413 : 0;
}

/*
 * Read the body into `body` (whose own limit is above every request's),
 * refusing more than `limit` bytes, declared or sent (a chunked body has
 * no Content-Length). Returns 0, or the HTTP status to answer with.
 */
static int read_body(FCGX_Request *fr, dr_buf *body, size_t limit)
{
	const char *cl = FCGX_GetParam("CONTENT_LENGTH", fr->envp);
	unsigned long long want = 0;
	char chunk[16384];
	int n, rc;

	dr_buf_reset(body);
	rc = declared_length(cl, limit, &want);
	if (rc)
		return rc;
	while ((n = FCGX_GetStr(chunk, sizeof(chunk), fr->in)) > 0)
		if ((size_t)n > limit - body->len ||
		    dr_buf_append(body, chunk, (size_t)n) != DR_OK)
			return 413;
	if (cl && *cl && body->len != want)
		return 400;
	return 0;
}

/*
 * Spool the body of an upload into `up` (files.h): to a temporary file
 * while hashing it, never all of it in memory, refusing more than
 * `limit` bytes, declared or sent. Returns 0, or the HTTP status to
 * answer with (413; 400 for a body that does not match its
 * Content-Length; 507 when the spool cannot be written).
 */
static int spool_body(FCGX_Request *fr, dr_upload *up, uint64_t limit)
{
	const char *cl = FCGX_GetParam("CONTENT_LENGTH", fr->envp);
	unsigned long long want = 0;
	char chunk[65536];
	dr_error err;
	int n, rc;

	dr_error_clear(&err);
	rc = declared_length(cl, limit, &want);
	if (rc)
		return rc;
	if (files_spool_open(up, NULL, &err) != DR_OK) {
		dr_log(DR_LOG_ERR, "event=upload.spool_failed code=%s",
		       err.code);
		return 507;
	}
	while ((n = FCGX_GetStr(chunk, sizeof(chunk), fr->in)) > 0) {
		if ((uint64_t)n > limit - up->size)
			return 413;
		if (files_spool_write(up, chunk, (size_t)n, &err) != DR_OK) {
			dr_log(DR_LOG_ERR, "event=upload.spool_failed code=%s",
			       err.code);
			return 507;
		}
	}
	if (cl && *cl && up->size != want)
		return 400;
	files_spool_finish(up);
	return 0;
}

static void send_response(FCGX_Request *fr, const dr_request *req,
			  const dr_response *resp)
{
	const char *ct = resp->content_type ? resp->content_type
					    : "application/json; charset=utf-8";
	const char *cc = resp->cache_control ? resp->cache_control
					     : "no-store";
	char head[1024];
	int n;

	/* Formatted here, not with FCGX_FPrintF: libfcgi's own printf does
	 * not know every conversion (%zu among them). */
	if (resp->status == 204) /* no content: no content headers (RFC
				    9110, 8.6) */
		n = snprintf(head, sizeof(head),
			     "Status: 204 %s\r\nCache-Control: %s\r\n"
			     "%s\r\n",
			     http_reason(204), cc, resp->extra_headers);
	else
		n = snprintf(head, sizeof(head),
			     "Status: %d %s\r\nContent-Type: %s\r\n"
			     "Content-Length: %llu\r\nCache-Control: %s\r\n"
			     "%s\r\n",
			     resp->status, http_reason(resp->status), ct,
			     resp->body_fd >= 0
				     ? (unsigned long long)resp->body_fd_len
				     : (unsigned long long)resp->body.len,
			     cc, resp->extra_headers);
	if (n < 0 || (size_t)n >= sizeof(head))
		dr_die("response head does not fit");
	FCGX_PutStr(head, n, fr->out);
	if (strcmp(req->method, "HEAD") == 0 || resp->status == 204)
		return;
	if (resp->body_fd >= 0) {
		/* A file body (files_content): streamed, never whole in
		 * memory. A short file ends the answer early; the client sees
		 * it by the Content-Length. */
		char chunk[65536];
		uint64_t off = 0;

		while (off < resp->body_fd_len) {
			size_t want =
				resp->body_fd_len - off < sizeof(chunk)
					? (size_t)(resp->body_fd_len - off)
					: sizeof(chunk);
			ssize_t r =
				pread(resp->body_fd, chunk, want, (off_t)off);

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0 ||
			    FCGX_PutStr(chunk, (int)r, fr->out) != (int)r)
				break;
			off += (uint64_t)r;
		}
		return;
	}
	if (resp->body.len)
		FCGX_PutStr(resp->body.data, (int)resp->body.len, fr->out);
}

/* Between requests: when metric increments wait to be written, wait for
 * the next request no longer than their flush is due, then write them, so
 * an idle process does not sit on them. */
static void idle_flush(dr_app *app, int sock)
{
	struct pollfd pfd = {.fd = sock, .events = POLLIN};
	int ms = (int)(metrics_flush_delay() * 1000) + 1;

	if (poll(&pfd, 1, ms) == 0)
		metrics_flush(app->db, 1);
}

static int serve(dr_app *app, int sock)
{
	FCGX_Request fr;
	dr_arena arena;
	dr_buf body;
	dr_request req;
	dr_response resp;
	dr_upload upload;
	uint64_t max_upload = app->cfg->limits.max_upload;
	size_t biggest;

	if (FCGX_InitRequest(&fr, sock, FCGI_FAIL_ACCEPT_ON_INTR) != 0) {
		dr_log(DR_LOG_ERR, "event=fcgi.init_failed");
		return 1;
	}
	arena_init(&arena, 16384);
	/* Room for the largest body of any request; read_body() holds each
	 * to its own limit (api_body_limit()). */
	biggest = app->cfg->server.max_body;
	if (app->cfg->limits.max_webhook_body > biggest)
		biggest = app->cfg->limits.max_webhook_body;
	if (app->cfg->limits.max_batch_body > biggest)
		biggest = app->cfg->limits.max_batch_body;
	dr_buf_init(&body, biggest + 1);
	http_response_init(&resp);
	for (;;) {
		int early, server_status;

		if (metrics_pending())
			idle_flush(app, sock);
		if (stop_requested || FCGX_Accept_r(&fr) < 0)
			break;

		in_request = 1;
		memset(&req, 0, sizeof(req));
		req.arena = &arena;
		read_params(&fr, &req);
		upload.fd = -1;
		upload.md = NULL;
		if (api_spools_body(&req)) {
			dr_buf_reset(&body);
			/* Only a client with a key gets its upload
			 * spooled: any other is answered at once. */
			early = 401;
			if (api_authorized(app, &req))
				early = spool_body(&fr, &upload, max_upload);
			req.upload = &upload;
		} else {
			early = read_body(&fr, &body,
					  api_body_limit(app, &req));
		}
		server_status = http_server_error_status(
			FCGX_GetParam("REDIRECT_STATUS", fr.envp));
		if (server_status == 411) {
			/* lighttpd answers 411 to a POST without
			 * Content-Length (what `curl -X POST URL` sends)
			 * before any module can step in; its error handler
			 * hands the request here as a GET of the same
			 * REQUEST_URI. Without Content-Length or
			 * Transfer-Encoding an HTTP/1.1 request has no body,
			 * so serve it as the POST with an empty body that
			 * every other web server passes on. */
			req.method = "POST";
			server_status = 0;
		}
		if (server_status) {
			http_response_reset(&resp);
			http_server_problem(&resp, server_status);
		} else if (early) {
			api_body_refused(app, &req, early, &resp);
		} else {
			req.body = (const unsigned char *)body.data;
			req.body_len = body.len;
			api_handle(app, &req, &resp);
		}
		send_response(&fr, &req, &resp);
		FCGX_Finish_r(&fr);
		files_spool_close(&upload);
		http_response_reset(&resp); /* closes a file body */
		arena_reset(&arena);
		if (body.cap > (1u << 20)) {
			dr_buf_free(&body); /* do not keep a large body */
			malloc_trim(0);	    /* nor what it left in the heap */
		}
		in_request = 0;
	}
	http_response_free(&resp);
	dr_buf_free(&body);
	arena_free(&arena);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"listen", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *conf_path = NULL, *listen_addr = NULL;
	dr_config *cfg = NULL;
	dr_plugins *plugins = NULL;
	dr_db *db = NULL;
	dr_app app;
	dr_error err;
	struct sigaction sa;
	int c, sock, rc = 1;

	while ((c = getopt_long(argc, argv, "c:l:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf_path = optarg;
			break;
		case 'l':
			listen_addr = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("darkroom.fcgi %s\n", DR_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "darkroom.fcgi: unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}
	dr_log_init("fcgi", DR_LOG_INFO, 1);
	dr_error_clear(&err);
	if (!conf_path)
		conf_path = config_default_path(DR_SYSCONF);
	if (config_load(conf_path, &cfg, &err) != DR_OK) {
		fprintf(stderr, "darkroom.fcgi: %s\n", err.message);
		return 1;
	}
	dr_log_init("fcgi", cfg->server.log_level, 1);
	if (plugins_init(cfg, 1, &plugins, &err) != DR_OK) {
		fprintf(stderr, "darkroom.fcgi: %s\n", err.message);
		goto out;
	}
	db = db_new(cfg);
	/* Adapters read what the worker keeps for them (host->kv_get). */
	plugins_set_db(plugins, db);
	if (api_init(&app, cfg, plugins, db, &err) != DR_OK) {
		fprintf(stderr, "darkroom.fcgi: %s\n", err.message);
		goto out;
	}
	if (FCGX_Init() != 0) {
		fprintf(stderr, "darkroom.fcgi: FastCGI initialisation "
				"failed\n");
		goto out;
	}
	sock = listen_socket(listen_addr);
	if (sock < 0) {
		if (listen_addr)
			fprintf(stderr, "darkroom.fcgi: cannot listen on %s\n",
				listen_addr);
		else
			fprintf(stderr,
				"darkroom.fcgi: no FastCGI socket inherited; "
				"start it from a web server or spawn-fcgi, or "
				"use --listen\n");
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	dr_log(DR_LOG_INFO, "event=fcgi.start version=%s", DR_VERSION);
	rc = serve(&app, sock);
out:
	plugins_set_db(plugins, NULL);
	db_free(db);
	plugins_free(plugins);
	config_free(cfg);
	return rc;
}
