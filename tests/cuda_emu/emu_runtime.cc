// Quarry CUDA emulator (tests/cuda_emu): the scheduler (blocks, fibers, barriers, warp collectives), shared
// memory, and the host half of the runtime API (memory, streams, capture / graphs, events, attributes).
// See README.md for the model and its limits.
#include "emu_runtime.h"

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "emu_device.h"

uint3 threadIdx{0, 0, 0};
uint3 blockIdx{0, 0, 0};
dim3 blockDim{1, 1, 1};
dim3 gridDim{1, 1, 1};

namespace emu {
namespace {

constexpr unsigned kMaxThreads = 1024;
constexpr size_t kStackBytes = 256 * 1024;           // per fiber (mmap'ed lazily; a guard page below)
constexpr size_t kStaticSmemLimit = 48 * 1024;       // static __shared__ per block
constexpr size_t kDefaultDynamicSmem = 48 * 1024;    // dynamic without cudaFuncSetAttribute
constexpr size_t kMaxSmemOptin = 227 * 1024;         // sm_90: static + dynamic per block
constexpr size_t kDynamicAlign = 1024;
constexpr unsigned char kSmemFill = 0xFF;            // NaN as float, -1 as any integer
constexpr size_t kSmemGuard = 512;                   // bytes checked past the end of the static variables

// Run order of blocks and of the threads of a block (QUARRY_EMU_ORDER): the GPU promises neither, so
// reversing or shuffling them shakes out missing barriers and inter-block dependences.
enum class Order { kForward, kReverse, kRandom };

struct Settings {
  Order order = Order::kForward;
  uint64_t seed = 1;
};

const Settings& GetSettings() {
  static const Settings s = [] {
    Settings r;
    if (const char* v = std::getenv("QUARRY_EMU_ORDER"); v != nullptr && *v != '\0') {
      const std::string o = v;
      if (o == "forward") {
        r.order = Order::kForward;
      } else if (o == "reverse") {
        r.order = Order::kReverse;
      } else if (o.rfind("random", 0) == 0) {
        r.order = Order::kRandom;
        if (o.size() > 7 && o[6] == ':') r.seed = std::strtoull(o.c_str() + 7, nullptr, 10);
      } else {
        std::fprintf(stderr, "EMU: QUARRY_EMU_ORDER must be forward, reverse or random[:seed], got '%s'\n", v);
        std::abort();
      }
    }
    return r;
  }();
  return s;
}

// ---- Contexts ----
//
// Fibers are ucontext fibers: makecontext gives each its stack and entry point, and setcontext / swapcontext
// start it. glibc's swapcontext also saves the x87 environment and makes a sigprocmask system call, which made
// context switches ~75% of the run time of shuffle-heavy kernels. So on x86-64 a context that is switched away
// from is saved by quarry_emu_switch / quarry_emu_save_and_jump below instead: they push exactly what the SysV
// ABI makes callee-saved (rbx, rbp, r12-r15, MXCSR, the x87 control word) on the old stack and keep its stack
// pointer; quarry_emu_switch resumes such a context, quarry_emu_save_and_jump enters a fresh makecontext one
// (with setcontext, one system call per fiber start). Each context records how it was saved and is resumed the
// same way. QUARRY_EMU_SWAPCONTEXT=1 (and other architectures) use swapcontext / setcontext for everything.
#if defined(__x86_64__) && defined(__linux__)
#define QUARRY_EMU_HAVE_FAST_SWITCH 1
extern "C" void quarry_emu_switch(void** save_sp, void* load_sp);
extern "C" [[noreturn]] void quarry_emu_jump(void* load_sp);
extern "C" void quarry_emu_save_and_jump(void** save_sp, const ucontext_t* to);
asm(R"(
    .text
    .p2align 4
    .globl quarry_emu_switch
    .hidden quarry_emu_switch
    .type quarry_emu_switch, @function
quarry_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    stmxcsr 8(%rsp)
    fnstcw (%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rdi
    .globl quarry_emu_jump
    .hidden quarry_emu_jump
    .type quarry_emu_jump, @function
quarry_emu_jump:
    movq %rdi, %rsp
    fldcw (%rsp)
    ldmxcsr 8(%rsp)
    addq $16, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size quarry_emu_switch, .-quarry_emu_switch

    .p2align 4
    .globl quarry_emu_save_and_jump
    .hidden quarry_emu_save_and_jump
    .type quarry_emu_save_and_jump, @function
quarry_emu_save_and_jump:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    stmxcsr 8(%rsp)
    fnstcw (%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rdi
    subq $8, %rsp
    call setcontext@PLT
    ud2
    .size quarry_emu_save_and_jump, .-quarry_emu_save_and_jump
)");
#endif

struct Context {
  ucontext_t uc;       // never moves: glibc keeps a pointer into it
  void* sp = nullptr;  // stack pointer saved by quarry_emu_switch / quarry_emu_save_and_jump
  bool fast = false;   // saved that way (else: a fresh makecontext context, or saved by swapcontext)
  const void* stack_bottom = nullptr;  // for AddressSanitizer's fiber annotations (the scheduler's is learnt)
  size_t stack_size = 0;
};

// AddressSanitizer builds (-fsanitize=address) are supported: stack switches are announced to ASan, and device
// memory is heap memory, so kernels' out-of-bounds accesses of cudaMalloc buffers are reported.
#if defined(__SANITIZE_ADDRESS__)
#define QUARRY_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QUARRY_EMU_ASAN 1
#endif
#endif
#if defined(QUARRY_EMU_ASAN)
extern "C" void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, size_t* size_old);
Context* g_switch_from = nullptr;
// In the context just resumed: completes the switch and learns the stack of the context that switched.
void AsanFinishSwitch(void* fake_stack) {
  const void* bottom = nullptr;
  size_t size = 0;
  __sanitizer_finish_switch_fiber(fake_stack, &bottom, &size);
  if (g_switch_from != nullptr && g_switch_from->stack_bottom == nullptr) {
    g_switch_from->stack_bottom = bottom;
    g_switch_from->stack_size = size;
  }
}
#endif

bool UseFastSwitch() {
#if defined(QUARRY_EMU_HAVE_FAST_SWITCH)
  static const bool fast = [] {
    const char* v = std::getenv("QUARRY_EMU_SWAPCONTEXT");
    return v == nullptr || *v == '\0' || std::strcmp(v, "0") == 0;
  }();
  return fast;
#else
  return false;
#endif
}

// Saves the running context into `from` and resumes `to`; returns when `from` is resumed.
void Transfer(Context* from, Context* to) {
#if defined(QUARRY_EMU_ASAN)
  void* fake_stack = nullptr;
  g_switch_from = from;
  __sanitizer_start_switch_fiber(&fake_stack, to->stack_bottom, to->stack_size);
#endif
#if defined(QUARRY_EMU_HAVE_FAST_SWITCH)
  if (UseFastSwitch()) {
    from->fast = true;
    if (to->fast) {
      quarry_emu_switch(&from->sp, to->sp);
    } else {
      quarry_emu_save_and_jump(&from->sp, &to->uc);
    }
  } else
#endif
  {
    from->fast = false;
    swapcontext(&from->uc, &to->uc);
  }
#if defined(QUARRY_EMU_ASAN)
  AsanFinishSwitch(fake_stack);
#endif
}

// Resumes `to`, abandoning the running context (a fiber that has returned).
[[noreturn]] void Jump(Context* to) {
#if defined(QUARRY_EMU_ASAN)
  g_switch_from = nullptr;
  __sanitizer_start_switch_fiber(nullptr, to->stack_bottom, to->stack_size);
#endif
#if defined(QUARRY_EMU_HAVE_FAST_SWITCH)
  if (to->fast) quarry_emu_jump(to->sp);
#endif
  setcontext(&to->uc);
  std::abort();
}

enum class State : uint8_t { kReady, kRunning, kWarpWait, kBarrierWait, kDone };

struct Fiber {
  Context ctx;
  void* stack = nullptr;
  uint3 idx{0, 0, 0};
  unsigned tid = 0;
  State state = State::kReady;
  LaneSlot slot;
  const char* wait_name = nullptr;
  Loc wait_loc;
};

struct Group {
  unsigned mask = 0;
  unsigned arrived = 0;
  const char* name = nullptr;
  Completer fn = nullptr;
  Loc loc;
};

struct Warp {
  unsigned exited = 0;  // lanes that returned from the kernel, or do not exist (a partial last warp)
  Group groups[32];
  int ngroups = 0;
};

struct BlockState {
  unsigned nthreads = 0;
  unsigned done = 0;
  unsigned bar_arrived = 0;
  int bar_acc = 0;
  int bar_kind = 0;
  const char* bar_name = nullptr;
  Loc bar_loc;
  std::vector<Warp> warps;
  std::vector<int> queue;  // ring buffer of ready fibers
  size_t q_head = 0, q_size = 0;
  std::mt19937_64 rng;
};

// ---- Global emulator state (one launch at a time, on one OS thread) ----

Fiber* g_fibers = nullptr;  // [kMaxThreads]
Fiber* g_cur = nullptr;
BlockState g_block;
Context g_sched_ctx;
const std::function<void()>* g_body = nullptr;
const LaunchSpec* g_launch = nullptr;
bool g_in_kernel = false;
std::thread::id g_launch_thread;

// Shared memory: [dynamic | static], 0xFF-filled before every block.
unsigned char* g_smem_arena = nullptr;  // kMaxSmemOptin + slack, 1024-byte aligned
size_t g_smem_dirty = 0;                // bytes written by earlier blocks (to refill)
size_t g_dynamic_bytes = 0;
size_t g_dynamic_limit = 0;             // the kernel's dynamic-smem allowance
size_t g_static_offset = 0;             // where the static arena starts
size_t g_static_used = 0;

std::mutex g_attr_mu;
std::map<const void*, int> g_max_dynamic_smem;  // cudaFuncAttributeMaxDynamicSharedMemorySize per kernel

void InstallCrashHandlers();

std::string Where() {
  char buf[512];
  if (g_launch == nullptr) return "  (host code, no kernel running)\n";
  const LaunchSpec& s = *g_launch;
  int n = std::snprintf(buf, sizeof buf,
                        "  kernel %s launched at %s:%u, grid (%u,%u,%u), block (%u,%u,%u), dynamic smem %zu\n", s.name,
                        s.loc.file_name(), static_cast<unsigned>(s.loc.line()), s.grid.x, s.grid.y, s.grid.z,
                        s.block.x, s.block.y, s.block.z, s.smem);
  if (g_cur != nullptr && n > 0 && static_cast<size_t>(n) < sizeof buf) {
    std::snprintf(buf + n, sizeof buf - static_cast<size_t>(n),
                  "  in block (%u,%u,%u), thread (%u,%u,%u) = linear %u (warp %u, lane %u)\n", blockIdx.x, blockIdx.y,
                  blockIdx.z, g_cur->idx.x, g_cur->idx.y, g_cur->idx.z, g_cur->tid, g_cur->tid >> 5, g_cur->tid & 31);
  }
  return buf;
}

std::string Describe(const Loc& loc) {
  return std::string(loc.file_name()) + ":" + std::to_string(loc.line()) + ":" + std::to_string(loc.column());
}

bool SameLoc(const Loc& a, const Loc& b) {
  return a.line() == b.line() && a.column() == b.column() &&
         (a.file_name() == b.file_name() || std::strcmp(a.file_name(), b.file_name()) == 0);
}

// ---- Run queue ----

void Push(int f) {
  BlockState& b = g_block;
  b.queue[(b.q_head + b.q_size) % b.queue.size()] = f;
  ++b.q_size;
  g_fibers[f].state = State::kReady;
}

int Pop() {
  BlockState& b = g_block;
  if (b.q_size == 0) return -1;
  const int f = b.queue[b.q_head];
  b.q_head = (b.q_head + 1) % b.queue.size();
  --b.q_size;
  return f;
}

// Pushes the fibers ids[0, n) in the configured order.
void PushAll(int* ids, size_t n) {
  switch (GetSettings().order) {
    case Order::kForward:
      break;
    case Order::kReverse:
      std::reverse(ids, ids + n);
      break;
    case Order::kRandom:
      std::shuffle(ids, ids + n, g_block.rng);
      break;
  }
  for (size_t i = 0; i < n; ++i) Push(ids[i]);
}

void SetCurrent(int f) {
  g_cur = &g_fibers[f];
  g_cur->state = State::kRunning;
  g_tid = g_cur->tid;
  threadIdx = g_cur->idx;
}

// The current fiber blocks: run the next ready fiber, or return to the scheduler when there is none.
void SwitchAway() {
  Fiber* self = g_cur;
  const int next = Pop();
  if (next >= 0) {
    SetCurrent(next);
    Transfer(&self->ctx, &g_fibers[next].ctx);
  } else {
    Transfer(&self->ctx, &g_sched_ctx);
  }
  // Resumed: whoever switched here has made this fiber current.
}

std::string LaneList(unsigned mask) {
  std::string s;
  for (int l = 0; l < 32; ++l) {
    if ((mask >> l & 1u) == 0) continue;
    int e = l;
    while (e + 1 < 32 && (mask >> (e + 1) & 1u)) ++e;
    if (!s.empty()) s += ",";
    s += e == l ? std::to_string(l) : std::to_string(l) + "-" + std::to_string(e);
    l = e;
  }
  return s.empty() ? "none" : s;
}

// What lane `l` of warp `w` is doing (for deadlock reports).
std::string LaneActivity(unsigned w, int l) {
  const unsigned t = w * 32 + static_cast<unsigned>(l);
  if (t >= g_block.nthreads) return "does not exist (block size not a multiple of 32)";
  const Fiber& f = g_fibers[t];
  switch (f.state) {
    case State::kDone:
      return "has exited";
    case State::kBarrierWait:
      return std::string("waits at ") + f.wait_name + " (" + Describe(f.wait_loc) + ")";
    case State::kWarpWait:
      return std::string("waits at ") + f.wait_name + " (" + Describe(f.wait_loc) + ")";
    default:
      return "is runnable";
  }
}

[[noreturn]] __attribute__((noinline, cold)) void Deadlock() {
  BlockState& b = g_block;
  for (unsigned w = 0; w < b.warps.size(); ++w) {
    const Warp& wp = b.warps[w];
    for (int g = 0; g < wp.ngroups; ++g) {
      const Group& gr = wp.groups[g];
      std::string detail;
      for (int l = 0; l < 32; ++l) {
        if ((gr.mask >> l & 1u) && !(gr.arrived >> l & 1u)) {
          detail += "\n    lane " + std::to_string(l) + " " + LaneActivity(w, l);
        }
      }
      g_cur = nullptr;
      Fail("%s at %s (mask 0x%08x) in warp %u was reached by lanes {%s} only; the other lanes of the mask never "
           "arrive:%s",
           gr.name, Describe(gr.loc).c_str(), gr.mask, w, LaneList(gr.arrived).c_str(), detail.c_str());
    }
  }
  if (b.bar_arrived > 0) {
    std::string exited;
    int shown = 0;
    for (unsigned t = 0; t < b.nthreads && shown < 8; ++t) {
      if (g_fibers[t].state == State::kDone) {
        if (shown > 0) exited += ",";
        exited += std::to_string(t);
        ++shown;
      }
    }
    g_cur = nullptr;
    Fail("%s at %s was reached by %u of the block's %u threads; %u threads exited without reaching it "
         "(threads %s%s)",
         b.bar_name, Describe(b.bar_loc).c_str(), b.bar_arrived, b.nthreads, b.done, exited.c_str(),
         b.done > 8 ? ",..." : "");
  }
  g_cur = nullptr;
  Fail("internal scheduler error: no runnable thread, nothing pending");
}

void FiberMain() {
#if defined(QUARRY_EMU_ASAN)
  AsanFinishSwitch(nullptr);
#endif
  (*g_body)();
  Fiber* self = g_cur;
  self->state = State::kDone;
  ++g_block.done;
  Warp& w = g_block.warps[self->tid >> 5];
  const unsigned bit = 1u << (self->tid & 31);
  w.exited |= bit;
  for (int g = 0; g < w.ngroups; ++g) {
    const Group& gr = w.groups[g];
    if (gr.mask & bit) {
      Fail("%s at %s (mask 0x%08x) in warp %u was reached by lanes {%s} only; lane %u exited without reaching it",
           gr.name, Describe(gr.loc).c_str(), gr.mask, self->tid >> 5, LaneList(gr.arrived).c_str(), self->tid & 31);
    }
  }
  const int next = Pop();
  if (next >= 0) {
    SetCurrent(next);
    Jump(&g_fibers[next].ctx);
  }
  Jump(&g_sched_ctx);
}

void* AllocStack() {
  void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                 -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "EMU: cannot map a fiber stack: %s\n", std::strerror(errno));
    std::abort();
  }
  mprotect(p, static_cast<size_t>(sysconf(_SC_PAGESIZE)), PROT_NONE);  // guard page: overflow faults
  return p;
}

// getcontext returns twice in general (setjmp-like); kept out of line so that no caller's locals are at risk.
// Each fiber's context is taken once; makecontext re-targets it for every block.
__attribute__((noinline)) void InitContext(ucontext_t* ctx) { getcontext(ctx); }

void InitOnce() {
  if (g_fibers != nullptr) return;
  g_fibers = new Fiber[kMaxThreads];
  const size_t arena = kMaxSmemOptin + kStaticSmemLimit + 4 * kDynamicAlign + 2 * kSmemGuard;
  g_smem_arena = static_cast<unsigned char*>(std::aligned_alloc(kDynamicAlign, arena));
  std::memset(g_smem_arena, kSmemFill, arena);
  InstallCrashHandlers();
}

void RunBlock(unsigned nthreads) {
  BlockState& b = g_block;
  b.nthreads = nthreads;
  b.done = 0;
  b.bar_arrived = 0;
  b.warps.assign((nthreads + 31) / 32, Warp{});
  for (unsigned w = 0; w < b.warps.size(); ++w) {
    const unsigned lanes = std::min(32u, nthreads - w * 32);
    b.warps[w].exited = lanes == 32 ? 0u : ~((1u << lanes) - 1u);  // missing lanes count as exited
  }
  b.queue.assign(nthreads, -1);
  b.q_head = b.q_size = 0;

  // Shared memory: refill what earlier blocks may have written.
  if (g_smem_dirty > 0) std::memset(g_smem_arena, kSmemFill, g_smem_dirty);
  g_smem_dirty = 0;
  g_static_offset = (g_dynamic_bytes + kSmemGuard + kDynamicAlign - 1) / kDynamicAlign * kDynamicAlign;
  g_static_smem = g_smem_arena + g_static_offset;
  g_static_used = 0;
  ++g_block_serial;

  const unsigned bx = blockDim.x, by = blockDim.y;
  std::vector<int> ids(nthreads);
  for (unsigned t = 0; t < nthreads; ++t) {
    Fiber& f = g_fibers[t];
    if (f.stack == nullptr) {
      f.stack = AllocStack();
      InitContext(&f.ctx.uc);
      const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
      f.ctx.stack_bottom = static_cast<char*>(f.stack) + page;
      f.ctx.stack_size = kStackBytes - page;
    }
    f.ctx.uc.uc_stack.ss_sp = f.stack;
    f.ctx.uc.uc_stack.ss_size = kStackBytes;
    f.ctx.uc.uc_link = nullptr;
    makecontext(&f.ctx.uc, FiberMain, 0);
    f.ctx.fast = false;
    f.tid = t;
    f.idx = uint3{t % bx, (t / bx) % by, t / (bx * by)};
    f.state = State::kReady;
    ids[t] = static_cast<int>(t);
  }
  PushAll(ids.data(), ids.size());
  for (;;) {
    const int next = Pop();
    if (next < 0) {
      if (b.done == nthreads) break;
      Deadlock();
    }
    SetCurrent(next);
    Transfer(&g_sched_ctx, &g_fibers[next].ctx);
  }
  g_cur = nullptr;
  // Bytes no variable owns (between the dynamic and the static arena, and past the static variables) must still
  // hold the fill pattern: anything else is an out-of-bounds shared-memory write.
  const size_t static_end = g_static_offset + g_static_used;
  for (size_t i = g_dynamic_bytes; i < static_end + kSmemGuard; ++i) {
    if (i == g_static_offset) i = static_end;
    if (i >= static_end + kSmemGuard) break;
    if (g_smem_arena[i] != kSmemFill) {
      Fail("shared memory written out of bounds: byte %zu past the %s (dynamic %zu bytes, static %zu bytes)",
           i < g_static_offset ? i - g_dynamic_bytes : i - static_end,
           i < g_static_offset ? "dynamic shared memory" : "static __shared__ variables", g_dynamic_bytes,
           g_static_used);
    }
  }
  g_smem_dirty = static_end + kSmemGuard;
}

void CheckDims(const LaunchSpec& s) {
  const dim3& g = s.grid;
  const dim3& k = s.block;
  if (k.x == 0 || k.y == 0 || k.z == 0 || g.x == 0 || g.y == 0 || g.z == 0) {
    Fail("launch with a zero dimension: grid (%u,%u,%u), block (%u,%u,%u) (cudaErrorInvalidConfiguration)", g.x, g.y,
         g.z, k.x, k.y, k.z);
  }
  if (k.x > 1024 || k.y > 1024 || k.z > 64 || static_cast<unsigned long long>(k.x) * k.y * k.z > kMaxThreads) {
    Fail("block (%u,%u,%u) exceeds 1024 threads or the per-dimension limits (1024, 1024, 64)", k.x, k.y, k.z);
  }
  if (g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) {
    Fail("grid (%u,%u,%u) exceeds the limits (2^31-1, 65535, 65535)", g.x, g.y, g.z);
  }
  size_t allowed = kDefaultDynamicSmem;
  {
    std::lock_guard<std::mutex> lock(g_attr_mu);
    auto it = g_max_dynamic_smem.find(s.func);
    if (it != g_max_dynamic_smem.end()) allowed = static_cast<size_t>(it->second);
  }
  if (s.smem > allowed) {
    Fail("%zu bytes of dynamic shared memory, but the kernel allows %zu (raise it with cudaFuncSetAttribute("
         "cudaFuncAttributeMaxDynamicSharedMemorySize), at most %zu)",
         s.smem, allowed, kMaxSmemOptin);
  }
  g_dynamic_limit = allowed;
}

void RunGrid(const LaunchSpec& spec, const std::function<void()>& body) {
  InitOnce();
  if (g_launch != nullptr) {
    Fail("kernel %s launched from inside a running kernel (dynamic parallelism is not emulated)", spec.name);
  }
  if (g_launch_thread == std::thread::id()) g_launch_thread = std::this_thread::get_id();
  if (g_launch_thread != std::this_thread::get_id()) {
    std::fprintf(stderr, "EMU: kernels must be launched from one OS thread (the emulator is single-threaded)\n");
    std::abort();
  }
  g_launch = &spec;
  CheckDims(spec);
  g_body = &body;
  g_dynamic_bytes = spec.smem;
  gridDim = spec.grid;
  blockDim = spec.block;
  const unsigned nthreads = spec.block.x * spec.block.y * spec.block.z;
  const uint64_t nblocks = static_cast<uint64_t>(spec.grid.x) * spec.grid.y * spec.grid.z;
  const Order order = GetSettings().order;
  std::mt19937_64 rng(GetSettings().seed ^ (nblocks * 0x9E3779B97F4A7C15ull));
  g_block.rng.seed(rng());
  std::vector<uint64_t> perm;
  if (order == Order::kRandom) {
    perm.resize(nblocks);
    for (uint64_t i = 0; i < nblocks; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
  }
  g_in_kernel = true;
  for (uint64_t i = 0; i < nblocks; ++i) {
    const uint64_t b = order == Order::kForward ? i : order == Order::kReverse ? nblocks - 1 - i : perm[i];
    blockIdx.x = static_cast<unsigned>(b % spec.grid.x);
    blockIdx.y = static_cast<unsigned>((b / spec.grid.x) % spec.grid.y);
    blockIdx.z = static_cast<unsigned>(b / (static_cast<uint64_t>(spec.grid.x) * spec.grid.y));
    RunBlock(nthreads);
  }
  g_in_kernel = false;
  g_launch = nullptr;
  g_body = nullptr;
  threadIdx = uint3{0, 0, 0};
}

// ---- Crash reporting: a fault inside a kernel names the kernel, block and thread ----

void CrashHandler(int sig) {
  const char* what = sig == SIGSEGV ? "segmentation fault" : sig == SIGBUS ? "bus error"
                     : sig == SIGFPE ? "floating-point exception" : "illegal instruction";
  char buf[1024];
  const std::string where = g_launch != nullptr ? Where() : std::string("  (not inside an emulated kernel)\n");
  const int n = std::snprintf(buf, sizeof buf,
                              "EMU: %s (an out-of-bounds or misaligned access, or a fiber stack overflow)\n%s", what,
                              where.c_str());
  if (n > 0) {
    ssize_t ignored = write(STDERR_FILENO, buf, static_cast<size_t>(std::min(n, static_cast<int>(sizeof buf) - 1)));
    (void)ignored;
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

void InstallCrashHandlers() {
#if defined(QUARRY_EMU_ASAN)
  return;  // AddressSanitizer's own reports are better
#endif
  static std::vector<char> alt(1 << 16);
  stack_t ss{};
  ss.ss_sp = alt.data();
  ss.ss_size = alt.size();
  sigaltstack(&ss, nullptr);
  struct sigaction sa{};
  sa.sa_handler = CrashHandler;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) sigaction(sig, &sa, nullptr);
}

}  // namespace

unsigned g_tid = 0;
uint64_t g_block_serial = 0;
unsigned char* g_static_smem = nullptr;

void Fail(const char* fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "EMU FAILURE: %s\n%s", msg, Where().c_str());
  std::fflush(stderr);
  std::abort();
}

bool InKernel() { return g_in_kernel && g_cur != nullptr; }

uint64_t WarpOp(const char* name, Completer fn, unsigned mask, const LaneSlot& in, const Loc& loc) {
  if (!InKernel()) Fail("%s called outside a kernel (%s)", name, Describe(loc).c_str());
  Fiber& self = *g_cur;
  const unsigned lane = self.tid & 31;
  const unsigned bit = 1u << lane;
  Warp& w = g_block.warps[self.tid >> 5];
  if ((mask & bit) == 0) Fail("%s at %s: the calling lane %u is not in the mask 0x%08x", name, Describe(loc).c_str(), lane, mask);
  if (mask & w.exited) {
    std::string detail;
    for (int l = 0; l < 32; ++l) {
      if ((mask & w.exited) >> l & 1u) detail += "\n    lane " + std::to_string(l) + " " + LaneActivity(self.tid >> 5, l);
    }
    Fail("%s at %s (mask 0x%08x): lanes {%s} of the mask have exited or do not exist, so the operation is reached "
         "by only part of the warp:%s",
         name, Describe(loc).c_str(), mask, LaneList(mask & w.exited).c_str(), detail.c_str());
  }
  int gi = -1;
  for (int g = 0; g < w.ngroups; ++g) {
    if (w.groups[g].mask & mask) {
      gi = g;
      break;
    }
  }
  if (gi >= 0) {
    Group& g = w.groups[gi];
    if (g.mask != mask || g.fn != fn || (g.name != name && std::strcmp(g.name, name) != 0) || !SameLoc(g.loc, loc)) {
      Fail("lanes of warp %u disagree: lanes {%s} wait at %s at %s with mask 0x%08x, lane %u reaches %s at %s with "
           "mask 0x%08x (divergent warp-wide operations)",
           self.tid >> 5, LaneList(g.arrived).c_str(), g.name, Describe(g.loc).c_str(), g.mask, lane, name,
           Describe(loc).c_str(), mask);
    }
  } else {
    gi = w.ngroups++;
    Group& g = w.groups[gi];
    g.mask = mask;
    g.arrived = 0;
    g.name = name;
    g.fn = fn;
    g.loc = loc;
  }
  Group& g = w.groups[gi];
  self.slot = in;
  g.arrived |= bit;
  if (g.arrived != g.mask) {
    self.state = State::kWarpWait;
    self.wait_name = name;
    self.wait_loc = loc;
    SwitchAway();
    return self.slot.out;
  }
  // Last lane: complete for everyone.
  LaneSlot* lanes[32];
  const unsigned base = self.tid & ~31u;
  for (int l = 0; l < 32; ++l) lanes[l] = (mask >> l & 1u) ? &g_fibers[base + static_cast<unsigned>(l)].slot : nullptr;
  fn(name, mask, lanes);
  int release[32];
  size_t n = 0;
  for (int l = 0; l < 32; ++l) {
    const unsigned t = base + static_cast<unsigned>(l);
    if ((mask >> l & 1u) && t != self.tid) release[n++] = static_cast<int>(t);
  }
  w.groups[gi] = w.groups[w.ngroups - 1];
  --w.ngroups;
  PushAll(release, n);
  return self.slot.out;
}

int BlockBarrier(const char* name, int kind, int pred, const Loc& loc) {
  if (!InKernel()) Fail("%s called outside a kernel (%s)", name, Describe(loc).c_str());
  BlockState& b = g_block;
  Fiber& self = *g_cur;
  if (b.bar_arrived == 0) {
    b.bar_name = name;
    b.bar_loc = loc;
    b.bar_kind = kind;
    b.bar_acc = kind == 2 ? 1 : 0;
  } else if (b.bar_kind != kind || (b.bar_name != name && std::strcmp(b.bar_name, name) != 0) ||
             !SameLoc(b.bar_loc, loc)) {
    Fail("threads of the block wait at different barriers: %u threads at %s (%s), this thread at %s (%s)",
         b.bar_arrived, b.bar_name, Describe(b.bar_loc).c_str(), name, Describe(loc).c_str());
  }
  switch (kind) {
    case 1:
      b.bar_acc += pred != 0;
      break;
    case 2:
      b.bar_acc = b.bar_acc && pred != 0;
      break;
    case 3:
      b.bar_acc = b.bar_acc || pred != 0;
      break;
    default:
      break;
  }
  ++b.bar_arrived;
  if (b.bar_arrived < b.nthreads) {
    self.state = State::kBarrierWait;
    self.wait_name = name;
    self.wait_loc = loc;
    SwitchAway();
    return static_cast<int>(self.slot.out);
  }
  const int result = b.bar_acc;
  int release[kMaxThreads];
  size_t n = 0;
  for (unsigned t = 0; t < b.nthreads; ++t) {
    g_fibers[t].slot.out = static_cast<uint64_t>(result);
    if (t != self.tid) release[n++] = static_cast<int>(t);
  }
  b.bar_arrived = 0;
  PushAll(release, n);
  return result;
}

// ---- Completers of the warp intrinsics ----

void CompleteNothing(const char*, unsigned, LaneSlot* const*) {}

void CompleteShuffle(const char* name, unsigned mask, LaneSlot* const* lanes) {
  for (int l = 0; l < 32; ++l) {
    if (lanes[l] == nullptr) continue;
    const int64_t src = lanes[l]->aux;
    if (src < 0 || src >= 32 || lanes[src] == nullptr) {
      Fail("%s: lane %d reads lane %lld, which is not in the mask 0x%08x (undefined on the GPU)", name, l,
           static_cast<long long>(src), mask);
    }
  }
  uint64_t values[32];
  for (int l = 0; l < 32; ++l) values[l] = lanes[l] != nullptr ? lanes[l]->value : 0;
  for (int l = 0; l < 32; ++l) {
    if (lanes[l] != nullptr) lanes[l]->out = values[lanes[l]->aux];
  }
}

namespace {
template <typename F>
void ForAll(LaneSlot* const* lanes, F f) {
  for (int l = 0; l < 32; ++l) {
    if (lanes[l] != nullptr) f(l, *lanes[l]);
  }
}
void SetAll(LaneSlot* const* lanes, uint64_t v) {
  ForAll(lanes, [v](int, LaneSlot& s) { s.out = v; });
}
}  // namespace

void CompleteBallot(const char*, unsigned, LaneSlot* const* lanes) {
  uint64_t r = 0;
  ForAll(lanes, [&](int l, LaneSlot& s) { r |= s.value ? (uint64_t{1} << l) : 0; });
  SetAll(lanes, r);
}
void CompleteAny(const char*, unsigned, LaneSlot* const* lanes) {
  uint64_t r = 0;
  ForAll(lanes, [&](int, LaneSlot& s) { r |= s.value ? 1 : 0; });
  SetAll(lanes, r);
}
void CompleteAll(const char*, unsigned, LaneSlot* const* lanes) {
  uint64_t r = 1;
  ForAll(lanes, [&](int, LaneSlot& s) { r &= s.value ? 1 : 0; });
  SetAll(lanes, r);
}
void CompleteMatchAny(const char*, unsigned, LaneSlot* const* lanes) {
  ForAll(lanes, [&](int, LaneSlot& s) {
    uint64_t m = 0;
    ForAll(lanes, [&](int o, LaneSlot& t) { m |= t.value == s.value ? (uint64_t{1} << o) : 0; });
    s.out = m;
  });
}
void CompleteMatchAll(const char*, unsigned mask, LaneSlot* const* lanes) {
  bool same = true;
  const LaneSlot* first = nullptr;
  ForAll(lanes, [&](int, LaneSlot& s) {
    if (first == nullptr) first = &s;
    same = same && s.value == first->value;
  });
  SetAll(lanes, same ? mask : 0);
}
void CompleteReduceAdd(const char*, unsigned, LaneSlot* const* lanes) {
  uint32_t r = 0;
  ForAll(lanes, [&](int, LaneSlot& s) { r += static_cast<uint32_t>(s.value); });
  SetAll(lanes, r);
}
void CompleteReduceMin(const char*, unsigned, LaneSlot* const* lanes) {
  int64_t r = INT64_MAX;
  ForAll(lanes, [&](int, LaneSlot& s) { r = std::min(r, static_cast<int64_t>(s.value)); });
  SetAll(lanes, static_cast<uint64_t>(r));
}
void CompleteReduceMax(const char*, unsigned, LaneSlot* const* lanes) {
  int64_t r = INT64_MIN;
  ForAll(lanes, [&](int, LaneSlot& s) { r = std::max(r, static_cast<int64_t>(s.value)); });
  SetAll(lanes, static_cast<uint64_t>(r));
}
void CompleteReduceMinU(const char*, unsigned, LaneSlot* const* lanes) {
  uint64_t r = UINT64_MAX;
  ForAll(lanes, [&](int, LaneSlot& s) { r = std::min(r, s.value); });
  SetAll(lanes, r);
}
void CompleteReduceMaxU(const char*, unsigned, LaneSlot* const* lanes) {
  uint64_t r = 0;
  ForAll(lanes, [&](int, LaneSlot& s) { r = std::max(r, s.value); });
  SetAll(lanes, r);
}
void CompleteReduceAnd(const char*, unsigned, LaneSlot* const* lanes) {
  uint64_t r = ~uint64_t{0};
  ForAll(lanes, [&](int, LaneSlot& s) { r &= s.value; });
  SetAll(lanes, r);
}
void CompleteReduceOr(const char*, unsigned, LaneSlot* const* lanes) {
  uint64_t r = 0;
  ForAll(lanes, [&](int, LaneSlot& s) { r |= s.value; });
  SetAll(lanes, r);
}
void CompleteReduceXor(const char*, unsigned, LaneSlot* const* lanes) {
  uint64_t r = 0;
  ForAll(lanes, [&](int, LaneSlot& s) { r ^= s.value; });
  SetAll(lanes, r);
}

// ---- Shared memory ----

size_t SharedAllocate(size_t size, size_t align, const char* name) {
  if (!InKernel()) Fail("__shared__ variable %s used outside a kernel", name);
  const size_t offset = (g_static_used + align - 1) / align * align;
  const size_t end = offset + size;
  if (end > kStaticSmemLimit) {
    Fail("static __shared__ variables need %zu bytes (at %s); the limit is %zu", end, name, kStaticSmemLimit);
  }
  const size_t budget = g_dynamic_limit > kDefaultDynamicSmem ? kMaxSmemOptin : kDefaultDynamicSmem;
  if (end + g_dynamic_bytes > budget) {
    Fail("static (%zu bytes, at %s) plus dynamic (%zu bytes) shared memory exceed the kernel's %zu bytes", end, name,
         g_dynamic_bytes, budget);
  }
  g_static_used = end;
  return offset;
}

void* DynamicSharedBase(size_t align, const char* type) {
  if (!InKernel()) Fail("extern __shared__ %s[] used outside a kernel", type);
  if (align > kDynamicAlign) Fail("extern __shared__ %s[]: alignment %zu is not emulated", type, align);
  return g_smem_arena;
}

void CheckLaunchBounds(long long max_threads, long long, long long) {
  const unsigned long long n = static_cast<unsigned long long>(blockDim.x) * blockDim.y * blockDim.z;
  if (max_threads > 0 && n > static_cast<unsigned long long>(max_threads)) {
    Fail("the block has %llu threads but the kernel's __launch_bounds__ allow %lld (the launch fails on the GPU)", n,
         max_threads);
  }
}

// ---- Streams, graphs, events ----

}  // namespace emu

struct CUgraph_st {
  std::vector<std::function<void()>> nodes;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> nodes;
};
struct CUstream_st {
  bool capturing = false;
  bool invalidated = false;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::unique_ptr<CUgraph_st> graph;
};
struct CUevent_st {
  bool recorded = false;
  std::chrono::steady_clock::time_point when;
};

namespace emu {
namespace {

std::mutex g_api_mu;  // the host API may be called from several threads (kernels may not)
cudaError_t g_last_error = cudaSuccess;
std::set<CUstream_st*> g_streams;
std::set<CUevent_st*> g_events;
std::map<uintptr_t, size_t> g_allocs;  // device allocations: base -> bytes

cudaError_t SetError(cudaError_t e) {
  if (e != cudaSuccess) g_last_error = e;
  return e;
}

bool IsDefaultStream(cudaStream_t s) { return s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread; }

CUstream_st* CheckStream(cudaStream_t s, const char* what) {
  if (IsDefaultStream(s)) return nullptr;
  if (g_streams.count(s) == 0) {
    std::fprintf(stderr, "EMU FAILURE: %s: %p is not a live stream (destroyed, or never created)\n", what,
                 static_cast<void*>(s));
    std::abort();
  }
  return s;
}

// A capture in global mode is in progress on some stream.
CUstream_st* ActiveGlobalCapture() {
  for (CUstream_st* s : g_streams) {
    if (s->capturing && !s->invalidated && s->mode != cudaStreamCaptureModeRelaxed) return s;
  }
  return nullptr;
}

// An API call that is prohibited while a global-mode capture is active (it would synchronise or allocate).
cudaError_t ProhibitedDuringCapture(const char* what) {
  if (CUstream_st* s = ActiveGlobalCapture()) {
    s->invalidated = true;
    std::fprintf(stderr, "EMU: %s during a stream capture: cudaErrorStreamCaptureUnsupported, capture invalidated\n",
                 what);
    return SetError(cudaErrorStreamCaptureUnsupported);
  }
  return cudaSuccess;
}

// Where asynchronous work on `stream` goes: nullptr = run now; else the graph being captured. Sets *err when
// the work may not be issued (legacy stream during a capture, invalidated capture).
CUgraph_st* CaptureTarget(cudaStream_t stream, const char* what, cudaError_t* err) {
  *err = cudaSuccess;
  CUstream_st* s = CheckStream(stream, what);
  if (s == nullptr) {
    if (CUstream_st* c = ActiveGlobalCapture(); c != nullptr && stream != cudaStreamPerThread) {
      c->invalidated = true;
      std::fprintf(stderr, "EMU: %s on the legacy default stream during a stream capture: "
                   "cudaErrorStreamCaptureImplicit, capture invalidated\n", what);
      *err = SetError(cudaErrorStreamCaptureImplicit);
    }
    return nullptr;
  }
  if (!s->capturing) return nullptr;
  if (s->invalidated) {
    *err = SetError(cudaErrorStreamCaptureInvalidated);
    return nullptr;
  }
  return s->graph.get();
}

// [p, p + n) must lie inside one device allocation.
void CheckDeviceRange(const void* p, size_t n, const char* what) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocs.upper_bound(a);
  if (it != g_allocs.begin()) {
    --it;
    if (a >= it->first && a + n <= it->first + it->second) return;
    if (a >= it->first && a < it->first + it->second) {
      std::fprintf(stderr, "EMU FAILURE: %s: [%p, +%zu) runs %zu bytes past the end of its device allocation "
                   "(%p, %zu bytes)\n", what, p, n, a + n - it->first - it->second,
                   reinterpret_cast<void*>(it->first), it->second);
      std::abort();
    }
  }
  std::fprintf(stderr, "EMU FAILURE: %s: %p is not inside any cudaMalloc allocation\n", what, p);
  std::abort();
}

void CheckCopy(void* dst, const void* src, size_t n, cudaMemcpyKind kind, const char* what) {
  if (n == 0) return;
  if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice) CheckDeviceRange(dst, n, what);
  if (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice) CheckDeviceRange(src, n, what);
  if (kind > cudaMemcpyDefault) {
    std::fprintf(stderr, "EMU FAILURE: %s: invalid cudaMemcpyKind %d\n", what, static_cast<int>(kind));
    std::abort();
  }
}

}  // namespace

void Submit(const LaunchSpec& spec, std::function<void()> body) {
  cudaError_t err;
  CUgraph_st* graph;
  {
    std::lock_guard<std::mutex> lock(g_api_mu);
    graph = CaptureTarget(spec.stream, spec.name, &err);
  }
  if (err != cudaSuccess) return;
  if (graph != nullptr) {
    LaunchSpec copy = spec;
    graph->nodes.push_back([copy, body = std::move(body)] { RunGrid(copy, body); });
    return;
  }
  RunGrid(spec, body);
}

}  // namespace emu

long long clock64() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---- The runtime API ----

using emu::g_api_mu;

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureUnmatched: return "cudaErrorStreamCaptureUnmatched";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
    case cudaErrorUnknown: return "cudaErrorUnknown";
  }
  return "cudaError(unknown code)";
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    default: return cudaGetErrorName(e);
  }
}

cudaError_t cudaGetLastError() {
  std::lock_guard<std::mutex> lock(g_api_mu);
  const cudaError_t e = emu::g_last_error;
  emu::g_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() {
  std::lock_guard<std::mutex> lock(g_api_mu);
  return emu::g_last_error;
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return emu::SetError(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return emu::SetError(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : emu::SetError(cudaErrorInvalidDevice); }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return emu::SetError(cudaErrorInvalidValue);
  if (device != 0) return emu::SetError(cudaErrorInvalidDevice);
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "Quarry CUDA emulator (sm_90-like)");
  prop->totalGlobalMem = size_t{80} << 30;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->sharedMemPerBlockOptin = 227 * 1024;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024, prop->maxThreadsDim[1] = 1024, prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff, prop->maxGridSize[1] = 65535, prop->maxGridSize[2] = 65535;
  prop->multiProcessorCount = 132;
  prop->major = 9;
  prop->minor = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (value == nullptr) return emu::SetError(cudaErrorInvalidValue);
  if (device != 0) return emu::SetError(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = 132; break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 227 * 1024; break;
    default: return emu::SetError(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  std::lock_guard<std::mutex> lock(g_api_mu);
  return emu::ProhibitedDuringCapture("cudaDeviceSynchronize");
}

cudaError_t cudaMalloc(void** ptr, size_t size) {
  if (ptr == nullptr) return emu::SetError(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(g_api_mu);
  if (cudaError_t e = emu::ProhibitedDuringCapture("cudaMalloc"); e != cudaSuccess) return e;
  if (size == 0) {
    *ptr = nullptr;
    return cudaSuccess;
  }
  void* p = nullptr;  // cudaMalloc returns 256-byte aligned memory; exactly `size` bytes (ASan sees overruns)
  if (posix_memalign(&p, 256, size) != 0 || p == nullptr) return emu::SetError(cudaErrorMemoryAllocation);
  std::memset(p, 0xFF, size);  // never-written device memory reads as NaN / -1
  emu::g_allocs[reinterpret_cast<uintptr_t>(p)] = size;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  std::lock_guard<std::mutex> lock(g_api_mu);
  if (cudaError_t e = emu::ProhibitedDuringCapture("cudaFree"); e != cudaSuccess) return e;
  auto it = emu::g_allocs.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == emu::g_allocs.end()) {
    std::fprintf(stderr, "EMU FAILURE: cudaFree(%p): not a pointer returned by cudaMalloc (or already freed)\n", ptr);
    std::abort();
  }
  emu::g_allocs.erase(it);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t size) {
  if (ptr == nullptr) return emu::SetError(cudaErrorInvalidValue);
  *ptr = std::malloc(size == 0 ? 1 : size);
  return *ptr != nullptr ? cudaSuccess : emu::SetError(cudaErrorMemoryAllocation);
}

cudaError_t cudaFreeHost(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  std::lock_guard<std::mutex> lock(g_api_mu);
  if (cudaError_t e = emu::ProhibitedDuringCapture("cudaMemcpy"); e != cudaSuccess) return e;
  emu::CheckCopy(dst, src, count, kind, "cudaMemcpy");
  if (count > 0) std::memmove(dst, src, count);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_api_mu);
  emu::CheckCopy(dst, src, count, kind, "cudaMemcpyAsync");
  cudaError_t err;
  CUgraph_st* graph = emu::CaptureTarget(stream, "cudaMemcpyAsync", &err);
  if (err != cudaSuccess) return err;
  if (count == 0) return cudaSuccess;
  if (graph != nullptr) {
    graph->nodes.push_back([dst, src, count] { std::memmove(dst, src, count); });
  } else {
    std::memmove(dst, src, count);
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_api_mu);
  if (height == 0 || width == 0) return cudaSuccess;
  if (width > dpitch || width > spitch) return cudaErrorInvalidValue;
  // The whole strided spans must lie in device memory on the device side(s).
  if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice) {
    emu::CheckDeviceRange(dst, dpitch * (height - 1) + width, "cudaMemcpy2DAsync");
  }
  if (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice) {
    emu::CheckDeviceRange(src, spitch * (height - 1) + width, "cudaMemcpy2DAsync");
  }
  cudaError_t err;
  CUgraph_st* graph = emu::CaptureTarget(stream, "cudaMemcpy2DAsync", &err);
  if (err != cudaSuccess) return err;
  auto copy = [dst, dpitch, src, spitch, width, height] {
    for (size_t r = 0; r < height; ++r) {
      std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
    }
  };
  if (graph != nullptr) {
    graph->nodes.push_back(copy);
  } else {
    copy();
  }
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  if (free == nullptr || total == nullptr) return cudaErrorInvalidValue;
  *total = size_t{80} << 30;
  *free = *total;
  return cudaSuccess;
}

cudaError_t cudaMemset(void* ptr, int value, size_t count) {
  std::lock_guard<std::mutex> lock(g_api_mu);
  if (cudaError_t e = emu::ProhibitedDuringCapture("cudaMemset"); e != cudaSuccess) return e;
  if (count == 0) return cudaSuccess;
  emu::CheckDeviceRange(ptr, count, "cudaMemset");
  std::memset(ptr, value, count);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_api_mu);
  if (count > 0) emu::CheckDeviceRange(ptr, count, "cudaMemsetAsync");
  cudaError_t err;
  CUgraph_st* graph = emu::CaptureTarget(stream, "cudaMemsetAsync", &err);
  if (err != cudaSuccess) return err;
  if (count == 0) return cudaSuccess;
  if (graph != nullptr) {
    graph->nodes.push_back([ptr, value, count] { std::memset(ptr, value, count); });
  } else {
    std::memset(ptr, value, count);
  }
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
  if (stream == nullptr) return emu::SetError(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(g_api_mu);
  *stream = new CUstream_st;
  emu::g_streams.insert(*stream);
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_api_mu);
  CUstream_st* s = emu::CheckStream(stream, "cudaStreamDestroy");
  if (s == nullptr) return emu::SetError(cudaErrorInvalidResourceHandle);
  emu::g_streams.erase(s);
  delete s;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_api_mu);
  CUstream_st* s = emu::CheckStream(stream, "cudaStreamSynchronize");
  if (s != nullptr && s->capturing) {
    s->invalidated = true;
    return emu::SetError(cudaErrorStreamCaptureUnsupported);
  }
  if (s == nullptr) return emu::ProhibitedDuringCapture("cudaStreamSynchronize(legacy stream)");
  return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_api_mu);
  CUstream_st* s = emu::CheckStream(stream, "cudaStreamQuery");
  if (s != nullptr && s->capturing) {
    s->invalidated = true;
    return emu::SetError(cudaErrorStreamCaptureUnsupported);
  }
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
  std::lock_guard<std::mutex> lock(g_api_mu);
  emu::CheckStream(stream, "cudaStreamWaitEvent");
  if (emu::g_events.count(event) == 0) return emu::SetError(cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  std::lock_guard<std::mutex> lock(g_api_mu);
  CUstream_st* s = emu::CheckStream(stream, "cudaStreamBeginCapture");
  if (s == nullptr) return emu::SetError(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot capture
  if (s->capturing) return emu::SetError(cudaErrorIllegalState);
  s->capturing = true;
  s->invalidated = false;
  s->mode = mode;
  s->graph = std::make_unique<CUgraph_st>();
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (graph == nullptr) return emu::SetError(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(g_api_mu);
  CUstream_st* s = emu::CheckStream(stream, "cudaStreamEndCapture");
  if (s == nullptr || !s->capturing) return emu::SetError(cudaErrorIllegalState);
  s->capturing = false;
  if (s->invalidated) {
    s->graph.reset();
    *graph = nullptr;
    return emu::SetError(cudaErrorStreamCaptureInvalidated);
  }
  *graph = s->graph.release();
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (status == nullptr) return emu::SetError(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(g_api_mu);
  CUstream_st* s = emu::CheckStream(stream, "cudaStreamIsCapturing");
  if (s == nullptr) {
    *status = emu::ActiveGlobalCapture() != nullptr ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusNone;
  } else {
    *status = !s->capturing ? cudaStreamCaptureStatusNone
              : s->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  }
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (exec == nullptr || graph == nullptr) return emu::SetError(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->nodes};
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags) {
  return cudaGraphInstantiate(exec, graph, flags);
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr) return emu::SetError(cudaErrorInvalidValue);
  CUgraph_st* target;
  cudaError_t err;
  {
    std::lock_guard<std::mutex> lock(g_api_mu);
    target = emu::CaptureTarget(stream, "cudaGraphLaunch", &err);
  }
  if (err != cudaSuccess) return err;
  if (target != nullptr) {
    std::vector<std::function<void()>> nodes = exec->nodes;
    target->nodes.push_back([nodes] {
      for (const auto& n : nodes) n();
    });
    return cudaSuccess;
  }
  for (const auto& n : exec->nodes) n();
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, size_t* numNodes) {
  if (graph == nullptr || numNodes == nullptr) return emu::SetError(cudaErrorInvalidValue);
  if (nodes != nullptr) {
    std::fprintf(stderr, "EMU: cudaGraphGetNodes returns the node count only (pass nodes == nullptr)\n");
    return emu::SetError(cudaErrorNotSupported);
  }
  *numNodes = graph->nodes.size();
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) {
  if (event == nullptr) return emu::SetError(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(g_api_mu);
  *event = new CUevent_st;
  emu::g_events.insert(*event);
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(g_api_mu);
  if (emu::g_events.erase(event) == 0) return emu::SetError(cudaErrorInvalidResourceHandle);
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_api_mu);
  if (emu::g_events.count(event) == 0) return emu::SetError(cudaErrorInvalidResourceHandle);
  cudaError_t err;
  CUgraph_st* graph = emu::CaptureTarget(stream, "cudaEventRecord", &err);
  if (err != cudaSuccess) return err;
  if (graph != nullptr) {
    graph->nodes.push_back([event] {
      event->recorded = true;
      event->when = std::chrono::steady_clock::now();
    });
  } else {
    event->recorded = true;
    event->when = std::chrono::steady_clock::now();
  }
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(g_api_mu);
  if (emu::g_events.count(event) == 0) return emu::SetError(cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr) return emu::SetError(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(g_api_mu);
  if (emu::g_events.count(start) == 0 || emu::g_events.count(end) == 0) {
    return emu::SetError(cudaErrorInvalidResourceHandle);
  }
  if (!start->recorded || !end->recorded) return emu::SetError(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (func == nullptr) return emu::SetError(cudaErrorInvalidValue);
  switch (attr) {
    case cudaFuncAttributeMaxDynamicSharedMemorySize:
      if (value < 0 || static_cast<size_t>(value) > emu::kMaxSmemOptin) return emu::SetError(cudaErrorInvalidValue);
      {
        std::lock_guard<std::mutex> lock(emu::g_attr_mu);
        emu::g_max_dynamic_smem[func] = value;
      }
      return cudaSuccess;
    case cudaFuncAttributePreferredSharedMemoryCarveout:
      return value >= -1 && value <= 100 ? cudaSuccess : emu::SetError(cudaErrorInvalidValue);
  }
  return emu::SetError(cudaErrorInvalidValue);
}
