/*
 * hello_fcgi.c - the ceiling of the intake benchmark: the smallest FastCGI
 * application libfcgi allows, answering every request with a tiny JSON
 * 201 and doing nothing else (no database, no parsing, no logging).
 *
 * tests/bench/bench_intake.py runs it under the same conf/lighttpd.conf as
 * darkroom.fcgi (same number of processes, same socket setup), so the
 * difference between the two is the cost of darkroom itself, not of
 * lighttpd, the FastCGI protocol or the load generator. It reads and drops
 * the request body, as a real application must before answering.
 */
#include <fcgiapp.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void on_term(int sig)
{
	(void)sig;
	_exit(0);
}

int main(void)
{
	static const char answer[] =
		"Status: 201 Created\r\n"
		"Content-Type: application/json; charset=utf-8\r\n"
		"Content-Length: 17\r\n"
		"Cache-Control: no-store\r\n"
		"\r\n"
		"{\"hello\":\"world\"}";
	FCGX_Request fr;
	struct sigaction sa;
	char chunk[16384];

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	if (FCGX_Init() != 0 || FCGX_InitRequest(&fr, 0, 0) != 0)
		return 1;
	while (FCGX_Accept_r(&fr) >= 0) {
		while (FCGX_GetStr(chunk, sizeof(chunk), fr.in) > 0)
			;
		FCGX_PutStr(answer, (int)sizeof(answer) - 1, fr.out);
		FCGX_Finish_r(&fr);
	}
	return 0;
}
