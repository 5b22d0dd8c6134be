// Loading one YAML document from a config file's text, with errors that name
// the file and line: shared by the agent's config file and the web config
// file (exporters/web_config.h).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>

namespace nodeperf {

// The single document of `text` (a null node for an empty text). Throws
// ConfigError naming `file` and the line on a syntax error or on more than
// one document.
YAML::Node load_yaml_document(std::string_view text, const std::string& file);

// "a mapping", "a list", "nothing" or "a value", for error messages.
std::string_view yaml_node_kind(const YAML::Node& node);

// Throws ConfigError "file:line: key: what", the line being the node's.
[[noreturn]] void yaml_fail_at(const std::string& file, const YAML::Node& node, std::string_view key,
                               std::string_view what);

}  // namespace nodeperf
