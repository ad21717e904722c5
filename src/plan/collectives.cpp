// Alpha-beta costs of the collectives ZeRO issues (Thakur, Rabenseifner and Gropp 2005; NCCL's
// ring and double-binary-tree all-reduce).
#include <algorithm>
#include <cmath>

#include "th/plan/time.hpp"

namespace th {

Link collective_link(const Machine& m, const Layout& l) {
  // More ranks than devices on a node (CPU oversubscription): they share the cores that copy.
  const double share = std::min(1.0, double(m.devices_per_node) / l.ranks_per_node);
  Link k;
  if (l.nodes == 1) {
    k.latency_s = m.intra_latency_us * 1e-6;
    k.bandwidth = m.intra_bandwidth_gbs * 1e9 * share;
  } else {
    k.latency_s = std::max(m.intra_latency_us, m.inter_latency_us) * 1e-6;
    k.bandwidth = std::min(m.intra_bandwidth_gbs, m.inter_bandwidth_gbs) * 1e9 * share;
  }
  return k;
}

double ring_allreduce_s(double bytes, int n, const Link& k) {
  if (n <= 1 || bytes <= 0) return 0;
  return 2.0 * (n - 1) * k.latency_s + 2.0 * (n - 1) / n * bytes / k.bandwidth;
}

double tree_allreduce_s(double bytes, int n, const Link& k) {
  if (n <= 1 || bytes <= 0) return 0;
  return 2.0 * std::ceil(std::log2(double(n))) * k.latency_s + 2.0 * bytes / k.bandwidth;
}

double allreduce_s(double bytes, int n, const Link& k) {
  return std::min(ring_allreduce_s(bytes, n, k), tree_allreduce_s(bytes, n, k));
}

double reduce_scatter_s(double bytes, int n, const Link& k) {
  if (n <= 1 || bytes <= 0) return 0;
  return (n - 1) * k.latency_s + double(n - 1) / n * bytes / k.bandwidth;
}

double all_gather_s(double bytes, int n, const Link& k) { return reduce_scatter_s(bytes, n, k); }

}  // namespace th
