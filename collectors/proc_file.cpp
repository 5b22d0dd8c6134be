#include "collectors/proc_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace nodeperf {

ProcFile::~ProcFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<std::string_view> ProcFile::read(std::string* error) {
  auto fail = [&](const char* what) -> std::optional<std::string_view> {
    if (error) *error = path_ + ": " + what + ": " + std::strerror(errno);
    if (fd_ >= 0) ::close(fd_);  // reopen next time: the file may come back
    fd_ = -1;
    return std::nullopt;
  };
  if (fd_ < 0) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return fail("open");
  }
  if (buf_.empty()) buf_.resize(16384);
  size_t total = 0;
  for (;;) {
    if (total == buf_.size()) buf_.resize(buf_.size() * 2);
    ssize_t n = ::pread(fd_, buf_.data() + total, buf_.size() - total, static_cast<off_t>(total));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("read");
    }
    if (n == 0) break;
    total += static_cast<size_t>(n);
  }
  return std::string_view(buf_.data(), total);
}

std::string host_path(std::string_view host_root, std::string_view relative) {
  std::string out(host_root);
  if (out.empty() || out.back() != '/') out += '/';
  while (relative.starts_with('/')) relative.remove_prefix(1);
  out += relative;
  return out;
}

}  // namespace nodeperf
