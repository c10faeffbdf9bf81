/* Shared by the benign numeric programs: connect to HOST:PORT, send the
 * TLS ClientHello read from a file and keep the connection open, as a
 * service talking TLS to its backend does while it computes. */
#ifndef HOLD_TLS_H
#define HOLD_TLS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int hold_tls(const char *host, int port, const char *hello_path)
{
	unsigned char hello[4096];
	FILE *f = fopen(hello_path, "rb");
	if (!f) {
		perror("hello file");
		exit(2);
	}
	size_t n = fread(hello, 1, sizeof hello, f);
	fclose(f);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, host, &sa.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		perror("connect");
		exit(2);
	}
	if (write(fd, hello, n) != (ssize_t)n) {
		perror("write");
		exit(2);
	}
	return fd;
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) + (t.tv_nsec - t0->tv_nsec) / 1e9;
}

#endif
