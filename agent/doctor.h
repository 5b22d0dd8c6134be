// `nodeperf doctor`: what this host supports, one line per check.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace nodeperf {

struct Check {
  enum class Verdict { ok, warn, missing };
  Verdict verdict;
  std::string name;
  std::string detail;  // what was found, and how to fix it if it is not OK
};

std::vector<Check> run_checks(const std::string& host_root);

// Prints the checks; returns 0 if nothing is missing, 1 otherwise.
int print_doctor(const std::vector<Check>& checks, std::ostream& out);

}  // namespace nodeperf
