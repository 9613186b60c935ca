# policyd - Postfix policy server: build, test, install.
#
#   make            build policyd and policyctl
#   make run        install missing Debian packages, build, run the sandbox
#   make check      install missing Debian packages, build, run every test
#   make check SANITIZE=1   the same under ASan + UBSan
#   make check TEST_JOBS=2  the pytest files two at a time (pytest-xdist)
#   make bench      the load generator against policyd and a null responder
#   make fuzz       each libFuzzer target for FUZZ_SECONDS
#   make install    PREFIX=/usr/local DESTDIR=
#   make deb        build/deb/policyd_$(VERSION)_ARCH.deb with debhelper

VERSION   := 0.1.0
PREFIX    ?= /usr/local
SBINDIR   ?= $(PREFIX)/sbin
BINDIR    ?= $(PREFIX)/bin
MANDIR    ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
DESTDIR   ?=

CC        ?= cc
PKGS      := libuv hiredis ldap inih
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -llber -lhttp_parser -lm
# policyctl top only: the daemon never links the terminal library
CURSES_CFLAGS := $(shell pkg-config --cflags ncurses 2>/dev/null)
CURSES_LIBS   := $(shell pkg-config --libs ncurses 2>/dev/null || echo -lncurses)

WARN      := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes \
             -Wmissing-prototypes -Wpointer-arith -Wcast-qual -Wvla
CFLAGS    ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
              -DPOLICYD_VERSION='"$(VERSION)"' $(WARN) $(CFLAGS) $(PKG_CFLAGS)
LDFLAGS   ?=

ifeq ($(SANITIZE),1)
BUILD     := build-san
ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined
LDFLAGS   += -fsanitize=address,undefined
else
BUILD     := build
endif

LIB_SRCS  := $(filter-out policyd/main.c policyd/policyctl.c, $(wildcard policyd/*.c)) \
             $(wildcard backends/*.c)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
LIB       := $(BUILD)/libpolicyd.a
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRCS := $(wildcard tests/bench/*.c)
BENCH_BINS := $(BENCH_SRCS:tests/bench/%.c=$(BUILD)/bench/%)

PYTEST    ?= pytest-3
# TEST_JOBS=N: pytest-xdist runs the pytest files N at a time, each file
# whole in one worker (module fixtures are per file; a file's tests keep
# their order).  Empty: one at a time, no xdist needed.
TEST_JOBS ?=
PYTEST_JOBS := $(if $(TEST_JOBS),-n $(TEST_JOBS) --dist loadfile)
FUZZ_SECONDS ?= 60

.PHONY: all deps run check unit integration bench fuzz install deb clean
all: $(BUILD)/policyd $(BUILD)/policyctl

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/policyd: $(BUILD)/obj/policyd/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/obj/policyd/policyctl.o: ALL_CFLAGS += $(CURSES_CFLAGS)

$(BUILD)/policyctl: $(BUILD)/obj/policyd/policyctl.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CURSES_LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS) -lcmocka

$(BUILD)/bench/%: tests/bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS) -lm

deps:
	@sh contrib/deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@sh contrib/sandbox.sh $(BUILD)

check: deps
	@$(MAKE) --no-print-directory all $(UNIT_BINS) $(BENCH_BINS)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: all $(BENCH_BINS)
	POLICYD_BUILD=$(CURDIR)/$(BUILD) $(PYTEST) -q $(PYTEST_JOBS) tests/integration tests/e2e

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	@sh tests/bench/run.sh $(BUILD)

fuzz: deps
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS)

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(SYSCONFDIR)/policyd
	install -m 755 $(BUILD)/policyd $(DESTDIR)$(SBINDIR)/policyd
	install -m 755 $(BUILD)/policyctl $(DESTDIR)$(BINDIR)/policyctl
	install -m 644 conf/policyd.conf $(DESTDIR)$(SYSCONFDIR)/policyd/policyd.conf.sample
	for m in man/*.[158]; do \
	    s=$${m##*.}; install -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done

# dpkg-buildpackage builds in place and writes to the parent directory: build
# a copy of the sources in build/deb/policyd-VERSION, so the .deb, .changes
# and .buildinfo land in build/deb.  debian/changelog is written here, so
# the package version is VERSION.  lintian (if installed) reports, the
# package is kept either way.
DEB_DIR   := build/deb
DEB_SRC   := $(DEB_DIR)/policyd-$(VERSION)
# The package is built as debian/rules says, never with this make's
# variables (make deb SANITIZE=1 or CFLAGS=... exports them) or jobserver.
DEB_UNSET := MAKEFLAGS MFLAGS MAKELEVEL SANITIZE BUILD CC CFLAGS LDFLAGS \
             PREFIX SBINDIR BINDIR MANDIR SYSCONFDIR DESTDIR
deb: deps
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_SRC)
	cp -R Makefile README backends conf contrib debian man policyd $(DEB_SRC)/
	printf 'policyd (%s) unstable; urgency=medium\n\n  * policyd %s, built by make deb.\n\n -- %s  %s\n' \
	    '$(VERSION)' '$(VERSION)' "$$(sed -n 's/^Maintainer: //p' debian/control)" \
	    "$$(date -R)" >$(DEB_SRC)/debian/changelog
	cd $(DEB_SRC) && env $(DEB_UNSET:%=-u %) dpkg-buildpackage -b -us -uc
	@if command -v lintian >/dev/null; then \
	    echo "lintian $(DEB_DIR)/policyd_$(VERSION)_*.changes"; \
	    lintian $(DEB_DIR)/policyd_$(VERSION)_*.changes || true; fi

clean:
	rm -rf build build-san build-fuzz

-include $(LIB_OBJS:.o=.d) $(BUILD)/obj/policyd/main.d $(BUILD)/obj/policyd/policyctl.d
