#include "exporters/exposition.h"

#include <charconv>
#include <cmath>

#include "agent/snapshot.h"

namespace nodeperf {
namespace {

// HELP text: 0.0.4 escapes backslash and newline; OpenMetrics also quotes.
void append_help(std::string& out, std::string_view help, ExpositionFormat format) {
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && format == ExpositionFormat::openmetrics) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

std::string_view openmetrics_type(MetricType type) {
  return type == MetricType::untyped ? "unknown" : type_name(type);
}

}  // namespace

void append_value(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
  } else if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
    out.append(buf, ec == std::errc() ? end : buf);
  }
}

void render_exposition(const Snapshot& snapshot, ExpositionFormat format, std::string& out) {
  const bool om = format == ExpositionFormat::openmetrics;
  out.reserve(out.size() + snapshot.series() * 64);
  for (const Family& family : snapshot.families()) {
    if (family.samples.empty()) continue;
    std::string_view name = family.name;
    // OpenMetrics names a counter family without its _total suffix.
    std::string_view family_name = name;
    if (om && family.info->type == MetricType::counter && family_name.ends_with("_total")) {
      family_name.remove_suffix(6);
    }
    out.append("# HELP ").append(family_name).append(" ");
    append_help(out, family.info->help, format);
    out.append("\n# TYPE ").append(family_name).append(" ");
    out.append(om ? openmetrics_type(family.info->type) : type_name(family.info->type));
    out += '\n';
    for (const Sample& s : family.samples) {
      out.append(name).append(s.suffix);
      if (!s.labels.empty()) out.append("{").append(s.labels).append("}");
      out += ' ';
      append_value(out, s.value);
      out += '\n';
    }
  }
  if (om) out += "# EOF\n";
}

}  // namespace nodeperf
