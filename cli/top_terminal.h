// The curses side of `nodeperf top`: paints top_view's lines and reads keys.
// Kept apart from the rest because curses' macros (timeout, clear, ...)
// clash with Boost's names.
#pragma once

#include <vector>

#include "cli/top_view.h"

namespace nodeperf::top {

// read_key() returns a character or one of these.
enum Key : int {
  kNoKey = -1,
  kKeyUp = 0x10000,
  kKeyDown,
  kKeyLeft,
  kKeyRight,
  kKeyEnd,
  kKeyEnter,
  kKeyBackspace,
  kKeyEscape,
  kKeyResize,
};

// Owns curses mode: endwin() runs in the destructor, whatever way the
// program leaves the loop.
class Terminal {
 public:
  explicit Terminal(bool color);
  ~Terminal();
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;

  // After SIGWINCH: takes the new size from the tty.
  void resized();
  void paint(const std::vector<Line>& lines);
  int width() const;
  int height() const;
  // The next key, waiting at most 100 ms (so the caller sees its signal flags).
  int read_key();

 private:
  int attr(Hint hint) const;
  bool color_ = false;
};

}  // namespace nodeperf::top
