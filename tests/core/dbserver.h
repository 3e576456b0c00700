/*
 * dbserver.h - a private MariaDB server for the unit tests that need a
 * database (test_db, test_jobstate, test_news, test_callback,
 * test_pipeline), without a web server.
 *
 * dbserver_setup() installs and starts mariadbd in a fresh temporary
 * folder (/tmp/darkroom-db-XXXXXX: a unix socket there, plus TCP on a
 * free port of 127.0.0.1) as root, as REFERENCE.md describes; so the
 * tests need mariadb-server installed and must run as root. The server is
 * stopped and the folder removed by dbserver_teardown(), by an atexit()
 * handler if a test aborts the run, and (through PR_SET_PDEATHSIG) by the
 * kernel if the test process dies outright.
 */
#ifndef DR_TEST_DBSERVER_H
#define DR_TEST_DBSERVER_H

#include <sys/types.h>

#include "config.h"
#include "db.h"

/* Fail the running cmocka test unless `expr` is DR_OK, with the message
 * of `err` (include cmocka.h first). */
#define assert_ok(expr, err)                                                   \
	do {                                                                   \
		dr_status s_ = (expr);                                         \
		if (s_ != DR_OK)                                               \
			fail_msg("%s: %s (%s)", #expr, dr_strerror(s_),        \
				 (err).message);                               \
	} while (0)

/* The running server (read-only for tests). */
typedef struct dbserver {
	char dir[64];  /* the temporary folder */
	char data[128];
	char sock[128];
	char log[128];
	int port;      /* TCP port on 127.0.0.1 */
	pid_t pid;     /* mariadbd, 0 when stopped */
	pid_t owner;   /* the test process (not its forked children) */
} dbserver;

extern dbserver dbsrv;

/* Install and start the server; `prog` names the test in messages and
 * the log. 0, or -1 with the reason (and the server's log) on stderr. */
int dbserver_setup(const char *prog);

/* Stop the server and remove its folder; safe to call twice. */
void dbserver_teardown(void);

/* Start the installed server again (after dbserver_stop()); 0 or -1. */
int dbserver_start(void);

/* Stop the server (SIGTERM, then SIGKILL after 20 s). */
void dbserver_stop(void);

/* Fill `c` (zeroed first) to reach database `name` as root over the unix
 * socket. The strings point into dbsrv or are static. */
void dbserver_config(dr_config *c, const char *name);

/* Create database `name` and apply the migrations of the source tree
 * (core/migrate.h) to it; `c` is filled as dbserver_config(). 0, or -1
 * with the reason on stderr. */
int dbserver_migrated(dr_config *c, const char *name);

/* A group setup in one call: dbserver_setup(prog), database `name`
 * migrated (`c` filled), and a handle on it in *db. 0 or -1. */
int dbserver_open(const char *prog, const char *name, dr_config *c,
		  dr_db **db);

/* The group teardown matching dbserver_open(): free `db`, then
 * dbserver_teardown(). */
void dbserver_close(dr_db *db);

/* The monotonic clock in seconds, and a sleep that survives signals. */
double dbserver_now(void);
void dbserver_sleep(double s);

#endif
