#include "th/train/device_comm.hpp"

#include "th/backend/staged_comm.hpp"
#include "th/core/error.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

namespace th {


DeviceCommAttachment::DeviceCommAttachment(Backend& be, Comm& host, const std::string& request) : be_(be) {
  if (request == "mpi" || (be.device_is_host() && request == "auto")) return;
  if (!be.device_is_host()) comm_ = be.make_device_comm(host);
  if (!comm_ && request == "nccl")
    throw InputError(std::string("parallel%comm = 'nccl': the ") + be.name() +
                     " backend has no NCCL communicator (NCCL needs run%backend = 'cuda' in a build with NCCL); "
                     "use 'auto' or 'mpi'");
  be_.set_device_comm(comm_.get());
}

DeviceCommAttachment::~DeviceCommAttachment() {
  if (comm_) be_.set_device_comm(nullptr);
}

const char* DeviceCommAttachment::describe() const {
  if (be_.device_is_host()) return "MPI on host buffers";
  if (!comm_) return "MPI through pinned staging buffers";
  return std::string(be_.name()) == "cuda" ? "NCCL on device buffers"
                                            : "the device communicator (emulated: staged inside it through pinned memory to MPI)";
}

void broadcast_device(Backend& be, Comm& comm, void* data, std::size_t bytes, int root) {
  if (be.device_is_host()) return comm.broadcast(data, bytes, root);
  if (Comm* dc = be.device_comm()) return dc->broadcast(data, bytes, root);
  StagedComm(be, comm).broadcast(data, bytes, root);
}

CommRequestPtr iall_gather_device(Backend& be, Comm& comm, const float* send, float* recv, std::size_t count) {
  if (be.device_is_host()) return comm.iall_gather(send, recv, count);
  if (Comm* dc = be.device_comm()) return dc->iall_gather(send, recv, count);
  return StagedComm(be, comm).iall_gather(send, recv, count);  // the request does not need the StagedComm
}

CommRequestPtr iall_gather_device_16bit(Backend& be, Comm& comm, const std::uint16_t* send, std::uint16_t* recv,
                                        std::size_t count) {
  TH_CHECK(count % 2 == 0 && reinterpret_cast<std::uintptr_t>(send) % 4 == 0 &&
               reinterpret_cast<std::uintptr_t>(recv) % 4 == 0,
           "2-byte all-gather of a piece with an odd length or offset");
  return iall_gather_device(be, comm, reinterpret_cast<const float*>(send), reinterpret_cast<float*>(recv), count / 2);
}

}  // namespace th
