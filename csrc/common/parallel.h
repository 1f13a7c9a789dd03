// Threads for the ops: mbv3::parallel_for and mbv3::num_threads, which every op calls instead of
// ATen's, and with_team, which the whole-network ops wrap around their layer loop.
//
// Why: a Large forward runs ~70 parallel loops.  Each at::parallel_for starts and joins an
// OpenMP team (µs each at 2 threads, a few % of a batch-1 forward).  Inside with_team the
// intra-op threads are started once and spin between loops, and a loop is handed to them
// through one shared word.  The split of a loop is at::parallel_for's (same threads, same
// chunks), so results do not change; outside a team both functions are ATen's.
#pragma once
#include <ATen/Parallel.h>

#include <cstdint>
#include <vector>

namespace mbv3 {

namespace team_detail {
using ChunkFn = void (*)(const void* body, int64_t begin, int64_t end);
// The calling thread's team, if it leads one (nullptr otherwise).
class Team;
Team* current();
// Splits [begin, end) as at::parallel_for does and runs the chunks on the team (the caller
// takes the first); rethrows a chunk's exception.
void run(Team* team, int64_t begin, int64_t end, int64_t grain, ChunkFn fn, const void* body);
int64_t size(const Team* team);
void with_team(ChunkFn fn, const void* body);

// Loop trace (torch.ops.mbv3._team_trace, mbv3_fast.team_profile): while on, each team records
// per loop kTraceFields values -- units, threads, the leader's serial time before the loop (µs),
// the leader's chunk, the slowest worker's chunk, the leader's wait for the workers -- and one
// last row (units 0) with the serial time after the last loop.  The last team's rows are kept
// (set_trace clears them; a forward at one thread runs no team).
constexpr int kTraceFields = 6;
void set_trace(bool on);
std::vector<double> last_trace();
}  // namespace team_detail

// at::get_num_threads(), or the team's size inside with_team.
inline int64_t num_threads() {
  const team_detail::Team* t = team_detail::current();
  return t ? team_detail::size(t) : at::get_num_threads();
}

// at::parallel_for(begin, end, grain, f), or the same split on the team inside with_team.
template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  if (begin >= end) return;
  if (team_detail::Team* t = team_detail::current()) {
    team_detail::run(t, begin, end, grain,
                     [](const void* c, int64_t b, int64_t e) { (*static_cast<const F*>(c))(b, e); }, &f);
    return;
  }
  at::parallel_for(begin, end, grain, f);
}

// Runs body() on the calling thread while the other at::get_num_threads() - 1 intra-op threads
// wait for its parallel_for loops.  Runs body() alone at one thread, inside a parallel region
// or inside another team.
template <class F>
void with_team(const F& body) {
  team_detail::with_team([](const void* c, int64_t, int64_t) { (*static_cast<const F*>(c))(); }, &body);
}

}  // namespace mbv3
