#ifndef VLSEG_COPENBLAS_SHIM_H
#define VLSEG_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
