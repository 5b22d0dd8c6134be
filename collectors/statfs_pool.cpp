#include "collectors/statfs_pool.h"

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace nodeperf {

struct StatfsPool::Shared {
  std::mutex mutex;
  std::condition_variable work, finished;
  std::deque<std::shared_ptr<Job>> queue;
  size_t threads = 0;  // alive
  size_t busy = 0;     // in a call
  size_t target = 0;   // threads wanted; idle ones above it exit
  bool stop = false;
  Call call;
};

void StatfsPool::work(std::shared_ptr<Shared> s) {
  std::unique_lock lock(s->mutex);
  for (;;) {
    s->work.wait(lock, [&] { return s->stop || !s->queue.empty() || s->threads > s->target; });
    if (s->stop || (s->queue.empty() && s->threads > s->target)) break;
    std::shared_ptr<Job> job = std::move(s->queue.front());
    s->queue.pop_front();
    job->started = true;
    ++s->busy;
    lock.unlock();
    struct statvfs st {};
    int error = s->call(job->path, &st);
    lock.lock();
    --s->busy;
    job->result = st;
    job->error = error;
    job->finished = true;
    s->finished.notify_all();
  }
  --s->threads;
}

StatfsPool::StatfsPool(size_t workers, size_t max_threads, Call call)
    : shared_(std::make_shared<Shared>()), workers_(std::max<size_t>(workers, 1)),
      max_threads_(std::max(max_threads, workers_)) {
  shared_->call = call ? std::move(call) : [](const std::string& path, struct statvfs* out) {
    return ::statvfs(path.c_str(), out) == 0 ? 0 : errno;
  };
}

StatfsPool::~StatfsPool() {
  std::lock_guard lock(shared_->mutex);
  shared_->stop = true;
  shared_->queue.clear();
  shared_->work.notify_all();
}

void StatfsPool::submit(std::span<const std::shared_ptr<Job>> jobs) {
  if (jobs.empty()) return;
  std::lock_guard lock(shared_->mutex);
  // Threads in a call now are stuck (every job of the last tick finished
  // or was withdrawn, but for those): the workers come on top of them.
  shared_->target = std::min(workers_ + shared_->busy, max_threads_);
  while (shared_->threads < shared_->target) {
    std::thread(work, shared_).detach();
    ++shared_->threads;
  }
  for (const auto& job : jobs) shared_->queue.push_back(job);
  shared_->work.notify_all();
}

void StatfsPool::wait(std::span<const std::shared_ptr<Job>> jobs, Clock::time_point deadline) {
  std::unique_lock lock(shared_->mutex);
  shared_->finished.wait_until(lock, deadline, [&] {
    return std::all_of(jobs.begin(), jobs.end(), [](const auto& j) { return j->finished; });
  });
  std::erase_if(shared_->queue, [&](const std::shared_ptr<Job>& queued) {
    return std::find(jobs.begin(), jobs.end(), queued) != jobs.end();
  });
}

StatfsPool::State StatfsPool::state(const Job& job) const {
  std::lock_guard lock(shared_->mutex);
  return job.finished ? State::finished : job.started ? State::running : State::waiting;
}

size_t StatfsPool::threads() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->threads;
}

}  // namespace nodeperf
