#ifndef VLSEG_CPNG_SHIM_H
#define VLSEG_CPNG_SHIM_H
#include <png.h>
// The simplified png_image_* API reports errors through return codes and needs no setjmp.
static inline png_uint_32 vlseg_png_image_version(void) { return PNG_IMAGE_VERSION; }
static inline size_t vlseg_png_image_size(const png_image *image) { return PNG_IMAGE_SIZE(*image); }
#endif
