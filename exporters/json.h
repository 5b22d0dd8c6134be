// The JSON encoder of the agent's API (docs/api.md): a few append functions,
// no library. Output is UTF-8; numbers round-trip.
#pragma once

#include <string>
#include <string_view>

namespace nodeperf {

class History;
struct HistoryEntry;

// Appends `text` as a quoted JSON string: quote and backslash escaped,
// control characters as \u00XX, valid UTF-8 passed through, and each byte of
// an invalid UTF-8 sequence replaced by U+FFFD so the document stays valid.
void append_json_string(std::string& out, std::string_view text);

// Appends the shortest decimal that round-trips; NaN and infinities as null.
void append_json_number(std::string& out, double value);

// Appends labels rendered as a Sample holds them (key="escaped",...) as a
// JSON object of plain strings: {"key":"value",...}.
void append_json_labels(std::string& out, std::string_view rendered);

// The /api/v1/snapshot document of one history entry.
void render_snapshot_json(const HistoryEntry& entry, double tick_seconds, std::string_view hostname,
                          std::string& out);

// The /api/v1/history document; oldest and newest are null while empty.
void render_history_json(const History& history, double tick_seconds, std::string& out);

}  // namespace nodeperf
