#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# docs/cookbook.md, the recipes on marking and routing: 1 (persistence),
# 2 (the simple example), 3 (the complete example, PREROUTING against
# POSTROUTING), 6 (two uplinks), 10 (fragments), 11 (IPv6) and 12 (sharing
# the mark). See tests/cookbook.sh; split from the other recipes to keep
# each script well inside the VM's per-test timeout.

exec bash "$(dirname "$0")/cookbook.sh" 1 2 3 6 10 11 12
