// Machine description files: one &machine group, every key checked (type, range, required).
#include <cstdio>
#include <fstream>
#include <sstream>
#include <variant>
#include <vector>

#include "th/io/namelist.hpp"
#include "th/core/error.hpp"
#include "th/plan/machine.hpp"

namespace th {

double Machine::peak_tflops(DType dtype) const {
  if (dtype == DType::BF16) return peak_tflops_bf16;
  if (dtype == DType::F16) return peak_tflops_fp16;
  return peak_tflops_fp32;
}

namespace {

struct RealKey {
  const char* key;
  double Machine::*field;
  bool required;  // must be > 0 in every file
  const char* doc;
};

// Every real-valued key, in file order (docs/planning.md lists the same).
const std::vector<RealKey>& real_keys() {
  static const std::vector<RealKey> keys = {
      {"device_memory_gib", &Machine::device_memory_gib, false, "per device (0: a CPU device is the host)"},
      {"reserved_gib", &Machine::reserved_gib, false, "per device, never the run's"},
      {"peak_tflops_fp32", &Machine::peak_tflops_fp32, true, "dense GEMM peak, per device"},
      {"peak_tflops_bf16", &Machine::peak_tflops_bf16, true, "dense GEMM peak, per device"},
      {"peak_tflops_fp16", &Machine::peak_tflops_fp16, true, "dense GEMM peak, per device"},
      {"gemm_efficiency", &Machine::gemm_efficiency, true, "sustained fraction of peak on large GEMMs"},
      {"gemm_call_us", &Machine::gemm_call_us, false, "fixed cost of one GEMM call"},
      {"gemm_half_dim", &Machine::gemm_half_dim, false, "smallest GEMM dimension at half the large rate"},
      {"memory_bandwidth_gbs", &Machine::memory_bandwidth_gbs, true, "device memory, per device"},
      {"exp_gelems", &Machine::exp_gelems, true, "1e9 elements/s of passes evaluating exp, per device"},
      {"intra_latency_us", &Machine::intra_latency_us, false, "per collective step within a node"},
      {"intra_bandwidth_gbs", &Machine::intra_bandwidth_gbs, true, "per rank, one direction, within a node"},
      {"inter_latency_us", &Machine::inter_latency_us, false, "per collective step between nodes"},
      {"inter_bandwidth_gbs", &Machine::inter_bandwidth_gbs, true, "per rank, one direction, between nodes"},
      {"overlap", &Machine::overlap, false, "share of a collective that runs under compute"},
      {"host_memory_gib", &Machine::host_memory_gib, true, "per node"},
      {"host_bandwidth_gbs", &Machine::host_bandwidth_gbs, true, "per node"},
      {"pcie_bandwidth_gbs", &Machine::pcie_bandwidth_gbs, true, "host <-> device, per device"},
      {"nvme_read_gbs", &Machine::nvme_read_gbs, true, "per node"},
      {"nvme_write_gbs", &Machine::nvme_write_gbs, true, "per node"},
      {"nvme_capacity_gib", &Machine::nvme_capacity_gib, true, "per node"},
      {"alloc_reuse", &Machine::alloc_reuse, false, "the allocator reuses a cached block up to this x a request"},
  };
  return keys;
}

[[noreturn]] void fail(const NamelistItem& item, const std::string& what) {
  throw InputError(namelist_location(item.source, item.line) + ": 'machine%" + item.key + "' " + what);
}

double real_of(const NamelistItem& item) {
  if (item.values.size() != 1) fail(item, "expects one value");
  if (const auto* i = std::get_if<long long>(&item.values[0])) return static_cast<double>(*i);
  if (const auto* r = std::get_if<double>(&item.values[0])) return *r;
  fail(item, "expects a number, got " + format_namelist_value(item.values[0]));
}

long long int_of(const NamelistItem& item) {
  if (item.values.size() != 1 || !std::holds_alternative<long long>(item.values[0]))
    fail(item, "expects one integer");
  return std::get<long long>(item.values[0]);
}

std::string string_of(const NamelistItem& item) {
  if (item.values.size() != 1 || !std::holds_alternative<std::string>(item.values[0]))
    fail(item, "expects one string");
  return std::get<std::string>(item.values[0]);
}

}  // namespace

Machine read_machine(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError("plan%machine = '" + path + "': cannot open the machine description");
  std::stringstream text;
  text << in.rdbuf();
  const std::vector<NamelistGroup> groups = parse_namelist(text.str(), path);
  Machine m;
  std::vector<bool> seen(real_keys().size(), false);
  bool have_name = false, have_device = false, have_devices = false;
  for (const NamelistGroup& g : groups) {
    if (g.name != "machine")
      throw InputError(namelist_location(path, g.line) + ": unknown group '&" + g.name + "' (a machine file holds &machine)");
    for (const NamelistItem& item : g.items) {
      const std::string& k = item.key;
      if (k == "name") {
        m.name = string_of(item), have_name = true;
      } else if (k == "source") {
        m.source = string_of(item);
      } else if (k == "device") {
        const std::string d = string_of(item);
        if (d != "cpu" && d != "gpu") fail(item, "is 'cpu' or 'gpu', got '" + d + "'");
        m.device = d == "gpu" ? DeviceKind::Gpu : DeviceKind::Cpu, have_device = true;
      } else if (k == "devices_per_node") {
        const long long v = int_of(item);
        if (v < 1) fail(item, "must be >= 1");
        m.devices_per_node = static_cast<int>(v), have_devices = true;
      } else if (k == "bytes_16bit") {
        const long long v = int_of(item);
        if (v != 2 && v != 4) fail(item, "is 2 (native 16-bit storage) or 4 (16-bit values kept in fp32)");
        m.bytes_16bit = static_cast<int>(v);
      } else if (k == "page_bytes" || k == "alloc_align_bytes") {
        const long long v = int_of(item);
        if (v < 1) fail(item, "must be >= 1");
        (k == "page_bytes" ? m.page_bytes : m.alloc_align_bytes) = v;
      } else {
        std::size_t i = 0;
        while (i < real_keys().size() && k != real_keys()[i].key) ++i;
        if (i == real_keys().size()) fail(item, "is not a machine key (docs/planning.md lists them)");
        const double v = real_of(item);
        if (!(v >= 0)) fail(item, "must be >= 0");
        if ((k == "overlap" || k == "gemm_efficiency") && v > 1) fail(item, "must be between 0 and 1");
        m.*(real_keys()[i].field) = v;
        seen[i] = true;
      }
    }
  }
  if (!have_name || !have_device || !have_devices)
    throw InputError(path + ": a machine file needs 'name', 'device' and 'devices_per_node'");
  for (std::size_t i = 0; i < real_keys().size(); ++i)
    if (real_keys()[i].required && !(seen[i] && m.*(real_keys()[i].field) > 0))
      throw InputError(path + ": 'machine%" + std::string(real_keys()[i].key) + "' (" + real_keys()[i].doc +
                       ") must be given and > 0");
  if (m.device == DeviceKind::Gpu && m.device_memory_gib <= 0)
    throw InputError(path + ": a 'gpu' machine needs 'machine%device_memory_gib' > 0");
  return m;
}

std::string machine_namelist(const Machine& m, const std::string& comment) {
  std::ostringstream out;
  std::istringstream lines(comment);
  for (std::string line; std::getline(lines, line);) out << "! " << line << "\n";
  out << "&machine\n";
  out << "  name = " << format_namelist_value(m.name) << "\n";
  out << "  source = " << format_namelist_value(m.source) << "\n";
  out << "  device = " << format_namelist_value(std::string(m.device == DeviceKind::Gpu ? "gpu" : "cpu")) << "\n";
  out << "  devices_per_node = " << m.devices_per_node << "\n";
  for (const RealKey& k : real_keys())
    out << "  " << k.key << " = " << format_namelist_value(m.*(k.field)) << "   ! " << k.doc << "\n";
  out << "  bytes_16bit = " << m.bytes_16bit << "\n";
  out << "  page_bytes = " << m.page_bytes << "\n";
  out << "  alloc_align_bytes = " << m.alloc_align_bytes << "\n";
  out << "/\n";
  return out.str();
}

}  // namespace th
