#include "emulated_memory.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "th/core/error.hpp"

namespace th::emulated {

std::size_t page_size() {
  static const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

Arena::Arena(const char* name, std::size_t bytes, int host_prot, std::size_t gran)
    : name_(name), size_((bytes + page_size() - 1) / page_size() * page_size()), gran_(gran) {
  const int fd = memfd_create(name, MFD_CLOEXEC);
  TH_CHECK(fd >= 0, std::string("memfd_create for the ") + name + " failed: " + std::strerror(errno));
  if (ftruncate(fd, static_cast<off_t>(size_)) != 0) {
    const int e = errno;
    close(fd);
    throw Error(std::string("sizing the ") + name + " to " + std::to_string(size_) + " bytes failed: " + std::strerror(e));
  }
  void* h = mmap(nullptr, size_, host_prot, MAP_SHARED | MAP_NORESERVE, fd, 0);
  void* a = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  close(fd);
  TH_CHECK(h != MAP_FAILED && a != MAP_FAILED, std::string("mapping the ") + name + " failed");
  host_ = static_cast<char*>(h);
  alias_ = static_cast<char*>(a);
  free_.emplace(0, size_);
}

namespace {

// ---- the fault handler: a host access to device memory, or to pinned memory in flight
const Arena* g_device = nullptr;
const Arena* g_pinned = nullptr;
int g_rank = 0;
struct sigaction g_previous {};

void put(char*& p, const char* s) {
  while (*s) *p++ = *s++;
}
void put_number(char*& p, std::size_t v) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v && n < 24);
  while (n) *p++ = digits[--n];
}

void on_fault(int sig, siginfo_t* info, void* ctx) {
  const void* a = info->si_addr;
  const bool device = g_device && g_device->contains(a), pinned = g_pinned && g_pinned->contains(a);
  const bool uncommitted = g_device && g_device->alias_contains(a);  // the worker, in a reserved range
  if (!device && !pinned && !uncommitted) {  // not ours: whoever handled it before (a sanitizer), or the default
    if ((g_previous.sa_flags & SA_SIGINFO) && g_previous.sa_sigaction) {
      g_previous.sa_sigaction(sig, info, ctx);
      return;
    }
    if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
      g_previous.sa_handler(sig);
      return;
    }
    signal(sig, SIG_DFL);
    return;  // the access runs again and ends the process
  }
  static char msg[512];
  char* p = msg;
  put(p, "[rank ");
  put_number(p, static_cast<std::size_t>(g_rank));
  put(p, "] torch-handle: error: ");
  if (uncommitted) {
    put(p, "a device operation touched emulated device memory that is not committed (byte ");
    put_number(p, g_device->alias_offset(a));
    put(p, " of the device arena, in a reserved range): a granule used before Reservation::commit or after "
           "its release\n");
  } else if (device) {
    put(p, "host access to emulated device memory (byte ");
    put_number(p, g_device->offset(a));
    put(p, " of the device arena): host code read or wrote device memory without a copy through the backend "
           "(Backend::host_view / device_to_host / host_to_device)\n");
  } else {
    put(p, "host access to pinned memory (byte ");
    put_number(p, g_pinned->offset(a));
    put(p, " of the pinned arena) while an asynchronous copy is in flight: a missing synchronisation "
           "(Backend::wait on an event recorded after the copy, or sync)\n");
  }
  [[maybe_unused]] const ssize_t w = write(STDERR_FILENO, msg, static_cast<std::size_t>(p - msg));
  signal(sig, SIG_DFL);  // the access runs again and ends the process (the launcher ends the job)
}

}  // namespace

void install_fault_handler(const Arena& device, const Arena& pinned, int rank) {
  g_device = &device;
  g_pinned = &pinned;
  g_rank = rank;
  struct sigaction sa {};
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &g_previous);
}

}  // namespace th::emulated
