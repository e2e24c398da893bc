// zlib's deflate, for PNG's compressed image data.
#include <zlib.h>
