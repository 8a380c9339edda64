# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# Test lanes: a Debian kernel series and a userland root of the same
# release. Debian 12's lanes run on the host's own root; the others on a
# root that tests/vm/mkroot.sh makes with debootstrap in .cache/roots/.
# Sourced by fetch-kernel.sh, mkroot.sh and run.sh.
#
#   lane    release   kernel (its meta-package)          compiler, iptables
#   5.10    bullseye  5.10.0-N  linux-image-amd64        gcc-10, 1.8.7
#   6.1     bookworm  6.1.0-N   linux-image-amd64        gcc-12, 1.8.9
#   6.12    bookworm  6.12.N+deb12 linux-image-6.12-amd64
#   debug   bookworm  6.1 with KASAN, lockdep, kmemleak, UBSAN (built here)
#   kcsan   bookworm  6.1 with KCSAN, lockdep, UBSAN (make kcsan-kernel)
#   trixie  trixie    6.12.N+deb13 linux-image-amd64     gcc-14, 1.8.11
#   sid     sid       its newest, linux-image-amd64      gcc-16, 1.8.13
#   arm64   bookworm  6.12.N+deb12 linux-image-6.12-arm64 gcc-12, 1.8.9
#
# The arm64 lane boots Debian 12's arm64 kernel under qemu-system-aarch64
# on an arm64 root (mkroot.sh: debootstrap, its second stage under
# qemu-user-static). Its module, plugins and tools are cross-built on the
# host; every other lane's kernel gets an arm64 cross build of the module
# too (FLAVOUR arm64, with the release's gcc-N-aarch64-linux-gnu).

LANE_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# depmod, modinfo, dkms and debootstrap are in sbin, which is not in a
# Debian user's PATH; the scripts that source this file and what they run
# need them.
case :$PATH: in
*:/usr/sbin:*) ;;
*) PATH=$PATH:/usr/sbin:/sbin ;;
esac

# lane_release LANE: the Debian release whose userland the lane runs.
lane_release()
{
	case $1 in
	5.10) echo bullseye ;;
	6.1 | 6.12 | debug | kcsan | arm64) echo bookworm ;;
	trixie | sid) echo "$1" ;;
	*) return 1 ;;
	esac
}

# lane_arch LANE: the Debian architecture its guest runs.
lane_arch()
{
	case $1 in
	arm64) echo arm64 ;;
	*) echo amd64 ;;
	esac
}

# release_root RELEASE [ARCH]: the root of a Debian release and
# architecture (default amd64): / for the host's own, Debian 12 on amd64.
release_root()
{
	local arch=${2:-amd64}

	if [ "$1" = bookworm ] && [ "$arch" = amd64 ]; then
		echo /
	elif [ "$arch" = amd64 ]; then
		echo "$LANE_REPO/.cache/roots/$1"
	else
		echo "$LANE_REPO/.cache/roots/$1-$arch"
	fi
}

# lane_root LANE: the root the lane's guest boots on.
lane_root()
{
	local release

	release=$(lane_release "$1") || return
	release_root "$release" "$(lane_arch "$1")"
}

# lane_build_root LANE: the amd64 root of the lane's release, where its
# module, plugins and tools are built (natively, or cross for arm64).
lane_build_root()
{
	local release

	release=$(lane_release "$1") || return
	release_root "$release"
}

# lane_kernel_meta LANE FLAVOUR: the meta-package naming its newest kernel.
lane_kernel_meta()
{
	case $1 in
	6.12 | arm64) echo "linux-image-6.12-$2" ;;
	*) echo "linux-image-$2" ;;
	esac
}

# lane_sources RELEASE: its apt sources, the archive's and security's.
lane_sources()
{
	local mirror=${XTCM_MIRROR:-http://deb.debian.org/debian}
	local security=${XTCM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

	case $1 in
	bullseye | bookworm | trixie)
		printf '%s\n' "deb $mirror $1 main" "deb $mirror $1-updates main" \
			"deb $security $1-security main"
		;;
	sid) echo "deb $mirror sid main" ;;
	*) return 1 ;;
	esac
}

# lane_foreign_apt [--main-only] RELEASE ARCH CMD [ARG...]: apt-get or
# apt-cache (CMD) of the host on RELEASE's packages for the foreign ARCH
# (with --main-only, of its main archive alone), with lists and state of its
# own in .cache/apt/RELEASE-ARCH[-main] (updated once a day). The host's apt
# configuration is neither used nor changed.
lane_foreign_apt()
{
	local suffix="" lines=3 release arch cmd dir
	local -a opts

	if [ "$1" = --main-only ]; then
		suffix=-main
		lines=1
		shift
	fi
	release=$1 arch=$2 cmd=$3
	shift 3
	dir=$LANE_REPO/.cache/apt/$release-$arch$suffix
	opts=(-o "APT::Architecture=$arch" -o "APT::Architectures::=$arch"
		-o "Dir::Etc::SourceList=$dir/sources.list"
		-o Dir::Etc::SourceParts=/dev/null -o "Dir::State=$dir/state"
		-o "Dir::State::status=$dir/status" -o "Dir::Cache=$dir/cache"
		-o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)"
		-o Acquire::Check-Valid-Until=false)
	if [ -z "$(find "$dir/state/lists" -maxdepth 1 -name '*Packages*' \
		-mmin -1440 2>/dev/null)" ]; then
		mkdir -p "$dir/state/lists/partial" "$dir/cache/archives/partial" &&
			lane_sources "$release" | head -n "$lines" >"$dir/sources.list" &&
			touch "$dir/status" &&
			apt-get "${opts[@]}" update -qq >&2 || return
	fi
	"$cmd" "${opts[@]}" "$@"
}

# lane_run [--user] ROOT CMD...: CMD in ROOT (a chroot in a mount namespace
# of its own, with /proc, /dev, a fresh /tmp, and the repository and
# XTCM_OUT at their host paths, with what is mounted below them: a second
# working tree's .cache may be the first's, bind-mounted) or, for /, CMD itself on the host. CMD runs
# as root (through sudo when we are not), or with --user as our own user,
# so that what it builds is ours.
lane_run()
{
	local root userspec=0:0
	local -a sudo=() binds=("$LANE_REPO")

	if [ "$1" = --user ]; then
		userspec=$(id -u):$(id -g)
		shift
	fi
	root=$1
	shift

	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	if [ "$root" = / ] && [ "$userspec" = 0:0 ]; then
		"${sudo[@]}" "$@"
		return
	elif [ "$root" = / ]; then
		"$@"
		return
	fi
	[ -n "${XTCM_OUT:-}" ] && binds+=("$(realpath -m "$XTCM_OUT")")
	# shellcheck disable=SC2016 # expanded by the inner shell
	"${sudo[@]}" unshare --mount --propagation private bash -c '
		root=$1 userspec=$2 nbinds=$3
		shift 3
		mount --rbind /dev "$root/dev" &&
			mount -t proc proc "$root/proc" &&
			mount -t tmpfs tmpfs "$root/tmp" || exit 1
		for dir in "${@:1:nbinds}"; do
			mkdir -p "$dir" "$root$dir" &&
				mount --rbind "$dir" "$root$dir" || exit 1
		done
		shift "$nbinds"
		exec chroot --userspec="$userspec" "$root" /usr/bin/env -i \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
	' lane-run "$root" "$userspec" "${#binds[@]}" "${binds[@]}" "$@"
}

# lane_tree LANE DIR: DIR a copy of the sources (no build products, caches
# or results) with the plugins, the test tools and the benchmark's sender
# built in the lane's build root, against that release's libxtables and C
# library: for an arm64 lane, cross-built with the arm64 root as sysroot
# (make takes CC from the environment).
lane_tree()
{
	local build_root root triplet
	local -a cross_env=()

	build_root=$(lane_build_root "$1") || return
	root=$(lane_root "$1")
	if [ "$root" != "$build_root" ]; then
		triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH \
			-a"$(lane_arch "$1")" 2>/dev/null) || return
		cross_env=(CC="$triplet-gcc --sysroot=$root"
			PKG_CONFIG_SYSROOT_DIR="$root"
			PKG_CONFIG_LIBDIR="$root/usr/lib/$triplet/pkgconfig:$root/usr/share/pkgconfig")
	fi
	rm -rf "$2" && mkdir -p "$2" || return
	tar -C "$LANE_REPO" --exclude=./.git --exclude=./.cache \
		--exclude=./tests/out --exclude=./bench/out --exclude=./build \
		-c . | tar -C "$2" -x || return
	# shellcheck disable=SC2016 # expanded by the inner shell
	lane_run --user "$build_root" env "${cross_env[@]}" sh -c '
		make -C "$1/libxt" clean all &&
		make -C "$1/tests" clean tools &&
		make -C "$1/bench" clean all' lane-tree "$2"
}

# lane_vm_env ROOT SRC OUTDIR: run-vm.sh's VM_ROOT, VM_REPO and VM_SHARES,
# exported, for a guest on ROOT that runs SRC's tests. A lane's own root
# sees the repository (the kernels, SRC) and OUTDIR at their host paths.
lane_vm_env()
{
	local shares=""

	if [ "$1" != / ]; then
		shares=$LANE_REPO
		[[ $3/ == "$LANE_REPO"/* ]] || shares+=:$3
	fi
	export VM_ROOT=$1 VM_REPO=$2 VM_SHARES=$shares
}

# lane_download ROOT DIR PKG...: apt-get download of each PKG (name or
# name=version) with ROOT's apt, into DIR, as our own user.
lane_download()
{
	local root=$1 dir=$2
	shift 2

	# shellcheck disable=SC2016 # expanded by the inner shell
	lane_run --user "$root" sh -c 'cd "$1" && shift && apt-get download "$@"' \
		download "$dir" "$@"
}
