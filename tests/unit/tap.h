/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tap.h - the host unit tests' runner: one TAP line per test after the
 * plan, exit status 1 if any test failed. A test counts its problems in
 * failures, which tap_run() resets before each.
 *
 * Copyright (C) 2026 The xt_connmark project authors
 */
#ifndef _XTCM_TAP_H
#define _XTCM_TAP_H

#include <stddef.h>
#include <stdio.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct unit_test {
	void (*run)(void);
	const char *name;
};

static unsigned int failures;	/* in the current test */

static int tap_run(const struct unit_test *tests, size_t n)
{
	unsigned int failed = 0;
	size_t i;

	printf("1..%zu\n", n);
	for (i = 0; i < n; i++) {
		failures = 0;
		tests[i].run();
		printf("%s %zu - %s\n", failures ? "not ok" : "ok", i + 1,
		       tests[i].name);
		if (failures)
			failed++;
	}
	return failed ? 1 : 0;
}

#endif /* _XTCM_TAP_H */
