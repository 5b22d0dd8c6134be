// The docs and the tables in the code must say the same thing. Every metric
// has one row in docs/metrics.md with its type, labels, source and
// node_exporter name, and that page lists nothing the agent does not export;
// every configuration key and flag has its row in docs/running.md.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "agent/config.h"
#include "agent/metric_table.h"

namespace {

std::string trim(std::string s) {
  s.erase(0, s.find_first_not_of(" `"));
  s.erase(s.find_last_not_of(" `") + 1);
  return s;
}

// "| name | type | labels | source | node_exporter | help |" rows, by name.
std::map<std::string, std::vector<std::string>> doc_rows(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::map<std::string, std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("| `")) continue;
    std::vector<std::string> cells;
    std::stringstream ss(line.substr(1));
    std::string cell;
    while (std::getline(ss, cell, '|')) cells.push_back(trim(cell));
    if (!cells.empty() && cells.back().empty()) cells.pop_back();
    INFO(line);
    CHECK(rows.count(cells[0]) == 0);
    rows[cells[0]] = cells;
  }
  return rows;
}

std::string expected_row(const nodeperf::MetricInfo& m) {
  std::string labels(m.labels);
  for (size_t i = 0; (i = labels.find(',', i)) != std::string::npos; i += 2) labels.replace(i, 1, ", ");
  std::string node = m.node_exporter ? "`" + nodeperf::exposed_name(m, true) + "`" : "";
  return "| `" + std::string(m.name) + "` | " + std::string(nodeperf::type_name(m.type)) + " | " + labels + " | " +
         std::string(m.source) + " | " + node + " | " + std::string(m.help) + " |";
}

}  // namespace

TEST_CASE("docs/metrics.md lists every metric exactly as the code exports it") {
  auto rows = doc_rows(std::string(NODEPERF_SOURCE_DIR) + "/docs/metrics.md");
  std::set<std::string> in_code;
  for (const nodeperf::MetricInfo* m : nodeperf::all_metrics()) {
    std::string name(m->name);
    INFO("expected row: " << expected_row(*m));
    REQUIRE(in_code.insert(name).second);  // one name, one metric
    auto it = rows.find(name);
    REQUIRE(it != rows.end());
    const auto& cells = it->second;
    REQUIRE(cells.size() == 6);
    std::string labels(m->labels);
    std::string doc_labels = cells[2];
    std::erase(doc_labels, ' ');
    CHECK(cells[1] == nodeperf::type_name(m->type));
    CHECK(doc_labels == labels);
    CHECK(cells[3] == m->source);
    CHECK(cells[4] == (m->node_exporter ? nodeperf::exposed_name(*m, true) : ""));
    CHECK(cells[5] == m->help);
  }
  for (const auto& [name, cells] : rows) {
    INFO("docs/metrics.md documents a metric the code does not have: " << name);
    CHECK(in_code.count(name) == 1);
  }
}

TEST_CASE("metric names follow the Prometheus conventions") {
  for (const nodeperf::MetricInfo* m : nodeperf::all_metrics()) {
    std::string_view name = m->name;
    INFO(name);
    // container_*: cAdvisor's names, kept for its dashboards (--compat=cadvisor).
    CHECK((name.starts_with("nodeperf_") || name.starts_with("process_") || name.starts_with("container_")));
    if (m->type == nodeperf::MetricType::counter) CHECK(name.ends_with("_total"));
    if (m->type != nodeperf::MetricType::counter) CHECK_FALSE(name.ends_with("_total"));
    CHECK_FALSE(m->help.empty());
    CHECK(m->help.back() == '.');
  }
}

TEST_CASE("docs/running.md documents every configuration key and flag") {
  std::ifstream in(std::string(NODEPERF_SOURCE_DIR) + "/docs/running.md");
  REQUIRE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  for (const nodeperf::OptionDoc& o : nodeperf::option_docs()) {
    INFO(o.key);
    CHECK(text.str().find("| `" + o.key + "` | `" + o.flag + "` |") != std::string::npos);
  }
}
