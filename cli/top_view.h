// Renders a screen of top's model as plain lines of text for a given width
// and height, each with a colour hint. No terminal library here: the ncurses
// loop paints these lines, batch mode prints them and the tests read them.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cli/top_model.h"

namespace nodeperf::top {

enum class Screen { overview, cgroups, latency, volumes };
inline constexpr int kScreens = 4;  // Tab cycles through them in this order

// How a line should look; the painter maps hints to colours or, without
// colour, to bold and reverse video.
enum class Hint { normal, title, header, selected, warn, critical, dim, bar };

struct Line {
  std::string text;
  Hint hint = Hint::normal;
};

// Columns of the cgroups table, in display order; also the sort keys.
enum class Column { name, cpu, throttled, memory, io, runqueue, disk, rtt, retransmits, count };

struct ViewState {
  Screen screen = Screen::overview;
  Column sort = Column::cpu;  // descending, except name
  std::string filter;         // substring of the cgroup name or title
  bool editing_filter = false;
  size_t selected = 0;        // row of the (filtered, sorted) cgroups or volumes table
  size_t target = 0;          // index into the latency targets
  bool help = false;
  bool paused = false;
  std::string where;   // "live", or the history position: "history -2m05s"
  std::string status;  // "", or "disconnected, retrying"
};

// What the latency screen draws for the selected target, fetched by the
// caller (the window distribution needs a second, older snapshot).
struct LatencyDetail {
  std::vector<LatencyTarget> targets;
  std::optional<Distribution> tick;    // between the last two snapshots
  std::optional<Distribution> window;  // between now and one window ago
  double window_seconds = 60;
  Quantiles agent;  // the agent's own window quantiles for the target
};

// The cgroups table's rows after the filter, in the chosen order.
std::vector<const CgroupRow*> visible_cgroups(const Model& model, const ViewState& state);
// The volumes table's rows after the filter (pod, volume or claim name):
// stale ones first, then by read + write IOPS, busiest first, then by name.
std::vector<const VolumeRow*> visible_volumes(const Model& model, const ViewState& state);
// Targets after the filter (the latency screen's list).
std::vector<size_t> visible_targets(const LatencyDetail& detail, const ViewState& state);

// Exactly `height` lines of at most `width` characters, the last one the key
// bar. With height 0: every line the screen has, no key bar (batch mode).
std::vector<Line> render(const Model& model, const LatencyDetail& detail, const ViewState& state, int width,
                         int height);

// The bar at the bottom: the screens and the main keys (fewer when narrow).
std::string key_bar(const ViewState& state, int width);

// A bar of `width` cells, `fraction` of them filled: "#####     ".
std::string bar(double fraction, int width);

}  // namespace nodeperf::top
