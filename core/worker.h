/*
 * worker.h - `darkroom worker`: a supervisor and its worker processes.
 *
 * The supervisor binds the wakeup socket, forks [worker] processes
 * children and restarts any that dies (not faster than once a second per
 * slot). Each child connects to MariaDB and creates its own plugin
 * instances, then claims due jobs one at a time and runs their step. On
 * SIGTERM or SIGINT the supervisor asks the children to stop; a child
 * finishes its current step and exits; children still running after
 * [worker] shutdown_grace are killed, and their jobs return to the queue
 * when their leases end. A child whose supervisor dies (even by SIGKILL)
 * gets SIGTERM from the kernel and stops the same way. Nothing is lost in
 * any of these cases: the database holds every job and every lease.
 */
#ifndef DR_WORKER_H
#define DR_WORKER_H

#include "config.h"

/* Run the supervisor until stopped; returns the process exit code. */
int worker_main(const dr_config *cfg);

#endif
