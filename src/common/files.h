// Every file and directory customar reads or writes goes through here: topology and config files, the tuned config,
// JIT cache entries and dumps, and the tools' dumps. Nothing at a path is trusted to be what it should be:
//   - a read opens without blocking (a FIFO or device would wait for a writer or never end), checks with fstat that
//     it opened a regular file, and reads at most a stated limit;
//   - where the content decides what runs (the tuned config, cached CUBINs), the file and its directory must also
//     belong to this user and be writable by nobody else, and a symbolic link is never followed;
//   - a write goes to a new temporary file (O_EXCL, in the target's directory) and is renamed over the target only
//     where the target is a regular file or nothing, so a planted link, device, FIFO or directory is never written
//     through or replaced, and a failed write leaves no temporary file behind.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace customar::files {

/// What a read accepts.
struct ReadRules {
  size_t max_bytes = 0;        ///< a larger file is refused (it is not read to find out how large)
  bool follow_link = false;    ///< open through a symbolic link at the path's last component
  bool private_owner = false;  ///< the file must be owned by this user and not writable by group or others
};

enum class ReadStatus { kOk, kMissing, kRefused };

struct ReadResult {
  ReadStatus status = ReadStatus::kMissing;
  std::string data;
  std::string why;  ///< kMissing / kRefused: what was found, e.g. "is a directory" (without the path)
};

/// Reads the regular file at `path` under `rules`. kMissing: nothing is there (ENOENT, ENOTDIR); kRefused: something
/// is there that `rules` do not accept or that cannot be read. Thread-safe; throws only std::bad_alloc.
ReadResult try_read_file(const std::string& path, const ReadRules& rules);

/// try_read_file() that throws ConfigError "<label><path>: <why>" unless the read succeeds (a missing file
/// included), the path escaped for printing.
std::string read_file(const std::string& path, const ReadRules& rules, const std::string& label);

/// Replaces the file at `path` with `data`: written to a new temporary file in the same directory (created with
/// O_EXCL, `mode` less the umask), flushed to disk, then renamed over `path`. Throws InvalidArgument when `path` is
/// empty or names something other than a regular file (a symbolic link, directory, device, FIFO or socket), and
/// SystemError naming the call and errno when a system call fails; the temporary file is removed on every failure.
/// Thread-safe; writers racing on one path each write a whole file and the last rename wins.
void write_file_atomic(const std::string& path, std::string_view data, mode_t mode);

enum class DirState { kPrivate, kMissing, kUnsafe };

/// Whether `dir` is a directory (not a symbolic link) owned by this user and not writable by group or others.
/// kMissing: nothing is at `dir`; kUnsafe: something else is, and `*why` says what.
DirState check_private_dir(const std::string& dir, std::string* why);

/// Creates `dir` and its missing parents (the last one 0700, the others 0755), then check_private_dir(). Returns
/// false with `*why` when it cannot be created or is not private.
bool make_private_dir(const std::string& dir, std::string* why);

/// The directory part of `path` ("." when it has none, "/" for a file at the root).
std::string parent_dir(const std::string& path);

/// The per-user directory of customar's kernel cache and tuned config: `configured` (CUSTOMAR_CACHE_DIR) when set,
/// else `home`/.cache/customar when `home` is an absolute path; else empty, meaning "no cache": a shared fallback
/// such as /tmp would let another user plant entries there or block the directory for good.
std::string cache_dir_for(const std::string& configured, const char* home);

/// cache_dir_for(CUSTOMAR_CACHE_DIR, $HOME), once per process; when empty, one INFO line (CONFIG) says that the
/// kernel cache and the tuned config are off and why. Throws ConfigError like env().
const std::string& user_cache_dir();

}  // namespace customar::files
