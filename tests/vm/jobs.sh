# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# Background jobs whose exit status cannot be lost. bash keeps the status
# of a finished background job only until its pid is handed out again: on
# a machine with pid_max 32768 a make check forks enough processes
# (debootstrap, dpkg, builds) for that, and a late `wait PID` then answers
# 127 ("pid N is not a child of this shell") or the status of the new
# child. Here each job writes its own status to a file, which is read once,
# whatever order the jobs end in and whatever else waited meanwhile.
# Sourced by run.sh and tests/static/jobs_race.sh.
#
# JOBS_DIR: where the status files go (the caller creates it).

declare -A job_pid=()

# job_start NAME CMD...: run CMD in the background as job NAME; its exit
# status goes to $JOBS_DIR/NAME.rc when it ends.
job_start()
{
	local name=$1
	shift

	rm -f "$JOBS_DIR/$name.rc"
	(
		"$@"
		echo $? >"$JOBS_DIR/$name.rc.new" &&
			mv "$JOBS_DIR/$name.rc.new" "$JOBS_DIR/$name.rc"
	) &
	job_pid[$name]=$!
}

# job_wait NAME: wait until job NAME has ended; returns its exit status
# (1, with a message, if it was killed before it could write one).
job_wait()
{
	local name=$1 rc

	# A job without a status file is running: still bash's child.
	[ -e "$JOBS_DIR/$name.rc" ] || wait "${job_pid[$name]}" 2>/dev/null
	if ! read -r rc 2>/dev/null <"$JOBS_DIR/$name.rc"; then
		echo "job $name ended without an exit status" >&2
		return 1
	fi
	return "$rc"
}

# jobs_running PREFIX: how many jobs whose names start with PREFIX have
# not ended.
jobs_running()
{
	local name n=0

	for name in "${!job_pid[@]}"; do
		[[ $name == "$1"* ]] && [ ! -e "$JOBS_DIR/$name.rc" ] &&
			n=$((n + 1))
	done
	echo "$n"
}
