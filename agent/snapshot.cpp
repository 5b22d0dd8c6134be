#include "agent/snapshot.h"

#include <algorithm>

#include "exporters/exposition.h"
#include "exporters/gzip.h"

namespace nodeperf {

void append_escaped_label_value(std::string& out, std::string_view value) {
  // Copy the runs between escapes whole: most values have no escapes at all.
  size_t run = 0;
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c != '\\' && c != '"' && c != '\n') continue;
    out.append(value.substr(run, i - run));
    out += c == '\\' ? "\\\\" : c == '"' ? "\\\"" : "\\n";
    run = i + 1;
  }
  out.append(value.substr(run));
}

void append_labels(std::string& out, std::span<const Label> labels) {
  size_t size = out.size();
  for (const Label& l : labels) size += l.key.size() + l.value.size() + 4;  // key="value",
  out.reserve(size);
  bool first = true;
  for (const Label& l : labels) {
    if (!first) out += ',';
    first = false;
    out.append(l.key).append("=\"");
    append_escaped_label_value(out, l.value);
    out += '"';
  }
}

void SampleSink::add(const MetricInfo& metric, double value, std::span<const Label> labels, std::string_view suffix) {
  std::string rendered;
  append_labels(rendered, labels);
  add_rendered(metric, value, std::move(rendered), suffix);
}

void SampleSink::add_rendered(const MetricInfo& metric, double value, std::string labels, std::string_view suffix) {
  if (&metric != last_metric_) {
    auto it = std::find_if(families_.begin(), families_.end(),
                           [&](const Family& f) { return f.info == &metric; });
    if (it == families_.end()) {
      families_.push_back(Family{&metric, {}, {}});
      it = families_.end() - 1;
    }
    last_metric_ = &metric;
    last_index_ = static_cast<size_t>(it - families_.begin());
  }
  families_[last_index_].samples.push_back(Sample{std::move(labels), value, suffix});
}

size_t SampleSink::series() const {
  size_t n = 0;
  for (const Family& f : families_) n += f.samples.size();
  return n;
}

Snapshot::Snapshot(SampleSink&& sink, bool node_exporter_compat, std::chrono::system_clock::time_point taken)
    : families_(std::move(sink.families_)), taken_(taken) {
  for (Family& f : families_) f.name = exposed_name(*f.info, node_exporter_compat);
  std::sort(families_.begin(), families_.end(),
            [](const Family& a, const Family& b) { return a.name < b.name; });
}

const Family* Snapshot::find(std::string_view name) const {
  auto it = std::lower_bound(families_.begin(), families_.end(), name,
                             [](const Family& f, std::string_view n) { return f.name < n; });
  return it != families_.end() && it->name == name ? &*it : nullptr;
}

size_t Snapshot::series() const {
  size_t n = 0;
  for (const Family& f : families_) n += f.samples.size();
  return n;
}

const std::string& Snapshot::body(Body which) const {
  auto& slot = bodies_[static_cast<size_t>(which)];
  if (slot) return *slot;
  switch (which) {
    case Body::prometheus_text:
    case Body::openmetrics: {
      std::string text;
      render_exposition(*this, which == Body::openmetrics ? ExpositionFormat::openmetrics
                                                          : ExpositionFormat::prometheus_text,
                        text);
      slot = std::move(text);
      break;
    }
    case Body::prometheus_text_gzip: slot = gzip(body(Body::prometheus_text)); break;
    case Body::openmetrics_gzip: slot = gzip(body(Body::openmetrics)); break;
    case Body::count: break;
  }
  return *slot;
}

}  // namespace nodeperf
