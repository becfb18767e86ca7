// A small persistent thread pool that splits a row range over worker threads (used by the focus
// measure and the stack decision so that a frame's work costs no thread creation).
#pragma once

#include <cstdint>
#include <functional>

namespace surgifuse {

// Threads used when a caller passes num_threads <= 0. Starts at the value of the environment
// variable SURGIFUSE_NUM_THREADS when it is a positive integer, otherwise at the number of CPUs
// this process may run on (sched_getaffinity, falling back to std::thread::hardware_concurrency).
int get_num_threads();

// Sets the global thread count; n <= 0 restores the default described above. Thread-safe.
void set_num_threads(int n);

// Runs body(chunk_begin, chunk_end) over disjoint chunks that exactly cover [begin, end), on up
// to num_threads threads (num_threads <= 0: get_num_threads()). The calling thread takes part.
// Contract:
//  - every index in [begin, end) is passed to body exactly once; chunks are contiguous and at
//    least min_chunk long (except the last); an empty range calls nothing;
//  - with one thread (or one chunk) body runs inline on the caller, in order;
//  - returns only when every chunk has finished; the first exception thrown by body is
//    rethrown on the caller after all chunks are done (the remaining chunks still run);
//  - calls from inside a body (nested) run inline, never deadlock;
//  - concurrent calls from several caller threads are serialised on the pool;
//  - body must not touch Python objects (callers release the GIL around parallel_for);
//  - on Linux the workers run each job at the scheduling priority (nice) of the calling thread.
// Chunks are handed out dynamically (about 4 per thread) so that a thread delayed by another
// process on a shared machine does not hold up the whole frame.
void parallel_for(int64_t begin, int64_t end,
                  const std::function<void(int64_t, int64_t)>& body,
                  int num_threads = 0, int64_t min_chunk = 1);

}  // namespace surgifuse
