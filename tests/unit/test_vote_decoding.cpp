// A peer's set-up vote is decoded strictly: every value in range and every byte accounted for, or a ConfigError
// naming the rank and the field. A two-rank group whose peer "sends" a vote the test edits stands in for a peer of
// another build or a corrupted exchange.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "customar/config.h"
#include "customar/error.h"
#include "customar/group.h"
#include "dispatch/setup.h"

using namespace customar;

namespace {

// Rank 0 of two; rank 1's vote is this rank's own, passed through `edit`.
class EditedPeerGroup final : public Group {
 public:
  explicit EditedPeerGroup(std::function<void(Bytes&)> edit) : edit_(std::move(edit)) {}
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::vector<Bytes> all_gather(std::span<const uint8_t> mine) override {
    Bytes peer(mine.begin(), mine.end());
    edit_(peer);
    return {Bytes(mine.begin(), mine.end()), peer};
  }
  void barrier() override {}

 private:
  std::function<void(Bytes&)> edit_;
};

detail::LocalChoice v2_choice() {
  detail::LocalChoice c;
  c.decision = {Backend::kV2, "full NVLink"};
  c.thresholds = *builtin_config().find(ArchFamily::kHopper, 4);
  return c;
}

// The vote's layout (dispatch.cpp encode_vote): error string (u32 length + bytes), backend (i32), reason string,
// four u64 thresholds, forced algorithm (i32), check flag (u8). With an empty error the backend is at offset 4.
constexpr size_t kBackendOffset = 4;
size_t algo_offset(const Bytes& vote) { return vote.size() - 1 - 4; }

void put_i32(Bytes& b, size_t at, int32_t v) { std::memcpy(b.data() + at, &v, sizeof(v)); }

std::string vote_error(const std::function<void(Bytes&)>& edit) {
  EditedPeerGroup g(edit);
  try {
    detail::agree_choice(g, v2_choice());
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(VoteDecoding, AnUneditedVoteIsAgreed) {
  EditedPeerGroup g([](Bytes&) {});
  EXPECT_EQ(detail::agree_choice(g, v2_choice()).decision.backend, Backend::kV2);
}

TEST(VoteDecoding, AnUnknownBackendIsAnErrorNotUnknown) {
  for (int32_t bad : {4, 7, -1, 1 << 30}) {
    std::string err = vote_error([&](Bytes& b) { put_i32(b, kBackendOffset, bad); });
    EXPECT_NE(err.find("rank 1 sent a malformed set-up vote: backend value " + std::to_string(bad)), std::string::npos)
        << bad << ": " << err;
  }
}

TEST(VoteDecoding, AnUnknownForcedAlgorithmIsAnError) {
  for (int32_t bad : {4, -2}) {
    std::string err = vote_error([&](Bytes& b) { put_i32(b, algo_offset(b), bad); });
    EXPECT_NE(err.find("forced algorithm value " + std::to_string(bad)), std::string::npos) << err;
  }
}

TEST(VoteDecoding, ACheckFlagOtherThanZeroOrOneIsAnError) {
  std::string err = vote_error([](Bytes& b) { b.back() = 2; });
  EXPECT_NE(err.find("check flag 2"), std::string::npos) << err;
}

TEST(VoteDecoding, TrailingBytesAreAnError) {
  std::string err = vote_error([](Bytes& b) { b.push_back(0); });
  EXPECT_NE(err.find("rank 1 sent a malformed set-up vote"), std::string::npos) << err;
  EXPECT_NE(err.find("1 unexpected trailing bytes"), std::string::npos) << err;
}

TEST(VoteDecoding, ATruncatedVoteIsAnError) {
  std::string err = vote_error([](Bytes& b) { b.pop_back(); });
  EXPECT_NE(err.find("rank 1 sent a malformed set-up vote"), std::string::npos) << err;
  EXPECT_NE(err.find("truncated"), std::string::npos) << err;
}
