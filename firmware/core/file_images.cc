#include "file_images.h"

#include "tensorflow/lite/micro/micro_log.h"

namespace vww {
namespace {

// A file that still holds tensors to hand out (raw tensors, .npy batches).
struct Batch {
  void* handle = nullptr;
  const char* path = nullptr;
  long left = 0;
  bool pixels = false;  // uint8 pixels to map through the byte table, rather than int8 tensors
};

struct Reader {
  FileOps ops;
  const int8_t* byte_to_input = nullptr;
  const char* const* paths = nullptr;
  int count = 0;
  int next_path = 0;
  Batch batch;
};

Reader reader;

struct Shape {
  int rows;
  int cols;
  int channels;
  size_t bytes() const { return static_cast<size_t>(rows) * cols * channels; }
};

void MapPixels(int8_t* tensor, size_t n) {
  const uint8_t* pixels = reinterpret_cast<const uint8_t*>(tensor);
  for (size_t i = 0; i < n; ++i) tensor[i] = reader.byte_to_input[pixels[i]];
}

bool Skip(void* handle, long n) {
  uint8_t scratch[32];
  while (n > 0) {
    const size_t chunk = n > 32 ? 32 : static_cast<size_t>(n);
    if (!reader.ops.read(handle, scratch, chunk)) return false;
    n -= static_cast<long>(chunk);
  }
  return true;
}

uint32_t Little(const uint8_t* p, int bytes) {
  uint32_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

// --- netpbm (P5, P6) ----------------------------------------------------------------------------

// One whitespace-separated header token, comments skipped; consumes the single whitespace after it.
bool ReadToken(void* handle, char* token, int capacity) {
  int length = 0;
  uint8_t c = 0;
  for (;;) {
    if (!reader.ops.read(handle, &c, 1)) return false;
    if (c == '#') {
      while (c != '\n') {
        if (!reader.ops.read(handle, &c, 1)) return false;
      }
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (length > 0) break;
      continue;
    }
    if (length + 1 >= capacity) return false;
    token[length++] = static_cast<char>(c);
  }
  token[length] = '\0';
  return true;
}

long ParseNumber(const char* token) {
  long value = 0;
  if (*token == '\0') return -1;
  for (const char* p = token; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9' || value > 100000000) return -1;
    value = value * 10 + (*p - '0');
  }
  return value;
}

// `handle` is just past the two magic bytes.
ImageStatus ReadNetpbm(void* handle, const char* path, char kind, const Shape& shape,
                       int8_t* tensor) {
  char width[12];
  char height[12];
  char maxval[12];
  if (!ReadToken(handle, width, sizeof(width)) || !ReadToken(handle, height, sizeof(height)) ||
      !ReadToken(handle, maxval, sizeof(maxval))) {
    MicroPrintf("error: %s: bad netpbm header", path);
    return ImageStatus::kError;
  }
  const int channels = kind == '6' ? 3 : 1;
  if (ParseNumber(width) != shape.cols || ParseNumber(height) != shape.rows ||
      channels != shape.channels) {
    MicroPrintf("error: %s: image is %sx%sx%d, the model takes %dx%dx%d", path, width, height,
                channels, shape.cols, shape.rows, shape.channels);
    return ImageStatus::kError;
  }
  if (ParseNumber(maxval) != 255) {
    MicroPrintf("error: %s: only 8-bit netpbm images (maxval 255) are supported", path);
    return ImageStatus::kError;
  }
  if (!reader.ops.read(handle, reinterpret_cast<uint8_t*>(tensor), shape.bytes())) {
    MicroPrintf("error: %s: image data is cut short", path);
    return ImageStatus::kError;
  }
  MapPixels(tensor, shape.bytes());
  return ImageStatus::kOk;
}

// --- BMP ----------------------------------------------------------------------------------------

// `handle` is just past the two magic bytes "BM".
ImageStatus ReadBmp(void* handle, const char* path, const Shape& shape, int8_t* tensor) {
  // The rest of the 14-byte file header and the first 40 bytes of the info header.
  uint8_t header[52];
  if (!reader.ops.read(handle, header, sizeof(header))) {
    MicroPrintf("error: %s: BMP header is cut short", path);
    return ImageStatus::kError;
  }
  const uint32_t data_offset = Little(header + 8, 4);
  const uint32_t info_size = Little(header + 12, 4);
  const int32_t width = static_cast<int32_t>(Little(header + 16, 4));
  const int32_t height = static_cast<int32_t>(Little(header + 20, 4));
  const uint32_t bits = Little(header + 26, 2);
  const uint32_t compression = Little(header + 28, 4);
  uint32_t colors = Little(header + 44, 4);
  const bool top_down = height < 0;
  const int32_t rows = top_down ? -height : height;
  if (info_size < 40 || compression != 0 || (bits != 8 && bits != 24)) {
    MicroPrintf("error: %s: only uncompressed 8-bit or 24-bit BMP images are supported", path);
    return ImageStatus::kError;
  }
  const int channels = bits == 24 ? 3 : 1;
  if (width != shape.cols || rows != shape.rows || channels != shape.channels) {
    MicroPrintf("error: %s: image is %ldx%ldx%d, the model takes %dx%dx%d", path,
                static_cast<long>(width), static_cast<long>(rows), channels, shape.cols,
                shape.rows, shape.channels);
    return ImageStatus::kError;
  }
  long position = 2 + static_cast<long>(sizeof(header));
  if (!Skip(handle, 14 + static_cast<long>(info_size) - position)) return ImageStatus::kError;
  position = 14 + static_cast<long>(info_size);

  uint8_t grey[256];  // palette index -> grey level (8-bit images)
  if (bits == 8) {
    if (colors == 0 || colors > 256) colors = 256;
    for (uint32_t i = 0; i < colors; ++i) {
      uint8_t entry[4];  // blue, green, red, reserved
      if (!reader.ops.read(handle, entry, 4)) {
        MicroPrintf("error: %s: BMP palette is cut short", path);
        return ImageStatus::kError;
      }
      if (entry[0] != entry[1] || entry[1] != entry[2]) {
        MicroPrintf("error: %s: colour-palette BMP; the model takes grey images", path);
        return ImageStatus::kError;
      }
      grey[i] = entry[0];
    }
    for (uint32_t i = colors; i < 256; ++i) grey[i] = 0;
    position += 4 * static_cast<long>(colors);
  }
  if (static_cast<long>(data_offset) < position ||
      !Skip(handle, static_cast<long>(data_offset) - position)) {
    MicroPrintf("error: %s: bad BMP pixel data offset", path);
    return ImageStatus::kError;
  }
  // Rows are padded to 4 bytes and stored bottom-up unless the height is negative.
  const size_t row_bytes = static_cast<size_t>(shape.cols) * channels;
  const long padding = static_cast<long>((4 - row_bytes % 4) % 4);
  for (int r = 0; r < shape.rows; ++r) {
    const int row = top_down ? r : shape.rows - 1 - r;
    uint8_t* dst = reinterpret_cast<uint8_t*>(tensor) + static_cast<size_t>(row) * row_bytes;
    if (!reader.ops.read(handle, dst, row_bytes) || !Skip(handle, padding)) {
      MicroPrintf("error: %s: BMP pixel data is cut short", path);
      return ImageStatus::kError;
    }
    if (bits == 8) {
      for (size_t i = 0; i < row_bytes; ++i) dst[i] = grey[dst[i]];
    } else {
      for (size_t i = 0; i + 2 < row_bytes; i += 3) {  // BGR -> RGB
        const uint8_t blue = dst[i];
        dst[i] = dst[i + 2];
        dst[i + 2] = blue;
      }
    }
  }
  MapPixels(tensor, shape.bytes());
  return ImageStatus::kOk;
}

// --- .npy ---------------------------------------------------------------------------------------

bool StartsWith(const char* text, const char* prefix) {
  while (*prefix != '\0') {
    if (*text++ != *prefix++) return false;
  }
  return true;
}

// Finds `key` in the header dict and returns what follows its colon, or nullptr.
const char* Field(const char* header, const char* key) {
  for (const char* p = header; *p != '\0'; ++p) {
    int i = 0;
    while (key[i] != '\0' && p[i] == key[i]) ++i;
    if (key[i] != '\0') continue;
    const char* value = p + i;
    while (*value == ' ' || *value == ':') ++value;
    return value;
  }
  return nullptr;
}

// Parses "(a, b, c)" into dims; returns the count, or -1.
int ParseShape(const char* text, long* dims, int capacity) {
  if (text == nullptr || *text != '(') return -1;
  int count = 0;
  const char* p = text + 1;
  for (;;) {
    while (*p == ' ' || *p == ',') ++p;
    if (*p == ')') return count;
    if (*p < '0' || *p > '9' || count == capacity) return -1;
    long value = 0;
    while (*p >= '0' && *p <= '9') value = value * 10 + (*p++ - '0');
    dims[count++] = value;
  }
}

// `handle` is just past the two bytes "\x93N".
ImageStatus ReadNpy(void* handle, const char* path, const Shape& shape) {
  uint8_t prefix[6];  // "UMPY", major, minor
  if (!reader.ops.read(handle, prefix, sizeof(prefix)) || prefix[0] != 'U' || prefix[1] != 'M' ||
      prefix[2] != 'P' || prefix[3] != 'Y' || prefix[4] < 1 || prefix[4] > 3) {
    MicroPrintf("error: %s: not a .npy file", path);
    return ImageStatus::kError;
  }
  uint8_t length_bytes[4] = {0, 0, 0, 0};
  const int length_size = prefix[4] == 1 ? 2 : 4;
  char header[512];
  if (!reader.ops.read(handle, length_bytes, length_size)) return ImageStatus::kError;
  const uint32_t length = Little(length_bytes, length_size);
  if (length >= sizeof(header)) {
    MicroPrintf("error: %s: .npy header longer than %d bytes", path,
                static_cast<int>(sizeof(header)) - 1);
    return ImageStatus::kError;
  }
  if (!reader.ops.read(handle, reinterpret_cast<uint8_t*>(header), length)) {
    return ImageStatus::kError;
  }
  header[length] = '\0';
  const char* descr = Field(header, "'descr'");
  bool pixels;
  if (descr != nullptr && (StartsWith(descr, "'|u1'") || StartsWith(descr, "'u1'"))) {
    pixels = true;
  } else if (descr != nullptr && (StartsWith(descr, "'|i1'") || StartsWith(descr, "'i1'"))) {
    pixels = false;
  } else {
    MicroPrintf("error: %s: .npy of another type; expected uint8 pixels or int8 tensors", path);
    return ImageStatus::kError;
  }
  const char* fortran = Field(header, "'fortran_order'");
  if (fortran == nullptr || *fortran != 'F') {
    MicroPrintf("error: %s: .npy in Fortran order; save it in C order", path);
    return ImageStatus::kError;
  }
  long dims[4];
  const int rank = ParseShape(Field(header, "'shape'"), dims, 4);
  // Accepted shapes: (rows, cols) for grey models, (rows, cols, channels), (N, rows, cols, channels).
  const bool ok = (rank == 2 && shape.channels == 1 && dims[0] == shape.rows &&
                   dims[1] == shape.cols) ||
                  (rank == 3 && dims[0] == shape.rows && dims[1] == shape.cols &&
                   dims[2] == shape.channels) ||
                  (rank == 4 && dims[1] == shape.rows && dims[2] == shape.cols &&
                   dims[3] == shape.channels);
  if (!ok) {
    MicroPrintf("error: %s: .npy shape does not hold %dx%dx%d images (the model's input)", path,
                shape.rows, shape.cols, shape.channels);
    return ImageStatus::kError;
  }
  reader.batch.handle = handle;
  reader.batch.path = path;
  reader.batch.left = rank == 4 ? dims[0] : 1;
  reader.batch.pixels = pixels;
  return ImageStatus::kOk;
}

// --- the image source ---------------------------------------------------------------------------

void CloseBatch() {
  if (reader.batch.handle != nullptr) reader.ops.close(reader.batch.handle);
  reader.batch = Batch();
}

ImageStatus NextFromBatch(const Shape& shape, int8_t* tensor) {
  --reader.batch.left;
  if (!reader.ops.read(reader.batch.handle, reinterpret_cast<uint8_t*>(tensor), shape.bytes())) {
    MicroPrintf("error: %s: data is cut short", reader.batch.path);
    return ImageStatus::kError;
  }
  if (reader.batch.pixels) MapPixels(tensor, shape.bytes());
  return ImageStatus::kOk;
}

// Opens the next file: reads one image, or sets up a batch. kNoMoreImages when a batch is empty.
ImageStatus OpenNext(const Shape& shape, int8_t* tensor) {
  const char* path = reader.paths[reader.next_path++];
  void* handle = reader.ops.open(path);
  if (handle == nullptr) {
    MicroPrintf("error: cannot open %s", path);
    return ImageStatus::kError;
  }
  const long size = reader.ops.size(handle);
  uint8_t magic[2] = {0, 0};
  if (size >= 2 && !reader.ops.read(handle, magic, 2)) {
    reader.ops.close(handle);
    MicroPrintf("error: cannot read %s", path);
    return ImageStatus::kError;
  }
  ImageStatus status;
  if (magic[0] == 'P' && (magic[1] == '5' || magic[1] == '6')) {
    status = ReadNetpbm(handle, path, static_cast<char>(magic[1]), shape, tensor);
  } else if (magic[0] == 'B' && magic[1] == 'M') {
    status = ReadBmp(handle, path, shape, tensor);
  } else if (magic[0] == 0x93 && magic[1] == 'N') {
    status = ReadNpy(handle, path, shape);
    if (status == ImageStatus::kOk) return ImageStatus::kNoMoreImages;  // the batch is set up
  } else {
    if (size <= 0 || size % static_cast<long>(shape.bytes()) != 0) {
      MicroPrintf("error: %s: %ld bytes is no image this firmware reads, nor a whole number of "
                  "%dx%dx%d int8 tensors", path, size, shape.cols, shape.rows, shape.channels);
      reader.ops.close(handle);
      return ImageStatus::kError;
    }
    // Raw tensors: the two bytes already read belong to the first one.
    reinterpret_cast<uint8_t*>(tensor)[0] = magic[0];
    reinterpret_cast<uint8_t*>(tensor)[1] = magic[1];
    if (shape.bytes() > 2 &&
        !reader.ops.read(handle, reinterpret_cast<uint8_t*>(tensor) + 2, shape.bytes() - 2)) {
      reader.ops.close(handle);
      return ImageStatus::kError;
    }
    reader.batch.handle = handle;
    reader.batch.path = path;
    reader.batch.left = size / static_cast<long>(shape.bytes()) - 1;
    reader.batch.pixels = false;
    return ImageStatus::kOk;
  }
  reader.ops.close(handle);
  return status;
}

}  // namespace

void InitFileImages(const FileOps& ops, const char* const* paths, int count, const int8_t* byte_to_input) {
  reader = Reader();
  reader.ops = ops;
  reader.byte_to_input = byte_to_input;
  reader.paths = paths;
  reader.count = count;
}

ImageStatus GetImage(int rows, int cols, int channels, int8_t* tensor) {
  const Shape shape = {rows, cols, channels};
  for (;;) {
    if (reader.batch.handle != nullptr && reader.batch.left > 0) {
      return NextFromBatch(shape, tensor);
    }
    CloseBatch();
    if (reader.next_path >= reader.count) return ImageStatus::kNoMoreImages;
    const ImageStatus status = OpenNext(shape, tensor);
    // kNoMoreImages here means "a batch file is open": take its first tensor on the next pass.
    if (status != ImageStatus::kNoMoreImages) return status;
  }
}

}  // namespace vww
