#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The order that lost a lane (tests/vm/jobs.sh): a root job ends while the
# suite waits for a VM, and its pid is handed out again before the suite
# asks for its status. In a pid namespace of its own the test sets the next
# pid (/proc/sys/kernel/ns_last_pid) so that a foreground child gets the
# ended job's pid, as pid wrap-around did on a machine with pid_max 32768.
# It checks that this order really defeats bash's own `wait PID` (else the
# test proves nothing and fails), then that job_wait still returns each
# job's own status, once. Needs root (a pid namespace, ns_last_pid).
#
# Usage: jobs_race.sh

set -u

here=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" != --inside ]; then
	sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	exec "${sudo[@]}" unshare --pid --fork --mount-proc \
		bash "$here/static/jobs_race.sh" --inside
fi

# shellcheck source-path=SCRIPTDIR/..
source "$here/vm/jobs.sh"
JOBS_DIR=$(mktemp -d)
trap 'rm -rf "$JOBS_DIR"' EXIT
ret=0

check()
{
	if [ "$2" = "$3" ]; then
		echo "ok: $1: $3"
	else
		echo "FAIL: $1: want $2, got $3"
		ret=1
	fi
}

# The root job ends first, with a status of its own; the VM job later.
job_start vm-a sleep 3
job_start mkroot-a sh -c 'sleep 0.5; exit 3'
# The old limiter: wait -n returns when some job ends (the root job).
wait -n
check "the root job ended while the VM runs" 1 "$(jobs_running vm-)"
pid=${job_pid[mkroot-a]}

# Its pid goes to the next child of this shell, in the foreground.
echo $((pid - 1)) >/proc/sys/kernel/ns_last_pid
reused=$(exec sh -c 'echo $$')
check "a foreground child got the root job's pid" "$pid" "$reused"
# bash now answers 127 or the new child's status, not the job's.
wait "$pid" 2>/dev/null
old=$?
if [ "$old" -ne 3 ]; then
	echo "ok: bash's own wait PID lost the root job's status: $old"
else
	echo "FAIL: bash's own wait PID kept the status: this order proves nothing"
	ret=1
fi

job_wait mkroot-a
check "job_wait returns the root job's status" 3 $?
job_wait vm-a
check "job_wait returns the VM job's status" 0 $?
check "no job left running" 0 "$(jobs_running "")"
exit "$ret"
