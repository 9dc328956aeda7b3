#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "customar/config.h"
#include "customar/error.h"

using namespace customar;

TEST(Config, BuiltinKeysAreWorldSizes2To8ForEveryFamily) {
  Config c = builtin_config();
  for (ArchFamily f : {ArchFamily::kAmpere, ArchFamily::kHopper, ArchFamily::kBlackwell, ArchFamily::kOther})
    EXPECT_EQ(c.world_sizes(f), (std::vector<int>{2, 3, 4, 5, 6, 7, 8})) << arch_family_name(f);
  EXPECT_EQ(c.find(ArchFamily::kHopper, 1), nullptr);
  EXPECT_EQ(c.find(ArchFamily::kHopper, 9), nullptr);
}

TEST(Config, BuiltinHopperMatchesTheSeedTable) {
  Config c = builtin_config();
  const Thresholds* t2 = c.find(ArchFamily::kHopper, 2);
  ASSERT_NE(t2, nullptr);
  EXPECT_EQ(t2->oneshot_push_max, 4u << 20);
  EXPECT_EQ(t2->oneshot_pull_max, kUnlimited);
  const Thresholds* t4 = c.find(ArchFamily::kHopper, 4);
  EXPECT_EQ(t4->oneshot_push_max, 256u << 10);
  EXPECT_EQ(t4->oneshot_pull_max, 1u << 20);
  EXPECT_EQ(c.find(ArchFamily::kHopper, 8)->oneshot_push_max, 160u << 10);
  EXPECT_EQ(c.find(ArchFamily::kBlackwell, 7)->oneshot_pull_max, 896u << 10);
  for (int ws = 2; ws <= 8; ++ws) EXPECT_GE(c.find(ArchFamily::kHopper, ws)->custom_max, 16u << 20);
}

TEST(Config, ArchFamilies) {
  EXPECT_EQ(arch_family(80), ArchFamily::kAmpere);
  EXPECT_EQ(arch_family(89), ArchFamily::kAmpere);
  EXPECT_EQ(arch_family(90), ArchFamily::kHopper);
  EXPECT_EQ(arch_family(100), ArchFamily::kBlackwell);
  EXPECT_EQ(arch_family(120), ArchFamily::kOther);
}

TEST(Config, FileMergesOverBuiltin) {
  Config c = merge_config_json(builtin_config(),
                               R"({"machine": "x", "entries": [{"arch": "hopper", "world_size": 4,
                                   "oneshot_push_max": 1024, "custom_max": "unlimited"}]})",
                               "f.json");
  const Thresholds* t = c.find(ArchFamily::kHopper, 4);
  EXPECT_EQ(t->oneshot_push_max, 1024u);
  EXPECT_EQ(t->oneshot_pull_max, builtin_config().find(ArchFamily::kHopper, 4)->oneshot_pull_max);  // kept
  EXPECT_EQ(t->custom_max, kUnlimited);
  EXPECT_EQ(*c.find(ArchFamily::kHopper, 2), *builtin_config().find(ArchFamily::kHopper, 2));
  EXPECT_NE(c.source.find("f.json"), std::string::npos);
}

TEST(Config, JsonRoundTrip) {
  Config c = builtin_config();
  Config back = merge_config_json(Config{}, config_to_json(c), "rt");
  EXPECT_EQ(back.table, c.table);
}

TEST(Config, BadFilesAreClearErrors) {
  for (const char* bad :
       {R"([])", R"({})", R"({"entries": 3})", R"({"entries": [{"world_size": 4}]})",
        R"({"entries": [{"arch": "hopper"}]})", R"({"entries": [{"arch": "volta", "world_size": 4}]})",
        R"({"entries": [{"arch": "hopper", "world_size": 9}]})",
        R"({"entries": [{"arch": "hopper", "world_size": 4, "oneshot_push_max": -1}]})",
        R"({"entries": [{"arch": "hopper", "world_size": 4, "oneshot_push_max": "big"}]})",
        R"({"entries": [{"arch": "hopper", "world_size": 4, "typo": 1}]})", R"({"entries": [], "extra": 1})"}) {
    EXPECT_THROW(merge_config_json(builtin_config(), bad, "bad.json"), ConfigError) << bad;
  }
}

TEST(Config, LazyFillsExactlyOnceUnder16Threads) {
  std::atomic<int> loads{0};
  LazyConfig lazy([&] {
    loads.fetch_add(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // widen the race window
    return builtin_config();
  });
  std::atomic<bool> go{false};
  std::vector<const Config*> seen(16, nullptr);
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i)
    threads.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      seen[i] = &lazy.get();
    });
  go.store(true);
  for (auto& t : threads) t.join();
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(lazy.fill_count(), 1);
  for (const Config* c : seen) {
    ASSERT_EQ(c, seen[0]);
    EXPECT_EQ(c->world_sizes(ArchFamily::kHopper).size(), 7u);
  }
}

TEST(Config, LazyRetriesAfterAFailedFill) {
  int calls = 0;
  LazyConfig lazy([&] {
    if (++calls == 1) throw ConfigError("transient");
    return builtin_config();
  });
  EXPECT_THROW(lazy.get(), ConfigError);
  EXPECT_EQ(lazy.fill_count(), 0);
  EXPECT_EQ(lazy.get().world_sizes(ArchFamily::kHopper).size(), 7u);
  EXPECT_EQ(lazy.fill_count(), 1);
}
