#pragma once
// Root-group attributes and 1-D datasets of the dataset files, every HDF5 call checked (th::Error
// naming the call and the file). Internal to src/data.
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace th {

void h5_put_attr(hid_t obj, const std::string& name, const std::string& value, const std::string& path);
void h5_put_attr(hid_t obj, const std::string& name, std::int64_t value, const std::string& path);
void h5_put_attr(hid_t obj, const std::string& name, double value, const std::string& path);

// False if the attribute is missing or not of the asked class (string / integer).
bool h5_get_attr(hid_t obj, const std::string& name, std::string& value, const std::string& path);
bool h5_get_attr(hid_t obj, const std::string& name, std::int64_t& value, const std::string& path);

// Writes a 1-D contiguous dataset (groups on the way must exist). file_type is the type on disk.
void h5_write_1d(hid_t loc, const std::string& name, hid_t file_type, hid_t mem_type, const void* data,
                 std::uint64_t n, const std::string& path);
void h5_write_strings(hid_t loc, const std::string& name, const std::vector<std::string>& v, const std::string& path);
hid_t h5_make_group(hid_t loc, const std::string& name, const std::string& path);  // caller closes

}  // namespace th
