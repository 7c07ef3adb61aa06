#ifndef VLSEG_CJPEG_SHIM_H
#define VLSEG_CJPEG_SHIM_H
#include <turbojpeg.h>
#endif
