// Reads a procfs/sysfs file over and over through one open descriptor:
// pread from offset 0 makes the kernel regenerate the content, and saves the
// open/close of every tick.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nodeperf {

class ProcFile {
 public:
  explicit ProcFile(std::string path) : path_(std::move(path)) {}
  ~ProcFile();
  ProcFile(const ProcFile&) = delete;
  ProcFile& operator=(const ProcFile&) = delete;

  // The whole file, valid until the next read. On failure, nullopt and a
  // one-line reason naming the file in *error.
  std::optional<std::string_view> read(std::string* error);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::string buf_;
};

// host_root joined with a path relative to it ("proc/stat").
std::string host_path(std::string_view host_root, std::string_view relative);

}  // namespace nodeperf
