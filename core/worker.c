/*
 * worker.c - the supervisor and the worker loop (see worker.h).
 */
#include "worker.h"

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "deletion.h"
#include "engine.h"
#include "files.h"
#include "image.h"
#include "log.h"
#include "metrics.h"
#include "objects.h"
#include "plugin.h"
#include "queue.h"
#include "ratelimit.h"
#include "retention.h"

#define MAX_CHILDREN 64
#define IDLE_MAX 5.0       /* longest sleep without work (seconds) */
#define DB_RETRY 1.0       /* sleep after a database failure */
#define RESTART_MIN 1.0    /* a slot restarts at most once a second */
#define HEARTBEAT 3.0      /* seconds between liveness rows (metrics.h) */

/* Longest idle pause between two retention batches (seconds). */
#define PRUNE_PAUSE 0.01

/*
 * glibc's malloc gives blocks over a threshold their own mapping and
 * returns it to the kernel when freed; its default threshold follows the
 * sizes freed so far and arenas trim their tops, so each job's image
 * buffers (a few MiB for a 1024x1024 PNG: the file, decoded pixels, the
 * renditions) came back as fresh pages: about 2300 page faults, 3 % of a
 * worker's CPU per output. Fixed thresholds keep such buffers for the next
 * job; larger ones (a 4000x3000 image's 36 MB of pixels) are still mapped
 * and returned at once, so an idle worker holds at most about
 * WORKER_TRIM_KEEP more than it uses.
 */
#define WORKER_MMAP_MIN (16 << 20)
#define WORKER_TRIM_KEEP (32 << 20)

static volatile sig_atomic_t stopping;
static volatile sig_atomic_t child_exited;

static void on_stop(int sig)
{
	(void)sig;
	stopping = 1;
}

static void on_child(int sig)
{
	(void)sig;
	child_exited = 1;
}

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void set_handlers(void (*stop)(int), void (*child)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = child ? child : SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

/* Sleep until a wakeup datagram, a signal, or `seconds`. */
static void idle_wait(int wake_fd, double seconds)
{
	struct pollfd pfd = {.fd = wake_fd, .events = POLLIN};
	char buf[64];
	int ms = (int)(seconds * 1000);

	if (ms < 1)
		ms = 1;
	if (poll(&pfd, 1, ms) > 0 && (pfd.revents & POLLIN))
		while (recv(wake_fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
			break; /* one datagram wakes one worker */
}

/* One worker process: claim, run, repeat. Never returns. */
static _Noreturn void child_main(const dr_config *cfg, int slot, int wake_fd)
{
	dr_engine e;
	dr_error err;
	char host[48] = "localhost";
	double beat = -HEARTBEAT, maintained = -DR_MAINTAIN_INTERVAL;
	double files_due = 0;
	dr_retention ret;
	dr_object_pass objs;
	dr_deletion_pass dels;
	struct dr_instance *sink;
	int rc = 0, pruning = 0;

	/* Die with the supervisor, even when it is SIGKILLed. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		_exit(0);
	set_handlers(on_stop, NULL);
	mallopt(M_MMAP_THRESHOLD, WORKER_MMAP_MIN);
	mallopt(M_TRIM_THRESHOLD, WORKER_TRIM_KEEP);
	memset(&e, 0, sizeof(e));
	memset(&ret, 0, sizeof(ret));
	memset(&objs, 0, sizeof(objs));
	memset(&dels, 0, sizeof(dels));
	dr_error_clear(&err);
	e.cfg = cfg;
	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	snprintf(e.owner, sizeof(e.owner), "%.40s:%ld", host, (long)getpid());
	/* libvips starts after fork: its threads do not survive one. */
	if (image_init("darkroom-worker") != DR_OK) {
		dr_log(DR_LOG_ERR, "event=worker.image_init_failed slot=%d",
		       slot);
		_exit(1);
	}
	if (plugins_init(cfg, 1, &e.plugins, &err) != DR_OK) {
		dr_log(DR_LOG_ERR, "event=worker.plugins_failed slot=%d "
				   "reason=\"%s\"",
		       slot, err.message);
		_exit(1);
	}
	e.db = db_new(cfg);
	plugins_set_db(e.plugins, e.db);
	sink = plugins_sink(e.plugins, cfg->server.sink);
	dr_log(DR_LOG_INFO, "event=worker.start slot=%d owner=%s", slot,
	       e.owner);
	/* The rate limits in effect, for /metrics (the first process). */
	if (slot == 0 && ratelimit_sync(e.db, cfg, &err) != DR_OK)
		dr_log(DR_LOG_WARNING,
		       "event=worker.rate_limits_failed status=\"%s\"",
		       dr_strerror(err.status));
	while (!stopping) {
		dr_claim c;
		dr_status st;
		double due = -1;

		if (now_mono() - beat >= HEARTBEAT) {
			metrics_heartbeat(e.db, e.owner, (long)getpid(), host);
			beat = now_mono();
		}
		/* Adapters' upkeep (a webhook secret for the app, say): from
		 * the first process only, at start and then every interval,
		 * so a pool asks the provider once, not once per process. */
		if (slot == 0 &&
		    now_mono() - maintained >= DR_MAINTAIN_INTERVAL) {
			plugins_maintain(e.plugins);
			maintained = now_mono();
		}
		/* Expired idempotency keys and webhook delivery ids: the first
		 * process again, one batch per turn of the loop, so jobs are
		 * claimed between batches (retention.h). */
		if (slot == 0)
			pruning = retention_step(&ret, e.db, cfg, now_mono());
		/* Jobs deleted by selector, and ended jobs past [retention]
		 * jobs: the same process, a batch per turn (deletion.h). */
		if (slot == 0 &&
		    deletion_step(&dels, e.db, cfg, DR_RETENTION_INTERVAL,
				  now_mono()))
			pruning = 1;
		/* Objects no row uses any more (a deleted job's, a replaced
		 * rendition's after [retention] superseded): the same
		 * process, a batch per turn too (objects.h). */
		if (slot == 0 &&
		    objects_step(&objs, e.db, sink, DR_RETENTION_INTERVAL,
				 now_mono()))
			pruning = 1;

		/* Uploaded files past [files] ttl that no running job uses
		 * (files.h): the same process, a batch per interval (at
		 * once again after a full one). */
		if (slot == 0 && cfg->files.ttl > 0 &&
		    now_mono() >= files_due) {
			size_t nf = 0;

			if (files_expire(e.db, sink, DR_FILES_PAGE_MAX, &nf,
					 &err) != DR_OK)
				dr_log(DR_LOG_WARNING,
				       "event=files.expire_failed "
				       "status=\"%s\"",
				       dr_strerror(err.status));
			files_due =
				now_mono() + (nf == DR_FILES_PAGE_MAX
						      ? 0
						      : DR_RETENTION_INTERVAL);
		}

		st = queue_claim(e.db, e.owner, cfg->worker.lease,
				 cfg->server.fair_key != NULL, &c, &err);
		if (st == DR_OK) {
			double t0 = now_mono();

			dr_log(DR_LOG_DEBUG,
			       "event=job.claimed job=%s step=%s adapter=%s",
			       c.id, c.step, c.adapter);
			engine_run(&e, &c);
			dr_log(DR_LOG_INFO,
			       "event=job.step_done job=%s step=%s adapter=%s "
			       "duration_ms=%.1f",
			       c.id, c.step, c.adapter,
			       (now_mono() - t0) * 1000);
			queue_claim_clear(&c);
			continue;
		}
		if (st != DR_ERR_NOT_FOUND) {
			dr_log(DR_LOG_WARNING,
			       "event=worker.claim_failed status=\"%s\"",
			       dr_strerror(st));
			idle_wait(wake_fd, DB_RETRY);
			continue;
		}
		if (queue_next_due(e.db, &due, &err) != DR_OK || due < 0 ||
		    due > IDLE_MAX)
			due = IDLE_MAX;
		if (pruning && due > PRUNE_PAUSE)
			due = PRUNE_PAUSE; /* the next batch soon */
		/* A removal a delete queued is due now, not at the next
		 * interval: bring the pass forward. */
		if (slot == 0 && !pruning) {
			objects_step_soon(&objs, e.db, now_mono());
			if (objs.next - now_mono() < due)
				due = objs.next > now_mono()
					      ? objs.next - now_mono()
					      : 0;
		}
		metrics_flush(e.db, 1); /* nothing to do: write the counts */
		idle_wait(wake_fd, due);
	}
	dr_log(DR_LOG_INFO, "event=worker.stop slot=%d", slot);
	metrics_heartbeat_clear(e.db, e.owner);
	plugins_set_db(e.plugins, NULL);
	db_free(e.db);
	plugins_free(e.plugins);
	_exit(rc);
}

typedef struct slot {
	pid_t pid;
	double started;
} slot;

static void spawn(const dr_config *cfg, slot *s, int i, int wake_fd)
{
	pid_t pid;

	s->started = now_mono();
	pid = fork();
	if (pid < 0) {
		dr_log(DR_LOG_ERR, "event=worker.fork_failed errno=%d", errno);
		s->pid = 0;
		return;
	}
	if (pid == 0)
		child_main(cfg, i, wake_fd);
	s->pid = pid;
}

int worker_main(const dr_config *cfg)
{
	slot slots[MAX_CHILDREN];
	int n = cfg->worker.processes;
	int wake_fd;
	double deadline;

	if (n < 1 || n > MAX_CHILDREN)
		n = n < 1 ? 1 : MAX_CHILDREN;
	wake_fd = queue_wakeup_listen(cfg->worker.wakeup_socket);
	if (wake_fd < 0) {
		fprintf(stderr,
			"darkroom worker: cannot bind the wakeup socket %s: "
			"%s\n",
			cfg->worker.wakeup_socket, strerror(errno));
		return 1;
	}
	set_handlers(on_stop, on_child);
	memset(slots, 0, sizeof(slots));
	dr_log(DR_LOG_INFO, "event=supervisor.start processes=%d", n);
	for (int i = 0; i < n; i++)
		spawn(cfg, &slots[i], i, wake_fd);

	while (!stopping) {
		int status;
		pid_t pid;

		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			for (int i = 0; i < n; i++) {
				if (slots[i].pid != pid)
					continue;
				slots[i].pid = 0;
				if (WIFSIGNALED(status))
					dr_log(DR_LOG_ERR,
					       "event=worker.died slot=%d "
					       "pid=%ld signal=%d",
					       i, (long)pid, WTERMSIG(status));
				else
					dr_log(DR_LOG_WARNING,
					       "event=worker.exited slot=%d "
					       "pid=%ld code=%d",
					       i, (long)pid,
					       WEXITSTATUS(status));
			}
		}
		child_exited = 0;
		for (int i = 0; i < n && !stopping; i++)
			if (!slots[i].pid &&
			    now_mono() - slots[i].started >= RESTART_MIN)
				spawn(cfg, &slots[i], i, wake_fd);
		if (!child_exited && !stopping)
			usleep(200 * 1000);
	}

	/* Ask the children to finish their step, then insist. */
	dr_log(DR_LOG_INFO, "event=supervisor.stopping");
	for (int i = 0; i < n; i++)
		if (slots[i].pid)
			kill(slots[i].pid, SIGTERM);
	deadline = now_mono() + cfg->worker.shutdown_grace;
	for (;;) {
		int alive = 0, status;
		pid_t pid;

		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			for (int i = 0; i < n; i++)
				if (slots[i].pid == pid)
					slots[i].pid = 0;
		for (int i = 0; i < n; i++)
			alive += slots[i].pid != 0;
		if (!alive)
			break;
		if (now_mono() >= deadline) {
			for (int i = 0; i < n; i++)
				if (slots[i].pid) {
					dr_log(DR_LOG_WARNING,
					       "event=worker.killed slot=%d "
					       "pid=%ld",
					       i, (long)slots[i].pid);
					kill(slots[i].pid, SIGKILL);
				}
			while (waitpid(-1, NULL, 0) > 0)
				;
			break;
		}
		usleep(50 * 1000);
	}
	close(wake_fd);
	unlink(cfg->worker.wakeup_socket);
	dr_log(DR_LOG_INFO, "event=supervisor.stop");
	return 0;
}
