// LibTorch's autograd with explicit output gradients (torch::autograd::grad(outputs, inputs,
// grad_outputs)), which tch-rs does not bind: its run_backward seeds the roots with ones, so
// model::torch had to backpropagate ⟨output, dy⟩, a dot forward and a full multiply backward.
// Compiled by build.rs with fused_adam.cpp (feature `tch`).
//
// The tensors are tch-rs handles (`torch::Tensor *`). On success writes n new handles into
// `grads` (the caller owns them) and returns 0; else 1 with LibTorch's message in `err`.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <cstddef>
#include <vector>

#include "report.h"

extern "C" int instrec_grad(const at::Tensor *output, const at::Tensor *grad_output,
                            at::Tensor *const *inputs, size_t n, at::Tensor **grads, char *err,
                            size_t err_len) {
  try {
    std::vector<at::Tensor> in;
    in.reserve(n);
    for (size_t i = 0; i < n; ++i) in.push_back(*inputs[i]);
    auto g = torch::autograd::grad({*output}, in, {*grad_output}, false, false, false);
    for (size_t i = 0; i < n; ++i) grads[i] = new at::Tensor(std::move(g[i]));
    return 0;
  } catch (const std::exception &e) {
    return instrec_report(e, err, err_len);
  }
}
