# SPDX-License-Identifier: GPL-2.0
#
# libxtables as pkg-config describes it, for whatever builds the plugins'
# sources (libxt/Makefile, tests/fuzz/Makefile). XT_CPPFLAGS carries its
# release as a number, 1.8.7 -> 10807, for xtables_compat.h.

PKG_CONFIG ?= pkg-config
XT_CFLAGS := $(shell $(PKG_CONFIG) --cflags xtables)
XT_LIBS := $(shell $(PKG_CONFIG) --libs xtables)
XT_VERSION := $(shell $(PKG_CONFIG) --modversion xtables | \
	awk -F. '{ printf "%d", $$1 * 10000 + $$2 * 100 + $$3 }')
XT_CPPFLAGS := -DXTCM_XTABLES_VERSION=$(XT_VERSION)
