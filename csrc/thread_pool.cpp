// A small persistent thread pool that splits a row range over worker threads (see thread_pool.hpp).
#include "thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace surgifuse {
namespace {

int default_num_threads() {
    if (const char* env = std::getenv("SURGIFUSE_NUM_THREADS")) {
        char* end = nullptr;
        long n = std::strtol(env, &end, 10);
        if (end != env && *end == '\0' && n > 0 && n <= 4096) return static_cast<int>(n);
    }
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    unsigned n = std::thread::hardware_concurrency();
    return n > 0 ? static_cast<int>(n) : 1;
}

std::atomic<int> g_num_threads{0};  // 0: not yet initialised
thread_local bool t_inside_pool_body = false;

// Workers run a job at the scheduling priority (nice) of the thread that posted it: the live
// service lowers its fusion thread's priority so that capture, encoding and sending come first
// (docs/live-pipeline.md), and the workers doing that thread's work must follow it.
constexpr int kUnknownNice = 1000;  // outside nice's range (-20..19)
#if defined(__linux__)
thread_local int t_nice = kUnknownNice;
int current_nice() {
    errno = 0;
    const int n = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
    return errno == 0 ? n : kUnknownNice;
}
void adopt_nice(int nice) {
    if (nice == kUnknownNice || nice == t_nice) return;
    // Raising the priority back may be refused without CAP_SYS_NICE: the worker then stays lower,
    // which only makes it yield more; it does not retry on every job.
    setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice);
    t_nice = nice;
}
#else
int current_nice() { return kUnknownNice; }
void adopt_nice(int) {}
#endif

class ThreadPool {
public:
    // Serialises whole jobs: one parallel_for owns the workers at a time.
    std::mutex job_mutex;

    void run(int64_t begin, int64_t end, int64_t chunk, int threads,
             const std::function<void(int64_t, int64_t)>& body) {
        ensure_workers(threads - 1);
        {
            std::lock_guard<std::mutex> lock(m_);
            body_ = &body;
            end_ = end;
            chunk_ = chunk;
            next_.store(begin);
            error_ = nullptr;
            job_nice_ = current_nice();
            wanted_ = threads - 1;
            pending_ = wanted_;
            ++generation_;
        }
        cv_.notify_all();
        work();
        std::unique_lock<std::mutex> lock(m_);
        done_cv_.wait(lock, [&] { return pending_ == 0; });
        body_ = nullptr;
        if (error_) {
            std::exception_ptr e = error_;
            error_ = nullptr;
            std::rethrow_exception(e);
        }
    }

private:
    void ensure_workers(int n) {
        while (static_cast<int>(workers_.size()) < n) {
            int index = static_cast<int>(workers_.size());
            // The worker starts from the current generation: the job about to be posted is new to it.
            uint64_t start_generation = generation_;
            workers_.emplace_back([this, index, start_generation] { worker_loop(index, start_generation); });
        }
    }

    void work() {
        bool was_inside = t_inside_pool_body;
        t_inside_pool_body = true;
        for (;;) {
            int64_t b = next_.fetch_add(chunk_);
            if (b >= end_) break;
            int64_t e = std::min(end_, b + chunk_);
            try {
                (*body_)(b, e);
            } catch (...) {
                std::lock_guard<std::mutex> lock(m_);
                if (!error_) error_ = std::current_exception();
            }
        }
        t_inside_pool_body = was_inside;
    }

    void worker_loop(int index, uint64_t seen) {
        for (;;) {
            int nice;
            {
                std::unique_lock<std::mutex> lock(m_);
                cv_.wait(lock, [&] { return generation_ != seen; });
                seen = generation_;
                if (index >= wanted_) continue;  // this job asked for fewer threads
                nice = job_nice_;
            }
            adopt_nice(nice);
            work();
            std::lock_guard<std::mutex> lock(m_);
            if (--pending_ == 0) done_cv_.notify_one();
        }
    }

    std::mutex m_;
    std::condition_variable cv_, done_cv_;
    std::vector<std::thread> workers_;
    const std::function<void(int64_t, int64_t)>* body_ = nullptr;
    std::atomic<int64_t> next_{0};
    int64_t end_ = 0, chunk_ = 1;
    int wanted_ = 0, pending_ = 0, job_nice_ = kUnknownNice;
    uint64_t generation_ = 0;
    std::exception_ptr error_;
};

// Never destroyed: joining at interpreter exit races with static destruction, and a blocked
// worker costs nothing when the process ends. A child of fork() gets a fresh pool because the
// parent's worker threads do not exist there.
ThreadPool& pool() {
    static std::mutex create_mutex;
    static ThreadPool* instance = nullptr;
#if defined(__linux__)
    static pid_t owner = 0;
    std::lock_guard<std::mutex> lock(create_mutex);
    if (!instance || owner != getpid()) {
        instance = new ThreadPool();
        owner = getpid();
    }
#else
    std::lock_guard<std::mutex> lock(create_mutex);
    if (!instance) instance = new ThreadPool();
#endif
    return *instance;
}

}  // namespace

int get_num_threads() {
    int n = g_num_threads.load();
    if (n <= 0) {
        n = default_num_threads();
        g_num_threads.store(n);
    }
    return n;
}

void set_num_threads(int n) { g_num_threads.store(n > 0 ? n : default_num_threads()); }

void parallel_for(int64_t begin, int64_t end, const std::function<void(int64_t, int64_t)>& body,
                  int num_threads, int64_t min_chunk) {
    if (end <= begin) return;
    int64_t total = end - begin;
    min_chunk = std::max<int64_t>(1, min_chunk);
    int threads = num_threads > 0 ? num_threads : get_num_threads();
    threads = static_cast<int>(std::min<int64_t>(threads, (total + min_chunk - 1) / min_chunk));
    if (threads <= 1 || t_inside_pool_body) {
        body(begin, end);
        return;
    }
    int64_t chunk = std::max<int64_t>(min_chunk, (total + 4 * threads - 1) / (4 * threads));
    ThreadPool& p = pool();
    std::lock_guard<std::mutex> job(p.job_mutex);
    p.run(begin, end, chunk, threads, body);
}

}  // namespace surgifuse
