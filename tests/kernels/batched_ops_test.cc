// CPU references of the batched / grouped contracts the GPU engine uses: batched Mamba decode, paged KV
// append + decode attention, MoE permute -> grouped GEMM -> combine, argmax. Each is checked against the
// single-sequence references or hand-computed values.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/attention.h"
#include "kernels/attention_decode.h"
#include "kernels/conv1d.h"
#include "kernels/mamba_decode.h"
#include "kernels/moe.h"
#include "kernels/moe_grouped.h"
#include "kernels/rms_norm.h"
#include "kernels/sampling.h"
#include "kernels/ssd_scan.h"
#include "tests/kernels/test_util.h"

namespace quarry {
namespace {

using testing::MaxAbsDiff;
using testing::OwnedMatrix;
using testing::RandomVector;

TEST(BatchedOps, ConvAndSsdUpdateBatchEqualPerSequenceScans) {
  // Three sequences of different histories; one batched step must equal each sequence's own scan.
  const int64_t n = 3, h = 4, p = 6, g = 2, ds = 5, c = h * p + 2 * g * ds, kc = 4;
  const std::vector<float> w = RandomVector(c * kc, 1), bias = RandomVector(c, 2);
  const std::vector<float> dt_bias = RandomVector(h, 3), a = RandomVector(h, 4, -2.0f, -0.1f), d = RandomVector(h, 5);
  std::vector<std::vector<float>> conv_st(n), ssd_st(n), conv_ref(n), ssd_ref(n);
  for (int64_t r = 0; r < n; ++r) {
    conv_st[r] = RandomVector(c * (kc - 1), 10 + r);
    ssd_st[r] = RandomVector(h * p * ds, 20 + r);
    conv_ref[r] = conv_st[r];
    ssd_ref[r] = ssd_st[r];
  }
  const int64_t ldx = c + 3, lddt = h + 1;
  const std::vector<float> x = RandomVector(n * ldx, 30), dt = RandomVector(n * lddt, 31);
  std::vector<float> y(n * c), y_ref(n * c), ys(n * h * p), ys_ref(n * h * p);
  std::vector<float*> conv_ptrs, ssd_ptrs;
  for (int64_t r = 0; r < n; ++r) conv_ptrs.push_back(conv_st[r].data()), ssd_ptrs.push_back(ssd_st[r].data());
  ConvUpdateBatchParams cb{x.data(), ldx, w.data(), bias.data(), conv_ptrs.data(), y.data(), c, n, c, kc, true};
  ASSERT_TRUE(ConvUpdateBatchCpu(cb).ok());
  SsdUpdateBatchParams sb;
  sb.x = y.data(), sb.ldx = c, sb.dt_raw = dt.data(), sb.lddt = lddt, sb.dt_bias = dt_bias.data(), sb.a = a.data();
  sb.b = y.data() + h * p, sb.ldb = c, sb.c = y.data() + h * p + g * ds, sb.ldc = c, sb.d = d.data();
  sb.states = ssd_ptrs.data(), sb.y = ys.data(), sb.ldy = h * p, sb.n = n, sb.h = h, sb.p = p, sb.groups = g;
  sb.d_state = ds;
  ASSERT_TRUE(SsdUpdateBatchCpu(sb).ok());
  for (int64_t r = 0; r < n; ++r) {
    CausalConv1dParams cp{x.data() + r * ldx, ldx, w.data(), bias.data(), conv_ref[r].data(), y_ref.data() + r * c, c,
                          1, c, kc, true};
    ASSERT_TRUE(CausalConv1dCpu(cp).ok());  // the sequence form with t == 1
    SsdParams sp;
    sp.x = y_ref.data() + r * c, sp.ldx = c, sp.dt_raw = dt.data() + r * lddt, sp.lddt = lddt;
    sp.dt_bias = dt_bias.data(), sp.a = a.data(), sp.b = sp.x + h * p, sp.ldb = c, sp.c = sp.x + h * p + g * ds;
    sp.ldc = c, sp.d = d.data(), sp.state = ssd_ref[r].data(), sp.y = ys_ref.data() + r * h * p, sp.ldy = h * p;
    sp.t = 1, sp.h = h, sp.p = p, sp.groups = g, sp.n = ds, sp.chunk_size = 8;
    ASSERT_TRUE(SsdChunkedScanCpu(sp).ok());
    EXPECT_LT(MaxAbsDiff(conv_st[r], conv_ref[r]), 1e-6);
    EXPECT_LT(MaxAbsDiff(ssd_st[r], ssd_ref[r]), 1e-5);
  }
  EXPECT_LT(MaxAbsDiff(y, y_ref), 1e-6);
  EXPECT_LT(MaxAbsDiff(ys, ys_ref), 1e-5);
  EXPECT_GT(MaxAbsDiff(ys, std::vector<float>(ys.size(), 0.0f)), 0.01);  // not trivially zero

  sb.states = nullptr;  // neither state kind: a clear error
  EXPECT_EQ(SsdUpdateBatchCpu(sb).code(), absl::StatusCode::kInvalidArgument);
}

TEST(BatchedOps, PagedAppendAndDecodeAttentionEqualContiguousAttention) {
  const int64_t n_q = 6, n_kv = 2, dh = 8, kv_dim = n_kv * dh, bs = 4, pages = 12;
  const std::vector<int64_t> lens = {1, 5, 9};  // three sequences, after appending their newest token
  std::vector<float> k_pool(pages * bs * kv_dim, NAN), v_pool(pages * bs * kv_dim, NAN);
  // Pages handed out in a scrambled order.
  std::vector<int32_t> page_order = {7, 2, 11, 0, 5, 9, 3};
  const int64_t max_blocks = 3;
  std::vector<int32_t> tables(3 * max_blocks, -1);
  int next = 0;
  for (int64_t s = 0; s < 3; ++s) {
    for (int64_t b = 0; b < (lens[s] + bs - 1) / bs; ++b) tables[s * max_blocks + b] = page_order[next++];
  }
  std::vector<std::vector<float>> ks(3), vs(3);
  for (int64_t s = 0; s < 3; ++s) {
    ks[s] = RandomVector(lens[s] * kv_dim, 40 + s);
    vs[s] = RandomVector(lens[s] * kv_dim, 50 + s);
    std::vector<int32_t> slots;
    for (int64_t j = 0; j < lens[s]; ++j) slots.push_back(tables[s * max_blocks + j / bs] * bs + j % bs);
    KvAppendParams kp{ks[s].data(), kv_dim, vs[s].data(), kv_dim, k_pool.data(), v_pool.data(), slots.data(),
                      lens[s], kv_dim, pages * bs};
    ASSERT_TRUE(KvAppendCpu(kp).ok());
  }
  const int64_t ldq = n_q * dh + 5;
  const std::vector<float> q = RandomVector(3 * ldq, 60);
  std::vector<float> out(3 * n_q * dh);
  std::vector<int32_t> kv_lens(lens.begin(), lens.end());
  AttentionDecodeParams ap{q.data(), ldq, k_pool.data(), v_pool.data(), tables.data(), max_blocks, kv_lens.data(), bs,
                           out.data(), n_q * dh, 3, n_q, n_kv, dh, 0.3f};
  ASSERT_TRUE(AttentionDecodeCpu(ap).ok());
  for (int64_t s = 0; s < 3; ++s) {
    std::vector<float> ref(n_q * dh);
    AttentionParams cp{q.data() + s * ldq, ldq, ks[s].data(), kv_dim, vs[s].data(), kv_dim, ref.data(), n_q * dh,
                       1, lens[s], lens[s] - 1, n_q, n_kv, dh, 0.3f};
    ASSERT_TRUE(AttentionCpu(cp).ok());
    EXPECT_LT(MaxAbsDiff(std::vector<float>(out.begin() + s * n_q * dh, out.begin() + (s + 1) * n_q * dh), ref), 1e-6);
  }
  // A slot outside the pool is refused before anything is written.
  const int32_t bad = static_cast<int32_t>(pages * bs);
  KvAppendParams kp{ks[0].data(), kv_dim, vs[0].data(), kv_dim, k_pool.data(), v_pool.data(), &bad, 1, kv_dim,
                    pages * bs};
  EXPECT_EQ(KvAppendCpu(kp).code(), absl::StatusCode::kInvalidArgument);
  kv_lens[1] = 13;  // beyond max_blocks * block_size
  EXPECT_EQ(AttentionDecodeCpu(ap).code(), absl::StatusCode::kInvalidArgument);
}

// bf16 pages: KvAppend stores FloatToBf16 of each value, and decode / prefill attention over them equal the f32
// kernels over the same (widened) values bit for bit; a call with both or neither cache pair is refused.
TEST(BatchedOps, Bf16KvPagesEqualF32KernelsOnWidenedValues) {
  const int64_t n_q = 4, n_kv = 2, dh = 8, kv_dim = n_kv * dh, bs = 4, pages = 5, len = 13;
  const std::vector<int32_t> table = {3, 0, 4, 1};
  std::vector<uint16_t> k16(pages * bs * kv_dim, 0), v16(pages * bs * kv_dim, 0);
  const std::vector<float> k = RandomVector(len * kv_dim, 70), v = RandomVector(len * kv_dim, 71);
  std::vector<int32_t> slots;
  for (int64_t j = 0; j < len; ++j) slots.push_back(table[j / bs] * bs + j % bs);
  KvAppendParams kp{k.data(), kv_dim, v.data(), kv_dim, nullptr, nullptr, slots.data(), len, kv_dim, pages * bs,
                    k16.data(), v16.data()};
  ASSERT_TRUE(KvAppendCpu(kp).ok());
  std::vector<float> kw(pages * bs * kv_dim), vw(pages * bs * kv_dim);  // widened copies
  for (int64_t j = 0; j < len; ++j) {
    for (int64_t e = 0; e < kv_dim; ++e) {
      ASSERT_EQ(k16[slots[j] * kv_dim + e], FloatToBf16(k[j * kv_dim + e]));
      ASSERT_EQ(v16[slots[j] * kv_dim + e], FloatToBf16(v[j * kv_dim + e]));
    }
  }
  for (size_t i = 0; i < kw.size(); ++i) kw[i] = Bf16ToFloat(k16[i]), vw[i] = Bf16ToFloat(v16[i]);
  const std::vector<float> q = RandomVector(3 * n_q * dh, 72);
  const int32_t kv_len = len;
  std::vector<float> out16(n_q * dh), out32(n_q * dh);
  AttentionDecodeParams dp{q.data(), n_q * dh, nullptr, nullptr, table.data(), 4, &kv_len, bs, out16.data(), n_q * dh,
                           1, n_q, n_kv, dh, 0.3f, k16.data(), v16.data()};
  ASSERT_TRUE(AttentionDecodeCpu(dp).ok());
  AttentionDecodeParams dp32 = dp;
  dp32.k_cache = kw.data(), dp32.v_cache = vw.data(), dp32.k_cache16 = nullptr, dp32.v_cache16 = nullptr;
  dp32.out = out32.data();
  ASSERT_TRUE(AttentionDecodeCpu(dp32).ok());
  EXPECT_EQ(out16, out32);
  EXPECT_GT(MaxAbsDiff(out16, std::vector<float>(out16.size(), 0.0f)), 0.01);
  // Prefill of the last 3 positions through the page table.
  std::vector<float> pre16(3 * n_q * dh), pre32(3 * n_q * dh);
  AttentionParams ap{q.data(), n_q * dh, nullptr, kv_dim, nullptr, kv_dim, pre16.data(), n_q * dh, 3, len, len - 3,
                     n_q, n_kv, dh, 0.3f, table.data(), bs, k16.data(), v16.data()};
  ASSERT_TRUE(AttentionCpu(ap).ok());
  AttentionParams ap32 = ap;
  ap32.k = kw.data(), ap32.v = vw.data(), ap32.k16 = nullptr, ap32.v16 = nullptr, ap32.out = pre32.data();
  ASSERT_TRUE(AttentionCpu(ap32).ok());
  EXPECT_EQ(pre16, pre32);
  // Both pairs, or half a pair: refused naming the fields.
  ap.k = kw.data();
  absl::Status st = AttentionCpu(ap);
  EXPECT_NE(st.message().find("exactly one of k / v (f32) and k16 / v16 (bf16)"), std::string::npos) << st;
  kp.k_cache = kw.data();
  EXPECT_EQ(KvAppendCpu(kp).code(), absl::StatusCode::kInvalidArgument);
  kp.k_cache = nullptr, kp.v_cache16 = nullptr;
  st = KvAppendCpu(kp);
  EXPECT_NE(st.message().find("k_cache16 / v_cache16: one of the two is null"), std::string::npos) << st;
}

TEST(BatchedOps, PermuteIsStableAndSkipsRemoteExperts) {
  // 3 tokens, k = 2, experts 0..3; local slice [1, 3).
  const std::vector<int32_t> idx = {2, 1, 1, 3, 2, 0};
  std::vector<int32_t> offsets(3), row_token(6, -7), pair_row(6);
  MoePermuteParams p{idx.data(), 3, 2, 1, 3, offsets.data(), row_token.data(), pair_row.data()};
  ASSERT_TRUE(MoePermuteCpu(p).ok());
  EXPECT_EQ(offsets, (std::vector<int32_t>{0, 2, 4}));          // expert 1: 2 rows, expert 2: 2 rows
  EXPECT_EQ(pair_row, (std::vector<int32_t>{2, 0, 1, -1, 3, -1}));
  EXPECT_EQ(std::vector<int32_t>(row_token.begin(), row_token.begin() + 4), (std::vector<int32_t>{0, 1, 0, 2}));
  p.expert_end = 1;  // empty range
  EXPECT_EQ(MoePermuteCpu(p).code(), absl::StatusCode::kInvalidArgument);
}

TEST(BatchedOps, PermuteGroupedCombineEqualsMoeExperts) {
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const int64_t n = 11, hidden = 24, inter = 10, experts = 8, k = 3;
    const std::vector<float> x = RandomVector(n * hidden, 70);
    OwnedMatrix in(RandomVector(experts * 2 * inter * hidden, 71), dt, experts * 2 * inter, hidden);
    OwnedMatrix outw(RandomVector(experts * hidden * inter, 72), dt, experts * hidden, inter);
    std::vector<int32_t> idx(n * k);
    std::vector<float> gates = RandomVector(n * k, 73, 0.0f, 1.0f);
    std::mt19937 rng(74);
    for (int64_t r = 0; r < n; ++r) {
      std::vector<int32_t> all(experts);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      for (int64_t j = 0; j < k; ++j) idx[r * k + j] = all[j];
    }
    const std::vector<float> base = RandomVector(n * hidden, 75);
    std::vector<float> ref = base;
    MoeExpertsParams mp{x.data(), n, hidden, inter, idx.data(), gates.data(), k, in.view, outw.view, 0,
                        static_cast<int32_t>(experts), ref.data()};
    ASSERT_TRUE(MoeExpertsCpu(mp).ok());

    std::vector<int32_t> offsets(experts + 1), row_token(n * k), pair_row(n * k);
    ASSERT_TRUE(MoePermuteCpu({idx.data(), n, k, 0, static_cast<int32_t>(experts), offsets.data(), row_token.data(),
                               pair_row.data()})
                    .ok());
    std::vector<float> gu(n * k * 2 * inter), act(n * k * inter), yo(n * k * hidden);
    GroupedLinearParams g1{x.data(), hidden, row_token.data(), in.view, 2 * inter, experts, offsets.data(), n * k,
                           gu.data(), 2 * inter};
    ASSERT_TRUE(GroupedLinearCpu(g1).ok());
    ASSERT_TRUE(SwigluCpu({gu.data(), 2 * inter, act.data(), inter, n * k, inter}).ok());
    // The same activations from the up projection itself (GroupedLinearParams::swiglu_out), 16-bit copy included.
    std::vector<float> gu2(gu.size()), act2(act.size(), -1.0f);
    std::vector<uint16_t> act16(act.size(), 0);
    GroupedLinearParams fused = g1;
    fused.y = gu2.data();
    fused.swiglu_out = {gu2.data(), 2 * inter, act2.data(), inter, n * k, inter, {act16.data(), inter, DType::kBF16}};
    ASSERT_TRUE(GroupedLinearCpu(fused).ok());
    EXPECT_EQ(act2, act);
    for (size_t i = 0; i < act.size(); ++i) ASSERT_EQ(act16[i], FloatToBf16(act[i])) << i;
    GroupedLinearParams bad = fused;
    bad.swiglu_out.gate_up = gu.data();  // not this product's rows
    EXPECT_EQ(GroupedLinearCpu(bad).code(), absl::StatusCode::kInvalidArgument);
    bad = fused;
    bad.swiglu_out.i = inter - 1;  // 2 i != n_out
    EXPECT_EQ(GroupedLinearCpu(bad).code(), absl::StatusCode::kInvalidArgument);
    GroupedLinearParams g2{act.data(), inter, nullptr, outw.view, hidden, experts, offsets.data(), n * k, yo.data(),
                           hidden};
    ASSERT_TRUE(GroupedLinearCpu(g2).ok());
    std::vector<float> got = base;
    MoeCombineParams cp{yo.data(), hidden, idx.data(), pair_row.data(), gates.data(), n, k, hidden, got.data(), hidden,
                        true};
    ASSERT_TRUE(MoeCombineCpu(cp).ok());
    EXPECT_LT(MaxAbsDiff(got, ref), 1e-5) << DTypeName(dt);
    EXPECT_GT(MaxAbsDiff(got, base), 1e-3);
  }
}

TEST(BatchedOps, ArgmaxTiesAndNan) {
  const std::vector<float> x = {1, 3, 3, 2,  NAN, 0, NAN, -1,  NAN, NAN, NAN, NAN};
  std::vector<int32_t> out(3, -5);
  ASSERT_TRUE(ArgmaxCpu({x.data(), 4, 3, 4, out.data()}).ok());
  EXPECT_EQ(out, (std::vector<int32_t>{1, 1, 0}));
}

}  // namespace
}  // namespace quarry
