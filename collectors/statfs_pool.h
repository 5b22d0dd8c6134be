// statvfs(2) off the event loop, with a deadline. statvfs on a hung mount
// (an NFS server gone, a FUSE daemon that never answers) blocks its thread
// until the file system answers, which can be never; the tick must not wait
// for it. The pool runs the calls on a few threads and the tick waits for
// them until a deadline. A call still running at the deadline keeps its
// thread: the caller must not ask for that path again until it returns
// (VolumesCollector keeps the job and checks `done`), so a stuck mount holds
// one thread, not one per tick. The pool adds a thread for each stuck one,
// so the others keep being served, up to `max_threads` in all; past that,
// queued calls wait for a free thread and miss their deadline.
#pragma once

#include <sys/statvfs.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>

namespace nodeperf {

class StatfsPool {
 public:
  using Clock = std::chrono::steady_clock;
  // The call made on the pool's threads: statvfs(2) unless a test gives
  // another. Returns 0 or an errno. The threads keep a copy of it, and one
  // in a call when the pool is destroyed carries on: the call must own or
  // share (shared_ptr) whatever it uses, never refer to its caller's locals.
  using Call = std::function<int(const std::string& path, struct statvfs* out)>;

  struct Job {
    std::string path;
      // Written by the pool under its lock: read them after state() said
    // finished (the pool leaves a finished job alone).
    bool started = false, finished = false;
    int error = 0;
    struct statvfs result {};
  };

  StatfsPool(size_t workers, size_t max_threads, Call call = {});
  // Idle threads exit; a thread stuck in a call is detached and exits when
  // the call returns (or with the process). Never blocks.
  ~StatfsPool();
  StatfsPool(const StatfsPool&) = delete;
  StatfsPool& operator=(const StatfsPool&) = delete;

  // Queues the jobs, with enough threads for them beside the stuck ones.
  void submit(std::span<const std::shared_ptr<Job>> jobs);
  // Waits until every job finished or the deadline passed. Jobs not started
  // by then are withdrawn (finished stays false, started false); started
  // ones carry on and can be checked later with state().
  void wait(std::span<const std::shared_ptr<Job>> jobs, Clock::time_point deadline);
  enum class State { waiting, running, finished };  // waiting: queued, or withdrawn
  State state(const Job& job) const;
  // Threads alive, stuck ones included.
  size_t threads() const;

 private:
  struct Shared;
  static void work(std::shared_ptr<Shared> shared);  // a thread's loop
  std::shared_ptr<Shared> shared_;
  size_t workers_, max_threads_;
};

}  // namespace nodeperf
