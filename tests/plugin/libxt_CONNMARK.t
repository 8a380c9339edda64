# CONNMARK target, revisions 1 to 3: rule;expected-save-or-=;OK|FAIL
# Expected save text is upstream's canonical form (facts section 5), or
# OpenWrt's for revision 3's --set-dscpmark.
# A fourth field OURS marks a line where ours differs from Debian's plugins
# on purpose: ours refuses a shift by 32 bits, which theirs accepts and the
# kernel refuses (ours always, upstream since July 2026), so the range its
# errors name is 0-31, not 0-32; the differential leaves these lines out.
# A fourth field REV3 marks a rule of revision 3 only (--set-dscpmark):
# where the kernel has no CONNMARK revision 3, iptables uses revision 2,
# whose parser refuses the option by name, so the rule must fail (even an
# OK one) and leave the chain unchanged; the differential against Debian's
# plugins (which have no revision 3, and ours names it where the kernel
# lacks it) leaves REV3 rules out.
*mangle
:PREROUTING
# --set-xmark value[/mask]: ctmark = value, ctmask = mask (default all ones)
-j CONNMARK --set-xmark 0xa;-j CONNMARK --set-xmark 0xa/0xffffffff;OK
-j CONNMARK --set-xmark 0xa/0xf;=;OK
-j CONNMARK --set-xmark 10/15;-j CONNMARK --set-xmark 0xa/0xf;OK
-j CONNMARK --set-xmark 0x0/0x0;=;OK
-j CONNMARK --set-xmark 0xffffffff/0xffffffff;=;OK
-j CONNMARK --set-xmark 0x100000000;;FAIL
-j CONNMARK --set-xmark 0x1/0x100000000;;FAIL
-j CONNMARK --set-xmark -1;;FAIL
-j CONNMARK --set-xmark 0x1/-1;;FAIL
-j CONNMARK --set-xmark foo;;FAIL
-j CONNMARK --set-xmark;;FAIL
# --set-mark value[/mask]: ctmark = value, ctmask = value | mask
-j CONNMARK --set-mark 0;-j CONNMARK --set-xmark 0x0/0xffffffff;OK
-j CONNMARK --set-mark 0x1;-j CONNMARK --set-xmark 0x1/0xffffffff;OK
-j CONNMARK --set-mark 0x23/0x42;-j CONNMARK --set-xmark 0x23/0x63;OK
-j CONNMARK --set-mark 0x1/0x0;-j CONNMARK --set-xmark 0x1/0x1;OK
-j CONNMARK --set-mark 0xffffffff;-j CONNMARK --set-xmark 0xffffffff/0xffffffff;OK
-j CONNMARK --set-mark 0x100000000;;FAIL
-j CONNMARK --set-mark -1;;FAIL
-j CONNMARK --set-mark 0x1/foo;;FAIL
-j CONNMARK --set-mark;;FAIL
# --and-mark b: 0/~b; --or-mark b: b/b; --xor-mark b: b/0
-j CONNMARK --and-mark 0x17;-j CONNMARK --set-xmark 0x0/0xffffffe8;OK
-j CONNMARK --and-mark 0x0;-j CONNMARK --set-xmark 0x0/0xffffffff;OK
-j CONNMARK --and-mark 0xffffffff;-j CONNMARK --set-xmark 0x0/0x0;OK
-j CONNMARK --or-mark 0x17;-j CONNMARK --set-xmark 0x17/0x17;OK
-j CONNMARK --xor-mark 0x17;-j CONNMARK --set-xmark 0x17/0x0;OK
-j CONNMARK --and-mark 0x100000000;;FAIL
-j CONNMARK --or-mark -1;;FAIL
-j CONNMARK --xor-mark 0x1/0x1;;FAIL
-j CONNMARK --and-mark;;FAIL
# --save-mark / --restore-mark: both masks are always saved
-j CONNMARK --save-mark;-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff;OK
-j CONNMARK --save-mark --mask 0xff;-j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff;OK
-j CONNMARK --mask 0xff --save-mark;-j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff;OK
-j CONNMARK --save-mark --nfmask 0xff;-j CONNMARK --save-mark --nfmask 0xff --ctmask 0xffffffff;OK
-j CONNMARK --save-mark --ctmask 0xf0;-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xf0;OK
-j CONNMARK --save-mark --nfmask 0xff --ctmask 0xf0;=;OK
-j CONNMARK --save-mark --ctmask 0xf0 --nfmask 0xff;-j CONNMARK --save-mark --nfmask 0xff --ctmask 0xf0;OK
-j CONNMARK --save-mark --mask 0x0;-j CONNMARK --save-mark --nfmask 0x0 --ctmask 0x0;OK
-j CONNMARK --restore-mark;-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff;OK
-j CONNMARK --restore-mark --mask 0xff;-j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff;OK
-j CONNMARK --restore-mark --nfmask 0xff;-j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xffffffff;OK
-j CONNMARK --restore-mark --ctmask 0xf0;-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xf0;OK
-j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xf0;=;OK
-j CONNMARK --save-mark --mask 0x100000000;;FAIL
-j CONNMARK --save-mark --nfmask -1;;FAIL
-j CONNMARK --restore-mark --ctmask foo;;FAIL
-j CONNMARK --restore-mark --mask;;FAIL
-j CONNMARK --save-mark 0x1;;FAIL
# the set operations leave nfmask alone; a later --ctmask or --mask
# replaces the ctmask they computed (upstream order-dependence)
-j CONNMARK --set-mark 0x1 --nfmask 0xff;-j CONNMARK --set-xmark 0x1/0xffffffff;OK
-j CONNMARK --set-mark 0x1 --ctmask 0xff;-j CONNMARK --set-xmark 0x1/0xff;OK
-j CONNMARK --ctmask 0xff --set-mark 0x1;-j CONNMARK --set-xmark 0x1/0xffffffff;OK
-j CONNMARK --set-xmark 0x1/0xf0 --mask 0xff;-j CONNMARK --set-xmark 0x1/0xff;OK
# revision 2 shifts, 0-31 bits; shift by 0 is no shift
-j CONNMARK --save-mark --left-shift-mark 0;-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff;OK
-j CONNMARK --save-mark --left-shift-mark 1;-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff --left-shift-mark 1;OK
-j CONNMARK --save-mark --left-shift-mark 31;-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff --left-shift-mark 31;OK
-j CONNMARK --save-mark --left-shift-mark 32;;FAIL;OURS
-j CONNMARK --save-mark --left-shift-mark 33;;FAIL;OURS
-j CONNMARK --save-mark --left-shift-mark 256;;FAIL;OURS
-j CONNMARK --save-mark --left-shift-mark -1;;FAIL;OURS
-j CONNMARK --save-mark --left-shift-mark foo;;FAIL;OURS
-j CONNMARK --save-mark --left-shift-mark;;FAIL
-j CONNMARK --restore-mark --right-shift-mark 0;-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff;OK
-j CONNMARK --restore-mark --right-shift-mark 1;-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff --right-shift-mark 1;OK
-j CONNMARK --restore-mark --right-shift-mark 31;-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff --right-shift-mark 31;OK
-j CONNMARK --restore-mark --right-shift-mark 32;;FAIL;OURS
-j CONNMARK --restore-mark --right-shift-mark 33;;FAIL;OURS
-j CONNMARK --restore-mark --right-shift-mark -1;;FAIL;OURS
-j CONNMARK --save-mark --mask 0xff00 --right-shift-mark 8;-j CONNMARK --save-mark --nfmask 0xff00 --ctmask 0xff00 --right-shift-mark 8;OK
-j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff00 --left-shift-mark 8;-j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff00 --left-shift-mark 8;OK
-j CONNMARK --set-xmark 0x23/0x63 --right-shift-mark 5;=;OK
-j CONNMARK --set-mark 0x1 --left-shift-mark 3;-j CONNMARK --set-xmark 0x1/0xffffffff --left-shift-mark 3;OK
-j CONNMARK --and-mark 0xff --left-shift-mark 4;-j CONNMARK --set-xmark 0x0/0xffffff00 --left-shift-mark 4;OK
-j CONNMARK --or-mark 0x10 --right-shift-mark 4;-j CONNMARK --set-xmark 0x10/0x10 --right-shift-mark 4;OK
-j CONNMARK --xor-mark 0x10 --right-shift-mark 2;-j CONNMARK --set-xmark 0x10/0x0 --right-shift-mark 2;OK
# the last shift option wins (upstream does not exclude left against right)
-j CONNMARK --save-mark --left-shift-mark 3 --right-shift-mark 2;-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff --right-shift-mark 2;OK
-j CONNMARK --save-mark --left-shift-mark 1 --left-shift-mark 2;;FAIL
-j CONNMARK --save-mark --right-shift-mark 1 --right-shift-mark 2;;FAIL
# no operation
-j CONNMARK;;FAIL
-j CONNMARK --mask 0xff;;FAIL
-j CONNMARK --ctmask 0xff --nfmask 0xff;;FAIL
-j CONNMARK --left-shift-mark 1;;FAIL
# --mask excludes --ctmask and --nfmask; no mask twice
-j CONNMARK --save-mark --mask 0xff --ctmask 0xff;;FAIL
-j CONNMARK --save-mark --ctmask 0xff --mask 0xff;;FAIL
-j CONNMARK --restore-mark --mask 0xff --nfmask 0xff;;FAIL
-j CONNMARK --restore-mark --nfmask 0xff --mask 0xff;;FAIL
-j CONNMARK --save-mark --mask 0xff --mask 0xff;;FAIL
-j CONNMARK --save-mark --ctmask 0xff --ctmask 0xff;;FAIL
-j CONNMARK --save-mark --nfmask 0xff --nfmask 0xff;;FAIL
# every operation excludes every other one, and itself twice
-j CONNMARK --set-xmark 0x1 --set-xmark 0x1;;FAIL
-j CONNMARK --set-xmark 0x1 --set-mark 0x1;;FAIL
-j CONNMARK --set-xmark 0x1 --and-mark 0x1;;FAIL
-j CONNMARK --set-xmark 0x1 --or-mark 0x1;;FAIL
-j CONNMARK --set-xmark 0x1 --xor-mark 0x1;;FAIL
-j CONNMARK --set-xmark 0x1 --save-mark;;FAIL
-j CONNMARK --set-xmark 0x1 --restore-mark;;FAIL
-j CONNMARK --set-mark 0x1 --set-mark 0x1;;FAIL
-j CONNMARK --set-mark 0x1 --and-mark 0x1;;FAIL
-j CONNMARK --set-mark 0x1 --or-mark 0x1;;FAIL
-j CONNMARK --set-mark 0x1 --xor-mark 0x1;;FAIL
-j CONNMARK --set-mark 0x1 --save-mark;;FAIL
-j CONNMARK --set-mark 0x1 --restore-mark;;FAIL
-j CONNMARK --and-mark 0x1 --and-mark 0x1;;FAIL
-j CONNMARK --and-mark 0x1 --or-mark 0x1;;FAIL
-j CONNMARK --and-mark 0x1 --xor-mark 0x1;;FAIL
-j CONNMARK --and-mark 0x1 --save-mark;;FAIL
-j CONNMARK --and-mark 0x1 --restore-mark;;FAIL
-j CONNMARK --or-mark 0x1 --or-mark 0x1;;FAIL
-j CONNMARK --or-mark 0x1 --xor-mark 0x1;;FAIL
-j CONNMARK --or-mark 0x1 --save-mark;;FAIL
-j CONNMARK --or-mark 0x1 --restore-mark;;FAIL
-j CONNMARK --xor-mark 0x1 --xor-mark 0x1;;FAIL
-j CONNMARK --xor-mark 0x1 --save-mark;;FAIL
-j CONNMARK --xor-mark 0x1 --restore-mark;;FAIL
-j CONNMARK --save-mark --save-mark;;FAIL
-j CONNMARK --save-mark --restore-mark;;FAIL
-j CONNMARK --restore-mark --restore-mark;;FAIL
-j CONNMARK --restore-mark --set-mark 0x1;;FAIL
-j CONNMARK --save-mark --xor-mark 0x1;;FAIL
# revision 3 (OpenWrt): --set-dscpmark dscpmask/statemask; the dscpmask is
# exactly 6 contiguous bits and does not overlap the statemask (which
# defaults to all ones, so it must be given). Saved with OpenWrt's "%x":
# what OpenWrt's iptables-save wrote restores and saves unchanged.
-j CONNMARK --set-dscpmark 0xfc000000/0x01000000;-j CONNMARK --set-dscpmark 0xfc000000/0x1000000;OK;REV3
-j CONNMARK --set-dscpmark 0xfc000000/0x1000000;=;OK;REV3
-j CONNMARK --set-dscpmark 4227858432/16777216;-j CONNMARK --set-dscpmark 0xfc000000/0x1000000;OK;REV3
-j CONNMARK --set-dscpmark 0x3f/0x40;=;OK;REV3
-j CONNMARK --set-dscpmark 0x3f00/0x0;=;OK;REV3
-j CONNMARK --set-dscpmark 0x3f0000/0xff000000;=;OK;REV3
-j CONNMARK --set-dscpmark 0xfc000000/0x3ffffff;=;OK;REV3
-j CONNMARK --set-dscpmark 0xf8000000/0x1000000;;FAIL;REV3
-j CONNMARK --set-dscpmark 0xfe000000/0x1;;FAIL;REV3
-j CONNMARK --set-dscpmark 0xec000000/0x1;;FAIL;REV3
-j CONNMARK --set-dscpmark 0x1f0/0x1;;FAIL;REV3
-j CONNMARK --set-dscpmark 0x1f8/0x1;=;OK;REV3
-j CONNMARK --set-dscpmark 0x0/0x1;;FAIL;REV3
-j CONNMARK --set-dscpmark 0x7e000000/0x3000000;;FAIL;REV3
-j CONNMARK --set-dscpmark 0xfc000000/0xffffffff;;FAIL;REV3
-j CONNMARK --set-dscpmark 0xfc000000;;FAIL;REV3
-j CONNMARK --set-dscpmark 0x1fc000000/0x1;;FAIL;REV3
-j CONNMARK --set-dscpmark 0xfc000000/-1;;FAIL;REV3
-j CONNMARK --set-dscpmark foo;;FAIL;REV3
-j CONNMARK --set-dscpmark;;FAIL;REV3
# --set-dscpmark excludes every other operation, itself twice, the masks
# and the shifts, in either order
-j CONNMARK --set-dscpmark 0xfc000000/0x1000000 --save-mark;;FAIL;REV3
-j CONNMARK --restore-mark --set-dscpmark 0xfc000000/0x1000000;;FAIL;REV3
-j CONNMARK --set-mark 0x1 --set-dscpmark 0xfc000000/0x1000000;;FAIL;REV3
-j CONNMARK --set-dscpmark 0xfc000000/0x1000000 --xor-mark 0x1;;FAIL;REV3
-j CONNMARK --set-dscpmark 0xfc000000/0x1000000 --set-dscpmark 0xfc000000/0x1000000;;FAIL;REV3
-j CONNMARK --set-dscpmark 0xfc000000/0x1000000 --ctmask 0xff;;FAIL;REV3
-j CONNMARK --nfmask 0xff --set-dscpmark 0xfc000000/0x1000000;;FAIL;REV3
-j CONNMARK --set-dscpmark 0xfc000000/0x1000000 --mask 0xff;;FAIL;REV3
-j CONNMARK --left-shift-mark 2 --set-dscpmark 0xfc000000/0x1000000;;FAIL;REV3
-j CONNMARK --set-dscpmark 0xfc000000/0x1000000 --right-shift-mark 0;;FAIL;REV3
# CONNMARK has no table or chain restriction
:FORWARD,OUTPUT,POSTROUTING
-j CONNMARK --set-mark 0x1;-j CONNMARK --set-xmark 0x1/0xffffffff;OK
-j CONNMARK --set-dscpmark 0xfc000000/0x1000000;=;OK;REV3
-j CONNMARK --save-mark --mask 0xff --left-shift-mark 8;-j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff --left-shift-mark 8;OK
*filter
:INPUT,FORWARD,OUTPUT
-j CONNMARK --restore-mark --mask 0xff;-j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff;OK
-j CONNMARK --set-xmark 0x1/0x3;=;OK
-j CONNMARK --save-mark --set-mark 0x1;;FAIL
*raw
:PREROUTING,OUTPUT
-j CONNMARK --set-dscpmark 0x3f/0x100;=;OK;REV3
-j CONNMARK --save-mark --right-shift-mark 4;-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff --right-shift-mark 4;OK
-j CONNMARK --xor-mark 0x10;-j CONNMARK --set-xmark 0x10/0x0;OK
