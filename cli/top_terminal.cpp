#include "cli/top_terminal.h"

#include <curses.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace nodeperf::top {

Terminal::Terminal(bool color) {
  initscr();
  cbreak();
  noecho();
  keypad(stdscr, TRUE);
  curs_set(0);
  set_escdelay(25);  // Esc leaves the filter without curses' 1 s wait for a sequence
  timeout(100);
  color_ = color && has_colors();
  if (color_) {
    start_color();
    use_default_colors();
    init_pair(1, COLOR_BLACK, COLOR_CYAN);  // title, key bar
    init_pair(2, COLOR_YELLOW, -1);         // warn
    init_pair(3, COLOR_RED, -1);            // critical
    init_pair(4, COLOR_GREEN, -1);          // bars with quantile marks
    init_pair(5, COLOR_CYAN, -1);           // headers
  }
}

Terminal::~Terminal() { endwin(); }

void Terminal::resized() {
  winsize ws{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) resizeterm(ws.ws_row, ws.ws_col);
  clear();
}

int Terminal::width() const { return COLS; }
int Terminal::height() const { return LINES; }

void Terminal::paint(const std::vector<Line>& lines) {
  for (size_t i = 0; i < lines.size() && static_cast<int>(i) < LINES; ++i) {
    attrset(attr(lines[i].hint));
    mvaddnstr(static_cast<int>(i), 0, lines[i].text.c_str(), COLS);
    attrset(A_NORMAL);
    clrtoeol();
  }
  refresh();
}

int Terminal::read_key() {
  int ch = getch();
  switch (ch) {
    case ERR: return kNoKey;
    case KEY_UP: return kKeyUp;
    case KEY_DOWN: return kKeyDown;
    case KEY_LEFT: return kKeyLeft;
    case KEY_RIGHT: return kKeyRight;
    case KEY_END: return kKeyEnd;
    case KEY_ENTER:
    case '\n':
    case '\r': return kKeyEnter;
    case KEY_BACKSPACE:
    case 127:
    case 8: return kKeyBackspace;
    case 27: return kKeyEscape;
    case KEY_RESIZE: return kKeyResize;
    default: return ch;
  }
}

int Terminal::attr(Hint hint) const {
  switch (hint) {
    case Hint::title: return color_ ? COLOR_PAIR(1) : A_REVERSE;
    case Hint::header: return color_ ? COLOR_PAIR(5) | A_BOLD : A_BOLD;
    case Hint::selected: return A_REVERSE;
    case Hint::warn: return color_ ? COLOR_PAIR(2) : A_BOLD;
    case Hint::critical: return color_ ? COLOR_PAIR(3) | A_BOLD : A_BOLD | A_UNDERLINE;
    case Hint::dim: return A_DIM;
    case Hint::bar: return color_ ? COLOR_PAIR(4) : A_NORMAL;
    case Hint::normal: return A_NORMAL;
  }
  return A_NORMAL;
}

}  // namespace nodeperf::top
