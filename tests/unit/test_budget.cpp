// The overhead budget's controller: fed synthetic CPU samples, it steps up
// one level per window spent over the budget, back down one level per window
// spent under half of it, and holds in between (hysteresis).
#include <catch2/catch.hpp>
#include <chrono>

#include "agent/budget.h"
#include "agent/config.h"

using namespace nodeperf;
using namespace std::chrono_literals;

namespace {

// Feeds `seconds` of one-second ticks using `ratio` of a core; returns the level moves seen.
int feed(BudgetController& b, double ratio, int seconds) {
  int moves = 0;
  for (int i = 0; i < seconds; ++i) moves += b.add(1.0, ratio) != 0 ? 1 : 0;
  return moves;
}

}  // namespace

TEST_CASE("budget: the levels are taken in the documented order") {
  auto levels = budget_levels();
  REQUIRE(levels.size() == 6);
  CHECK(levels[0].sample_one_in == 1);  // nothing degraded
  CHECK(levels[0].tick_factor == 1);
  CHECK(levels[1].sample_one_in == 8);  // sampling first, at the same tick
  CHECK(levels[1].tick_factor == 1);
  CHECK(levels[2].tick_factor == 2);
  CHECK(levels[3].tick_factor == 4);
  for (size_t l = 1; l < levels.size(); ++l) CHECK(levels[l].sample_one_in == 8);  // kept once taken
  CHECK_FALSE(budget_drops(3, "runqueue"));
  CHECK(budget_drops(4, "runqueue"));
  CHECK(budget_drops(4, "tcp"));
  CHECK_FALSE(budget_drops(4, "cgroups"));
  CHECK_FALSE(budget_drops(4, "blockio"));  // sampled, never stopped
  CHECK(budget_drops(5, "cgroups"));
  CHECK(budget_drops(5, "tcp"));
  CHECK_FALSE(budget_drops(5, "cpu"));
}

TEST_CASE("budget: off never degrades") {
  BudgetController b(0, 10s);
  CHECK(feed(b, 0.9, 100) == 0);
  CHECK(b.level() == 0);
}

TEST_CASE("budget: steps up one level per window over budget, up to the last") {
  BudgetController b(0.05, 10s);
  CHECK(feed(b, 0.10, 9) == 0);  // not a whole window yet
  CHECK(b.level() == 0);
  CHECK(feed(b, 0.10, 1) == 1);
  CHECK(b.level() == 1);
  CHECK(b.moved_at_usage() == Approx(0.10));
  CHECK(feed(b, 0.10, 9) == 0);  // a new window starts at each change
  CHECK(b.level() == 1);
  CHECK(feed(b, 0.10, 41) == 4);
  CHECK(b.level() == 5);
  CHECK(feed(b, 0.10, 50) == 0);  // the last level holds
  CHECK(b.level() == 5);
}

TEST_CASE("budget: a short burst averaged over the window does not degrade") {
  BudgetController b(0.05, 10s);
  for (int i = 0; i < 60; ++i) b.add(1.0, i % 10 == 0 ? 0.30 : 0.01);  // mean 0.039
  CHECK(b.level() == 0);
}

TEST_CASE("budget: holds between half the budget and the budget (hysteresis)") {
  BudgetController b(0.05, 10s);
  feed(b, 0.10, 20);
  REQUIRE(b.level() == 2);
  CHECK(feed(b, 0.03, 100) == 0);  // under budget, over half of it: stays
  CHECK(b.level() == 2);
  // The window slides: its average falls under half the budget once about
  // half of it is at 0.02 (0.026 after 4 samples, 0.024 after 6).
  CHECK(feed(b, 0.02, 4) == 0);
  CHECK(feed(b, 0.02, 2) == 1);  // one step back
  CHECK(b.level() == 1);
  CHECK(feed(b, 0.02, 9) == 0);  // a whole new window before the next step
  CHECK(feed(b, 0.02, 1) == 1);
  CHECK(b.level() == 0);
  CHECK(feed(b, 0.0, 50) == 0);
  CHECK(b.level() == 0);
}

TEST_CASE("budget: the window slides over uneven ticks") {
  BudgetController b(0.05, 4s);
  b.add(0.5, 0.001);
  b.add(4.0, 0.4);  // a long tick covers the window by itself
  CHECK(b.level() == 1);
  b.add(1.0, 0.0);
  b.add(1.0, 0.0);
  b.add(1.0, 0.0);
  CHECK(b.usage_ratio() == Approx(0.0));
  b.add(1.0, 0.0);
  CHECK(b.level() == 0);
}

TEST_CASE("budget: a new budget keeps the level, turning it off restores at once") {
  BudgetController b(0.05, 10s);
  feed(b, 0.10, 30);
  REQUIRE(b.level() == 3);
  b.configure(0.5, 10s);
  CHECK(b.level() == 3);
  CHECK(b.usage_ratio() == 0);
  CHECK(feed(b, 0.10, 10) == 1);  // 0.10 < half of 0.5
  CHECK(b.level() == 2);
  b.configure(0, 10s);
  CHECK(b.level() == 0);
}

TEST_CASE("budget: options parse and reject bad values") {
  Config c = build_config("", {{"budget.cpu", "0.5"}, {"budget.window", "5s"}});
  CHECK(c.budget_cpu_percent == Approx(0.5));
  CHECK(c.budget_window == 5s);
  CHECK(build_config("", {}).budget_cpu_percent == 0);
  CHECK_THROWS_WITH(build_config("", {{"budget.cpu", "5%"}}), Catch::Matchers::Contains("budget.cpu"));
  CHECK_THROWS_WITH(build_config("", {{"budget.cpu", "-1"}}), Catch::Matchers::Contains("percentage"));
  CHECK_THROWS_WITH(build_config("", {{"budget.window", "0s"}}), Catch::Matchers::Contains("budget.window"));
}

TEST_CASE("budget: process CPU time grows as the process works") {
  double before = process_cpu_seconds();
  volatile double x = 0;
  for (int i = 0; i < 20'000'000; ++i) x = x + i * 0.5;
  CHECK(process_cpu_seconds() > before);
}
