#!/usr/bin/env python3
"""tests/lib/check_style.py - the house-style checks a script can make.

1. Banned calls. The C sources of core/ and plugins/ (*.c, *.h, at any
   depth) must not call the functions of BANNED, curl's list (its
   scripts/checksrc.pl) cut to what applies here: unbounded writes
   (sprintf, strcpy, strcat, gets), the n-variants that do not terminate
   or silently cut (strncpy, strncat), parsers that cannot report an
   error (atoi and friends), hidden static state (strtok, gmtime,
   localtime, ctime, asctime) and racy temporary names (tmpnam, mktemp).
   Comments, string and character literals are blanked first, and
   members (`x.sprintf(`, `p->atoi(`) and longer names (`my_strcpy(`)
   are not calls of these. Each call is a FAIL line "file:line: ...".

2. Formatting. The committed .clang-format applies to the lines a branch
   changes: every C line of core/ and plugins/ that differs from the
   merge base with main (the working tree against it, so uncommitted
   edits count; new untracked files count whole) is run through
   `clang-format --dry-run -Werror --lines=...`, and each file with a
   finding is a FAIL with clang-format's file:line:col messages. Only
   changed lines, because much of the tree predates the .clang-format:
   reformatting whole files would rewrite code other branches are
   editing. Which base: STYLE_BASE when set; else the merge base of HEAD
   with `main` (or `origin/main`); else the parent of HEAD (the last
   commit's changes, as in a fresh clone of a branch without main); not a
   git checkout, or no clang-format: the part is skipped with a note.

Usage: python3 tests/lib/check_style.py [--self-test]
Prints one line per check ("ok   ..." or "FAIL ..."), then
"N passed, N failed"; exits 1 on any failure. --self-test runs the
checker on made-up sources instead (each case must be found or not
found as it says) and on a planted misformatted line in a scratch git
repository.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name -> what to use instead
BANNED = {
    "gets": "fgets()",
    "sprintf": "snprintf() or dr_buf_printf()",
    "vsprintf": "vsnprintf()",
    "strcpy": "snprintf(), memcpy() with a checked length, or dr_xstrdup()",
    "strcat": "snprintf() or a dr_buf",
    "strncpy": "snprintf() or memcpy() with a checked length (strncpy may leave no NUL)",
    "strncat": "snprintf() or a dr_buf",
    "strtok": "strtok_r() or strchr()",
    "atoi": "strtol() with errno and end checks",
    "atol": "strtol() with errno and end checks",
    "atoll": "strtoll() with errno and end checks",
    "atof": "strtod() with errno and end checks",
    "gmtime": "gmtime_r()",
    "localtime": "localtime_r()",
    "ctime": "strftime() with localtime_r()",
    "asctime": "strftime()",
    "tmpnam": "mkstemp()",
    "tempnam": "mkstemp()",
    "mktemp": "mkstemp() or mkdtemp()",
}

CALL = re.compile(r"\b(" + "|".join(sorted(BANNED)) + r")\s*\(")


def blank(text):
    """text with comments, string and character literals replaced by
    spaces (newlines kept, so line numbers stay)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            end = min(j + 1 if j < n and text[j] == c else j, n)
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def banned_calls(text):
    """[(line, name)] of the banned calls in C source `text`."""
    code = blank(text)
    found = []
    for m in CALL.finditer(code):
        before = code[:m.start()].rstrip()
        if before.endswith(".") or before.endswith("->"):
            continue
        found.append((code.count("\n", 0, m.start()) + 1, m.group(1)))
    return found


def c_sources(root):
    files = []
    for top in ("core", "plugins"):
        for ext in ("c", "h"):
            files += glob.glob(os.path.join(root, top, "**", "*." + ext), recursive=True)
    return sorted(os.path.relpath(f, root) for f in files)


class Counter:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, msg):
        print("ok   " + msg, flush=True)
        self.passed += 1

    def fail(self, msg):
        print("FAIL " + msg, flush=True)
        self.failed += 1


def check_banned(root, t):
    files = c_sources(root)
    bad = 0
    for f in files:
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for line, name in banned_calls(text):
            t.fail(f"{f}:{line}: {name}() is banned: use {BANNED[name]}")
            bad += 1
    if bad == 0:
        t.ok(f"no banned call in the {len(files)} C files of core/ and plugins/")


def git(root, *args):
    return subprocess.run(["git", "-C", root] + list(args), capture_output=True, text=True)


def style_base(root):
    """(commit, how it was chosen), or (None, why not)."""
    if git(root, "rev-parse", "--git-dir").returncode != 0:
        return None, "not a git checkout"
    if os.environ.get("STYLE_BASE"):
        return os.environ["STYLE_BASE"], "STYLE_BASE"
    for ref in ("main", "origin/main"):
        if git(root, "rev-parse", "--verify", "-q", ref + "^{commit}").returncode == 0:
            r = git(root, "merge-base", "HEAD", ref)
            if r.returncode == 0:
                return r.stdout.strip(), f"the merge base with {ref}"
    if git(root, "rev-parse", "--verify", "-q", "HEAD~1").returncode == 0:
        return "HEAD~1", "the parent of HEAD (no main branch)"
    return None, "no main branch and no parent commit"


def is_checked(path):
    return (path.startswith("core/") or path.startswith("plugins/")) and path.endswith((".c", ".h"))


def changed_lines(root, base):
    """{file: [(first, last), ...] or None (the whole file)} of the C
    files of core/ and plugins/ that differ from `base`."""
    ranges = {}
    r = git(root, "diff", "-U0", "--no-color", "--no-ext-diff", "--diff-filter=AMR", base, "--",
            "core", "plugins")
    if r.returncode != 0:
        raise RuntimeError(f"git diff {base}: {r.stderr.strip()}")
    current = None
    for line in r.stdout.splitlines():
        if line.startswith("+++ "):
            path = line[4:]
            current = path[2:] if path.startswith("b/") else None
            if current and not is_checked(current):
                current = None
            continue
        m = re.match(r"@@ -\S+ \+(\d+)(?:,(\d+))? @@", line)
        if m and current:
            first, count = int(m.group(1)), int(m.group(2) or "1")
            if count > 0:
                ranges.setdefault(current, []).append((first, first + count - 1))
    r = git(root, "ls-files", "--others", "--exclude-standard", "--", "core", "plugins")
    for path in r.stdout.splitlines():
        if is_checked(path):
            ranges[path] = None
    return ranges


def check_format(root, t):
    if not shutil.which("clang-format"):
        print("# style: clang-format is not installed (tests/lib/deps.sh test): formatting not checked")
        return
    base, how = style_base(root)
    if base is None:
        print(f"# style: {how}: formatting not checked")
        return
    ranges = changed_lines(root, base)
    if not ranges:
        t.ok(f"no C line of core/ or plugins/ changed since {how}")
        return
    for path in sorted(ranges):
        args = ["clang-format", "--dry-run", "-Werror", "--style=file"]
        for first, last in ranges[path] or []:
            args.append(f"--lines={first}:{last}")
        r = subprocess.run(args + [path], cwd=root, capture_output=True, text=True)
        what = "changed lines" if ranges[path] else "new file"
        if r.returncode == 0:
            t.ok(f"{path}: {what} formatted as .clang-format says")
        else:
            where = sorted({m.group(1) for m in re.finditer(r"^(\S+:\d+):\d+: error", r.stderr, re.M)},
                           key=lambda s: int(s.rsplit(":", 1)[1]))
            t.fail(f"{path}: {what} not formatted as .clang-format says, at "
                   + (", ".join(where) if where else r.stderr.strip()[:300])
                   + f" (git clang-format {base[:12]} fixes them)")


def self_test(t):
    cases = [
        ("int f(void) { char b[8]; sprintf(b, \"x\"); }", [(1, "sprintf")]),
        ("x = atoi (s);\ny = strcpy(d,s);", [(1, "atoi"), (2, "strcpy")]),
        ("/* sprintf(b, \"x\") in a comment */", []),
        ("// strcat(a, b)\n", []),
        ("const char *s = \"strtok(a, b)\";", []),
        ("const char *s = \"a \\\" strcat(x)\";", []),
        ("char c = '\"'; gets(b);", [(1, "gets")]),
        ("snprintf(b, n, \"%d\", 1); my_strcpy(a); strcpy_s(a);", []),
        ("ops->atoi(x); s.sprintf(y);", []),
        ("/* one\n two */\n\nstrncpy(a, b, 3);", [(4, "strncpy")]),
        ("#define SAY(x) sprintf(buf, x)", [(1, "sprintf")]),
        ("t = gmtime(&now); u = gmtime_r(&now, &tm);", [(1, "gmtime")]),
    ]
    for src, want in cases:
        got = banned_calls(src)
        if got == want:
            t.ok(f"banned calls in {src!r}: {want or 'none'}")
        else:
            t.fail(f"banned calls in {src!r}: wanted {want}, found {got}")

    if not shutil.which("clang-format") or not shutil.which("git"):
        t.fail("self-test needs git and clang-format")
        return
    os.environ.pop("STYLE_BASE", None)  # the scratch repository's own main
    with tempfile.TemporaryDirectory(prefix="darkroom-style.") as d:
        env_git = ["-c", "user.name=style", "-c", "user.email=style@example.invalid"]
        shutil.copy(os.path.join(ROOT, ".clang-format"), d)
        os.makedirs(os.path.join(d, "core"))
        ugly = "int  ugly ( int x ){return x;}\n"
        tidy = "static int tidy(int x)\n{\n\treturn x;\n}\n"
        with open(os.path.join(d, "core", "old.c"), "w") as f:
            f.write(ugly + "\n" + tidy)
        subprocess.run(["git", "init", "-q", "-b", "main", d], check=True)
        subprocess.run(["git", "-C", d] + env_git + ["add", "-A"], check=True)
        subprocess.run(["git", "-C", d] + env_git + ["commit", "-q", "-m", "base"], check=True)
        subprocess.run(["git", "-C", d, "checkout", "-q", "-b", "topic"], check=True)

        def run_format():
            inner = Counter()
            saved = sys.stdout
            sys.stdout = open(os.devnull, "w")
            try:
                check_format(d, inner)
            finally:
                sys.stdout.close()
                sys.stdout = saved
            return inner

        inner = run_format()
        if inner.failed == 0 and inner.passed == 1:
            t.ok("format: an old misformatted line nobody changed is left alone")
        else:
            t.fail(f"format: unchanged tree gave {inner.passed} passed, {inner.failed} failed")
        with open(os.path.join(d, "core", "old.c"), "a") as f:
            f.write("\nstatic int tidy2(int x)\n{\n\treturn x;\n}\n")
        inner = run_format()
        if inner.failed == 0 and inner.passed == 1:
            t.ok("format: a well-formatted change passes")
        else:
            t.fail(f"format: a tidy change gave {inner.passed} passed, {inner.failed} failed")
        with open(os.path.join(d, "core", "old.c"), "a") as f:
            f.write("\nint  planted ( void ){return 0;}\n")
        with open(os.path.join(d, "core", "new.c"), "w") as f:
            f.write("int  fresh(void){return 1;}\n")
        inner = run_format()
        if inner.failed == 2:
            t.ok("format: a planted misformatted line and a misformatted new file fail")
        else:
            t.fail(f"format: planted lines gave {inner.passed} passed, {inner.failed} failed")


def main():
    t = Counter()
    if sys.argv[1:] == ["--self-test"]:
        self_test(t)
    elif sys.argv[1:]:
        print("usage: check_style.py [--self-test]", file=sys.stderr)
        return 2
    else:
        check_banned(ROOT, t)
        check_format(ROOT, t)
    print(f"{t.passed} passed, {t.failed} failed")
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
