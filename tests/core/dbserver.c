/*
 * dbserver.c - a private MariaDB server for unit tests (see dbserver.h).
 */
#include "dbserver.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "log.h"
#include "migrate.h"

#ifndef DR_SOURCE_DIR
#define DR_SOURCE_DIR "."
#endif

/* How long the server may take to answer after starting, seconds. */
#define SERVER_START_WAIT 30.0
/* How long it may take to stop on SIGTERM before SIGKILL, seconds. */
#define SERVER_STOP_WAIT 20.0

dbserver dbsrv;

double dbserver_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void dbserver_sleep(double s)
{
	struct timespec ts;

	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------ */
/* The private server */

/* The path of a MariaDB program: /usr/sbin, /usr/bin, else via PATH. */
static char *sbin(const char *name, char *buf, size_t n)
{
	static const char *const dirs[] = { "/usr/sbin/", "/usr/bin/", "" };

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(buf, n, "%s%s", dirs[i], name);
		if (dirs[i][0] == '\0' || access(buf, X_OK) == 0)
			break;
	}
	return buf;
}

/* Start argv with output appended to `log`; the child dies with us. */
static pid_t spawn(char *const argv[], const char *log)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (in < 0 || out < 0)
			_exit(127);
		dup2(in, 0);
		dup2(out, 1);
		dup2(out, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Run argv to completion; its exit status, or -1. */
static int run(char *const argv[], const char *log)
{
	int status;
	pid_t pid = spawn(argv, log);

	if (pid < 0)
		return -1;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void print_log(void)
{
	char line[512];
	FILE *f = fopen(dbsrv.log, "r");

	if (!f)
		return;
	fprintf(stderr, "---- %s ----\n", dbsrv.log);
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fclose(f);
}

static int free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

int dbserver_start(void)
{
	char bin[64], admin[64], a_data[160], a_sock[160], a_port[32];
	char a_ping_sock[160];
	char *argv[] = { sbin("mariadbd", bin, sizeof(bin)),
			 "--no-defaults",
			 "--user=root",
			 a_data,
			 a_sock,
			 a_port,
			 "--bind-address=127.0.0.1",
			 "--skip-name-resolve",
			 "--skip-log-bin",
			 "--innodb-buffer-pool-size=64M",
			 "--innodb-log-file-size=16M",
			 NULL };
	char *ping[] = { sbin("mariadb-admin", admin, sizeof(admin)),
			 "--no-defaults",
			 a_ping_sock,
			 "-uroot",
			 "ping",
			 NULL };
	double deadline = dbserver_now() + SERVER_START_WAIT;

	snprintf(a_data, sizeof(a_data), "--datadir=%s", dbsrv.data);
	snprintf(a_sock, sizeof(a_sock), "--socket=%s", dbsrv.sock);
	snprintf(a_port, sizeof(a_port), "--port=%d", dbsrv.port);
	snprintf(a_ping_sock, sizeof(a_ping_sock), "--socket=%s", dbsrv.sock);
	dbsrv.pid = spawn(argv, dbsrv.log);
	if (dbsrv.pid < 0) {
		dbsrv.pid = 0;
		return -1;
	}
	while (dbserver_now() < deadline) {
		int status;

		if (waitpid(dbsrv.pid, &status, WNOHANG) == dbsrv.pid) {
			dbsrv.pid = 0;
			fprintf(stderr, "mariadbd exited during start\n");
			print_log();
			return -1;
		}
		if (run(ping, "/dev/null") == 0)
			return 0;
		dbserver_sleep(0.05);
	}
	fprintf(stderr, "mariadbd did not answer within %.0f s\n",
		SERVER_START_WAIT);
	print_log();
	return -1;
}

void dbserver_stop(void)
{
	double deadline = dbserver_now() + SERVER_STOP_WAIT;
	int status;

	if (dbsrv.pid <= 0)
		return;
	kill(dbsrv.pid, SIGTERM);
	while (waitpid(dbsrv.pid, &status, WNOHANG) == 0) {
		if (dbserver_now() > deadline) {
			kill(dbsrv.pid, SIGKILL);
			waitpid(dbsrv.pid, &status, 0);
			break;
		}
		dbserver_sleep(0.01);
	}
	dbsrv.pid = 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_rf(const char *path)
{
	if (path[0])
		nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Last resort when a test aborts the run: no grace, just clean up. */
static void server_atexit(void)
{
	if (getpid() != dbsrv.owner)
		return;
	if (dbsrv.pid > 0) {
		kill(dbsrv.pid, SIGKILL);
		waitpid(dbsrv.pid, NULL, 0);
		dbsrv.pid = 0;
	}
	rm_rf(dbsrv.dir);
	dbsrv.dir[0] = '\0';
}

void dbserver_config(dr_config *c, const char *name)
{
	memset(c, 0, sizeof(*c));
	c->database.host = "localhost";
	c->database.socket = dbsrv.sock;
	c->database.user = "root";
	c->database.name = name;
	c->database.connect_timeout = 2;
	c->database.io_timeout = 10;
}

int dbserver_setup(const char *prog)
{
	char bin[64], a_data[160];
	char *install[] = { sbin("mariadb-install-db", bin, sizeof(bin)),
			    "--no-defaults",
			    "--user=root",
			    a_data,
			    "--auth-root-authentication-method=socket",
			    "--skip-test-db",
			    NULL };

	dr_log_init(prog,
		    getenv("DR_TEST_VERBOSE") ? DR_LOG_DEBUG : DR_LOG_WARNING,
		    0);
	if (geteuid() != 0) {
		fprintf(stderr, "%s starts its own MariaDB as root "
				"(mariadbd --user=root); run it as root\n",
			prog);
		return -1;
	}
	dbsrv.owner = getpid();
	atexit(server_atexit);
	snprintf(dbsrv.dir, sizeof(dbsrv.dir), "/tmp/darkroom-db-XXXXXX");
	if (!mkdtemp(dbsrv.dir)) {
		dbsrv.dir[0] = '\0';
		return -1;
	}
	snprintf(dbsrv.data, sizeof(dbsrv.data), "%s/data", dbsrv.dir);
	snprintf(dbsrv.sock, sizeof(dbsrv.sock), "%s/mysqld.sock", dbsrv.dir);
	snprintf(dbsrv.log, sizeof(dbsrv.log), "%s/mariadb.log", dbsrv.dir);
	snprintf(a_data, sizeof(a_data), "--datadir=%s", dbsrv.data);
	dbsrv.port = free_port();
	if (dbsrv.port <= 0)
		return -1;
	if (run(install, dbsrv.log) != 0) {
		fprintf(stderr, "mariadb-install-db failed\n");
		print_log();
		return -1;
	}
	return dbserver_start();
}

void dbserver_teardown(void)
{
	dbserver_stop();
	rm_rf(dbsrv.dir);
	dbsrv.dir[0] = '\0';
}

int dbserver_migrated(dr_config *c, const char *name)
{
	char sql[160];
	dr_error err;
	dr_db *db;
	FILE *devnull;
	dr_status st;

	dbserver_config(c, name);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s CHARACTER SET utf8mb4",
		 name);
	db = db_new_server(c);
	st = db_exec_text(db, sql, &err);
	db_free(db);
	if (st != DR_OK) {
		fprintf(stderr, "create database %s: %s\n", name, err.message);
		return -1;
	}
	devnull = fopen("/dev/null", "w");
	st = migrate_run(c, DR_SOURCE_DIR "/migrations", devnull, &err);
	if (devnull)
		fclose(devnull);
	if (st != DR_OK) {
		fprintf(stderr, "migrate %s: %s\n", name, err.message);
		return -1;
	}
	return 0;
}

int dbserver_open(const char *prog, const char *name, dr_config *c,
		  dr_db **db)
{
	if (dbserver_setup(prog) != 0 || dbserver_migrated(c, name) != 0)
		return -1;
	*db = db_new(c);
	return 0;
}

void dbserver_close(dr_db *db)
{
	db_free(db);
	dbserver_teardown();
}
