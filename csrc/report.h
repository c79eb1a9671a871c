// The error convention of instrec's LibTorch shims: LibTorch's message copied into the caller's
// buffer (NUL-terminated, at most err_len bytes), and 1 returned.
#pragma once

#include <cstddef>
#include <cstring>
#include <exception>

inline int instrec_report(const std::exception &e, char *err, size_t err_len) {
  if (err_len > 0) {
    std::strncpy(err, e.what(), err_len - 1);
    err[err_len - 1] = '\0';
  }
  return 1;
}
