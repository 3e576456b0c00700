# darkroom - one non-recursive Makefile.
#
#   make            build the CLI, the FastCGI app and the plugins into build/
#   make run        install what is missing, build, run the service locally
#   make check      install what is missing, build, run every test
#   make sanitize   the same tests against an ASan+UBSan build (build-san/)
#   make fuzz       libFuzzer harnesses of tests/fuzz/, FUZZ_SECONDS each
#   make bench      the benchmark suite of tests/bench/ (figures, not tests)
#   make install    PREFIX=/usr/local DESTDIR= (see README)
#   make clean
#
# Quiet unless V=1. Dependencies come from -MMD -MP.

CC ?= cc
PREFIX ?= /usr/local
DESTDIR ?=
BUILD ?= build
SYSCONFDIR ?= /etc
BINDIR = $(PREFIX)/bin
LIBDIR = $(PREFIX)/lib
PLUGINDIR = $(LIBDIR)/darkroom/plugins
DATADIR = $(PREFIX)/share/darkroom
INCLUDEDIR = $(PREFIX)/include

VERSION := 0.1.0
.DEFAULT_GOAL := all

ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-7s %s\n' $(1) $(2);
endif

# Libraries; pkg-config is evaluated lazily so `make check` can install it
# first. PKGS is what the core compiles against; each binary links only
# what it uses: the CLI (worker, pipeline) links everything, the FastCGI
# app (API, webhooks) no libvips/GLib (tests/lib/check_fcgi_libs.sh checks
# it, and that neither links libs3).
PKGS = fcgi libcurl vips libmariadb json-c libcrypto
FCGI_PKGS = fcgi libcurl libmariadb json-c libcrypto
pkg_cflags = $(shell pkg-config --cflags $(1) | sed 's/-I/-isystem /g')
pkg_libs = $(shell pkg-config --libs $(1))

WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
       -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral \
       -Wvla -Wpointer-arith
OPT ?= -O2 -g
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=undefined
ifeq ($(SAN),1)
OPT = -O1 -g $(SAN_FLAGS)
endif

BASE_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(OPT) -MMD -MP
CORE_CFLAGS = $(BASE_CFLAGS) -Icore $(call pkg_cflags,$(PKGS)) \
              -DDR_VERSION='"$(VERSION)"' \
              -DDR_MIGRATIONS_DIR='"$(DATADIR)/migrations"' \
              -DDR_PLUGIN_DIR='"$(PLUGINDIR)"' \
              -DDR_SYSCONF='"$(SYSCONFDIR)/darkroom/darkroom.conf"'
CORE_LIBS = $(call pkg_libs,$(PKGS)) -ldl -lm
FCGI_LIBS = $(call pkg_libs,$(FCGI_PKGS)) -ldl -lm
LDFLAGS ?=
ifeq ($(SAN),1)
LDFLAGS += $(SAN_FLAGS)
endif

# ---------------------------------------------------------------- core
MAINS = core/cli_main.c core/fcgi_main.c
CORE_SRC = $(filter-out $(MAINS),$(wildcard core/*.c))
CORE_OBJ = $(CORE_SRC:%.c=$(BUILD)/%.o)
LIBCORE = $(BUILD)/libdarkroom.a

$(BUILD)/core/%.o: core/%.c
	$(call msg,CC,$<)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CORE_CFLAGS) -c -o $@ $<

$(LIBCORE): $(CORE_OBJ)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/darkroom: $(BUILD)/core/cli_main.o $(LIBCORE)
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(CORE_LIBS)

# The archive gives the app only the objects it references: none of the
# pipeline's (image, pipeline, download), so none of their libraries.
$(BUILD)/darkroom.fcgi: $(BUILD)/core/fcgi_main.o $(LIBCORE)
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(FCGI_LIBS)

# ------------------------------------------------------------- plugins
# plugins/<name>/*.c -> build/plugins/<name>.so, exporting only the entry
# symbol. PLUGIN_LIBS_<name> names the pkg-config packages a plugin links,
# PLUGIN_LDLIBS_<name> what it links without one.
#
# Plugins compile against an include folder holding nothing but the
# installed header (build/include/darkroom-plugin.h, copied from core/), as
# an out-of-tree plugin does, and link with -z defs, so each .so names every
# library it uses and a core symbol it reached for fails the link.
#
# A companion, plugins/<name>/<part>/*.c -> build/plugins/<name>/<part>.so,
# is a part of a plugin that the plugin dlopens itself when a setting
# needs it, so that the plugin does not link that part's libraries: the
# s3 sink's SigV2 transport, the only user of libs3 (which ships no .pc
# file). It exports only <name>_<part>_entry.
INCLUDE_DIR = $(BUILD)/include
PLUGIN_HEADER = $(INCLUDE_DIR)/darkroom-plugin.h
PLUGIN_NAMES = $(notdir $(patsubst %/,%,$(dir $(wildcard plugins/*/*.c))))
PLUGIN_NAMES := $(sort $(PLUGIN_NAMES))
PLUGINS = $(PLUGIN_NAMES:%=$(BUILD)/plugins/%.so)
PLUGIN_CFLAGS = $(BASE_CFLAGS) -I$(INCLUDE_DIR) -fPIC -fvisibility=hidden \
                -DDR_VERSION='"$(VERSION)"'
PLUGIN_LDFLAGS = -shared -Wl,-z,defs
PLUGIN_LIBS_replicate = json-c
PLUGIN_LIBS_cog = json-c
PLUGIN_LIBS_exec = json-c
PLUGIN_LIBS_s3 = libcurl libcrypto
PLUGIN_COMPANIONS = $(BUILD)/plugins/s3/sigv2.so
PLUGIN_LDLIBS_s3/sigv2 = -ls3

$(PLUGIN_HEADER): core/darkroom-plugin.h
	@mkdir -p $(@D)
	$(Q)cp $< $@

$(BUILD)/plugins/%.o: plugins/%.c | $(PLUGIN_HEADER)
	$(call msg,CC,$<)
	@mkdir -p $(@D)
	$(Q)$(CC) $(PLUGIN_CFLAGS) $(if $(PLUGIN_LIBS_$(firstword $(subst /, ,$*))),$(call pkg_cflags,$(PLUGIN_LIBS_$(firstword $(subst /, ,$*))))) -c -o $@ $<

plugin_objs = $(patsubst plugins/%.c,$(BUILD)/plugins/%.o,$(wildcard plugins/$(1)/*.c))
# What plugin <name> links: its pkg-config libraries (libs3 has no .pc).
plugin_ldlibs = $(if $(PLUGIN_LIBS_$(1)),$(call pkg_libs,$(PLUGIN_LIBS_$(1)))) $(PLUGIN_LDLIBS_$(1))

.SECONDEXPANSION:
$(BUILD)/plugins/%.so: $$(call plugin_objs,$$*)
	$(call msg,LD,$@)
	$(Q)$(CC) $(PLUGIN_LDFLAGS) $(LDFLAGS) -o $@ $^ $(call plugin_ldlibs,$*)

# --------------------------------------------------------------- tests
# tests/core/test_*.c and tests/plugins/test_*.c -> build/tests/unit/test_*
# Core tests link the core library; plugin tests link the plugin's objects
# with the mock host (tests/plugins/mock_host.c) and nothing of the core.
CORE_TESTS_SRC = $(wildcard tests/core/test_*.c)
PLUGIN_TESTS_SRC = $(wildcard tests/plugins/test_*.c)
UNIT_TESTS = $(CORE_TESTS_SRC:tests/core/%.c=$(BUILD)/tests/unit/%) \
             $(PLUGIN_TESTS_SRC:tests/plugins/%.c=$(BUILD)/tests/unit/%)
TEST_CFLAGS = $(CORE_CFLAGS) -Wno-missing-prototypes $(call pkg_cflags,cmocka) \
              -DDR_SOURCE_DIR='"$(CURDIR)"' -DDR_BUILD_DIR='"$(abspath $(BUILD))"'
# Test fixture plugins (tests/plugins/fixtures/*.c -> build/tests/fixtures/*.so)
FIXTURES = $(patsubst tests/plugins/fixtures/%.c,$(BUILD)/tests/fixtures/%.so,$(wildcard tests/plugins/fixtures/*.c))

$(BUILD)/tests/core/%.o: tests/core/%.c
	$(call msg,CC,$<)
	@mkdir -p $(@D)
	$(Q)$(CC) $(TEST_CFLAGS) -c -o $@ $<

$(BUILD)/tests/unit/test_%: $(BUILD)/tests/core/test_%.o $(LIBCORE)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(CORE_LIBS) $(call pkg_libs,cmocka)

# Core tests against a private MariaDB (tests/core/dbserver.h), with a
# loopback HTTP peer when they need one (tests/core/loopback.h).
DB_TESTS = $(patsubst %,$(BUILD)/tests/unit/test_%,db jobstate news callback pipeline retention objects deletion ratelimit queue batches)
$(DB_TESTS): $(BUILD)/tests/unit/test_%: $(BUILD)/tests/core/test_%.o $(BUILD)/tests/core/dbserver.o $(BUILD)/tests/core/loopback.o $(LIBCORE)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(CORE_LIBS) $(call pkg_libs,cmocka)

# test_download's peers (fork()ed servers) listen through the same helper.
$(BUILD)/tests/unit/test_download: $(BUILD)/tests/core/loopback.o

$(BUILD)/tests/plugins/%.o: tests/plugins/%.c
	$(call msg,CC,$<)
	@mkdir -p $(@D)
	$(Q)$(CC) $(TEST_CFLAGS) -c -o $@ $<

# A plugin test test_<plugin>.c links that plugin's objects and the mock
# host only (the mock compiles in core/webhook.c and core/plugin_http.c,
# hence libcrypto and libcurl).
MOCK_LIBS = $(call pkg_libs,libcrypto libcurl cmocka)

$(BUILD)/tests/unit/test_%: $(BUILD)/tests/plugins/test_%.o $(BUILD)/tests/plugins/mock_host.o $$(call plugin_objs,$$*)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(call plugin_ldlibs,$*) $(MOCK_LIBS) $(PLUGIN_TEST_LDLIBS)

$(BUILD)/tests/unit/test_s3: $(call plugin_objs,s3/sigv2)
$(BUILD)/tests/unit/test_s3: PLUGIN_TEST_LDLIBS = -ls3

$(BUILD)/tests/fixtures/%.so: tests/plugins/fixtures/%.c $(PLUGIN_HEADER)
	$(call msg,CC,$<)
	@mkdir -p $(@D)
	$(Q)$(CC) $(PLUGIN_CFLAGS) $(PLUGIN_LDFLAGS) $(LDFLAGS) -o $@ $<

# tests/webhook/wh_tool.c -> build/tests/webhook/wh_tool, a CLI around
# core/webhook.c that tests/webhook/cross_check.js drives.
WH_TOOL = $(BUILD)/tests/webhook/wh_tool

$(BUILD)/tests/webhook/%.o: tests/webhook/%.c
	$(call msg,CC,$<)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CORE_CFLAGS) -c -o $@ $<

$(WH_TOOL): $(BUILD)/tests/webhook/wh_tool.o $(LIBCORE)
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(CORE_LIBS)

# tests/plugins/s3_tool.c -> build/tests/s3_tool: a sink driven through the
# real plugin host (config_load + plugins_init), for tests/integration/test_s3.sh.
S3_TOOL = $(BUILD)/tests/s3_tool

$(S3_TOOL): $(BUILD)/tests/plugins/s3_tool.o $(LIBCORE)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(CORE_LIBS)

# tests/fuzz/fuzz_<name>.c: libFuzzer harnesses. Each builds twice:
#  - for `make check`, with replay_main.c instead of libFuzzer, into
#    build/tests/fuzz/replay_<name> (tests/fuzz/replay.sh runs the corpus
#    and every crash ever found through it);
#  - for `make fuzz`, with clang and -fsanitize=fuzzer against a core
#    built with coverage and ASan+UBSan in build-fuzz/ (FUZZ_BUILD), into
#    build-fuzz/fuzz/fuzz_<name>. FUZZ_EXTRA_<name> names what a harness
#    links besides the core.
FUZZ_NAMES = $(sort $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_REPLAYS = $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/replay_%)
FUZZ_BINS = $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)
FUZZ_EXTRA_normalise = $(call plugin_objs,replicate) $(BUILD)/tests/plugins/mock_host.o
FUZZ_LIBS_normalise = $(call pkg_libs,$(PLUGIN_LIBS_replicate))
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SAN = -fsanitize=address,undefined -fno-omit-frame-pointer \
           -fno-sanitize-recover=undefined

$(BUILD)/tests/fuzz/%.o: tests/fuzz/%.c
	$(call msg,CC,$<)
	@mkdir -p $(@D)
	$(Q)$(CC) $(TEST_CFLAGS) -c -o $@ $<

$(BUILD)/tests/fuzz/replay_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay_main.o $$(FUZZ_EXTRA_$$*) $(LIBCORE)
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(CORE_LIBS) $(FUZZ_LIBS_$*)

$(BUILD)/fuzz/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $$(FUZZ_EXTRA_$$*) $(LIBCORE)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(CORE_LIBS) $(FUZZ_LIBS_$*)

fuzz-bins: $(FUZZ_BINS)

# tests/bench/<name>.c -> build/tests/bench/<name>: the benchmark's own
# programs (a hello-world FastCGI app, the rendition timer), linked with
# the core library.
BENCH_BINS = $(patsubst tests/bench/%.c,$(BUILD)/tests/bench/%,$(wildcard tests/bench/*.c))

$(BUILD)/tests/bench/%.o: tests/bench/%.c
	$(call msg,CC,$<)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CORE_CFLAGS) -c -o $@ $<

$(BUILD)/tests/bench/%: $(BUILD)/tests/bench/%.o $(LIBCORE)
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(CORE_LIBS)

# --------------------------------------------------------------- targets
BINS = $(BUILD)/darkroom $(BUILD)/darkroom.fcgi

all: $(BINS) $(PLUGINS) $(PLUGIN_COMPANIONS)

tests: all $(UNIT_TESTS) $(FIXTURES) $(WH_TOOL) $(S3_TOOL) $(FUZZ_REPLAYS)

deps:
	$(Q)bash tests/lib/deps.sh build

check:
	$(Q)bash tests/lib/deps.sh build test
	$(Q)$(MAKE) --no-print-directory tests
	$(Q)BUILD=$(BUILD) bash tests/check.sh

sanitize:
	$(Q)bash tests/lib/deps.sh build test
	$(Q)$(MAKE) --no-print-directory BUILD=build-san SAN=1 tests
	$(Q)BUILD=build-san ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    bash tests/check.sh

# make fuzz: run each harness for FUZZ_SECONDS (FUZZ=name limits it to
# one) on tests/fuzz/corpus/<name>/, new inputs into
# build-fuzz/corpus/<name>/, crashes into tests/fuzz/crashes/<name>/.
# clang warns differently from gcc: -Werror is left to the gcc builds.
fuzz:
	$(Q)bash tests/lib/deps.sh build libcmocka-dev clang libclang-rt-14-dev
	$(Q)$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang \
	    WARN="$(filter-out -Werror,$(WARN))" \
	    OPT="-O1 -g -fsanitize=fuzzer-no-link $(FUZZ_SAN)" \
	    LDFLAGS="$(FUZZ_SAN)" fuzz-bins
	$(Q)FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) \
	    bash tests/fuzz/run.sh $(FUZZ)

# make bench: every section of tests/bench/ (BENCH=name limits it to one),
# the table into build/bench/ as results.md, results.csv and chart.png.
bench:
	$(Q)bash tests/lib/deps.sh build test bench
	$(Q)$(MAKE) --no-print-directory all $(BENCH_BINS)
	$(Q)BUILD=$(BUILD) bash tests/bench/run.sh $(BENCH)

run:
	$(Q)bash tests/lib/deps.sh build test
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BUILD=$(BUILD) exec bash conf/run.sh

# make install — PREFIX (default /usr/local) and DESTDIR (staging root).
# The binaries' compiled-in defaults (plugin_dir, migrations_dir and the
# config path, -DDR_* above) take PREFIX and SYSCONFDIR at BUILD time; the
# installed /etc/darkroom/darkroom.conf sets every path explicitly, so a
# build made with another PREFIX still runs from where it is installed.
# The config is made from conf/darkroom.conf with its development paths
# (../build, ../var) rewritten for a system install, and never replaces an
# existing one: the new version goes next to it as darkroom.conf.new.
MANDIR = $(PREFIX)/share/man
UNITDIR = $(LIBDIR)/systemd/system
PCDIR = $(LIBDIR)/pkgconfig
CONFDIR = $(SYSCONFDIR)/darkroom
ABI_VERSION = $(shell sed -n 's/^\#define DR_PLUGIN_ABI_VERSION \([0-9]*\)u*$$/\1/p' core/darkroom-plugin.h)
UNITS = systemd/darkroom-fcgi.socket systemd/darkroom-fcgi.service \
        systemd/darkroom-worker.service
CONF_SED = -e 's|^plugin_dir = .*|plugin_dir = $(PLUGINDIR)|' \
           -e 's|^migrations_dir = .*|migrations_dir = $(DATADIR)/migrations|' \
           -e 's|^socket = .*|socket = /run/mysqld/mysqld.sock|' \
           -e 's|^user = root$$|user = darkroom|' \
           -e 's|^wakeup_socket = .*|wakeup_socket = /run/darkroom/wakeup.sock|' \
           -e 's|^api_key_file = .*|api_key_file = $(CONFDIR)/api_key|' \
           -e 's|^root = .*|root = /var/lib/darkroom/media|' \
           -e 's|^workdir = \.\..*|workdir = /var/lib/darkroom/exec|' \
           -e 's|^program = \([^/].*\)|program = $(DATADIR)/\1|'

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(PLUGINDIR) \
	    $(DESTDIR)$(DATADIR)/migrations $(DESTDIR)$(INCLUDEDIR) \
	    $(DESTDIR)$(PCDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(CONFDIR) \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5
	install -m 0755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 0755 $(PLUGINS) $(DESTDIR)$(PLUGINDIR)/
	for c in $(PLUGIN_COMPANIONS:$(BUILD)/plugins/%=%); do \
	    install -D -m 0755 $(BUILD)/plugins/$$c $(DESTDIR)$(PLUGINDIR)/$$c || exit 1; \
	done
	install -m 0644 migrations/*.sql $(DESTDIR)$(DATADIR)/migrations/
	$(if $(wildcard conf/offline-model.sh),install -m 0755 conf/offline-model.sh $(DESTDIR)$(DATADIR)/)
	$(if $(wildcard conf/offline-concept.sh),install -m 0755 conf/offline-concept.sh $(DESTDIR)$(DATADIR)/)
	install -m 0644 core/darkroom-plugin.h $(DESTDIR)$(INCLUDEDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@ABI_VERSION@|$(ABI_VERSION)|g' conf/darkroom-plugin.pc.in \
	    >$(DESTDIR)$(PCDIR)/darkroom-plugin.pc
	chmod 0644 $(DESTDIR)$(PCDIR)/darkroom-plugin.pc
	for u in $(UNITS); do \
	    sed 's|/usr/local/bin/|$(BINDIR)/|g' $$u >$(DESTDIR)$(UNITDIR)/$${u##*/} && \
	    chmod 0644 $(DESTDIR)$(UNITDIR)/$${u##*/} || exit 1; \
	done
	install -m 0644 conf/darkroom.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 conf/darkroom.conf.5 $(DESTDIR)$(MANDIR)/man5/
	@conf=$(DESTDIR)$(CONFDIR)/darkroom.conf; \
	if [ -e "$$conf" ]; then \
	    echo "  keeping $$conf; the new version is $$conf.new"; conf=$$conf.new; \
	fi; \
	sed $(CONF_SED) conf/darkroom.conf >"$$conf" && chmod 0640 "$$conf"

clean:
	rm -rf build build-san build-fuzz

format:
	clang-format -i core/*.c core/*.h plugins/*/*.c plugins/*/*/*.c tests/core/*.c tests/plugins/*.c tests/webhook/*.c

.PHONY: all tests deps check sanitize fuzz fuzz-bins bench run install clean format
.SECONDARY:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
