// stb_image and stb_image_write compiled into the fuzz build (instrumented); the app links
// Debian's libstb.so, built from the same headers.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_write.h>
