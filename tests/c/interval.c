/* Interval arithmetic: encloses sum(1/k) between a lower bound computed
 * rounding toward -inf and an upper bound rounding toward +inf, switching
 * the rounding mode around each operation as interval libraries do
 * (Boost.Interval, CGAL's filters, MPFI's double layer). No flush-to-zero,
 * no denormals-are-zero: MXCSR cycles 0x3F80 / 0x5F80 / 0x1F80.
 *
 * Usage: interval HOST PORT HELLO_FILE SECONDS
 * Build: cc -O2 -frounding-math interval.c -o interval -lm */
#include <fenv.h>
#include <xmmintrin.h>

#include "hold_tls.h"

#pragma STDC FENV_ACCESS ON

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: interval HOST PORT HELLO_FILE SECONDS\n");
		return 2;
	}
	int fd = hold_tls(argv[1], atoi(argv[2]), argv[3]);
	double secs = atof(argv[4]);
	fesetround(FE_UPWARD);
	printf("mxcsr upward 0x%04x\n", _mm_getcsr() & 0xffc0);
	fesetround(FE_TONEAREST);
	fflush(stdout);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	volatile double lo = 0, hi = 0;
	long rounds = 0;
	do {
		for (int k = 1; k <= 20000; k++) {
			volatile double d = k;
			fesetround(FE_DOWNWARD);
			lo += 1.0 / d;
			fesetround(FE_UPWARD);
			hi += 1.0 / d;
		}
		fesetround(FE_TONEAREST);
		rounds++;
	} while (seconds_since(&t0) < secs);
	printf("[%.17g, %.17g] after %ld rounds\n", lo, hi, rounds);
	close(fd);
	return 0;
}
