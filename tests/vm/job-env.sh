#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The environment part of a job for tests/vm/guest.sh, on stdout: the host's
# XTCM_* variables (the tests' knobs), and the module under test, which
# guest.sh loads and checks and the tests that swap modules put back.
#
# Usage: job-env.sh MODULE VERSION
#   MODULE   the xt_connmark.ko built for the guest's kernel
#   VERSION  our version, which the module reports in /sys/module

set -u

module=${1:?usage: job-env.sh MODULE VERSION}
version=${2:?usage: job-env.sh MODULE VERSION}

for var in $(compgen -e XTCM_); do
	printf 'export %s=%q\n' "$var" "${!var}"
done
printf 'export XTCM_MODULE=%q\n' "$module"
printf 'export XTCM_VERSION=%q\n' "$version"
printf 'export XTCM_SRCVERSION=%q\n' "$(modinfo -F srcversion "$module")"
