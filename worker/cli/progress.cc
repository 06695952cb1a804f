// ProgressBar: "label [#####     ]  42%  1.2/2.9 GB  350 MB/s" redrawn in place on a terminal.
#include "worker/cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace quarry::cli {

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), tty_(isatty(STDERR_FILENO) == 1), start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Update(uint64_t done, uint64_t total) {
  if (!tty_ || finished_ || total == 0) return;
  auto now = std::chrono::steady_clock::now();
  if (done < total && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double frac = static_cast<double>(done) / static_cast<double>(total);
  const double secs = std::chrono::duration<double>(now - start_).count();
  const int width = 30, filled = static_cast<int>(frac * width);
  std::string bar(filled, '#');
  bar.resize(width, ' ');
  std::fprintf(stderr, "\r%s [%s] %3d%%  %.2f/%.2f GB  %.0f MB/s   ", label_.c_str(), bar.c_str(),
               static_cast<int>(frac * 100), done / 1e9, total / 1e9, secs > 0 ? done / 1e6 / secs : 0.0);
  std::fflush(stderr);
}

void ProgressBar::Finish() {
  if (tty_ && !finished_ && last_draw_.time_since_epoch().count() != 0) std::fprintf(stderr, "\n");
  finished_ = true;
}

}  // namespace quarry::cli
