// The header compiles as C++ (cpp_compat) and its declarations link from C++.
#include "edgemodule.h"
#include "edgemodule.h"  // include guard

#include <cstdio>
#include <cstring>

int main() {
  edge_options *opts = nullptr;
  if (edge_options_new(&opts) != EDGE_STATUS_OK) return 1;
  edge_options_free(opts);
  if (std::strcmp(edge_status_name(EDGE_STATUS_OK), "EDGE_STATUS_OK") != 0) return 1;
  std::printf("api_header_cpp: ok %s\n", edge_version());
  return 0;
}
