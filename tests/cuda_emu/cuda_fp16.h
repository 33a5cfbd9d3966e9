/* The half-precision type and conversion kernels-cuda/ uses, for the host
 * emulation in this directory. */
#ifndef MS_CUDA_EMU_FP16_H
#define MS_CUDA_EMU_FP16_H

#include <cmath>

struct __half {
    unsigned short bits;
};
static inline __half __ushort_as_half(unsigned short u)
{
    __half h;
    h.bits = u;
    return h;
}
/* IEEE binary16: sign, 5-bit exponent (bias 15), 10-bit mantissa. */
static inline float __half2float(__half h)
{
    unsigned sign = h.bits >> 15, exp = (h.bits >> 10) & 31, man = h.bits & 1023;
    float f;
    if (exp == 0)
        f = std::ldexp((float)man, -24);
    else if (exp == 31)
        f = man ? NAN : INFINITY;
    else
        f = std::ldexp((float)(man | 1024), (int)exp - 25);
    return sign ? -f : f;
}

#endif
