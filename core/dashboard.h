/*
 * dashboard.h - the HTML dashboard served at GET / (CONTRACT §2, Service).
 */
#ifndef DR_DASHBOARD_H
#define DR_DASHBOARD_H

#include "buf.h"
#include "error.h"

/* Append the dashboard page (a self-contained HTML document) to `out`.
 * Fails only when `out` is over its limit. */
dr_status dashboard_render(dr_buf *out) DR_WARN_UNUSED;

#endif
