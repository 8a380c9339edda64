#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# docs/cookbook.md, the recipes with helpers and tools: 4 (FTP, RELATED),
# 5 (HTB), 7 (ingress, act_connmark, IFB), 8 (accounting), 9 (LOG,
# /proc, conntrack -E) and 13 (--set-dscpmark, act_ctinfo, IFB, cake). See
# tests/cookbook.sh; split from the other recipes to keep each script well
# inside the VM's per-test timeout.

exec bash "$(dirname "$0")/cookbook.sh" 4 5 7 8 9 13
