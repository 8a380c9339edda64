#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# docs/cookbook.md, recipe 4 alone (FTP, the RELATED data connection
# inheriting the control connection's mark): the debug kernel's share of the
# cookbook. See tests/cookbook.sh.

exec bash "$(dirname "$0")/cookbook.sh" 4
