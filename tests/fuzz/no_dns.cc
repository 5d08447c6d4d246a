// getaddrinfo for the binaries this is linked into: numeric hosts only
// (AI_NUMERICHOST), so a fuzz target never sends a DNS query for the names it
// makes up. Other names fail with EAI_NONAME, as an unknown name would.
// Defined in the executable, it takes precedence over the C library's (and
// over the sanitizer runtime's weak interceptor).
#include <dlfcn.h>
#include <netdb.h>

extern "C" int getaddrinfo(const char* node, const char* service,
                           const struct addrinfo* hints,
                           struct addrinfo** res) {
  using Fn = int (*)(const char*, const char*, const struct addrinfo*,
                     struct addrinfo**);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "getaddrinfo"));
  if (real == nullptr) return EAI_SYSTEM;
  struct addrinfo numeric {};
  if (hints != nullptr) numeric = *hints;
  numeric.ai_flags |= AI_NUMERICHOST;
  return real(node, service, &numeric, res);
}
