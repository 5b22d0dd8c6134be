// Exposition encoders: Prometheus text format 0.0.4 and OpenMetrics 1.0.0.
#pragma once

#include <string>
#include <string_view>

namespace nodeperf {

class Snapshot;

enum class ExpositionFormat { prometheus_text, openmetrics };

inline constexpr std::string_view kPrometheusTextContentType = "text/plain; version=0.0.4; charset=utf-8";
inline constexpr std::string_view kOpenMetricsContentType =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

// Appends the whole exposition of the snapshot to out.
void render_exposition(const Snapshot& snapshot, ExpositionFormat format, std::string& out);

// Appends a sample value: shortest round-trip decimal, or +Inf/-Inf/NaN.
void append_value(std::string& out, double value);

}  // namespace nodeperf
