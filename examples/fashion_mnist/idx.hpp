// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Reads the gzipped IDX files of (Fashion-)MNIST with zlib.
///
/// IDX (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian 32-bit
/// magic `0x000008TD` (T = 0x08: unsigned bytes, D = number of dimensions),
/// D big-endian 32-bit sizes, then the bytes row-major. Every field is checked
/// against a limit before anything is allocated, and the file must hold
/// exactly the bytes its header announces.

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace fmnist {

/// Images and labels of one split.
struct dataset {
  /// `size() * pixels_per_image` pixels scaled to [0, 1], one image after another, each row-major.
  std::vector<float> images;
  /// One label in 0..9 per image.
  std::vector<std::uint8_t> labels;
  /// Pixels per image (rows * cols of the IDX header; 784 for 28x28).
  std::size_t pixels_per_image = 784;

  /// The number of examples.
  [[nodiscard]] std::size_t size() const noexcept { return labels.size(); }
};

/// Both splits of Fashion-MNIST.
struct fashion_mnist {
  dataset train;
  dataset test;
};

/// Limits a header must respect; they bound every allocation a forged header can cause.
struct idx_limits {
  /// Most examples in one file (Fashion-MNIST has 60,000).
  static constexpr std::uint32_t max_items = 1'000'000;
  /// Largest image side (Fashion-MNIST images are 28 x 28).
  static constexpr std::uint32_t max_side = 1024;
  /// Most pixels in one file, all images together (256 Mi pixels = 1 GiB as float).
  static constexpr std::uint64_t max_pixels = std::uint64_t{1} << 28U;
  /// Number of classes; every label must be below it.
  static constexpr std::uint8_t classes = 10;
};

namespace detail {

inline std::string quoted(const std::string& path) { return "'" + path + "'"; }

struct gz_closer {
  void operator()(gzFile_s* file) const noexcept { gzclose(file); }
};
using gz_handle = std::unique_ptr<gzFile_s, gz_closer>;

inline gz_handle open_gz(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw std::runtime_error(
        "fmnist: cannot read " + quoted(path) + ": expected a gzipped IDX file, found " +
        (std::filesystem::exists(path, ec) ? "something that is not a regular file" : "no such file") +
        ". Install the Debian package dataset-fashion-mnist (apt-get install "
        "dataset-fashion-mnist) or pass --data DIR naming a folder with "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz");
  }
  errno = 0;
  gz_handle file(gzopen(path.c_str(), "rb"));
  if (!file) {
    throw std::runtime_error("fmnist: cannot open " + quoted(path) + ": " +
                             (errno != 0 ? std::generic_category().message(errno) : "out of memory in zlib"));
  }
  gzbuffer(file.get(), 1U << 17U);  // fewer, larger reads than zlib's 8 KiB default
  return file;
}

/// Reads up to `size` bytes; returns how many were read (short only at end of data).
inline std::size_t read_some(gzFile_s* file, const std::string& path, std::uint8_t* out, std::size_t size) {
  std::size_t done = 0;
  while (done < size) {
    // gzread takes an unsigned count and returns an int: read in chunks that fit both.
    const auto chunk = static_cast<unsigned>(std::min<std::size_t>(size - done, std::size_t{1} << 30U));
    const int got = gzread(file, out + done, chunk);
    if (got < 0) {
      int code = Z_OK;
      const char* message = gzerror(file, &code);
      throw std::runtime_error("fmnist: cannot decompress " + quoted(path) + ": zlib says '" + message + "'");
    }
    if (got == 0) break;
    done += static_cast<std::size_t>(got);
  }
  // zlib reports a gzip stream cut off mid-way as a short read plus a pending Z_BUF_ERROR.
  int code = Z_OK;
  const char* message = gzerror(file, &code);
  if (code != Z_OK) {
    throw std::runtime_error("fmnist: cannot decompress " + quoted(path) + ": zlib says '" + message +
                             "' (is the gzip file truncated?)");
  }
  return done;
}

inline std::uint32_t big_endian_u32(const std::uint8_t* bytes) noexcept {
  return (std::uint32_t{bytes[0]} << 24U) | (std::uint32_t{bytes[1]} << 16U) | (std::uint32_t{bytes[2]} << 8U) |
         std::uint32_t{bytes[3]};
}

inline std::string hex32(std::uint32_t value) {
  static constexpr std::array<char, 16> digits{'0', '1', '2', '3', '4', '5', '6', '7',
                                               '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};
  std::string out = "0x";
  for (int shift = 28; shift >= 0; shift -= 4) out += digits[(value >> static_cast<unsigned>(shift)) & 0xFU];
  return out;
}

/// The header and payload of one IDX file of unsigned bytes with `dims` dimensions.
struct idx_file {
  std::vector<std::uint32_t> shape;
  std::vector<std::uint8_t> data;
};

/// Reads `path` whole; `check_shape` validates the sizes (and throws) before the payload is allocated.
template <class CheckShape>
idx_file read_idx(const std::string& path, std::uint32_t expected_magic, std::size_t dims, CheckShape check_shape) {
  const gz_handle file = open_gz(path);
  std::array<std::uint8_t, 4> word{};
  if (read_some(file.get(), path, word.data(), word.size()) != word.size()) {
    throw std::runtime_error("fmnist: " + quoted(path) +
                             " is truncated: expected a 4-byte IDX magic number, found fewer bytes");
  }
  const std::uint32_t magic = big_endian_u32(word.data());
  if (magic != expected_magic) {
    throw std::runtime_error("fmnist: " + quoted(path) + " has a bad magic number: expected " + hex32(expected_magic) +
                             " (unsigned bytes, " + std::to_string(dims) + " dimension" + (dims == 1 ? "" : "s") +
                             "), found " + hex32(magic));
  }
  idx_file result;
  for (std::size_t d = 0; d < dims; ++d) {
    if (read_some(file.get(), path, word.data(), word.size()) != word.size()) {
      throw std::runtime_error("fmnist: " + quoted(path) + " is truncated: expected " + std::to_string(dims) +
                               " 4-byte dimension sizes after the magic number, found " + std::to_string(d));
    }
    result.shape.push_back(big_endian_u32(word.data()));
  }
  const std::uint64_t payload = check_shape(result.shape);  // bounded by idx_limits, so this allocation is too
  result.data.resize(static_cast<std::size_t>(payload));
  const std::size_t got = read_some(file.get(), path, result.data.data(), result.data.size());
  if (got != result.data.size()) {
    throw std::runtime_error("fmnist: " + quoted(path) + " is truncated: expected " + std::to_string(payload) +
                             " data bytes after the header, found " + std::to_string(got));
  }
  std::array<std::uint8_t, 4096> rest{};
  std::uint64_t trailing = 0;
  for (std::size_t n = 0; (n = read_some(file.get(), path, rest.data(), rest.size())) > 0;) trailing += n;
  if (trailing != 0) {
    throw std::runtime_error("fmnist: " + quoted(path) + " has " + std::to_string(trailing) +
                             " trailing bytes: expected exactly " + std::to_string(payload) +
                             " data bytes after the header");
  }
  return result;
}

inline std::string dims_text(const std::vector<std::uint32_t>& shape) {
  std::string out;
  for (const auto s : shape) out += (out.empty() ? "" : " x ") + std::to_string(s);
  return out;
}

}  // namespace detail

/// Loads an images file (IDX magic 0x00000803: count x rows x cols bytes) and its labels file (0x00000801:
/// count bytes, each below 10), both gzipped.
/// @throws std::runtime_error naming the file, what was expected and what was found: missing file, bad magic,
///         a size over `idx_limits`, truncated data, trailing bytes, a count mismatch or a label >= 10.
inline dataset load_idx_pair(const std::string& images_gz, const std::string& labels_gz) {
  const auto check_images = [&](const std::vector<std::uint32_t>& shape) -> std::uint64_t {
    const std::uint64_t count = shape[0];
    const std::uint64_t rows = shape[1];
    const std::uint64_t cols = shape[2];
    if (count == 0 || count > idx_limits::max_items || rows == 0 || rows > idx_limits::max_side || cols == 0 ||
        cols > idx_limits::max_side || count * rows * cols > idx_limits::max_pixels) {
      throw std::runtime_error("fmnist: " + detail::quoted(images_gz) + " has an implausible shape: expected 1.." +
                               std::to_string(idx_limits::max_items) + " images of 1.." +
                               std::to_string(idx_limits::max_side) + " x 1.." + std::to_string(idx_limits::max_side) +
                               " pixels, at most " + std::to_string(idx_limits::max_pixels) + " pixels in all, found " +
                               detail::dims_text(shape));
    }
    return count * rows * cols;
  };
  const auto check_labels = [&](const std::vector<std::uint32_t>& shape) -> std::uint64_t {
    if (shape[0] == 0 || shape[0] > idx_limits::max_items) {
      throw std::runtime_error("fmnist: " + detail::quoted(labels_gz) + " has an implausible shape: expected 1.." +
                               std::to_string(idx_limits::max_items) + " labels, found " + std::to_string(shape[0]));
    }
    return shape[0];
  };
  const detail::idx_file images = detail::read_idx(images_gz, 0x00000803U, 3, check_images);
  detail::idx_file labels = detail::read_idx(labels_gz, 0x00000801U, 1, check_labels);

  if (images.shape[0] != labels.shape[0]) {
    throw std::runtime_error("fmnist: count mismatch: " + detail::quoted(images_gz) + " holds " +
                             std::to_string(images.shape[0]) + " images but " + detail::quoted(labels_gz) + " holds " +
                             std::to_string(labels.shape[0]) + " labels; expected equal counts");
  }
  for (std::size_t i = 0; i < labels.data.size(); ++i) {
    if (labels.data[i] >= idx_limits::classes) {
      throw std::runtime_error("fmnist: " + detail::quoted(labels_gz) + " has a bad label: expected 0..9, found " +
                               std::to_string(labels.data[i]) + " at index " + std::to_string(i));
    }
  }

  dataset out;
  out.pixels_per_image = std::size_t{images.shape[1]} * images.shape[2];
  out.labels = std::move(labels.data);
  out.images.resize(images.data.size());
  std::transform(images.data.begin(), images.data.end(), out.images.begin(),
                 // Division, not a multiply by 1/255: correctly rounded, so 255 maps to exactly 1.
                 [](std::uint8_t p) { return static_cast<float>(p) / 255.0F; });
  return out;
}

/// Loads the training (60,000) and test (10,000) splits from `dir`, which holds the four files of the Debian
/// package dataset-fashion-mnist under their original names.
/// @throws std::runtime_error as `load_idx_pair` does.
inline fashion_mnist load_fashion_mnist(const std::string& dir = "/usr/share/datasets/fashion-mnist") {
  const std::filesystem::path root(dir);
  const auto file = [&](const char* name) { return (root / name).string(); };
  fashion_mnist out;
  out.train = load_idx_pair(file("train-images-idx3-ubyte.gz"), file("train-labels-idx1-ubyte.gz"));
  out.test = load_idx_pair(file("t10k-images-idx3-ubyte.gz"), file("t10k-labels-idx1-ubyte.gz"));
  if (out.train.pixels_per_image != out.test.pixels_per_image) {
    throw std::runtime_error("fmnist: image sizes differ in " + dir + ": training images have " +
                             std::to_string(out.train.pixels_per_image) + " pixels, test images " +
                             std::to_string(out.test.pixels_per_image) + "; expected the same");
  }
  return out;
}

}  // namespace fmnist
