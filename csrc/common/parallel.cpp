// The team behind mbv3::with_team (parallel.h): the leader (the caller) runs the network; the
// workers, started once by one at::parallel_for, spin until it publishes a loop, run their
// chunk and acknowledge.  One generation counter publishes a loop; one word per worker (own
// cache line) acknowledges it.
#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace mbv3::team_detail {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins until done(); after ~1 ms of spinning also yields the core, so a waiting thread does not
// starve the others when there are more runnable threads than cores.
template <class P>
void spin_until(const P& done) {
  constexpr int kSpins = 1 << 14;
  for (int i = 0; !done(); ++i) {
    if (i < kSpins) cpu_relax();
    else std::this_thread::yield();
  }
}

thread_local Team* tls_team = nullptr;

std::atomic<bool> g_trace{false};
std::mutex g_trace_mutex;
std::vector<double> g_last_trace;

using Clock = std::chrono::steady_clock;
double us_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

int64_t divup(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

class Team {
 public:
  explicit Team(int64_t capacity) : done_(size_t(capacity)) {}

  int64_t size() const { return size_; }

  // A worker's part: join (or find the team closed), then run chunks until told to quit.
  void work() {
    int64_t id = joined_.load(std::memory_order_relaxed);
    do {
      if (id == kClosed) return;
    } while (!joined_.compare_exchange_weak(id, id + 1, std::memory_order_acq_rel));
    const int64_t w = id + 1;  // the leader is 0
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = 0;
      spin_until([&] { return (g = gen_.load(std::memory_order_acquire)) != seen; });
      seen = g;
      if (quit_) return;
      if (w < threads_) {
        const auto t0 = trace_ ? Clock::now() : Clock::time_point();
        run_chunk(w);
        if (trace_) done_[size_t(w)].busy_us = us_between(t0, Clock::now());
      } else {
        done_[size_t(w)].busy_us = 0;
      }
      done_[size_t(w)].gen.store(g, std::memory_order_release);
    }
  }

  // The leader's part: wait for the workers the at::parallel_for started (`expected`), run
  // body as the team's thread 0, then release the workers.
  void lead(int64_t expected, ChunkFn body_fn, const void* body) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
    spin_until([&] {
      return joined_.load(std::memory_order_acquire) >= expected || std::chrono::steady_clock::now() > deadline;
    });
    size_ = 1 + joined_.exchange(kClosed, std::memory_order_acq_rel);  // latecomers return at once
    struct Release {
      Team& t;
      ~Release() {
        tls_team = nullptr;
        t.quit_ = true;
        t.gen_.fetch_add(1, std::memory_order_release);
      }
    } release{*this};
    tls_team = this;
    trace_ = g_trace.load(std::memory_order_relaxed);
    last_end_ = Clock::now();
    body_fn(body, 0, 0);
    if (trace_) {
      record(0, 0, us_between(last_end_, Clock::now()), 0, 0, 0);
      std::lock_guard<std::mutex> lock(g_trace_mutex);
      g_last_trace = std::move(rows_);
    }
  }

  void run(int64_t begin, int64_t end, int64_t grain, ChunkFn fn, const void* body) {
    const int64_t n = end - begin;
    // at::parallel_for's split: inline when one chunk would do or when called from inside a
    // loop's chunk (as at::parallel_for inside a parallel region), else min(threads, n / grain)
    // chunks of ceil(n / chunks).
    if (in_loop_) return fn(body, begin, end);
    const auto t0 = trace_ ? Clock::now() : Clock::time_point();
    if (n <= grain || size_ == 1) {
      fn(body, begin, end);
      if (trace_) record_loop(n, 1, t0, Clock::now(), 0);
      return;
    }
    threads_ = grain > 0 ? std::min(size_, divup(n, grain)) : size_;
    chunk_ = divup(n, threads_);
    fn_ = fn;
    body_ = body;
    begin_ = begin;
    end_ = end;
    const uint64_t g = gen_.fetch_add(1, std::memory_order_release) + 1;
    in_loop_ = true;
    run_chunk(0);
    in_loop_ = false;
    const auto t1 = trace_ ? Clock::now() : Clock::time_point();
    double worker_us = 0;
    for (int64_t w = 1; w < size_; ++w) {
      spin_until([&] { return done_[size_t(w)].gen.load(std::memory_order_acquire) == g; });
      worker_us = std::max(worker_us, done_[size_t(w)].busy_us);
    }
    if (trace_) record_loop(n, threads_, t0, t1, worker_us);
    if (failed_.load(std::memory_order_relaxed)) {
      failed_ = false;
      std::rethrow_exception(std::exchange(error_, nullptr));
    }
  }

 private:
  static constexpr int64_t kClosed = -1;
  struct alignas(64) Ack {
    std::atomic<uint64_t> gen{0};
    double busy_us = 0;  // the worker's chunk time (traced teams), published by gen
  };

  // One loop: the leader's chunk ran [t0, t1), the workers had ended by now.
  void record_loop(int64_t n, int64_t threads, Clock::time_point t0, Clock::time_point t1, double worker_us) {
    const auto t2 = Clock::now();
    record(double(n), double(threads), us_between(last_end_, t0), us_between(t0, t1), worker_us, us_between(t1, t2));
    last_end_ = t2;
  }
  void record(double units, double threads, double serial, double leader, double worker, double wait) {
    rows_.insert(rows_.end(), {units, threads, serial, leader, worker, wait});
  }

  void run_chunk(int64_t w) {
    const int64_t b = begin_ + w * chunk_, e = std::min(end_, b + chunk_);
    if (b >= e) return;
    try {
      fn_(body_, b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!failed_.exchange(true)) error_ = std::current_exception();
    }
  }

  // The loop being run (written by the leader before it bumps gen_).
  ChunkFn fn_ = nullptr;
  const void* body_ = nullptr;
  int64_t begin_ = 0, end_ = 0, chunk_ = 1, threads_ = 1, size_ = 1;
  bool quit_ = false;
  bool in_loop_ = false;  // the leader is running its chunk
  bool trace_ = false;    // g_trace when the team started
  Clock::time_point last_end_;
  std::vector<double> rows_;  // kTraceFields per loop
  alignas(64) std::atomic<uint64_t> gen_{0};
  alignas(64) std::atomic<int64_t> joined_{0};
  std::vector<Ack> done_;
  std::atomic<bool> failed_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

Team* current() { return tls_team; }
void set_trace(bool on) {
  std::lock_guard<std::mutex> lock(g_trace_mutex);
  g_last_trace.clear();
  g_trace.store(on, std::memory_order_relaxed);
}
std::vector<double> last_trace() {
  std::lock_guard<std::mutex> lock(g_trace_mutex);
  return g_last_trace;
}
int64_t size(const Team* team) { return team->size(); }
void run(Team* team, int64_t begin, int64_t end, int64_t grain, ChunkFn fn, const void* body) {
  team->run(begin, end, grain, fn, body);
}

void with_team(ChunkFn fn, const void* body) {
  const int64_t threads = at::get_num_threads();
  if (threads <= 1 || at::in_parallel_region() || tls_team != nullptr) return fn(body, 0, 0);
  Team team(threads);
  at::parallel_for(0, threads, 1, [&](int64_t b, int64_t e) {
    // The caller's chunk is [0, e): the region has ceil(threads / e) threads, one per chunk.
    if (b == 0) team.lead(divup(threads, e) - 1, fn, body);
    else team.work();
  });
}

}  // namespace mbv3::team_detail
