// The bucket function gives identical results in the kernel and in the agent:
// bpf/bucket_check.bpf.c runs np_bucket_index() on a value with
// BPF_PROG_TEST_RUN, and every result is compared with the host's.
// Needs root (CAP_BPF); exits 77 (skipped) with the reason otherwise.
#include <unistd.h>

#include <cstdio>
#include <random>
#include <vector>

#include "agent/histogram.h"
#include <bpf/bpf.h>

#include "bpf/bucket_check.skel.h"

int main() {
  if (geteuid() != 0) {
    std::puts("SKIP: needs root to load a BPF program");
    return 77;
  }
  libbpf_set_print(nullptr);
  int checked = 0, failed = 0;
  for (int schema = 0; schema <= NP_HIST_MAX_SCHEMA; ++schema) {
    nodeperf::BucketLayout layout(schema);
    bucket_check_bpf* skel = bucket_check_bpf__open();
    if (!skel) {
      std::puts("SKIP: cannot open the BPF object");
      return 77;
    }
    for (size_t i = 0; i < NP_HIST_TABLE; ++i) skel->rodata->np_thresholds[i] = layout.thresholds_ns()[i];
    if (bucket_check_bpf__load(skel) != 0) {
      std::printf("SKIP: cannot load the BPF program (%m)\n");
      bucket_check_bpf__destroy(skel);
      return 77;
    }
    // Every threshold and its neighbours, the extremes, and random values.
    std::vector<uint64_t> values = {0, 1, 2, ~0ull, ~0ull - 1, 1ull << 63};
    for (uint32_t i = 0; i < layout.finite_buckets(); ++i) {
      uint64_t t = layout.thresholds_ns()[i];
      values.insert(values.end(), {t - 1, t, t + 1});
    }
    std::mt19937_64 rng(schema);
    for (int i = 0; i < 4096; ++i) values.push_back(rng() >> (rng() % 64));
    for (uint64_t v : values) {
      skel->bss->input = v;
      LIBBPF_OPTS(bpf_test_run_opts, opts);
      if (bpf_prog_test_run_opts(bpf_program__fd(skel->progs.bucket_check), &opts) != 0) {
        std::printf("FAIL: BPF_PROG_TEST_RUN: %m\n");
        return 1;
      }
      ++checked;
      if (skel->bss->output != layout.index(v)) {
        ++failed;
        std::printf("FAIL: schema %d value %llu: kernel bucket %u, agent bucket %u\n", schema,
                    static_cast<unsigned long long>(v), skel->bss->output, layout.index(v));
      }
    }
    bucket_check_bpf__destroy(skel);
  }
  std::printf("%d passed, %d failed\n", checked - failed, failed);
  return failed ? 1 : 0;
}
