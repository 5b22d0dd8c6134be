#include "exporters/json.h"

#include <algorithm>
#include <cmath>

#include "agent/history.h"
#include "exporters/exposition.h"

namespace nodeperf {
namespace {

// Length of the valid UTF-8 sequence starting text[i] (lead byte >= 0x80),
// or 0 if it is invalid: overlong, a surrogate, past U+10FFFF or cut short.
size_t utf8_sequence(std::string_view text, size_t i) {
  auto byte = [&](size_t k) { return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0u; };
  unsigned lead = byte(0);
  size_t n = lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
  if (n == 0) return 0;
  // The second byte's range is narrower after E0, ED, F0 and F4.
  unsigned lo = lead == 0xe0 ? 0xa0 : lead == 0xf0 ? 0x90 : 0x80;
  unsigned hi = lead == 0xed ? 0x9f : lead == 0xf4 ? 0x8f : 0xbf;
  if (byte(1) < lo || byte(1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(k) < 0x80 || byte(k) > 0xbf) return 0;
  }
  return n;
}

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  size_t run = 0;  // copy the runs between escapes whole
  for (size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      size_t n = utf8_sequence(text, i);
      if (n > 0) {
        i += n;
        continue;
      }
    } else if (c >= 0x20 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    out.append(text.substr(run, i - run));
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      constexpr char hex[] = "0123456789abcdef";
      out.append("\\u00").append(1, hex[c >> 4]).append(1, hex[c & 15]);
    } else {
      out += "\xef\xbf\xbd";  // U+FFFD REPLACEMENT CHARACTER
    }
    run = ++i;
  }
  out.append(text.substr(run));
  out += '"';
}

void append_json_number(std::string& out, double value) {
  // JSON has no NaN or infinities; finite values print as the exposition's.
  if (std::isfinite(value)) {
    append_value(out, value);
  } else {
    out += "null";
  }
}

void append_json_labels(std::string& out, std::string_view rendered) {
  // The input comes from append_labels: key="value" pairs separated by
  // commas, the value escaped as \\, \" and \n. Anything else ends the object.
  out += '{';
  std::string value;
  bool first = true;
  while (!rendered.empty()) {
    size_t eq = rendered.find("=\"");
    if (eq == std::string_view::npos) break;
    std::string_view key = rendered.substr(0, eq);
    value.clear();
    size_t i = eq + 2;
    for (; i < rendered.size() && rendered[i] != '"'; ++i) {
      if (rendered[i] == '\\' && i + 1 < rendered.size()) {
        ++i;
        value += rendered[i] == 'n' ? '\n' : rendered[i];
      } else {
        value += rendered[i];
      }
    }
    if (!first) out += ',';
    first = false;
    append_json_string(out, key);
    out += ':';
    append_json_string(out, value);
    rendered.remove_prefix(std::min(rendered.size(), i + 2));  // past the closing quote and comma
  }
  out += '}';
}

void render_snapshot_json(const HistoryEntry& entry, double tick_seconds, std::string_view hostname,
                          std::string& out) {
  const SeriesLayout& layout = *entry.layout;
  out.reserve(out.size() + 256 + layout.series.size() * 96);
  out += "{\"time\":";
  append_json_number(out, unix_seconds(entry.time));
  out += ",\"monotonic\":";
  append_json_number(out, std::chrono::duration<double>(entry.steady.time_since_epoch()).count());
  out += ",\"tick_seconds\":";
  append_json_number(out, tick_seconds);
  out += ",\"hostname\":";
  append_json_string(out, hostname);
  out += ",\"families\":[";
  // One family per line: readable with curl, still one JSON value.
  size_t i = 0;  // index into layout.series and entry.values
  for (const SeriesLayout::Family& f : layout.families) {
    out += &f == &layout.families.front() ? "\n{\"name\":" : ",\n{\"name\":";
    append_json_string(out, f.name);
    out += ",\"type\":";
    append_json_string(out, type_name(f.info->type));
    out += ",\"help\":";
    append_json_string(out, f.info->help);
    out += ",\"samples\":[";
    for (size_t first = i, end = i + f.size; i < end; ++i) {
      const SeriesLayout::Series& s = layout.series[i];
      out += i == first ? "{" : ",{";
      if (!s.suffix.empty()) {
        out += "\"suffix\":";
        append_json_string(out, s.suffix);
        out += ',';
      }
      out += "\"labels\":";
      append_json_labels(out, s.labels);
      out += ",\"value\":";
      append_json_number(out, entry.values[i]);
      out += '}';
    }
    out += "]}";
  }
  out += "\n]}\n";
}

void render_history_json(const History& history, double tick_seconds, std::string& out) {
  out += "{\"oldest\":";
  if (history.empty()) {
    out += "null,\"newest\":null";
  } else {
    append_json_number(out, unix_seconds(history.oldest().time));
    out += ",\"newest\":";
    append_json_number(out, unix_seconds(history.newest().time));
  }
  out += ",\"count\":";
  out += std::to_string(history.size());
  out += ",\"tick_seconds\":";
  append_json_number(out, tick_seconds);
  out += "}\n";
}

}  // namespace nodeperf
