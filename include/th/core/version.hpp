#pragma once
// What built this binary: TH_VERSION (the project version, a compile definition of th_core) and
// the checkout's git commit (12 hex digits, "-dirty" when tracked files had changes, "unknown"
// outside a git checkout), refreshed at every build (cmake/GitVersion.cmake). Printed in the run
// banner and written into checkpoints ("th_version") and prepared datasets ("created_by").
#include <string>

namespace th {

const char* git_sha();

// "TH_VERSION (git SHA)".
inline std::string version_string() { return std::string(TH_VERSION) + " (git " + git_sha() + ")"; }

}  // namespace th
