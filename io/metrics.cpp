#include "th/io/metrics.hpp"

#include <cstdint>
#include <filesystem>

#include "th/io/h5_file.hpp"
#include "th/core/error.hpp"

namespace th {

// HDF5 is not thread-safe here and the data loader's prefetch thread reads HDF5 while rank 0
// writes metrics: every HDF5 call holds the process-wide HDF5 lock.
namespace {
// Cuts every dataset of every group of f (groups holding a 'step' dataset) to the records with
// step <= last. Returns how many records were dropped in all.
std::int64_t cut_after(H5File& f, std::int64_t last) {
  std::int64_t dropped = 0;
  for (const std::string& group : {std::string("train"), std::string("valid"), std::string("test")}) {
    if (!f.exists(group + "/step")) continue;
    const std::vector<double> steps = f.read_doubles(group + "/step");
    hsize_t keep = 0;
    while (keep < steps.size() && steps[keep] <= static_cast<double>(last)) ++keep;
    for (const std::string& field : f.list(group)) {
      const std::string name = group + "/" + field;
      const H5Id ds = h5_open_dataset(f.id(), name, f.path());
      h5_check(H5Dset_extent(ds.get(), &keep), "H5Dset_extent", f.path() + " " + name);
    }
    dropped += static_cast<std::int64_t>(steps.size() - keep);
  }
  return dropped;
}
}  // namespace

MetricsFile::MetricsFile(const std::string& path, const std::string& resolved_deck, std::int64_t continue_after,
                         std::string* note) {
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  if (continue_after >= 0 && std::filesystem::exists(path)) {
    try {
      file_ = std::make_unique<H5File>(path, H5File::Mode::Append);
      const std::int64_t dropped = cut_after(*file_, continue_after);
      if (note)
        *note = "continuing " + path + " after step " + std::to_string(continue_after) +
                (dropped > 0 ? " (" + std::to_string(dropped) + " later records dropped: those steps run again)" : "");
    } catch (const Error& e) {
      file_.reset();
      std::error_code ec;
      std::filesystem::rename(path, path + ".unreadable", ec);
      if (note) *note = path + " could not be continued (" + e.what() + "); kept as " + path + ".unreadable";
    }
  }
  if (!file_) {
    file_ = std::make_unique<H5File>(path, H5File::Mode::Create);
    file_->write_string("deck", resolved_deck);  // the deck of the run that started the file
    file_->set_attr("format", std::string("torch-handle metrics 1"));
  }
  file_->flush();
}

MetricsFile::~MetricsFile() {
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  file_.reset();
}

namespace {
bool is_integer_field(const std::string& f) { return f == "step" || f == "epoch"; }

void append_value(H5File& f, const std::string& name, double v, bool integer) {
  const hid_t file = f.id();
  const std::string& path = f.path();
  const hid_t type = integer ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE;
  H5Id ds;
  hsize_t n = 0;
  if (f.exists(name)) {
    ds = h5_open_dataset(file, name, path);
    n = h5_dims(ds.get(), path).at(0);
  } else {
    const hsize_t chunk = 256;
    H5Id dcpl = h5_own(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate", path);
    h5_check(H5Pset_chunk(dcpl.get(), 1, &chunk), "H5Pset_chunk", path);
    H5Id lcpl = h5_own(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "H5Pcreate", path);
    h5_check(H5Pset_create_intermediate_group(lcpl.get(), 1), "H5Pset_create_intermediate_group", path);
    const hsize_t zero = 0, unlimited = H5S_UNLIMITED;
    H5Id space = h5_own(H5Screate_simple(1, &zero, &unlimited), H5Sclose, "H5Screate_simple", path);
    ds = h5_own(H5Dcreate2(file, name.c_str(), type, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT), H5Dclose,
                "H5Dcreate2", path);
  }
  const hsize_t newsize = n + 1;
  h5_check(H5Dset_extent(ds.get(), &newsize), "H5Dset_extent", path);
  const std::int64_t iv = static_cast<std::int64_t>(v);
  h5_write_ranges(ds.get(), type, {{n, 1}}, integer ? static_cast<const void*>(&iv) : &v, H5P_DEFAULT, false, path);
}
}  // namespace

void MetricsFile::append(const std::string& group, const std::vector<std::pair<std::string, double>>& fields) {
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  std::vector<std::string> names;
  for (const auto& f : fields) names.push_back(f.first);
  bool known = false;
  for (const auto& g : schema_)
    if (g.first == group) {
      TH_CHECK(g.second == names, "metrics group '" + group + "' appended with different fields");
      known = true;
    }
  if (!known) schema_.emplace_back(group, names);
  for (const auto& f : fields)
    append_value(*file_, group + "/" + f.first, f.second, is_integer_field(f.first));
  file_->flush();
}

}  // namespace th
