// SPDX-License-Identifier: GPL-2.0
/*
 * sender: small UDP datagrams to many flows as fast as one thread can, with
 * sendmmsg(). A flow is (source port, destination port): SOCKETS sockets
 * bound to consecutive source ports from SPORT, each sending to PORTS
 * consecutive destination ports from DPORT, so SOCKETS * PORTS conntrack
 * entries on a router. Every flow gets one datagram per round, in the same
 * order each round.
 *
 * Usage: sender [-n NETNS] [-w WARM_MS] [-c FILE:IFACE] ADDRESS DPORT PORTS
 *        SPORT SOCKETS DURATION_MS
 * DURATION_MS 0 sends exactly one round. -n: join the network namespace
 * NETNS (a path such as /run/netns/NAME) first, which spares the harness an
 * "ip netns exec" process. -w: send for WARM_MS ms before the measurement.
 * -c: count the packets IFACE received, in FILE (a /proc/PID/net/dev, that
 * of a process in the receiver's namespace) before and after the
 * measurement. Prints "sent N elapsed_ns T received R" (R -1 without -c).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <getopt.h>
#include <unistd.h>

#define BATCH		64
#define PAYLOAD_LEN	18	/* a 64-byte Ethernet frame with the FCS */

static unsigned long arg(const char *s, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || *end || end == s || v > max) {
		fprintf(stderr, "sender: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* send_batch: one sendmmsg of COUNT datagrams; returns how many went out. */
static unsigned int send_batch(int fd, struct mmsghdr *msgs, unsigned int count)
{
	unsigned int done = 0;
	int n;

	while (done < count) {
		n = sendmmsg(fd, msgs + done, count - done, 0);
		if (n < 0) {
			if (errno == EINTR || errno == ENOBUFS ||
			    errno == EAGAIN)
				continue;
			perror("sender: sendmmsg");
			exit(1);
		}
		done += n;
	}
	return done;
}

/* rx_packets: the received packets of IFACE in FILE (/proc/net/dev format). */
static long long rx_packets(const char *file, const char *iface)
{
	char line[512], name[64];
	long long bytes, packets = -1;
	FILE *f;

	f = fopen(file, "r");
	if (!f) {
		perror("sender: counter file");
		exit(1);
	}
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, " %63[^:]: %lld %lld", name, &bytes,
			   &packets) == 3 && !strcmp(name, iface))
			break;
		packets = -1;
	}
	fclose(f);
	if (packets < 0) {
		fprintf(stderr, "sender: no interface %s in %s\n", iface, file);
		exit(1);
	}
	return packets;
}

/*
 * send_for: every flow in turn, one datagram each, for DURATION_MS ms (0:
 * one round); returns the number of datagrams sent.
 */
static unsigned long long send_for(const int *fds, unsigned long sockets,
				   unsigned long dport, unsigned long ports,
				   struct sockaddr_in *dst, struct mmsghdr *msgs,
				   unsigned long duration_ms)
{
	unsigned long long stop, sent = 0;
	unsigned long p, i, s;
	unsigned int count;

	stop = now_ns() + duration_ms * 1000000ULL;
	do {
		/* One round: every destination port from every socket. */
		for (p = 0; p < ports; p += count) {
			count = ports - p < BATCH ? ports - p : BATCH;
			for (i = 0; i < count; i++)
				dst[i].sin_port = htons(dport + p + i);
			for (s = 0; s < sockets; s++) {
				sent += send_batch(fds[s], msgs, count);
				if (duration_ms && now_ns() >= stop)
					return sent;
			}
		}
	} while (duration_ms && now_ns() < stop);
	return sent;
}

static void usage(void)
{
	fprintf(stderr, "usage: sender [-n NETNS] [-w WARM_MS] [-c FILE:IFACE] ADDRESS DPORT PORTS SPORT SOCKETS DURATION_MS\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static struct sockaddr_in dst[BATCH];
	static struct mmsghdr msgs[BATCH];
	static struct iovec iov;
	static char payload[PAYLOAD_LEN];
	unsigned long dport, ports, sport, sockets, duration_ms, warm_ms = 0;
	unsigned long i, s;
	unsigned long long start, elapsed, sent;
	long long rx0 = 0, rx1 = -1;
	struct sockaddr_in src = { .sin_family = AF_INET };
	struct in_addr addr;
	char *counter = NULL, *iface = NULL;
	int *fds, opt, nsfd;

	while ((opt = getopt(argc, argv, "n:w:c:")) != -1) {
		switch (opt) {
		case 'n':
			nsfd = open(optarg, O_RDONLY | O_CLOEXEC);
			if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0) {
				perror("sender: setns");
				return 1;
			}
			close(nsfd);
			break;
		case 'w':
			warm_ms = arg(optarg, 3600000);
			break;
		case 'c':
			counter = optarg;
			iface = strrchr(optarg, ':');
			if (!iface || iface == optarg || !iface[1])
				usage();
			*iface++ = '\0';
			break;
		default:
			usage();
		}
	}
	argv += optind;
	if (argc - optind != 6)
		usage();
	if (inet_pton(AF_INET, argv[0], &addr) != 1) {
		fprintf(stderr, "sender: bad IPv4 address '%s'\n", argv[0]);
		return 2;
	}
	dport = arg(argv[1], 65535);
	ports = arg(argv[2], 65536 - dport);
	sport = arg(argv[3], 65535);
	sockets = arg(argv[4], 65536 - sport);
	duration_ms = arg(argv[5], 3600000);
	if (!ports || !sockets) {
		fprintf(stderr, "sender: PORTS and SOCKETS must not be 0\n");
		return 2;
	}

	fds = calloc(sockets, sizeof(*fds));
	if (!fds) {
		perror("sender: calloc");
		return 1;
	}
	for (s = 0; s < sockets; s++) {
		fds[s] = socket(AF_INET, SOCK_DGRAM, 0);
		src.sin_port = htons(sport + s);
		if (fds[s] < 0 ||
		    bind(fds[s], (struct sockaddr *)&src, sizeof(src)) < 0) {
			perror("sender: socket/bind");
			return 1;
		}
	}

	iov.iov_base = payload;
	iov.iov_len = sizeof(payload);
	for (i = 0; i < BATCH; i++) {
		dst[i].sin_family = AF_INET;
		dst[i].sin_addr = addr;
		msgs[i].msg_hdr.msg_name = &dst[i];
		msgs[i].msg_hdr.msg_namelen = sizeof(dst[i]);
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}

	if (warm_ms)
		send_for(fds, sockets, dport, ports, dst, msgs, warm_ms);
	if (counter)
		rx0 = rx_packets(counter, iface);
	start = now_ns();
	sent = send_for(fds, sockets, dport, ports, dst, msgs, duration_ms);
	elapsed = now_ns() - start;
	if (counter) {
		/* Let what is still queued (veth backlogs) arrive. */
		sched_yield();
		rx1 = rx_packets(counter, iface) - rx0;
	}
	printf("sent %llu elapsed_ns %llu received %lld\n", sent, elapsed, rx1);
	return 0;
}
