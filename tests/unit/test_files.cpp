// The file module every reader and writer goes through (src/common/files.h), against what another local user or a
// typo can put at a path: a FIFO, a symbolic link to someone else's file, a device, a directory, a file of the wrong
// owner or mode, an endless or huge file.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "common/files.h"
#include "customar/error.h"
#include "scratch_dir.h"

namespace fs = std::filesystem;
using namespace customar;
using files::ReadStatus;

namespace {

// A fresh private directory per test case, removed afterwards.
class Files : public testing::Test {
 protected:
  void SetUp() override { dir_ = testing_support::scratch_dir("files", true); }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string make_file(const std::string& name, const std::string& text, mode_t mode = 0644) const {
    std::string p = path(name);
    std::ofstream(p) << text;
    chmod(p.c_str(), mode);
    return p;
  }
  static std::string slurp(const std::string& p) {
    std::ifstream f(p);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  int entries() const {
    int n = 0;
    for ([[maybe_unused]] auto& e : fs::directory_iterator(dir_)) ++n;
    return n;
  }

  std::string dir_;
};

constexpr files::ReadRules kPlain{1 << 20, false, false};
constexpr files::ReadRules kPrivate{1 << 20, false, true};

}  // namespace

TEST_F(Files, ReadsARegularFile) {
  files::ReadResult r = files::try_read_file(make_file("a.json", "{}"), kPlain);
  EXPECT_EQ(r.status, ReadStatus::kOk);
  EXPECT_EQ(r.data, "{}");
}

TEST_F(Files, AMissingFileIsMissingNotRefused) {
  files::ReadResult r = files::try_read_file(path("none"), kPlain);
  EXPECT_EQ(r.status, ReadStatus::kMissing);
  EXPECT_EQ(r.why, "cannot be opened (No such file or directory)");
  EXPECT_EQ(files::try_read_file(path("none/below"), kPlain).status, ReadStatus::kMissing);
}

TEST_F(Files, AFifoIsRefusedAtOnceNotWaitedOn) {
  ASSERT_EQ(mkfifo(path("fifo").c_str(), 0600), 0);
  auto start = std::chrono::steady_clock::now();
  files::ReadResult r = files::try_read_file(path("fifo"), kPlain);
  EXPECT_EQ(r.status, ReadStatus::kRefused);
  EXPECT_EQ(r.why, "is a FIFO");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(Files, DevZeroIsRefusedNotReadForEver) {
  files::ReadResult r = files::try_read_file("/dev/zero", {1 << 20, true, false});
  EXPECT_EQ(r.status, ReadStatus::kRefused);
  EXPECT_EQ(r.why, "is a character device");
}

TEST_F(Files, ADirectoryIsSaidToBeOne) {
  fs::create_directory(path("d"));
  EXPECT_EQ(files::try_read_file(path("d"), kPlain).why, "is a directory");
  try {
    files::read_file(path("d"), kPlain, "topology file ");
    FAIL() << "no throw";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "topology file " + path("d") + ": is a directory");
  }
}

TEST_F(Files, AFileAboveTheLimitIsRefusedWithoutReadingIt) {
  std::string big = path("sparse");
  std::ofstream{big};
  fs::resize_file(big, 2ull << 30);  // sparse: 2 GiB that take no disk
  files::ReadResult r = files::try_read_file(big, kPlain);
  EXPECT_EQ(r.status, ReadStatus::kRefused);
  EXPECT_NE(r.why.find("larger than 1 MiB"), std::string::npos) << r.why;
  EXPECT_EQ(files::try_read_file(make_file("exact", std::string(16, 'x')), {16, false, false}).status, ReadStatus::kOk);
  EXPECT_EQ(files::try_read_file(make_file("over", std::string(17, 'x')), {16, false, false}).status,
            ReadStatus::kRefused);
}

TEST_F(Files, ALinkIsRefusedUnlessFollowingWasAskedFor) {
  std::string target = make_file("target.json", "{}");
  fs::create_symlink(target, path("link.json"));
  files::ReadResult r = files::try_read_file(path("link.json"), kPlain);
  EXPECT_EQ(r.status, ReadStatus::kRefused);
  EXPECT_EQ(r.why, "is a symbolic link");
  EXPECT_EQ(files::try_read_file(path("link.json"), {1 << 20, true, false}).data, "{}");
  // Followed, the target is still held to the rules.
  fs::create_symlink("/dev/zero", path("zero"));
  EXPECT_EQ(files::try_read_file(path("zero"), {1 << 20, true, false}).why, "is a character device");
}

TEST_F(Files, APrivateReadRefusesAFileOthersCanWrite) {
  std::string p = make_file("tuned.json", "{}", 0666);
  files::ReadResult r = files::try_read_file(p, kPrivate);
  EXPECT_EQ(r.status, ReadStatus::kRefused);
  EXPECT_EQ(r.why, "is writable by group or others (mode 0666)");
  chmod(p.c_str(), 0620);
  EXPECT_EQ(files::try_read_file(p, kPrivate).status, ReadStatus::kRefused);
  chmod(p.c_str(), 0644);
  EXPECT_EQ(files::try_read_file(p, kPrivate).status, ReadStatus::kOk);
  EXPECT_EQ(files::try_read_file(make_file("loose.json", "{}", 0666), kPlain).status, ReadStatus::kOk);
}

TEST_F(Files, APrivateReadRefusesAFileOfAnotherUser) {
  std::string p = make_file("foreign.json", "{}", 0644);
  if (!testing_support::give_to_nobody(p)) GTEST_SKIP() << "giving a file to another user needs root";
  files::ReadResult r = files::try_read_file(p, kPrivate);
  EXPECT_EQ(r.status, ReadStatus::kRefused);
  EXPECT_NE(r.why.find("not by this user"), std::string::npos) << r.why;
}

TEST_F(Files, WriteReplacesARegularFileAndLeavesNothingElse) {
  std::string p = make_file("out.json", "old");
  files::write_file_atomic(p, "new", 0644);
  EXPECT_EQ(slurp(p), "new");
  files::write_file_atomic(path("fresh.json"), "x", 0600);
  EXPECT_EQ(fs::status(path("fresh.json")).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(entries(), 2);
}

TEST_F(Files, WriteNeverFollowsALinkPlantedAtTheTarget) {
  std::string victim = make_file("victim", "someone else's");
  fs::create_symlink(victim, path("dump.json"));
  try {
    files::write_file_atomic(path("dump.json"), "overwritten", 0644);
    FAIL() << "no throw";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("is a symbolic link"), std::string::npos) << e.what();
  }
  EXPECT_EQ(slurp(victim), "someone else's");
  EXPECT_TRUE(fs::is_symlink(path("dump.json")));
  EXPECT_EQ(entries(), 2) << "a temporary file was left behind";
}

TEST_F(Files, WriteRefusesADirectoryOrFifoAtTheTarget) {
  fs::create_directory(path("d"));
  ASSERT_EQ(mkfifo(path("fifo").c_str(), 0600), 0);
  for (const char* name : {"d", "fifo"}) {
    EXPECT_THROW(files::write_file_atomic(path(name), "x", 0644), InvalidArgument) << name;
  }
  EXPECT_TRUE(fs::is_directory(path("d")));
  EXPECT_TRUE(fs::is_fifo(path("fifo")));
  EXPECT_EQ(entries(), 2);
}

TEST_F(Files, WriteNeverReplacesADeviceNode) {
  // A node of its own (the same device as /dev/null): the test never points a writer at a real /dev entry.
  if (mknod(path("null").c_str(), S_IFCHR | 0666, makedev(1, 3)) != 0) GTEST_SKIP() << "mknod needs root";
  try {
    files::write_file_atomic(path("null"), "x", 0644);
    FAIL() << "no throw";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("is a character device"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_character_file(path("null")));
}

TEST_F(Files, AFailedWriteIsASystemErrorAndLeavesNoTemporaryFile) {
  EXPECT_THROW(files::write_file_atomic(path("no-such-dir/x.json"), "x", 0644), SystemError);
  EXPECT_THROW(files::write_file_atomic("", "x", 0644), InvalidArgument);
  if (geteuid() != 0) {  // root writes into a read-only directory anyway
    chmod(dir_.c_str(), 0500);
    EXPECT_THROW(files::write_file_atomic(path("x.json"), "x", 0644), SystemError);
    chmod(dir_.c_str(), 0700);
  }
  EXPECT_EQ(entries(), 0);
}

TEST_F(Files, PrivateDirectoryChecks) {
  std::string why;
  EXPECT_EQ(files::check_private_dir(dir_, &why), files::DirState::kPrivate);
  EXPECT_EQ(files::check_private_dir(path("none"), &why), files::DirState::kMissing);
  fs::create_directory(path("open"));
  chmod(path("open").c_str(), 0777);
  EXPECT_EQ(files::check_private_dir(path("open"), &why), files::DirState::kUnsafe);
  EXPECT_NE(why.find("writable by group or others"), std::string::npos) << why;
  fs::create_directory_symlink(dir_, path("link"));
  EXPECT_EQ(files::check_private_dir(path("link"), &why), files::DirState::kUnsafe);
  EXPECT_NE(why.find("symbolic link"), std::string::npos) << why;
  EXPECT_TRUE(files::make_private_dir(path("a/b/c"), &why)) << why;
  EXPECT_EQ(fs::status(path("a/b/c")).permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_FALSE(files::make_private_dir(path("open"), &why));
  EXPECT_FALSE(files::make_private_dir(path("link"), &why));
}

TEST_F(Files, AForeignDirectoryIsNotPrivate) {
  fs::create_directory(path("theirs"));
  chmod(path("theirs").c_str(), 0700);
  if (!testing_support::give_to_nobody(path("theirs"))) GTEST_SKIP() << "giving a directory to another user needs root";
  std::string why;
  EXPECT_EQ(files::check_private_dir(path("theirs"), &why), files::DirState::kUnsafe);
  EXPECT_NE(why.find("not by this user"), std::string::npos) << why;
}

TEST(CacheDir, NoAbsoluteHomeMeansNoCacheNeverASharedOne) {
  EXPECT_EQ(files::cache_dir_for("", nullptr), "");
  EXPECT_EQ(files::cache_dir_for("", ""), "");
  EXPECT_EQ(files::cache_dir_for("", "relative/home"), "");
  EXPECT_EQ(files::cache_dir_for("", "~"), "");
  EXPECT_EQ(files::cache_dir_for("", "/home/u"), "/home/u/.cache/customar");
  EXPECT_EQ(files::cache_dir_for("", "/home/u/"), "/home/u/.cache/customar");
  EXPECT_EQ(files::cache_dir_for("", "/"), "/.cache/customar");
  EXPECT_EQ(files::cache_dir_for("/opt/cache", nullptr), "/opt/cache");
}

TEST(CacheDir, ParentDirOfAPath) {
  EXPECT_EQ(files::parent_dir("/a/b/c.json"), "/a/b");
  EXPECT_EQ(files::parent_dir("/c.json"), "/");
  EXPECT_EQ(files::parent_dir("c.json"), ".");
}
