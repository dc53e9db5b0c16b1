#!/usr/bin/env bash
# Installs the system tools that sipark's test-suite needs. Idempotent: does nothing when every
# tool is already present. Used by `cargo xtask test` and CI (which runs as root with no stdin).
#
# Needed today:
#   sipp      (Debian/Ubuntu package: sip-tester) - drives the end-to-end tests in tests/e2e.
#   kamailio  (Debian/Ubuntu package: kamailio)   - the SIP proxy in front of sipark in
#             tests/e2e/kamailio.rs (dialog route sets; config in tests/kamailio/).
#   clang-19  (Debian/Ubuntu package: clang-19)   - engine/build.rs compiles the BPF programs in
#             ebpf/ with it (without it the build succeeds, but with no BPF, and tests/bpf fails).
#   libbpf-dev (Debian/Ubuntu package: libbpf-dev) - bpf/bpf_helpers.h for those programs.
#   ip        (Debian/Ubuntu package: iproute2)   - network namespaces and veth pairs for
#             tests/netns.
#   xmllint   (Debian/Ubuntu package: libxml2-utils) - tests/schema validates every NOTIFY
#             body against docs/schemas/ with it.
#   baresip   (Debian/Ubuntu package: baresip)   - the real phones of tests/e2e/moh.rs, which
#             hear sipark's music on hold and then talk to each other (RTP on loopback).
set -euo pipefail

# Debian installs kamailio in /usr/sbin, which is not on a normal user's PATH.
kamailio_bin() {
    command -v kamailio 2>/dev/null || { [ -x /usr/sbin/kamailio ] && echo /usr/sbin/kamailio; }
}

missing=()
if ! command -v sipp >/dev/null 2>&1; then
    missing+=(sip-tester)
fi
if ! kamailio_bin >/dev/null; then
    missing+=(kamailio)
fi
if ! command -v clang-19 >/dev/null 2>&1; then
    missing+=(clang-19)
fi
if [ ! -f /usr/include/bpf/bpf_helpers.h ]; then
    missing+=(libbpf-dev)
fi
if ! command -v ip >/dev/null 2>&1 && [ ! -x /usr/sbin/ip ] && [ ! -x /sbin/ip ]; then
    missing+=(iproute2)
fi
if ! command -v xmllint >/dev/null 2>&1; then
    missing+=(libxml2-utils)
fi
if ! command -v baresip >/dev/null 2>&1; then
    missing+=(baresip)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all test dependencies present (sipp: $(command -v sipp), kamailio: $(kamailio_bin)," \
        "clang-19: $(command -v clang-19), libbpf-dev: /usr/include/bpf/bpf_helpers.h," \
        "xmllint: $(command -v xmllint), baresip: $(command -v baresip))"
    exit 0
fi

fail() {
    echo "install-deps: error: $*" >&2
    echo "install-deps: please install these packages by hand: ${missing[*]}" >&2
    exit 1
}

if ! command -v apt-get >/dev/null 2>&1; then
    fail "apt-get not found (only Debian/Ubuntu are automated)"
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        fail "not root and sudo is not installed"
    fi
    if [ -t 0 ]; then
        sudo_cmd=(sudo)
    else
        # No terminal to type a password into: never hang waiting for one.
        sudo_cmd=(sudo -n)
    fi
fi

echo "install-deps: installing ${missing[*]}"
"${sudo_cmd[@]}" apt-get update || fail "apt-get update failed"
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}" || fail "apt-get install failed"

if ! command -v sipp >/dev/null 2>&1; then
    fail "sip-tester was installed but sipp is still not on PATH"
fi
if ! kamailio_bin >/dev/null; then
    fail "kamailio was installed but no kamailio binary was found"
fi
if ! command -v clang-19 >/dev/null 2>&1; then
    fail "clang-19 was installed but clang-19 is still not on PATH"
fi
if [ ! -f /usr/include/bpf/bpf_helpers.h ]; then
    fail "libbpf-dev was installed but /usr/include/bpf/bpf_helpers.h is still missing"
fi
if ! command -v xmllint >/dev/null 2>&1; then
    fail "libxml2-utils was installed but xmllint is still not on PATH"
fi
if ! command -v baresip >/dev/null 2>&1; then
    fail "baresip was installed but baresip is still not on PATH"
fi
# `sipp -v` exits non-zero; read the versions first so that pipefail does not add a fallback.
sipp_v=$(sipp -v 2>&1 || true)
kamailio_v=$("$(kamailio_bin)" -v 2>&1 || true)
clang_v=$(clang-19 --version 2>&1 || true)
xmllint_v=$(xmllint --version 2>&1 || true)
# `baresip -h` prints its version on the first line and exits non-zero.
baresip_v=$(baresip -h 2>&1 || true)
echo "install-deps: done ($(grep -m1 -o 'SIPp v[^ ]*' <<<"$sipp_v" || echo sipp)," \
    "$(grep -m1 -o 'kamailio [0-9][^ ]*' <<<"$kamailio_v" || echo kamailio)," \
    "$(grep -m1 -o 'clang version [0-9][^ ]*' <<<"$clang_v" || echo clang-19), libbpf-dev," \
    "$(grep -m1 -o 'libxml version [0-9]*' <<<"$xmllint_v" || echo xmllint)," \
    "$(grep -m1 -o 'baresip v[0-9][^ ]*' <<<"$baresip_v" || echo baresip))"
