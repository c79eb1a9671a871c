// LibTorch's fused Adam/AdamW kernels (at::_fused_adam_, at::_fused_adamw_) for instrec's
// LibTorch backend: tch-rs leaves `_fused_adam*` out of its generated bindings, so this file is
// compiled by build.rs against the headers of the PyTorch wheel that tch links (feature `tch`).
//
// The tensors are tch-rs handles (`torch::Tensor *`); parameters, moments and steps are updated in
// place. Returns 0, or 1 with LibTorch's message in `err` (NUL-terminated, at most `err_len`).
#include <ATen/ATen.h>
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>

#include <cstddef>
#include <vector>

#include "report.h"

namespace {
std::vector<at::Tensor> list(at::Tensor *const *ts, size_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  // Copies of the handles share the tensors' storage: the kernels' in-place updates reach them.
  for (size_t i = 0; i < n; ++i) v.push_back(*ts[i]);
  return v;
}
}  // namespace

extern "C" int instrec_fused_adam(at::Tensor *const *params, at::Tensor *const *grads,
                                  at::Tensor *const *exp_avgs, at::Tensor *const *exp_avg_sqs,
                                  at::Tensor *const *steps, size_t n, double lr, double beta1,
                                  double beta2, double weight_decay, double eps, int decoupled,
                                  char *err, size_t err_len) {
  try {
    auto p = list(params, n), g = list(grads, n), m = list(exp_avgs, n),
         v = list(exp_avg_sqs, n), s = list(steps, n);
    std::vector<at::Tensor> no_max;
    if (decoupled) {
      at::_fused_adamw_(p, g, m, v, no_max, s, lr, beta1, beta2, weight_decay, eps, false, false);
    } else {
      at::_fused_adam_(p, g, m, v, no_max, s, lr, beta1, beta2, weight_decay, eps, false, false);
    }
    return 0;
  } catch (const std::exception &e) {
    return instrec_report(e, err, err_len);
  }
}
