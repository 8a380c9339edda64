#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the kernel's checkpatch.pl --strict on the module's sources. The script
# comes from Debian's linux-source-6.1 package, unpacked into .cache once.

set -u
set -o pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=$repo/.cache/checkpatch
script=$dir/scripts/checkpatch.pl

if [ ! -x "$script" ]; then
	mkdir -p "$dir"
	(cd "$dir" && apt-get download linux-source-6.1) || exit 1
	dpkg-deb --fsys-tarfile "$dir"/linux-source-6.1_*.deb |
		tar -xO --wildcards '*/linux-source-6.1.tar.xz' |
		tar -xJ -C "$dir" --strip-components=1 --wildcards \
			'*/scripts/checkpatch.pl' '*/scripts/spelling.txt' \
			'*/scripts/const_structs.checkpatch' || exit 1
	rm -f "$dir"/linux-source-6.1_*.deb
fi

cd "$repo" || exit 1
rc=0
"$script" --strict --no-tree --show-types -f \
	kmod/xt_connmark.c kmod/connmark_math.h kmod/connmark_tginfo.h include/*.h || rc=1
# The compat header exists to compare LINUX_VERSION_CODE, which checkpatch
# flags on every use (and takes for a constant on the left).
"$script" --strict --no-tree --show-types \
	--ignore LINUX_VERSION_CODE,CONSTANT_COMPARISON -f kmod/compat.h || rc=1
exit "$rc"
