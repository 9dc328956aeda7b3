#include "jit/cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "customar/env.h"

namespace customar::detail {

namespace {

constexpr char kMagic[8] = {'C', 'S', 'T', 'M', 'C', 'B', 'N', '1'};

struct Header {
  char magic[8];
  uint64_t key_hi, key_lo;
  uint64_t size;
  uint64_t hash;
};

// FNV-1a, 64-bit, from a chosen offset basis: two bases give the key's two halves. Not cryptographic: the cache's
// safety rests on file ownership and permissions, the hash only has to tell sources apart.
uint64_t fnv1a(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string default_dir() {
  const std::string& configured = env().cache_dir;
  if (!configured.empty()) return configured;
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] != '\0') return std::string(home) + "/.cache/customar";
  return "/tmp/customar-cache-" + std::to_string(geteuid());
}

// mkdir -p; the last component 0700. Then refuses a directory another user owns or others can write.
bool make_private_dir(const std::string& dir, std::string* why) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), pos == dir.size() ? 0700 : 0755) != 0 && errno != EEXIST) {
      *why = "mkdir " + part + ": " + std::strerror(errno);
      return false;
    }
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    *why = dir + " is not a directory";
    return false;
  }
  if (st.st_uid != geteuid() || (st.st_mode & 022) != 0) {
    *why = dir + " is not owned by this user or is writable by others";
    return false;
  }
  return true;
}

}  // namespace

std::string CacheKey::hex() const {
  char buf[33];
  snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(hi),
           static_cast<unsigned long long>(lo));
  return buf;
}

CacheKey make_cache_key(const std::vector<std::string>& parts) {
  CacheKey k{0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL};
  for (const auto& p : parts) {
    uint64_t n = p.size();
    k.hi = fnv1a(p.data(), p.size(), fnv1a(&n, sizeof(n), k.hi));
    k.lo = fnv1a(p.data(), p.size(), fnv1a(&n, sizeof(n), k.lo ^ 0x9e3779b97f4a7c15ULL));
  }
  return k;
}

DiskCache::DiskCache(std::string dir) : dir_(dir.empty() ? default_dir() : std::move(dir)) {}

std::string DiskCache::path_of(const CacheKey& key) const { return dir_ + "/" + key.hex() + ".cubin"; }

CacheState DiskCache::load(const CacheKey& key, std::vector<char>* out, std::string* why) const {
  std::string path = path_of(key);
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return CacheState::kMiss;
  auto reject = [&](const std::string& what) {
    ::close(fd);
    *why = path + ": " + what;
    return CacheState::kRejected;
  };
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return reject("not a regular file");
  if (st.st_uid != geteuid()) return reject("owned by another user");
  if ((st.st_mode & 022) != 0) return reject("writable by group or others");
  if (st.st_size < static_cast<off_t>(sizeof(Header)) || st.st_size > (64 << 20)) return reject("bad size");
  std::vector<char> all(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < all.size()) {
    ssize_t n = ::read(fd, all.data() + got, all.size() - got);
    if (n <= 0) return reject("short read");
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  Header h;
  std::memcpy(&h, all.data(), sizeof(h));
  if (std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0) {
    *why = path + ": bad magic";
    return CacheState::kRejected;
  }
  if (h.key_hi != key.hi || h.key_lo != key.lo) {
    *why = path + ": key mismatch";
    return CacheState::kRejected;
  }
  if (h.size != all.size() - sizeof(Header)) {
    *why = path + ": truncated";
    return CacheState::kRejected;
  }
  if (fnv1a(all.data() + sizeof(Header), h.size, 0xcbf29ce484222325ULL) != h.hash) {
    *why = path + ": checksum mismatch";
    return CacheState::kRejected;
  }
  out->assign(all.begin() + sizeof(Header), all.end());
  return CacheState::kHit;
}

bool DiskCache::store(const CacheKey& key, const std::vector<char>& payload, std::string* why) const {
  if (!make_private_dir(dir_, why)) return false;
  std::string tmpl = dir_ + "/.tmp-" + key.hex() + "-XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  int fd = ::mkstemp(name.data());  // 0600, unique: concurrent writers never share a temporary file
  if (fd < 0) {
    *why = "mkstemp in " + dir_ + ": " + std::strerror(errno);
    return false;
  }
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.key_hi = key.hi;
  h.key_lo = key.lo;
  h.size = payload.size();
  h.hash = fnv1a(payload.data(), payload.size(), 0xcbf29ce484222325ULL);
  bool ok = ::write(fd, &h, sizeof(h)) == static_cast<ssize_t>(sizeof(h)) &&
            ::write(fd, payload.data(), payload.size()) == static_cast<ssize_t>(payload.size()) && ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (!ok || ::rename(name.data(), path_of(key).c_str()) != 0) {
    if (ok) saved = errno;
    ::unlink(name.data());
    *why = "writing " + path_of(key) + ": " + std::strerror(saved);
    return false;
  }
  return true;
}

}  // namespace customar::detail
