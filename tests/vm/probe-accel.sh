#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Which accelerator the amd64 VMs get: a short boot of KERNEL_RELEASE
# under KVM, to the initramfs's first line (XTCM_PROBE=1), decides. Where
# /dev/kvm is missing or unusable, or a KVM guest hangs (seen on these
# machines: right after the kernel decompresses), it is TCG. Prints one
# line, "kvm:CPU_MODEL: WHY" (run-vm.sh's VM_ACCEL is its first field) or
# "tcg: WHY"; a hang costs PROBE_TIMEOUT_S (default 20) seconds, a CPU
# model that QEMU refuses about one.
#
# Usage: probe-accel.sh KERNEL_RELEASE

set -u

krel=${1:?usage: probe-accel.sh KERNEL_RELEASE}
here=$(cd "$(dirname "$0")" && pwd)
timeout_s=${PROBE_TIMEOUT_S:-20}

if [ ! -c /dev/kvm ]; then
	echo "tcg: no /dev/kvm"
	exit 0
fi
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	echo "tcg: /dev/kvm is not readable and writable by $(id -un)"
	exit 0
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The host's CPU model first; some hosts refuse to pass one of its MSRs
# through (arch-capabilities), then without it. A hang ends the probe.
why=""
for cpu in host host,-arch-capabilities,pmu=off; do
	start=$SECONDS
	VM_ACCEL=kvm:$cpu VM_CPUS=1 VM_MEM=512 VM_APPEND=XTCM_PROBE=1 \
		"$here/run-vm.sh" "$krel" "$out" "$timeout_s" >"$out/console.log" 2>&1
	rc=$?
	if grep -q '^xtcm-probe: userspace reached' "$out/console.log"; then
		echo "kvm:$cpu: a KVM guest of $krel (-cpu $cpu) reached userspace in $((SECONDS - start)) s"
		exit 0
	elif [ "$rc" -eq 124 ]; then
		echo "tcg: ${why}a KVM guest of $krel (-cpu $cpu) did not reach userspace within $timeout_s s"
		exit 0
	fi
	why+="-cpu $cpu: qemu failed ($(grep -m1 'error' "$out/console.log" ||
		tail -n 1 "$out/console.log")); "
done
echo "tcg: ${why%; }"
