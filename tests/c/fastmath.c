/* A numeric kernel built with -ffast-math (as -Ofast builds are): GCC
 * links crtfastmath.o, which sets flush-to-zero and denormals-are-zero in
 * MXCSR at start-up (0x9FC0); the rounding mode stays nearest for the
 * whole run. Decaying dot products keep denormals coming.
 *
 * Usage: fastmath HOST PORT HELLO_FILE SECONDS
 * Build: cc -O2 -ffast-math fastmath.c -o fastmath -lm */
#include <xmmintrin.h>

#include "hold_tls.h"

#define N 4096

static float a[N], b[N];

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: fastmath HOST PORT HELLO_FILE SECONDS\n");
		return 2;
	}
	int fd = hold_tls(argv[1], atoi(argv[2]), argv[3]);
	double secs = atof(argv[4]);
	printf("mxcsr 0x%04x\n", _mm_getcsr() & 0xffc0);
	fflush(stdout);
	for (int i = 0; i < N; i++) {
		a[i] = 1.0f / (i + 1);
		b[i] = 1e-30f * (i % 7 + 1);
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	volatile float sink = 0;
	long rounds = 0;
	do {
		for (int r = 0; r < 200; r++) {
			float s = 0;
			for (int i = 0; i < N; i++)
				s += a[i] * b[i];
			for (int i = 0; i < N; i++)
				b[i] = b[i] * 0.5f + 1e-38f;
			sink += s;
		}
		for (int i = 0; i < N; i++)
			b[i] = 1e-30f * (i % 7 + 1);
		rounds++;
	} while (seconds_since(&t0) < secs);
	printf("%g after %ld rounds\n", (double)sink, rounds);
	close(fd);
	return 0;
}
