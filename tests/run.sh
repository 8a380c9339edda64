#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The test suite. On the host: unit tests, plugin build, module build with
# W=1 and sparse against every kernel flavour, shellcheck. Then, for each
# test lane (tests/vm/lane.sh: a Debian kernel and a userland root of the
# same release), build the module and the plugins in that root, boot the
# kernel under QEMU on it with our freshly built module and run tests inside
# (tests/vm/guest.sh): tests/Makefile's TEST_PROGS shared by the full
# lanes (BOOKWORM_PROGS on Debian 12's 6.1, SID_PROGS on sid, with
# BOOKWORM_ENV and SID_ENV), LANE_PROGS with LANE_ENV on Debian 11,
# TRIXIE_PROGS (LANE_ENV) on 13, BACKPORTS_PROGS on 12's 6.12,
# ARM64_PROGS with ARM64_ENV on the arm64 lane (Debian 12's 6.12 for arm64
# under qemu-system-aarch64), DEBUG_CHECK_PROGS with DEBUG_ENV on the debug
# kernel. Every amd64 lane's kernel also gets an
# arm64 cross build of the module, against its arm64 headers.
# The kernels run side by side. One TAP line per test and per kernel, then
# "N passed, N failed, N skipped". With CI=true a skipped test fails the
# run.
#
# Every test counts by its exit status: a host step, a unit test binary
# (which must also print its TAP plan and as many results), a script in the
# VM, the VM itself (it must finish), its kernel log.
#
# Usage: run.sh [--demo | --host-only | --matrix] [TEST...]
#   --demo       boot the first lane only and run tests/demo.sh (make demo)
#   --host-only  the host part alone, no VM (make check-host): unit tests,
#                builds, static analysis, the fuzz smoke run, the packages
#                and the module builds for each kernel
#   --matrix     TEST_PROGS and MATRIX_PROGS on every lane
#                (ARM64_MATRIX_PROGS on arm64),
#                DEBUG_PROGS on the debug kernel, KCSAN_PROGS on the
#                kcsan kernel (make check-matrix)
# TESTs given: those on every lane.
# Environment: XTCM_SERIES (the lanes, in the order they are prepared and
# booted, default "6.1 sid 6.12 debug 5.10 trixie arm64": the longest
# chain of tests first, on the host's own root; "debug" is the KASAN
# kernel, see tests/vm/fetch-kernel.sh: XTCM_DEBUG_KERNEL_DIR, else
# ../shared/debug-kernel, else make debug-kernel's; with none, the debug lane is one skipped test; "kcsan"
# the KCSAN kernel of make kcsan-kernel, in the default of --matrix),
# XTCM_FLAVOURS (build-only flavours of Debian 12's lanes, default
# "rt-amd64"), XTCM_CROSS_FLAVOURS (cross builds of every amd64 lane but
# debug, default "arm64"), XTCM_TEST_TIMEOUT (s, default 1800), XTCM_UNIT_TIMEOUT (s
# per unit test binary, default 600), XTCM_OUT (results and module builds,
# default tests/out), XTCM_JOBS (VMs at once, default all of them, each
# booted as soon as its lane is built).

set -u
set -o pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 1
# shellcheck source-path=SCRIPTDIR/..
source tests/vm/lane.sh
# shellcheck source-path=SCRIPTDIR/..
source tests/vm/jobs.sh
series_list=${XTCM_SERIES:-6.1 sid 6.12 debug 5.10 trixie arm64}
# The full lanes: TEST_PROGS between them in make check (BOOKWORM_PROGS,
# SID_PROGS), all of it on each in --matrix.
full_lanes=" 6.1 sid "
# The lanes that boot a second time, with module.sig_enforce=1, for
# SIG_ENFORCE_PROGS: Debian 12's in make check, both full lanes in --matrix.
sig_enforce_lanes=" 6.1 "
build_flavours=${XTCM_FLAVOURS-rt-amd64}
cross_flavours=${XTCM_CROSS_FLAVOURS-arm64}
test_timeout=${XTCM_TEST_TIMEOUT:-1800}
version=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"$/\1/p' dkms.conf)
outdir=${XTCM_OUT:-$repo/tests/out}
unit_timeout=${XTCM_UNIT_TIMEOUT:-600}
demo=false
host_only=false
matrix=false
case ${1:-} in
--demo)
	demo=true
	shift
	;;
--host-only)
	host_only=true
	shift
	;;
--matrix)
	matrix=true
	shift
	;;
-*)
	echo "usage: run.sh [--demo | --host-only | --matrix] [TEST...]" >&2
	exit 2
	;;
esac
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
	read -ra tests <<<"$(make -s -C tests print-TEST_PROGS)"
	read -ra kcsan_tests <<<"$(make -s -C tests print-KCSAN_PROGS)"
	if $matrix; then
		read -ra matrix_tests <<<"$(make -s -C tests print-MATRIX_PROGS)"
		tests+=("${matrix_tests[@]}")
		lane_tests=("${tests[@]}")
		trixie_tests=("${tests[@]}")
		backports_tests=("${tests[@]}")
		sid_tests=("${tests[@]}")
		bookworm_tests=("${tests[@]}")
		read -ra arm64_tests <<<"$(make -s -C tests print-ARM64_MATRIX_PROGS)"
		read -ra debug_tests <<<"$(make -s -C tests print-DEBUG_PROGS)"
		series_list=${XTCM_SERIES:-6.1 sid 6.12 debug kcsan 5.10 trixie arm64}
		sig_enforce_lanes=$full_lanes
	else
		read -ra lane_tests <<<"$(make -s -C tests print-LANE_PROGS)"
		read -ra trixie_tests <<<"$(make -s -C tests print-TRIXIE_PROGS)"
		read -ra backports_tests <<<"$(make -s -C tests print-BACKPORTS_PROGS)"
		read -ra sid_tests <<<"$(make -s -C tests print-SID_PROGS)"
		read -ra bookworm_tests <<<"$(make -s -C tests print-BOOKWORM_PROGS)"
		read -ra debug_tests <<<"$(make -s -C tests print-DEBUG_CHECK_PROGS)"
		read -ra arm64_tests <<<"$(make -s -C tests print-ARM64_PROGS)"
	fi
else
	lane_tests=("${tests[@]}")
	trixie_tests=("${tests[@]}")
	backports_tests=("${tests[@]}")
	sid_tests=("${tests[@]}")
	bookworm_tests=("${tests[@]}")
	debug_tests=("${tests[@]}")
	kcsan_tests=("${tests[@]}")
	arm64_tests=("${tests[@]}")
fi
read -ra sig_enforce_tests <<<"$(make -s -C tests print-SIG_ENFORCE_PROGS)"
read -ra client_packages <<<"$(make -s -C tests print-CLIENT_PACKAGES)"
read -ra debug_env <<<"$(make -s -C tests print-DEBUG_ENV)"
read -ra kcsan_env <<<"$(make -s -C tests print-KCSAN_ENV)"
read -ra lane_env <<<"$(make -s -C tests print-LANE_ENV)"
read -ra sid_env <<<"$(make -s -C tests print-SID_ENV)"
read -ra bookworm_env <<<"$(make -s -C tests print-BOOKWORM_ENV)"
read -ra arm64_env <<<"$(make -s -C tests print-ARM64_ENV)"

count=0
passed=0
failed=0
skipped=0

# result RC NAME [LOG]: one TAP line; RC 0 pass, 4 skip, another number a
# failure with that exit status, a word (fail) a failure that has none. A
# failure shows the end of LOG.
result()
{
	local rc=$1 name=$2 log=${3:-}

	count=$((count + 1))
	case $rc in
	0)
		passed=$((passed + 1))
		echo "ok $count - $name"
		;;
	4)
		skipped=$((skipped + 1))
		echo "ok $count - $name # SKIP $(grep -m1 '^SKIP' "$log" 2>/dev/null)"
		;;
	*)
		failed=$((failed + 1))
		if [[ $rc =~ ^[0-9]+$ ]]; then
			echo "not ok $count - $name (exit $rc)"
		else
			echo "not ok $count - $name"
		fi
		[ -n "$log" ] && [ -f "$log" ] && tail -n 40 "$log" | sed 's/^/#   /'
		;;
	esac
}

# run_logged NAME CMD...: run CMD on the host, one result line for it.
run_logged()
{
	local name=$1 log rc
	shift

	log=$outdir/host/$(echo "$name" | tr -c 'A-Za-z0-9._-' _).log
	"$@" >"$log" 2>&1
	rc=$?
	result "$rc" "$name" "$log"
	return "$rc"
}

# unit_tests: every binary of tests/Makefile's UNIT_TESTS, each under
# a timeout: every TAP result line counts, and one more line per binary
# checks the binary itself: its plan ("1..N"), as many results as planned,
# and exit status 0. A crash (an ASan report), an abort
# or a non-zero exit fails that line, whatever the lines before it said.
unit_tests()
{
	local bin name log rc line plan n why
	local -a bins lines

	run_logged "unit: build" make -C tests unit || return
	read -ra bins <<<"$(make -s -C tests print-UNIT_TESTS)"
	if [ ${#bins[@]} -eq 0 ]; then
		result fail "unit: tests/Makefile lists no UNIT_TESTS"
		return
	fi
	for bin in "${bins[@]}"; do
		name=${bin##*/}
		log=$outdir/host/$name.log
		# A subshell: bash's "Aborted" for a crash goes to the log.
		(timeout "$unit_timeout" "tests/$bin"; exit $?) >"$log" 2>&1
		rc=$?
		mapfile -t lines <"$log"
		plan=""
		n=0
		for line in "${lines[@]}"; do
			case $line in
			"ok "*)
				n=$((n + 1))
				result 0 "unit: $name: ${line#ok * - }"
				;;
			"not ok "*)
				n=$((n + 1))
				result fail "unit: $name: ${line#not ok * - }" "$log"
				;;
			1..*)
				[ -z "$plan" ] && [[ ${line#1..} =~ ^[0-9]+$ ]] &&
					plan=${line#1..}
				;;
			esac
		done
		why=""
		if [ "$rc" -eq 124 ]; then
			why="timed out after $unit_timeout s"
		elif [ "$rc" -gt 128 ]; then
			why="killed by SIG$(kill -l "$((rc - 128))")"
		elif [ "$rc" -ne 0 ]; then
			why="exit $rc"
		fi
		if [ -z "$plan" ]; then
			why+="${why:+, }no TAP plan (1..N)"
		elif [ "$n" -ne "$plan" ]; then
			why+="${why:+, }$n results, plan 1..$plan"
		fi
		if [ -z "$why" ]; then
			result 0 "unit: $name: exit 0, $n of $n planned results"
		else
			result fail "unit: $name: $why" "$log"
		fi
	done
}

# build_module LANE FLAVOUR: fetch the kernel and build our module with W=1
# and sparse in the lane's build root (with its compiler, or its cross
# compiler for a kernel of another architecture: in the kernel's cross
# tree), from the lane's tree ($src); a warning, or sparse not running,
# fails. Once per kernel (built_rc). Sets krel and kdir.
declare -A built_rc=()
build_module()
{
	local log=$outdir/host/fetch-$1-$2.log name="fetch Debian $1 $2 kernel"
	local rc cc=gcc arch triplet
	local -a cross=()

	[ "$1" = debug ] && name="fetch the debug kernel (KASAN, lockdep, kmemleak, UBSAN)"
	[ "$1" = kcsan ] && name="fetch the kcsan kernel (KCSAN, lockdep, UBSAN)"
	krel=$(tests/vm/fetch-kernel.sh "$1" "$2" 2>"$log")
	rc=$?
	if [ "$rc" -ne 0 ] || [ -z "$krel" ]; then
		# 4: no debug (kcsan) kernel anywhere, a skip that says how to
		# get one.
		[ "$rc" -eq 4 ] || rc=1
		result "$rc" "$name" "$log"
		return 1
	fi
	kdir=$repo/.cache/kernels/$krel/root/usr/src/linux-headers-$krel
	[ -n "${built_rc[$krel]:-}" ] && return "${built_rc[$krel]}"
	log=$outdir/host/build-$krel.log
	arch=${2##*-}
	if [ "$arch" != amd64 ]; then
		# Debian's arm64 headers name the cross compiler from 6.12 on;
		# those of 5.10 and 6.1 only when dpkg-buildpackage cross-builds.
		triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH -a"$arch")
		kdir=$repo/.cache/kernels/$krel/cross/usr/src/linux-headers-$krel
		cc=$triplet-gcc
		cross=(CROSS_COMPILE="$triplet-")
	fi
	name="build: module for $krel with $(lane_run --user "$build_root" \
		"$cc" -dumpmachine) $(lane_run --user "$build_root" \
		"$cc" -dumpfullversion) in Debian $(lane_release "$1")'s root, W=1 C=1, no warnings"
	rm -rf "$outdir/build/$krel"
	if ! lane_run --user "$build_root" make -C "$src" module KDIR="$kdir" \
		MODULE_DIR="$outdir/build/$krel" W=1 C=1 "${cross[@]}" >"$log" 2>&1; then
		built_rc[$krel]=1
		result 1 "$name" "$log"
		return 1
	fi
	grep -E 'warning:|is not available or not up to date' "$log" >"$log.warnings"
	built_rc[$krel]=$([ ! -s "$log.warnings" ]; echo $?)
	result "${built_rc[$krel]}" "$name" "$log.warnings"
}

# lane_prepare LANE: the lane's root (tests/vm/mkroot.sh for a release
# or an architecture other than the host's), the root it builds in, and the
# tree its module, plugins and tests come from: the repository itself on
# the host's root, else a copy built for the lane's root against its
# libxtables. Sets root, build_root and src.
lane_prepare()
{
	local release rc name

	release=$(lane_release "$1") || {
		result fail "lane $1: unknown (tests/vm/lane.sh)"
		return 1
	}
	root=$(lane_root "$1")
	build_root=$(lane_build_root "$1")
	src=$repo
	[ "$root" = / ] && return
	name=${root##*/}
	src=$outdir/lanes/$name/src
	[ -n "${lane_ready[$name]:-}" ] && return
	# made in the background since the lanes began (mkroot_start)
	job_wait "mkroot-$name"
	rc=$?
	result "$rc" "lane $1: Debian $release $(lane_arch "$1") root (tests/vm/mkroot.sh)" \
		"$outdir/host/mkroot-$name.log"
	[ "$rc" -eq 0 ] || return 1
	lane_ready[$name]=1
	name="built in Debian $release's root"
	[ "$root" != "$build_root" ] && name="cross-built for $(lane_arch "$1") against its root"
	# shellcheck disable=SC2016 # a dpkg-query format
	run_logged "lane $1: plugins and test tools $name (iptables $(dpkg-query \
		--admindir="$root/var/lib/dpkg" -W -f '${Version}' iptables))" \
		lane_tree "$1" "$src" || return
	if [ "$root" = "$build_root" ]; then
		xlate_arith "$1" "$root" "$src"
	fi
}

# xlate_arith LANE ROOT TREE: tests/static/xlate_arith.sh in ROOT (the
# host's: /), TREE's plugins judged, the same random rules in every root
# (xlate_seed); one result line, then the summary per plugin.
xlate_seed=${XTCM_XLATE_SEED:-$((RANDOM * 32768 + RANDOM))}
xlate_arith()
{
	local log=$outdir/host/xlate-arith-$1.log where=host nft

	[ "$2" = / ] || where="Debian $(lane_release "$1")'s root"
	# shellcheck disable=SC2016 # a dpkg-query format
	nft=$(dpkg-query --admindir="$2/var/lib/dpkg" -W -f '${Version}' nftables)
	lane_run "$2" env XTCM_XLATE_SEED="$xlate_seed" \
		${XTCM_XLATE_RULES:+XTCM_XLATE_RULES="$XTCM_XLATE_RULES"} \
		"$3/tests/static/xlate_arith.sh" "$1" >"$log" 2>&1
	result $? "translations: ${XTCM_XLATE_RULES:-3000} random rules, ours exact against the module's arithmetic ($where, nftables $nft)" "$log"
	sed -n -e "s/^ours: /# $1: translations by our plugins: /p" \
		-e "s/^debian: /# $1: translations by Debian's plugins: /p" "$log"
}

# mkroot_start: tests/vm/mkroot.sh for every root of the lanes but the
# host's, all at once in the background (downloads and dpkg, while the
# host builds): jobs mkroot-<root's name> (tests/vm/jobs.sh).
mkroot_start()
{
	local series root

	for series in $series_list; do
		root=$(lane_root "$series") || continue
		[ "$root" = / ] && continue
		[ -n "${job_pid[mkroot-${root##*/}]:-}" ] && continue
		job_start "mkroot-${root##*/}" tests/vm/mkroot.sh \
			"$(lane_release "$series")" "$(lane_arch "$series")" \
			>"$outdir/host/mkroot-${root##*/}.log" 2>&1
	done
}

# job_tests LANE: the tests the lane runs, one per line.
job_tests()
{
	if [ "$1" = debug ]; then
		printf '%s\n' "${debug_tests[@]}"
	elif [ "$1" = kcsan ]; then
		printf '%s\n' "${kcsan_tests[@]}"
	elif [ "$1" = arm64 ]; then
		printf '%s\n' "${arm64_tests[@]}"
	elif [ "$1" = sid ]; then
		printf '%s\n' "${sid_tests[@]}"
	elif [ "$1" = 6.1 ]; then
		printf '%s\n' "${bookworm_tests[@]}"
	elif [ "$1" = 6.12 ]; then
		printf '%s\n' "${backports_tests[@]}"
	elif [ "$1" = trixie ]; then
		printf '%s\n' "${trixie_tests[@]}"
	else
		printf '%s\n' "${lane_tests[@]}"
	fi
}

# selected LANE TEST: the lane runs TEST.
selected()
{
	job_tests "$1" | grep -qxF "$2"
}

# deb_packages LANE: "make deb" in the lane's root into the lane's
# directory, which the VM's install_deb.sh installs; on the host's, lintian
# on the result too. Sets deb_dir.
deb_packages()
{
	local name="deb: make deb (xt-connmark-dkms, xtables-connmark-plugins)"

	deb_dir=$outdir/deb
	if [ "$root" != / ]; then
		deb_dir=$outdir/lanes/${root##*/}/deb
		name+=" in Debian $(lane_release "$1")'s root"
	fi
	rm -rf "$deb_dir"
	run_logged "$name" lane_run --user "$root" \
		make -C "$src" deb DEB_OUT="$deb_dir" || return
	[ "$root" = / ] || return 0
	run_logged "deb: lintian --pedantic, no error, warning or info" \
		lintian --pedantic --display-info --fail-on error,warning,info \
		"$deb_dir"/*.changes
}

# fetch_iptables_deb LANE: the package of the lane root's iptables, which the
# install tests reinstall in the VM (an iptables upgrade must keep our
# plugins). Sets iptables_deb.
# shellcheck disable=SC2317 # called through run_logged
fetch_iptables_deb()
{
	local pkg version

	# shellcheck disable=SC2016 # a dpkg-query format
	pkg=$(dpkg-query --admindir="$root/var/lib/dpkg" -W \
		-f '${Package}_${Version}_${Architecture}' iptables) || return
	iptables_deb=$repo/.cache/debs/${pkg//:/%3a}.deb
	[ -f "$iptables_deb" ] && return
	version=${pkg#iptables_}
	version=${version%_*}
	mkdir -p "$repo/.cache/debs"
	if [ "$root" = "$build_root" ]; then
		lane_download "$root" "$repo/.cache/debs" "iptables=$version"
	else
		(cd "$repo/.cache/debs" && lane_foreign_apt "$(lane_release "$1")" \
			"$(lane_arch "$1")" apt-get download "iptables=$version")
	fi && [ -f "$iptables_deb" ]
}

# fetch_guest_debs LANE NAME PKG...: the packages PKG of the lane root's
# release and those of their dependencies that the root lacks (what apt-get
# would newly install there), which tests install in the VM: Debian's
# netfilter-persistent for safe_boot.sh and clients/netfilter_persistent.sh,
# the tools of tests/clients/.
# Downloaded once into .cache/debs/NAME-ROOT; sets guest_debs.
# shellcheck disable=SC2317 # called through run_logged
fetch_guest_debs()
{
	local lane=$1 dir=$repo/.cache/debs/$2-${root//\//_} plan
	local -a debs pkgs
	shift 2

	mkdir -p "$dir"
	debs=("$dir"/*.deb)
	if [ "$(cat "$dir/.packages" 2>/dev/null)" != "$*" ] ||
		[ ! -f "${debs[0]}" ]; then
		rm -f "$dir"/*.deb "$dir/.packages"
		if [ "$root" = "$build_root" ]; then
			# "Inst PKG (VERSION ...)": a package the root lacks
			# (an upgrade, "Inst PKG [INSTALLED] (...)", would
			# change the lane's userland: left out). Where apt
			# finds no plan (sid in a transition), PKG alone.
			plan=$(lane_run --user "$root" apt-get -s \
				--no-install-recommends install "$@")
			mapfile -t pkgs < <(awk '$1 == "Inst" && $3 ~ /^\(/ {
				print $2 "=" substr($3, 2) }' <<<"$plan")
			[ ${#pkgs[@]} -gt 0 ] || pkgs=("$@")
			lane_download "$root" "$dir" "${pkgs[@]}"
		else
			(cd "$dir" && lane_foreign_apt "$(lane_release "$lane")" \
				"$(lane_arch "$lane")" apt-get download "$@")
		fi || return
		echo "$*" >"$dir/.packages"
		debs=("$dir"/*.deb)
	fi
	guest_debs=${debs[*]}
	[ -f "${debs[0]}" ]
}

# write_job LANE DIR [TEST...]: the job for tests/vm/guest.sh, and the list
# of its tests (default the lane's) in DIR/tests. The tests' knobs (XTCM_LIFECYCLE_CYCLES and the like)
# reach the guest from the host's environment; on the debug kernel,
# tests/Makefile's DEBUG_ENV gives the shortened defaults, on the other
# lanes LANE_ENV, on 6.1 BOOKWORM_ENV, on sid SID_ENV (make check only).
write_job()
{
	local t assignment
	local -a job_tests env=()

	mapfile -t job_tests < <(job_tests "$1")
	[ $# -gt 2 ] && job_tests=("${@:3}")
	printf '%s\n' "${job_tests[@]}" >"$2/tests"
	if [ "$1" = debug ]; then
		env=("${debug_env[@]}")
	elif [ "$1" = kcsan ]; then
		env=("${kcsan_env[@]}")
	elif [ "$1" = arm64 ] && ! $matrix; then
		env=("${arm64_env[@]}")
	elif [ "$1" = sid ] && ! $matrix; then
		env=("${sid_env[@]}")
	elif [ "$1" = 6.1 ] && ! $matrix; then
		env=("${bookworm_env[@]}")
	elif [[ $full_lanes != *" $1 "* ]] && ! $matrix; then
		env=("${lane_env[@]}")
	fi
	{
		for assignment in "${env[@]}"; do
			printf 'export %s\n' "$assignment"
		done
		tests/vm/job-env.sh "$outdir/build/$krel/kmod/xt_connmark.ko" \
			"$version"
		printf 'export XTCM_DEB_DIR=%q\n' "$deb_dir"
		printf 'export XTCM_IPTABLES_DEB=%q\n' "$iptables_deb"
		printf 'export XTCM_PERSISTENT_DEBS=%q\n' "$persistent_debs"
		printf 'export XTCM_CLIENT_DEBS=%q\n' "$client_debs"
		printf 'XTCM_TEST_TIMEOUT=%q\n' "$test_timeout"
		echo 'job()'
		echo '{'
		for t in "${job_tests[@]}"; do
			printf '\trun_test %q bash %q\n' "$t" "$t"
		done
		echo '}'
	} >"$2/job.sh"
}

# vm_boot LANE KREL ROOT SRC [VM]: boot the kernel on the lane's root with
# the job in $outdir/VM (default KREL; VM KREL+sig_enforce boots with
# module.sig_enforce=1); no output (the VMs of several kernels run at once,
# their results are read afterwards). When a test asked for a second boot
# (tests/vm/guest.sh: a fresh boot is the only proof of what a boot
# restores), the same kernel boots again on the same result directory for
# the second halves, with a timeout of its own.
# shellcheck disable=SC2317 # called through job_start
vm_boot()
{
	local dir=$outdir/${5:-$2} vm_timeout mem="" append=""

	lane_vm_env "$3" "$4" "$outdir"
	vm_timeout=$(($(wc -l <"$dir/tests") * test_timeout + 120))
	[[ ${5:-} == *+sig_enforce ]] && append="module.sig_enforce=1"
	if [ "$1" = debug ] || [ "$1" = kcsan ]; then
		# KASAN needs memory; ACPI's PCI routing times out under TCG
		# (both kernels are x86_64_defconfig's).
		mem=3072
		append="pci=noacpi"
	fi
	VM_MEM=$mem VM_APPEND=$append tests/vm/run-vm.sh "$2" "$dir" \
		"$vm_timeout" >"$dir/console.log" 2>&1
	[ -f "$dir/finished" ] && [ -s "$dir/reboot" ] || return 0
	rm -f "$dir/finished"
	VM_MEM=$mem VM_APPEND="$append XTCM_BOOT=2" tests/vm/run-vm.sh "$2" \
		"$dir" "$(($(wc -l <"$dir/reboot") * test_timeout + 120))" \
		>>"$dir/console.log" 2>&1
}

# vm_accel KREL: before the first amd64 VM boots, the accelerator of
# every amd64 VM (run-vm.sh's VM_ACCEL): XTCM_ACCEL (tcg, kvm:CPU_MODEL)
# if set, else what a probe boot of KREL finds (tests/vm/probe-accel.sh),
# in one line saying which and why.
vm_accel()
{
	local why

	[ -n "${VM_ACCEL:-}" ] && return
	if [ -n "${XTCM_ACCEL:-}" ]; then
		why="$XTCM_ACCEL: XTCM_ACCEL"
	else
		why=$(tests/vm/probe-accel.sh "$1")
	fi
	echo "# accelerator of the amd64 VMs: $why"
	export VM_ACCEL=${why%%: *}
}

# vm_report VM: turn the guest's results in $outdir/VM into lines.
vm_report()
{
	local krel=$1 dir=$outdir/$1 rc name t twice=""

	[ -s "$dir/reboot" ] && twice=", and again for the tests' second halves"
	result "$([ -f "$dir/finished" ]; echo $?)" "$krel: VM booted and finished$twice" \
		"$dir/console.log"
	while read -r rc name; do
		result "$rc" "$krel: $name" "$dir/$name.log"
		$demo && [ "$name" != load_module ] && cat "$dir/$name.log"
	done < <(cat "$dir/results" 2>/dev/null)
	# A second half asked for (tests/vm/guest.sh) must have its result too.
	while read -r t; do
		grep -q " $t\$" "$dir/results" 2>/dev/null ||
			result 1 "$krel: $t (no result: the VM stopped early)" "$dir/console.log"
	done < <(cat "$dir/tests"; sed 's/$/, after the reboot/' "$dir/reboot" 2>/dev/null)
	# Both boots' kernel logs (guest.sh appends). A subshell: lib.sh is
	# the tests' library, only its pattern is wanted.
	# shellcheck source-path=SCRIPTDIR/..
	(source tests/lib.sh && kernel_splats <"$dir/dmesg.txt") \
		>"$dir/splats.txt" 2>/dev/null
	[ -f "$dir/dmesg.txt" ] && [ ! -s "$dir/splats.txt" ]
	result $? "$krel: kernel log has no WARNING/BUG/Oops/Call Trace" "$dir/splats.txt"
	if [[ $krel == *-kcsan ]]; then
		# Its early "kcsan: enabled" line is long gone from the ring
		# buffer once the core kernel's reports have filled it.
		grep -qx 'CONFIG_KCSAN_STRICT=y' \
			"$repo/.cache/kernels/$krel/root/boot/config-$krel"
		result $? "$krel: the kernel has KCSAN, strict (boot/config-$krel)" \
			"$dir/dmesg.txt"
		echo "# $krel: KCSAN reports outside xt_connmark (not ours, not counted): $(grep -c 'BUG: KCSAN:' "$dir/dmesg.txt" 2>/dev/null)"
	fi
	if [ -f "$dir/kmemleak.txt" ]; then
		[ ! -s "$dir/kmemleak.txt" ]
		result $? "$krel: kmemleak found no leak" "$dir/kmemleak.txt"
	fi
	$demo || sed "s/^/# $krel: /" "$dir/timing" 2>/dev/null
	$demo || awk -v k="$krel" '{ s += $1 } END { if (NR) print "# " k ": " NR " tests in " s " s" }' \
		"$dir/timing" 2>/dev/null
}

# host_checks: what runs on the host alone, while the VMs run.
host_checks()
{
	unit_tests
	run_logged "cppcheck: libxt/" cppcheck --enable=warning,style \
		--error-exitcode=1 --quiet -I include -I kmod libxt/
	run_logged "clang-tidy: libxt/ tests/fuzz/" tests/static/clang_tidy.sh
	run_logged "fuzz: plugins, 20000 runs under libFuzzer, ASan, UBSan" \
		tests/static/fuzz.sh 20000
	run_logged "checkpatch --strict: kmod/ include/" tests/static/checkpatch.sh
	xlate_arith host / "$repo"
	run_logged "safe boot: xtables-connmark-restore's revision 2 form of random --set-dscpmark rules sets revision 3's ct marks (tests/static/restore_rewrite.sh)" \
		tests/static/restore_rewrite.sh
	run_logged "jobs: a root job's status survives its pid's reuse while VMs run (tests/static/jobs_race.sh)" \
		tests/static/jobs_race.sh
	run_logged "shellcheck: tests" shellcheck -x \
		tests/*.sh tests/*/*.sh .ci/run
	run_logged "shellcheck: boot/, libxt's scripts (sh)" shellcheck -s sh \
		boot/modprobe-fallback boot/signing-check \
		libxt/xtables-connmark-rules libxt/xtables-connmark-restore
	run_logged "shellcheck: initramfs init (busybox sh)" \
		shellcheck -s sh tests/vm/initramfs-init
}

mkdir -p "$outdir/host" "$outdir/jobs"
JOBS_DIR=$outdir/jobs
if ! $demo; then
	echo "TAP version 13"
	# First: the VMs of Debian 12's lanes run the repository's builds.
	run_logged "build: iptables plugins" make -C libxt
	run_logged "build: test tools (tests/hostile)" make -C tests tools
else
	make -s -C libxt >"$outdir/host/plugins.log" 2>&1 ||
		result 1 "build: iptables plugins" "$outdir/host/plugins.log"
	series_list=${XTCM_SERIES:-6.1}
	series_list=${series_list%% *}
	tests=(demo.sh)
fi

# Build and check on the host and in each lane's root, and boot each
# lane's kernel as soon as that is done, up to XTCM_JOBS VMs at once (each
# VM's TCG runs in one host thread), so that the VMs run while the next
# lanes are prepared and the host checks run.
declare -A lane_ready=()
vm_krels=()
jobs_max=${XTCM_JOBS:-0}
mkroot_start
for series in $series_list; do
	lane_prepare "$series" || continue
	flavours=""
	if ! $demo && [ "$series" != debug ] && [ "$series" != kcsan ] &&
		[ "$(lane_arch "$series")" = amd64 ]; then
		flavours=$cross_flavours
		[ "$root" = / ] && flavours+=" $build_flavours"
	fi
	for flavour in $flavours; do
		build_module "$series" "$flavour"
	done
	build_module "$series" "$(lane_arch "$series")" || continue
	[ "$root" = "$build_root" ] && ! $demo &&
		run_logged "refusals: $krel without CONFIG_NF_CONNTRACK_MARK, with CONNMARK built in" \
			lane_run "$root" "$src/tests/static/kernel_refusals.sh" "$krel" "$kdir"
	# Only for the VM tests that use them.
	deb_dir=""
	iptables_deb=""
	if ! $demo && selected "$series" install_deb.sh; then
		deb_packages "$series"
	fi
	if ! $demo && { selected "$series" install_plugins.sh ||
		selected "$series" install_deb.sh; }; then
		run_logged "fetch: $(lane_release "$series")'s iptables package (for the VM)" \
			fetch_iptables_deb "$series"
	fi
	persistent_debs=""
	if ! $demo && { selected "$series" safe_boot.sh ||
		selected "$series" clients/netfilter_persistent.sh; }; then
		run_logged "fetch: $(lane_release "$series")'s netfilter-persistent and iptables-persistent (for the VM)" \
			fetch_guest_debs "$series" persistent \
			iptables-persistent netfilter-persistent &&
			persistent_debs=$guest_debs
	fi
	client_debs=""
	if ! $demo && job_tests "$series" | grep -q '^clients/'; then
		run_logged "fetch: $(lane_release "$series")'s ${client_packages[*]} (for the VM)" \
			fetch_guest_debs "$series" clients "${client_packages[@]}" &&
			client_debs=$guest_debs
	fi
	$host_only && continue
	vms=("$krel")
	# A second boot with module.sig_enforce=1 for the tests that need it.
	if ! $demo && [[ $sig_enforce_lanes == *" $series "* ]] &&
		selected "$series" safe_boot.sh; then
		vms+=("$krel+sig_enforce")
	fi
	for vm in "${vms[@]}"; do
		rm -rf "${outdir:?}/$vm"
		mkdir -p "$outdir/$vm"
		if [ "$vm" = "$krel" ]; then
			write_job "$series" "$outdir/$vm"
		else
			write_job "$series" "$outdir/$vm" "${sig_enforce_tests[@]}"
			echo "export XTCM_LOAD_MODULE=no" >>"$outdir/$vm/job.sh"
		fi
		vm_krels+=("$vm")
		while [ "$jobs_max" -gt 0 ] &&
			[ "$(jobs_running vm-)" -ge "$jobs_max" ]; do
			sleep 1
		done
		[ "$(lane_arch "$series")" = amd64 ] && vm_accel "$krel"
		job_start "vm-$vm" vm_boot "$series" "$krel" "$root" "$src" "$vm"
	done
done
$demo || host_checks
wait
for krel in "${vm_krels[@]}"; do
	vm_report "$krel"
done

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] || exit 1
if [ "$skipped" -gt 0 ] && [ "${CI:-}" = true ]; then
	echo "CI: skipped tests count as failures"
	exit 1
fi
exit 0
