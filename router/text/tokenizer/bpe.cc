// Byte-level BPE (see bpe.h). Merge semantics follow Hugging Face tokenizers: repeatedly apply the merge with
// the lowest rank, leftmost first on ties.
#include "router/text/tokenizer/bpe.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <queue>

#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "router/text/tokenizer/utf8.h"

namespace quarry {
namespace {

constexpr int32_t kMaxId = 1 << 24;  // ids above this are rejected (no real vocabulary is that large)
constexpr uint32_t kNoRank = UINT32_MAX;
constexpr size_t kSmallPiece = 96;   // longer pieces use the heap-based merge loop

struct UnicodeToByte {
  int16_t table[324];
  UnicodeToByte() {
    std::fill(std::begin(table), std::end(table), -1);
    for (int b = 0; b < 256; ++b) table[ByteToUnicode(static_cast<uint8_t>(b))] = static_cast<int16_t>(b);
  }
};

// Byte-level token string -> raw bytes. Strings with a character outside the 256-symbol alphabet (possible for
// added tokens listed in the vocab) decode to their own UTF-8 bytes, as the ByteLevel decoder does.
std::string TokenStringToBytes(const std::string& s) {
  static const UnicodeToByte map;
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const Utf8Step st = ScanUtf8(s, i);
    if (!st.valid || st.code_point >= 324 || map.table[st.code_point] < 0) return s;
    out.push_back(static_cast<char>(map.table[st.code_point]));
    i += st.length;
  }
  return out;
}

// Per-thread direct-mapped cache of piece -> ids for short pieces (no allocation on a hit or a fill).
struct CacheEntry {
  uint64_t hash = 0;
  uint8_t key_len = 0;
  uint8_t num_ids = 0;
  char key[22];
  int32_t ids[8];
};
constexpr size_t kCacheEntries = 8192;
struct PieceCache {
  uint64_t owner = 0;
  CacheEntry entries[kCacheEntries];
};

std::atomic<uint64_t> g_next_serial{1};

}  // namespace

uint32_t ByteToUnicode(uint8_t b) {
  if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) return b;
  // Bytes outside those ranges map to 256, 257, ... in byte order.
  int n = 0;
  for (int x = 0; x < b; ++x) {
    if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE))) ++n;
  }
  return 256 + n;
}

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(const TokenizerSpec& spec) {
  auto m = std::unique_ptr<BpeModel>(new BpeModel());
  m->serial_ = g_next_serial.fetch_add(1);
  m->ignore_merges_ = spec.ignore_merges;
  int32_t limit = 0;
  for (const auto& [tok, id] : spec.vocab) {
    if (id >= kMaxId) {
      return absl::InvalidArgumentError(absl::StrCat(spec.source, ": model.vocab: id ", id, " of token '", tok,
                                                     "' is above the supported maximum ", kMaxId - 1));
    }
    limit = std::max(limit, id + 1);
  }
  m->token_strings_.resize(limit);
  m->token_bytes_.resize(limit);
  m->present_.assign(limit, false);
  m->string_to_id_.reserve(spec.vocab.size());
  for (const auto& [tok, id] : spec.vocab) {
    if (m->present_[id]) {
      return absl::InvalidArgumentError(absl::StrCat(spec.source, ": model.vocab: id ", id, " is used by both '",
                                                     m->token_strings_[id], "' and '", tok, "'"));
    }
    m->present_[id] = true;
    m->token_strings_[id] = tok;
    m->token_bytes_[id] = TokenStringToBytes(tok);
    m->string_to_id_.emplace(tok, id);
    if (spec.ignore_merges) m->bytes_to_id_.emplace(m->token_bytes_[id], id);
  }
  for (int b = 0; b < 256; ++b) {
    std::string s;
    AppendCodePoint(ByteToUnicode(static_cast<uint8_t>(b)), &s);
    auto it = m->string_to_id_.find(s);
    if (it == m->string_to_id_.end()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: model.vocab lacks the byte-level token '%s' for byte 0x%02X (not a byte-level BPE vocabulary)",
          spec.source, s, b));
    }
    m->byte_ids_[b] = it->second;
  }
  m->merges_.reserve(spec.merges.size());
  for (size_t r = 0; r < spec.merges.size(); ++r) {
    const auto& [a, b] = spec.merges[r];
    auto ia = m->string_to_id_.find(a);
    auto ib = m->string_to_id_.find(b);
    auto im = m->string_to_id_.find(a + b);
    const char* missing = ia == m->string_to_id_.end()   ? "its first token"
                          : ib == m->string_to_id_.end() ? "its second token"
                          : im == m->string_to_id_.end() ? "the merged token"
                                                         : nullptr;
    if (missing != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(spec.source, ": model.merges[", r, "] '", a, " ", b,
                                                     "': ", missing, " is not in model.vocab"));
    }
    m->merges_[PairKey(ia->second, ib->second)] = Merge{static_cast<uint32_t>(r), im->second};
  }
  return m;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token_string) const {
  auto it = string_to_id_.find(std::string(token_string));
  if (it == string_to_id_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::EncodePiece(std::string_view piece, std::vector<int32_t>* out) const {
  if (piece.empty()) return;
  if (piece.size() == 1) {
    out->push_back(byte_ids_[static_cast<uint8_t>(piece[0])]);
    return;
  }
  if (ignore_merges_) {
    auto it = bytes_to_id_.find(std::string(piece));
    if (it != bytes_to_id_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  if (piece.size() > kSmallPiece) {
    MergeLarge(piece, out);
    return;
  }
  thread_local std::unique_ptr<PieceCache> cache;
  CacheEntry* entry = nullptr;
  uint64_t hash = 0;
  if (piece.size() <= sizeof(CacheEntry::key)) {
    if (cache == nullptr) cache = std::make_unique<PieceCache>();
    if (cache->owner != serial_) {
      for (CacheEntry& e : cache->entries) e.key_len = 0;
      cache->owner = serial_;
    }
    hash = absl::Hash<absl::string_view>{}(absl::string_view(piece.data(), piece.size()));
    entry = &cache->entries[hash % kCacheEntries];
    if (entry->key_len == piece.size() && entry->hash == hash &&
        std::memcmp(entry->key, piece.data(), piece.size()) == 0) {
      out->insert(out->end(), entry->ids, entry->ids + entry->num_ids);
      return;
    }
  }
  const size_t before = out->size();
  MergeSmall(piece, out);
  const size_t count = out->size() - before;
  if (entry != nullptr && count <= 8) {
    entry->hash = hash;
    entry->key_len = static_cast<uint8_t>(piece.size());
    entry->num_ids = static_cast<uint8_t>(count);
    std::memcpy(entry->key, piece.data(), piece.size());
    std::memcpy(entry->ids, out->data() + before, count * sizeof(int32_t));
  }
}

void BpeModel::MergeSmall(std::string_view piece, std::vector<int32_t>* out) const {
  int32_t ids[kSmallPiece];
  uint32_t ranks[kSmallPiece];
  int32_t merged[kSmallPiece];
  size_t n = piece.size();
  for (size_t i = 0; i < n; ++i) ids[i] = byte_ids_[static_cast<uint8_t>(piece[i])];
  auto pair = [&](size_t i) {
    const Merge* mg = FindMerge(ids[i], ids[i + 1]);
    ranks[i] = mg ? mg->rank : kNoRank;
    merged[i] = mg ? mg->merged : -1;
  };
  for (size_t i = 0; i + 1 < n; ++i) pair(i);
  while (n > 1) {
    size_t best = 0;
    uint32_t best_rank = ranks[0];
    for (size_t i = 1; i + 1 < n; ++i) {
      if (ranks[i] < best_rank) {
        best_rank = ranks[i];
        best = i;
      }
    }
    if (best_rank == kNoRank) break;
    ids[best] = merged[best];
    // Remove symbol best+1 and the pair that started there.
    std::memmove(ids + best + 1, ids + best + 2, (n - best - 2) * sizeof(int32_t));
    if (best + 3 < n) {  // pairs best+2 .. n-2 move down by one
      std::memmove(ranks + best + 1, ranks + best + 2, (n - best - 3) * sizeof(uint32_t));
      std::memmove(merged + best + 1, merged + best + 2, (n - best - 3) * sizeof(int32_t));
    }
    --n;
    if (best > 0) pair(best - 1);
    if (best + 1 < n) pair(best);
  }
  out->insert(out->end(), ids, ids + n);
}

void BpeModel::MergeLarge(std::string_view piece, std::vector<int32_t>* out) const {
  struct Sym {
    int32_t id;
    int32_t prev;
    int32_t next;
  };
  struct Cand {
    uint32_t rank;
    int32_t pos;
    int32_t left;
    int32_t right;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const int32_t n = static_cast<int32_t>(piece.size());
  std::vector<Sym> syms(n);
  for (int32_t i = 0; i < n; ++i) syms[i] = {byte_ids_[static_cast<uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int32_t i) {
    const int32_t j = syms[i].next;
    if (j < 0) return;
    if (const Merge* mg = FindMerge(syms[i].id, syms[j].id)) heap.push({mg->rank, i, syms[i].id, syms[j].id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& s = syms[c.pos];
    if (s.id != c.left || s.next < 0 || syms[s.next].id != c.right) continue;  // stale
    const int32_t j = s.next;
    s.id = FindMerge(c.left, c.right)->merged;
    s.next = syms[j].next;
    if (s.next >= 0) syms[s.next].prev = c.pos;
    syms[j].id = -1;  // dead
    if (s.prev >= 0) push(s.prev);
    push(c.pos);
  }
  for (int32_t i = 0; i >= 0 && i < n; i = syms[i].next) out->push_back(syms[i].id);
}

}  // namespace quarry
