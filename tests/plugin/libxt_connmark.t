# connmark match, revision 1: rule;expected-save-or-=;OK|FAIL
# Expected save text is upstream's canonical form (facts section 5).
:INPUT
-m connmark --mark 0xa;=;OK
-m connmark --mark 10;-m connmark --mark 0xa;OK
-m connmark --mark 0x0;=;OK
-m connmark --mark 0xffffffff;=;OK
-m connmark --mark 0xa/0xffffffff;-m connmark --mark 0xa;OK
-m connmark --mark 0xa/0xa;=;OK
-m connmark --mark 0x2/0xf;=;OK
-m connmark --mark 0x0/0x0;=;OK
-m connmark ! --mark 0xa;=;OK
-m connmark ! --mark 0xa/0xa;=;OK
-m connmark --mark 0x1 -m connmark ! --mark 0x2/0x2;=;OK
-m connmark --mark 0x100000000;;FAIL
-m connmark --mark 0xffffffff/0x100000000;;FAIL
-m connmark --mark -1;;FAIL
-m connmark --mark 0x1/-1;;FAIL
-m connmark --mark -0x1;;FAIL
-m connmark --mark foo;;FAIL
-m connmark --mark 0x1/;;FAIL
-m connmark --mark;;FAIL
-m connmark;;FAIL
-m connmark ! --mark;;FAIL
-m connmark --mark 0x1 --mark 0x2;;FAIL
# the match has no table or chain restriction
:FORWARD,OUTPUT
-m connmark --mark 0x1/0x1;=;OK
-m connmark ! --mark 0x1;=;OK
*mangle
:PREROUTING,POSTROUTING
-m connmark --mark 0x2/0xf;=;OK
*raw
:PREROUTING,OUTPUT
-m connmark ! --mark 0x0/0x1;=;OK
