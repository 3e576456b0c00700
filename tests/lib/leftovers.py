#!/usr/bin/env python3
"""tests/lib/leftovers.py — the processes a test run leaves behind.

A test that starts a server and does not stop it leaves a process running
after the run (a darkroom.fcgi, a MariaDB, a fake provider), holding ports,
sockets and memory, and making the next run flaky. tests/check.sh (so
`make check` and `make sanitize`) ends with this check, and one test script
can be run under it alone.

What belongs to a run (besides this program and its ancestors):
  - a process whose environment has DARKROOM_TEST_RUN=<the run's token>
    (exported by the run, inherited by everything that keeps its
    environment);
  - a descendant of the run's first process, which is made a child
    subreaper (prctl PR_SET_CHILD_SUBREAPER): orphans are re-parented to
    it instead of to init, so this also catches processes started with a
    cleared environment (env -i, lighttpd's and Apache's FastCGI
    children, the exec adapter's programs, spawn-fcgi) and daemons that
    fork away (setsid, double fork);
  - a process whose executable, working directory, command line or
    environment names the run's own temporary folder (TMPDIR is set to
    a fresh folder for the run), for whatever escaped both.
The build directories are deliberately not a criterion: a `make run` of
the same checkout runs build/darkroom.fcgi too, and is not the run's.

  leftovers.py run [--] CMD...
      Run CMD with a fresh DARKROOM_TEST_RUN token and TMPDIR as a child
      subreaper; when it ends, list what is left, stop it (SIGTERM, then
      SIGKILL after 5 s), remove the temporary folder, and end with
      "leftovers: N passed, N failed". Exit status: CMD's, or 1 when
      something was left.
  leftovers.py reaper CMD...
      Become a child subreaper and exec CMD (tests/check.sh re-executes
      itself through this).
  leftovers.py scan --token TOKEN --root PID [--dir DIR] [--kill]
      List the processes of the run (one "leftover: pid N (name): command
      line [why]" line each) and, with --kill, stop them. Exit status 1
      when there are any.
"""

import argparse
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PR_SET_CHILD_SUBREAPER = 36
MARKER = "DARKROOM_TEST_RUN"
KILL_GRACE = 5.0


def become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        sys.exit(f"leftovers: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def read(path, binary=False):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data if binary else data.decode("utf-8", "replace")


def stat_of(pid):
    """(state, ppid) of pid from /proc/pid/stat, or None when it is gone."""
    s = read(f"/proc/{pid}/stat")
    if not s:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[1])


def processes():
    """{pid: (state, ppid)} of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = stat_of(int(name))
            if st:
                out[int(name)] = st
    return out


def ancestors(pid, procs):
    seen = set()
    while pid and pid not in seen:
        seen.add(pid)
        st = procs.get(pid)
        if not st:
            break
        pid = st[1]
    return seen


def cmdline(pid):
    raw = read(f"/proc/{pid}/cmdline", binary=True) or b""
    text = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    return text or "[" + (read(f"/proc/{pid}/comm") or "?").strip() + "]"


def why_ours(pid, token, root, folder, procs):
    """The reason pid belongs to the run, or None."""
    env = read(f"/proc/{pid}/environ", binary=True) or b""
    if token and (MARKER + "=" + token).encode() in env.split(b"\0"):
        return "marker"
    if root:
        p = pid
        for _ in range(len(procs) + 1):
            st = procs.get(p)
            if not st or st[1] in (0, p):
                break
            if st[1] == root:
                return "descendant"
            p = st[1]
    if folder:
        f = folder.rstrip("/") + "/"
        fb = f.encode()
        for link in ("exe", "cwd"):
            try:
                target = os.readlink(f"/proc/{pid}/{link}")
            except OSError:
                continue
            if (target + "/").startswith(f):
                return link + " in " + folder
        raw = read(f"/proc/{pid}/cmdline", binary=True) or b""
        for word in raw.split(b"\0") + env.split(b"\0"):
            if fb in word + b"/":
                return "names " + folder
    return None


def scan(token, root, folder):
    """[(pid, why)] of the run's processes, this one and its ancestors aside."""
    procs = processes()
    skip = ancestors(os.getpid(), procs)
    found = []
    for pid, (state, _) in sorted(procs.items()):
        if pid in skip or state in ("Z", "X"):
            continue
        why = why_ours(pid, token, root, folder, procs)
        if why:
            found.append((pid, why))
    return found


def reap_children():
    """Reap whatever children of ours have ended (adopted orphans too)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop(pids):
    """SIGTERM, then SIGKILL after KILL_GRACE seconds, to each pid."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + KILL_GRACE
    left = list(pids)
    while left and time.monotonic() < deadline:
        reap_children()
        left = [p for p in left if (stat_of(p) or ("X",))[0] not in ("Z", "X")]
        if left:
            time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.2)
    reap_children()
    return left


def report(found):
    for pid, why in found:
        print(f"leftover: pid {pid} ({(read(f'/proc/{pid}/comm') or '?').strip()}): "
              f"{cmdline(pid)} [{why}]", flush=True)


def check(token, root, folder, kill):
    """Report the run's processes and (kill) stop them; True when none."""
    # A process that is just ending is not a leftover: give the run's last
    # steps a moment, then look again.
    found = scan(token, root, folder)
    for _ in range(20):
        if not found:
            break
        time.sleep(0.1)
        reap_children()
        found = scan(token, root, folder)
    if not found:
        return True
    report(found)
    if kill:
        stubborn = stop([p for p, _ in found])
        # What the stopped ones started on their way out.
        again = [p for p, _ in scan(token, root, folder)]
        if again:
            stubborn += stop(again)
        if stubborn:
            print(f"leftovers: still there after SIGKILL: {' '.join(map(str, stubborn))}", flush=True)
    return False


def cmd_run(args):
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        sys.exit("usage: leftovers.py run [--] CMD...")
    become_subreaper()
    token = secrets.token_hex(8)
    folder = tempfile.mkdtemp(prefix="darkroom-run.")
    os.chmod(folder, 0o1777)  # like /tmp: services running as other users use it too
    env = dict(os.environ, DARKROOM_TEST_RUN=token, TMPDIR=folder)
    child = subprocess.Popen(cmd, env=env)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    rc = child.wait()
    clean = check(token, os.getpid(), folder, kill=True)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"leftovers: {1 if clean else 0} passed, {0 if clean else 1} failed", flush=True)
    return rc if clean else (rc or 1)


def cmd_reaper(args):
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        sys.exit("usage: leftovers.py reaper CMD...")
    become_subreaper()
    os.execvp(cmd[0], cmd)


def cmd_scan(args):
    return 0 if check(args.token, args.root, args.dir, args.kill) else 1


def main():
    ap = argparse.ArgumentParser(description="the processes a test run leaves behind")
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("run")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("reaper")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_reaper)
    p = sub.add_parser("scan")
    p.add_argument("--token", default="")
    p.add_argument("--root", type=int, default=0)
    p.add_argument("--dir", default="")
    p.add_argument("--kill", action="store_true")
    p.set_defaults(fn=cmd_scan)
    args = ap.parse_args()
    sys.exit(args.fn(args))


if __name__ == "__main__":
    main()
