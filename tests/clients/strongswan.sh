#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# strongSwan's connmark plugin (Debian 12's libstrongswan-standard-plugins,
# charon 5.9.8): a real IKEv2 transport-mode SA between the client and the
# router, the router its responder with mark_in = mark_out = SS_MARK on the
# CHILD_SA. The plugin exists for several transport-mode clients behind one
# NAT, whose SAs have the same policies: it marks each SA's ESP packets in
# PREROUTING (MARK, for the marked inbound SA), sets the SA's mark on the
# connections that come in by it in INPUT (CONNMARK, under "-m policy --dir
# in --spi") and restores it in OUTPUT on packets without a mark (CONNMARK
# under "-m mark --mark 0"), so that the replies carry the mark that
# selects the SA's marked outbound policy: without the restore they would
# leave in the clear and the client would drop them. It writes
# xt_connmark_tginfo1 through libiptc (legacy iptables, IPv4 only: it links
# libip4tc alone), hence one case, IPv4. iptables-legacy-save lists those
# revision 1 targets as "[unsupported revision]" (it knows revision 2, which
# the kernel offers): the listing names the rules, what they did proves
# their options.
#
#   nsclient (10.0.1.99, charon:    veth0 -- veth0   nsrouter (10.0.1.1, charon:
#   the initiator, no mark)         ESP              the responder, mark SS_MARK,
#                                                    observe.py's servers)
#
# Each charon runs in its namespace with a mount namespace of its own (its
# pid file is /run's), its configuration, log and VICI socket in
# CLIENT_WORK. The traffic is the client's, to the router's servers over
# the SA: its TCP, UDP and ICMP entries must have the SA's mark, the
# replies the mark restored and ESP must carry them. "swanctl --terminate"
# takes the SA down, and the plugin its rules.

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

SS_MARK=0x2a
SS_DIR=$CLIENT_WORK/strongswan
SS_PIDS=()

client_env_ok
# Before the trap, whose exit status ($ret) would replace theirs.
install_client_debs
if [ ! -x /usr/lib/ipsec/charon ] || [ ! -x /usr/sbin/swanctl ]; then
	echo "FAIL: charon or swanctl missing after installing the packages"
	exit "$ksft_fail"
fi
trap client_cleanup EXIT
# libiptc, unlike iptables, does not load ip_tables (charon logs "iptables
# who?"): a system with legacy rules has it loaded.
modprobe ip_tables || { fail "modprobe ip_tables"; exit; }

# ss_config END LOCAL REMOTE SPI [CHILD_OPTION...]: END's strongswan.conf
# and swanctl.conf in $SS_DIR/END: one IKEv2 connection "v4" from LOCAL to
# REMOTE, PSK, a transport-mode child "v4" with CHILD_OPTIONs, whose inbound
# SA has the SPI SPI (the plugin's rules name the router's: the same every
# run).
ss_config()
{
	local local=$2 remote=$3 spi=$4 dir=$SS_DIR/$1 opt
	shift 4

	mkdir -p "$dir" || return
	# The plugins PSK and the kernel's SAs need (the guest is slow), and
	# swanctl's to read its file.
	cat >"$dir/strongswan.conf" <<-EOF || return
		charon {
			load = random nonce openssl kdf kernel-netlink socket-default vici connmark
			install_routes = no
			spi_min = $spi
			spi_max = $spi
			filelog {
				log {
					path = $dir/charon.log
					default = 1
					flush_line = yes
				}
			}
			plugins {
				vici {
					socket = unix://$dir/charon.vici
				}
			}
		}
		swanctl {
			load = random openssl pem pkcs1 x509 pubkey
		}
	EOF
	{
		cat <<-EOF
			connections {
				v4 {
					version = 2
					local_addrs = $local
					remote_addrs = $remote
					proposals = aes128-sha256-x25519
					local {
						auth = psk
						id = $local
					}
					remote {
						auth = psk
						id = $remote
					}
					children {
						v4 {
							mode = transport
							esp_proposals = aes128gcm16
		EOF
		for opt in "$@"; do
			printf '\t\t\t\t%s\n' "$opt"
		done
		cat <<-EOF
						}
					}
				}
			}
			secrets {
				ike-v4 {
					id-1 = 10.0.1.1
					id-2 = 10.0.1.99
					secret = xtcm-connmark-test
				}
			}
		EOF
	} >"$dir/swanctl.conf"
}

# ss_swanctl END COMMAND ARG...: swanctl's COMMAND on END's charon.
ss_swanctl()
{
	local dir=$SS_DIR/$1 cmd=$2
	shift 2

	STRONGSWAN_CONF=$dir/strongswan.conf swanctl "$cmd" \
		--uri "unix://$dir/charon.vici" "$@"
}

# ss_charon END NS: END's charon in NS, its own /run, its configuration
# loaded once its VICI socket answers.
ss_charon()
{
	local dir=$SS_DIR/$1

	rm -f "$dir/charon.log" "$dir/charon.vici"
	STRONGSWAN_CONF=$dir/strongswan.conf ip netns exec "$2" \
		unshare -m sh -c 'mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon' \
		>"$dir/charon.out" 2>&1 &
	SS_PIDS+=("$!")
	slowwait 30 test -S "$dir/charon.vici" || return
	ss_swanctl "$1" --load-all --file "$dir/swanctl.conf"
}

# ss_logs: both charons' logs, for a failure.
ss_logs()
{
	local end

	for end in router client; do
		echo "# charon of the $end:"
		cat "$SS_DIR/$end/charon.out" "$SS_DIR/$end/charon.log" 2>/dev/null
	done
}

# ss_plugin_rules: the connmark plugin's CONNMARK rules are in the
# router's mangle table.
# shellcheck disable=SC2317 # called by slowwait
ss_plugin_rules()
{
	ip netns exec "$nsrouter" iptables-legacy -t mangle -S | grep -q -- '-j CONNMARK'
}

# client_start: the responder on the router, with the mark, and the
# router's servers (the traffic ends there, not at the server); then the
# client initiates the SA, and the plugin must have written its rules.
# shellcheck disable=SC2317 # called by client_run
client_start()
{
	client_serve_stop
	client_serve "$nsrouter" || return
	ss_charon router "$nsrouter" || { ss_logs; return 1; }
	ss_charon client "$nsclient" || { ss_logs; return 1; }
	if ! ss_swanctl client --initiate --child v4 --timeout 60 ||
		! slowwait 10 ss_plugin_rules; then
		ss_logs
		return 1
	fi
}

# shellcheck disable=SC2317 # called by client_run
client_traffic()
{
	client_send "$nsclient" 10.0.1.1
}

# client_stop: the SA down (the plugin removes its rules with the child),
# then both charons stopped; no rule of the plugin may be left, MARK ones
# included.
# shellcheck disable=SC2317 # called by client_run
client_stop()
{
	local pid left

	ss_swanctl router --terminate --ike v4 --timeout 30 || { ss_logs; return 1; }
	for pid in "${SS_PIDS[@]}"; do
		kill "$pid" && wait "$pid"
	done
	SS_PIDS=()
	left=$(ip netns exec "$nsrouter" iptables-legacy -t mangle -S | grep -- '^-A')
	if [ -n "$left" ]; then
		echo "$left"
		echo "the connmark plugin left rules in mangle"
		return 1
	fi
}

# ss_marked NAME: the plugin's CONNMARK rules are iptables-legacy's; in
# both runs the client's TCP, UDP and ICMP entries have the SA's mark, the
# router's replies had it restored at output, and ESP carried them.
ss_marked()
{
	local dir=$CLIENT_WORK/$1 module proto n esp plain

	n=$(grep -c "^iptables-legacy: .*-j CONNMARK" "$dir/ours/rules")
	expect "$1: the plugin's rules are iptables-legacy's CONNMARK ($n)" \
		"$n" -ge 2 -a "$n" -eq "$(wc -l <"$dir/ours/rules")"
	for module in ours in-tree; do
		for proto in tcp udp icmp; do
			n=$(grep -c "^$proto src=10.0.1.99 dst=10.0.1.1 .* mark=$((SS_MARK))\$" \
				"$dir/$module/ct")
			expect "$1, $module: $proto from the client: 1 entry with the SA's ct mark $((SS_MARK))" \
				"$n" -eq 1
			n=$(awk -v p="$proto" -v m="$SS_MARK" '$1 == "output:" &&
				$2 == "10.0.1.1" && $4 == "10.0.1.99" && $5 == p &&
				$7 == m && $10 == m ":" { n += $(NF - 1) }
				END { print n + 0 }' "$dir/$module/marks")
			expect "$1, $module: $proto replies with the mark restored ($n)" \
				"$n" -gt 0
		done
		# Every reply left encrypted: as many ESP packets to the client
		# as replies at output (one without the mark would leave in
		# the clear).
		esp=$(awk '$1 == "route:" && $3 == "veth0" && $5 == "10.0.1.99" &&
			$6 == "esp" { n += $(NF - 1) } END { print n + 0 }' \
			"$dir/$module/marks")
		plain=$(awk '$1 == "output:" && $2 == "10.0.1.1" &&
			$4 == "10.0.1.99" && $5 != "esp" { n += $(NF - 1) }
			END { print n + 0 }' "$dir/$module/marks")
		expect "$1, $module: $esp ESP packets to the client for $plain replies" \
			"$esp" -gt 0 -a "$esp" -eq "$plain"
	done
}

if ! ss_config router 10.0.1.1 10.0.1.99 0xc0000001 \
	"mark_in = $SS_MARK" "mark_out = $SS_MARK" ||
	! ss_config client 10.0.1.99 10.0.1.1 0xc0000002; then
	fail "strongSwan's configuration"
	exit
fi
client_case strongswan && ss_marked strongswan
exit "$ret"
