#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot one unpacked Debian kernel under QEMU (TCG) with a root shared
# read-only over virtio-9p, and run the job in OUTDIR/job.sh inside it (see
# tests/vm/guest.sh). The console goes to stdout.
#
# Usage: run-vm.sh KERNEL_RELEASE OUTDIR TIMEOUT_S
# Environment: VM_ROOT (the guest's root: default /, the host's; a lane's
# from .cache/roots), VM_SHARES (host directories, colon-separated, shown at
# the same paths over VM_ROOT: the repository when the root is a lane's),
# VM_REPO (the tree whose tests/vm/guest.sh runs, default the repository),
# VM_MEM (MiB, default 2048), VM_CPUS (default 2), VM_APPEND (more kernel
# parameters), VM_QEMU_OPTS (more QEMU options, e.g. the benchmark's
# -icount, which ties the guest's clock to instructions), VM_ACCEL (tcg,
# the default, or kvm:CPU_MODEL for an amd64 kernel, e.g. kvm:host:
# tests/vm/probe-accel.sh says which works).
#
# Under KVM the vCPUs run on host threads with the host's CPU model.
# TCG runs single-threaded: with one host thread per vCPU, a vCPU can execute
# a stale translation of code another vCPU has just re-patched through
# text_poke_bp() (static keys flip whenever netfilter hooks register), and the
# guest dies on an "Oops: int3". One thread still interleaves both vCPUs.
#
# The CPU is -cpu max without LA57: with 5-level paging, QEMU 7.2's TCG
# corrupted guest state, long before any module and far from netfilter:
# 6.1's KASAN once reported a wild access on an irq_desc lock taken by an
# interrupt during identify_cpu(), and 6.12 (with 6 VMs on 2 host cores)
# died of a double fault on a pushf in __cond_resched(), the frame's
# EFLAGS garbage, during an execve. Guests with 4-level paging have not.

set -u

krel=${1:?usage: run-vm.sh KERNEL_RELEASE OUTDIR TIMEOUT_S}
out=$(cd "${2:?}" && pwd)
timeout_s=${3:?}
repo=$(cd "$(dirname "$0")/../.." && pwd)
kroot=$repo/.cache/kernels/$krel/root
initramfs=$repo/.cache/kernels/$krel/initramfs.cpio.gz

# Two boots of one kernel (tests/run.sh's +sig_enforce) may start at once.
exec 9>"$initramfs.lock"
flock 9
if [ ! -e "$initramfs" ] || [ "$initramfs" -ot "$repo/tests/vm/initramfs-init" ]; then
	"$repo/tests/vm/mkinitramfs.sh" "$kroot" "$krel" "$initramfs" || exit 1
fi
flock -u 9

read -ra qemu_opts <<<"${VM_QEMU_OPTS:-}"
shares=${VM_SHARES:-}
n=0
for dir in ${shares//:/ }; do
	qemu_opts+=(-virtfs "local,path=$dir,mount_tag=share$n,security_model=none,readonly=on,multidevs=remap")
	n=$((n + 1))
done
case $krel in
*-arm64)
	# The virt board; pointer authentication emulated in full costs a
	# lot under TCG, and no test needs it.
	qemu=(qemu-system-aarch64 -M virt -cpu "max,pauth=off"
		-accel "tcg,thread=single")
	console=ttyAMA0
	;;
*)
	qemu=(qemu-system-x86_64 -cpu "max,la57=off" -accel "tcg,thread=single")
	case ${VM_ACCEL:-tcg} in
	kvm:*) qemu=(qemu-system-x86_64 -accel kvm -cpu "${VM_ACCEL#kvm:}") ;;
	esac
	console=ttyS0
	;;
esac
timeout --foreground "$timeout_s" "${qemu[@]}" \
	-smp "${VM_CPUS:-2}" -m "${VM_MEM:-2048}" \
	"${qemu_opts[@]}" \
	-display none -monitor none -serial stdio -no-reboot -nic none \
	-kernel "$kroot/boot/vmlinuz-$krel" -initrd "$initramfs" \
	-append "console=$console quiet panic=-1 ${VM_APPEND:-} XTCM_REPO=${VM_REPO:-$repo} XTCM_KROOT=$kroot XTCM_SHARES=$shares" \
	-virtfs local,path="${VM_ROOT:-/}",mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
	-virtfs local,path="$out",mount_tag=out,security_model=none,multidevs=remap \
	</dev/null
