#include "jit/cache.h"

#include <cstring>

#include "common/files.h"
#include "common/text.h"

namespace customar::detail {

namespace {

constexpr char kMagic[8] = {'C', 'S', 'T', 'M', 'C', 'B', 'N', '1'};
// The largest entry loaded: a V2 module's CUBIN is a few hundred KiB; anything near this is not one of ours.
constexpr size_t kMaxEntryBytes = 64u << 20;

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

// The header's checks, on an entry read whole; "" when it holds the CUBIN of `key`.
std::string entry_problem(const std::string& all, const CacheKey& key) {
  if (all.size() < sizeof(Header)) return "truncated";
  Header h;
  std::memcpy(&h, all.data(), sizeof(h));
  if (std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0) return "bad magic";
  if (h.key_hi != key.hi || h.key_lo != key.lo) return "key mismatch";
  if (h.size != all.size() - sizeof(Header)) return "truncated";
  if (fnv1a(all.data() + sizeof(Header), h.size, 0xcbf29ce484222325ULL) != h.hash) return "checksum mismatch";
  return "";
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

DiskCache::DiskCache(std::string dir) : dir_(dir.empty() ? files::user_cache_dir() : std::move(dir)) {}

std::string DiskCache::path_of(const CacheKey& key) const { return dir_ + "/" + key.hex() + ".cubin"; }

CacheState DiskCache::load(const CacheKey& key, std::vector<char>* out, std::string* why) const {
  if (!enabled()) return CacheState::kMiss;
  // The directory is checked on every load, as on every store: an entry is only as trustworthy as the directory
  // that lists it (a link to, or a directory writable by, another user lets them choose what is loaded).
  files::DirState dir = files::check_private_dir(dir_, why);
  if (dir == files::DirState::kMissing) return CacheState::kMiss;
  if (dir == files::DirState::kUnsafe) return CacheState::kRejected;
  const std::string path = path_of(key);
  files::ReadResult r = files::try_read_file(path, {kMaxEntryBytes, /*follow_link=*/false, /*private_owner=*/true});
  if (r.status == files::ReadStatus::kMissing) return CacheState::kMiss;
  std::string problem = r.status == files::ReadStatus::kRefused ? r.why : entry_problem(r.data, key);
  if (!problem.empty()) {
    *why = text::printable(path) + ": " + problem;
    return CacheState::kRejected;
  }
  out->assign(r.data.begin() + sizeof(Header), r.data.end());
  return CacheState::kHit;
}

bool DiskCache::store(const CacheKey& key, const std::vector<char>& payload, std::string* why) const {
  if (!enabled()) {
    *why = "no cache directory";
    return false;
  }
  if (!files::make_private_dir(dir_, why)) return false;
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.key_hi = key.hi;
  h.key_lo = key.lo;
  h.size = payload.size();
  h.hash = fnv1a(payload.data(), payload.size(), 0xcbf29ce484222325ULL);
  std::string entry(reinterpret_cast<const char*>(&h), sizeof(h));
  entry.append(payload.data(), payload.size());
  try {
    files::write_file_atomic(path_of(key), entry, 0600);
  } catch (const std::exception& e) {
    *why = e.what();
    return false;
  }
  return true;
}

}  // namespace customar::detail
