// The on-disk cache of run-time compiled kernels, and the in-process memo in front of it.
//
// Key: a 128-bit hash of (kernel module name, source, NVRTC options, NVRTC version, architecture). Entry file:
// "<dir>/<key hex>.cubin" = header (magic, key, payload size, payload hash) + CUBIN. Written to a temporary file in the
// same directory and renamed, so ranks compiling the same module at once never read a torn file. An entry that is
// truncated, corrupt, or not owned by this user / writable by others, or that lies in a directory that is not
// private, is never loaded: it is recompiled and replaced (loading a foreign binary is code execution on the GPU).
// The directory is created 0700; without a usable one (no CUSTOMAR_CACHE_DIR, no absolute HOME) there is no disk
// cache, never a shared fallback such as /tmp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace customar::detail {

struct CacheKey {
  uint64_t hi = 0, lo = 0;
  std::string hex() const;
  bool operator==(const CacheKey&) const = default;
};

/// Hashes the parts (each length-prefixed, so ("ab","c") and ("a","bc") differ).
CacheKey make_cache_key(const std::vector<std::string>& parts);

/// What a cache lookup found.
enum class CacheState { kHit, kMiss, kRejected };

class DiskCache {
 public:
  /// `dir` empty: files::user_cache_dir() (CUSTOMAR_CACHE_DIR, else $HOME/.cache/customar, else none: then the cache
  /// is disabled). Creates it (0700) on first store.
  explicit DiskCache(std::string dir = "");
  const std::string& dir() const { return dir_; }
  /// False when there is no cache directory: every load misses and every store fails, without a warning.
  bool enabled() const { return !dir_.empty(); }
  /// Loads the entry for `key` into `out`. kMiss when the directory or the entry does not exist; kRejected (with
  /// `why`) for a directory that is not private (a link, not this user's, writable by others) and for an entry that
  /// is corrupt, truncated, foreign, writable by others, not a regular file (a FIFO is never waited on) or above
  /// 64 MiB.
  CacheState load(const CacheKey& key, std::vector<char>* out, std::string* why) const;
  /// Stores atomically (files::write_file_atomic, mode 0600). Returns false (and `why`) if the directory cannot be
  /// made safe or written; the caller then simply runs without a disk cache.
  bool store(const CacheKey& key, const std::vector<char>& payload, std::string* why) const;
  std::string path_of(const CacheKey& key) const;

 private:
  std::string dir_;
};

}  // namespace customar::detail
