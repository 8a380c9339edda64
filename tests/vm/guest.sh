#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Second stage of the test VM, on the host's root with a tmpfs overlay: make
# the unpacked kernel's modules /lib/modules/$(uname -r), load OUR
# xt_connmark and prove it is ours, run the job the host wrote into the
# result directory, save the kernel log and stop the VM. Results go to
# $out/results, one "rc name" per line.
#
# A second boot, for the tests that must prove what a fresh boot does
# (netfilter-persistent's restore at boot: only a new kernel, nothing
# loaded but our module, shows it). Each test gets XTCM_BOOT (1) and
# XTCM_CARRY, a directory of its own in the result directory (the host's,
# over 9p: all that survives the reboot, the rest is a tmpfs overlay),
# which it creates; it asks for the second boot by creating
# XTCM_CARRY/reboot, and its name goes to $out/reboot. tests/run.sh's
# vm_boot then boots the same kernel again on the same result directory
# with XTCM_BOOT=2 on the command line: the module is loaded as usual and
# the job runs only those tests again, each recorded as "NAME, after the
# reboot". The kernel log of both boots goes to $out/dmesg.txt.

set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
out=/run/xtcm-out
krel=$(uname -r)
boot=${XTCM_BOOT:-1}
again=""
[ "$boot" = 2 ] && again=", after the reboot"

# devtmpfs has no /dev/fd, which bash's process substitution (and dkms)
# needs.
ln -sfn /proc/self/fd /dev/fd

# The unpacked kernel's modules at /lib/modules/$krel, whatever the host has
# there: nothing, a link, or a directory of its own (linux-headers-$krel on
# the host makes one with a "build" link, linux-image-$krel one with Debian's
# modules). A bind mount puts them over it (a link is replaced first), and
# modprobe, depmod and DKMS see the paths of a machine running that kernel.
modules=/lib/modules/$krel
modules_error=""
if [ -L "$modules" ] || { [ -e "$modules" ] && [ ! -d "$modules" ]; }; then
	rm -f "$modules"
fi
if ! mkdir -p "$modules" ||
	! mount --bind "$XTCM_KROOT/lib/modules/$krel" "$modules"; then
	modules_error="cannot bind-mount $XTCM_KROOT/lib/modules/$krel on $modules"
elif [ ! -f "$modules/modules.dep" ]; then
	modules_error="$modules has no modules.dep after the bind mount"
fi
hostname xtcm-guest
ip link set lo up

# shellcheck source=/dev/null # written by tests/vm/run-vm.sh's caller
source "$out/job.sh"

# record RC NAME: one result line for the host.
record()
{
	echo "$1 $2" >>"$out/results"
}

# load_module: insmod the freshly built module and check that the loaded
# xt_connmark is that file, not the distribution's.
load_module()
{
	local loaded

	if [ -n "$modules_error" ]; then
		echo "$modules_error"
		return 1
	fi
	if ! modprobe -a x_tables nf_conntrack; then
		echo "modprobe x_tables nf_conntrack failed ($modules)"
		return 1
	fi
	if ! insmod "$XTCM_MODULE"; then
		echo "insmod $XTCM_MODULE failed"
		return 1
	fi
	loaded=$(cat /sys/module/xt_connmark/version 2>/dev/null)/$(cat /sys/module/xt_connmark/srcversion 2>/dev/null)
	if [ "$loaded" != "$XTCM_VERSION/$XTCM_SRCVERSION" ]; then
		echo "loaded xt_connmark is '$loaded', want '$XTCM_VERSION/$XTCM_SRCVERSION'"
		return 1
	fi
	echo "xt_connmark $loaded loaded from $XTCM_MODULE"
}

# run_test NAME CMD...: run one test with a timeout, its output to NAME.log,
# its duration to "timing" (the suite's time budget is read off it). In
# the second boot, only a test that asked for it.
run_test()
{
	local name=$1 rc start=$SECONDS carry=$out/carry/$1
	shift

	[ "$boot" = 1 ] || grep -qxF "$name" "$out/reboot" || return 0
	echo "guest: running $name$again"
	mkdir -p "$(dirname "$out/$name.log")"
	(cd "$XTCM_REPO/tests" && XTCM_BOOT=$boot XTCM_CARRY=$carry \
		timeout "$XTCM_TEST_TIMEOUT" "$@") \
		>"$out/$name$again.log" 2>&1 </dev/null
	rc=$?
	echo "$((SECONDS - start)) s $name$again" >>"$out/timing"
	record "$rc" "$name$again"
	[ "$boot" = 1 ] && [ -e "$carry/reboot" ] && echo "$name" >>"$out/reboot"
}

# kmemleak_scan: report what leaked since kmemleak_start (debug kernels).
kmemleak=/sys/kernel/debug/kmemleak
kmemleak_start()
{
	mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	[ -e "$kmemleak" ] || return 0
	echo scan >"$kmemleak"
	echo clear >"$kmemleak"
}

kmemleak_scan()
{
	[ -e "$kmemleak" ] || return 0
	# An object is reported once it is older than 5 s: scan twice.
	echo scan >"$kmemleak"
	sleep 6
	echo scan >"$kmemleak"
	cat "$kmemleak" >>"$out/kmemleak.txt"
}

kmemleak_start
if [ "${XTCM_LOAD_MODULE:-yes}" = no ]; then
	# A boot whose tests install the module themselves (safe_boot.sh
	# under module.sig_enforce=1, which refuses an unsigned insmod).
	job
elif load_module >"$out/load_module$again.log" 2>&1; then
	record 0 "load_module$again"
	job
else
	record 1 "load_module$again"
fi

kmemleak_scan
dmesg >>"$out/dmesg.txt"
echo finished >"$out/finished"
sync
echo b >/proc/sysrq-trigger
