#include "common/files.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "common/check.h"
#include "common/log.h"
#include "common/text.h"
#include "customar/env.h"
#include "customar/error.h"

namespace customar::files {

namespace {

// Closes on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string kind_text(mode_t mode) {
  if (S_ISLNK(mode)) return "is a symbolic link";
  if (S_ISDIR(mode)) return "is a directory";
  if (S_ISFIFO(mode)) return "is a FIFO";
  if (S_ISCHR(mode)) return "is a character device";
  if (S_ISBLK(mode)) return "is a block device";
  if (S_ISSOCK(mode)) return "is a socket";
  return "is not a regular file";
}

std::string size_text(size_t bytes) {
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes) + " bytes";
}

std::string errno_text(const char* what, int err) { return std::string(what) + " (" + std::strerror(err) + ")"; }

// Ownership and write bits, for files and directories whose content decides what runs.
std::string private_problem(const struct stat& st) {
  if (st.st_uid != geteuid())
    return "is owned by uid " + std::to_string(st.st_uid) + ", not by this user (uid " + std::to_string(geteuid()) +
           ")";
  if ((st.st_mode & 022) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return std::string("is writable by group or others (mode ") + mode + ")";
  }
  return "";
}

std::string read_limited(int fd, size_t max_bytes, bool* too_large) {
  std::string data;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::system_error(errno, std::generic_category());
    if (n == 0) return data;
    if (data.size() + static_cast<size_t>(n) > max_bytes) {
      *too_large = true;  // the file grew past the limit after fstat
      return data;
    }
    data.append(buf, static_cast<size_t>(n));
  }
}

std::string base_name(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Throws unless nothing or a regular file is at `path`.
void require_regular_or_nothing(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    detail::throw_system(errno, ("lstat(" + text::printable(path) + ")").c_str(), __FILE__, __LINE__);
  }
  if (!S_ISREG(st.st_mode))
    throw InvalidArgument("refusing to replace " + text::printable(path) + ": it " + kind_text(st.st_mode) +
                          " (customar writes regular files only, never through a link)");
}

uint64_t random_suffix() {
  uint64_t v = 0;
  if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == static_cast<ssize_t>(sizeof(v))) return v;
  // No entropy yet (early boot): unique enough, and O_EXCL keeps a guessed name from being reused anyway.
  static std::atomic<uint64_t> counter{0};
  return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
         (static_cast<uint64_t>(getpid()) << 32) ^ counter.fetch_add(0x9e3779b97f4a7c15ULL);
}

// A new, empty file next to `path`, created with O_EXCL so that nothing already there (a planted link or file) is
// ever opened. Removed on destruction unless `keep`.
struct TempFile {
  std::string name;
  int fd = -1;
  bool keep = false;

  TempFile(const std::string& path, mode_t mode) {
    std::string prefix = parent_dir(path) + "/.tmp-" + base_name(path) + "-";
    for (int attempt = 0; attempt < 64; ++attempt) {
      char suffix[20];
      std::snprintf(suffix, sizeof(suffix), "%016llx", static_cast<unsigned long long>(random_suffix()));
      name = prefix + suffix;
      fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
      if (fd >= 0 || errno != EEXIST) break;
    }
    if (fd < 0)
      detail::throw_system(
          errno, ("writing " + text::printable(path) + ": open(" + text::printable(name) + ", O_EXCL)").c_str(),
          __FILE__, __LINE__);
  }
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!keep) ::unlink(name.c_str());
  }
  void write_all(std::string_view data) {
    for (size_t done = 0; done < data.size();) {
      ssize_t n = ::write(fd, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) detail::throw_system(errno, ("write(" + text::printable(name) + ")").c_str(), __FILE__, __LINE__);
      done += static_cast<size_t>(n);
    }
    // Durable before it becomes visible: a crash after the rename must not leave an empty or torn file.
    if (::fsync(fd) != 0)
      detail::throw_system(errno, ("fsync(" + text::printable(name) + ")").c_str(), __FILE__, __LINE__);
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) detail::throw_system(errno, ("close(" + text::printable(name) + ")").c_str(), __FILE__, __LINE__);
  }
};

}  // namespace

ReadResult try_read_file(const std::string& path, const ReadRules& rules) {
  ReadResult r;
  auto refuse = [&r](std::string why) {
    r.status = ReadStatus::kRefused;
    r.why = std::move(why);
    r.data.clear();
    return r;
  };
  if (path.empty()) return refuse("is an empty path");
  // Look before opening: opening a device can act on it (a tape rewinds, a watchdog arms).
  struct stat st {};
  if ((rules.follow_link ? ::stat(path.c_str(), &st) : ::lstat(path.c_str(), &st)) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      r.why = errno_text("cannot be opened", errno);
      return r;
    }
    return refuse(errno_text("cannot be examined", errno));
  }
  if (!S_ISREG(st.st_mode)) return refuse(kind_text(st.st_mode));
  // O_NONBLOCK: if a FIFO was swapped in after the look, open and read return at once instead of waiting for a
  // writer; fstat below then refuses it.
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (rules.follow_link ? 0 : O_NOFOLLOW));
  if (f.fd < 0) return refuse(errno == ELOOP ? kind_text(S_IFLNK) : errno_text("cannot be opened", errno));
  if (::fstat(f.fd, &st) != 0) return refuse(errno_text("cannot be examined", errno));
  if (!S_ISREG(st.st_mode)) return refuse(kind_text(st.st_mode));
  if (rules.private_owner) {
    std::string problem = private_problem(st);
    if (!problem.empty()) return refuse(problem);
  }
  const std::string too_large = "is larger than " + size_text(rules.max_bytes) + ", the limit for this file";
  if (static_cast<uint64_t>(st.st_size) > rules.max_bytes) return refuse(too_large);
  bool grew = false;
  try {
    r.data = read_limited(f.fd, rules.max_bytes, &grew);
  } catch (const std::system_error& e) {
    return refuse(errno_text("cannot be read", e.code().value()));
  }
  if (grew) return refuse(too_large);
  r.status = ReadStatus::kOk;
  return r;
}

std::string read_file(const std::string& path, const ReadRules& rules, const std::string& label) {
  ReadResult r = try_read_file(path, rules);
  if (r.status != ReadStatus::kOk) throw ConfigError(label + text::printable(path) + ": " + r.why);
  return std::move(r.data);
}

void write_file_atomic(const std::string& path, std::string_view data, mode_t mode) {
  if (path.empty()) throw InvalidArgument("cannot write a file with an empty name");
  require_regular_or_nothing(path);
  TempFile tmp(path, mode);
  tmp.write_all(data);
  // Looked at again just before the rename, which replaces whatever entry is there by then.
  require_regular_or_nothing(path);
  if (::rename(tmp.name.c_str(), path.c_str()) != 0)
    detail::throw_system(errno, ("rename(" + text::printable(tmp.name) + ", " + text::printable(path) + ")").c_str(),
                         __FILE__, __LINE__);
  tmp.keep = true;
}

DirState check_private_dir(const std::string& dir, std::string* why) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return DirState::kMissing;
    *why = text::printable(dir) + ": " + errno_text("cannot be examined", errno);
    return DirState::kUnsafe;
  }
  std::string problem = S_ISDIR(st.st_mode) ? private_problem(st) : kind_text(st.st_mode);
  if (problem.empty()) return DirState::kPrivate;
  *why = text::printable(dir) + " " + problem;
  return DirState::kUnsafe;
}

bool make_private_dir(const std::string& dir, std::string* why) {
  if (dir.empty()) {
    *why = "no directory given";
    return false;
  }
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), pos == dir.size() ? 0700 : 0755) != 0 && errno != EEXIST) {
      *why = "mkdir " + text::printable(part) + ": " + std::strerror(errno);
      return false;
    }
  }
  DirState state = check_private_dir(dir, why);
  if (state == DirState::kMissing) *why = text::printable(dir) + " vanished after it was created";
  return state == DirState::kPrivate;
}

std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string cache_dir_for(const std::string& configured, const char* home) {
  if (!configured.empty()) return configured;
  if (home == nullptr || home[0] != '/') return "";
  std::string h = home;
  while (h.size() > 1 && h.back() == '/') h.pop_back();
  return (h == "/" ? "" : h) + "/.cache/customar";
}

const std::string& user_cache_dir() {
  static const std::string dir = [] {
    std::string d = cache_dir_for(env().cache_dir, std::getenv("HOME"));
    if (d.empty())
      CUSTOMAR_INFO("CONFIG",
                    "HOME is unset, empty or not an absolute path and CUSTOMAR_CACHE_DIR is unset: the kernel cache "
                    "and the tuned config are off (kernels are compiled in every process)");
    return d;
  }();
  return dir;
}

}  // namespace customar::files
