// Byte packing for the small set-up messages ranks exchange through a Group. A reader of a message checks every
// field it decodes (get() and get_string() never read past the end) and then that nothing is left (expect_end()).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "customar/error.h"

namespace customar::detail {

class Writer {
 public:
  template <typename T>
  Writer& put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    buf_.insert(buf_.end(), p, p + sizeof(T));
    return *this;
  }
  Writer& put_string(const std::string& s) {
    put<uint32_t>(static_cast<uint32_t>(s.size()));
    buf_.insert(buf_.end(), s.begin(), s.end());
    return *this;
  }
  std::vector<uint8_t>& bytes() { return buf_; }

 private:
  std::vector<uint8_t> buf_;
};

class Reader {
 public:
  explicit Reader(const std::vector<uint8_t>& b) : b_(b) {}
  template <typename T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    need(sizeof(T));
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string get_string() {
    auto n = get<uint32_t>();
    need(n);
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  /// Throws unless every byte has been read: a message longer than its fields is not the message it claims to be
  /// (a peer of another build, or a corrupted exchange), and accepting it would hide that.
  void expect_end() const {
    if (pos_ != b_.size())
      throw Error("a peer sent a set-up message with " + std::to_string(b_.size() - pos_) +
                  " unexpected trailing bytes (ranks running different builds?)");
  }

 private:
  void need(size_t n) const {
    if (pos_ + n > b_.size()) throw Error("a peer sent a truncated set-up message (ranks running different builds?)");
  }
  const std::vector<uint8_t>& b_;
  size_t pos_ = 0;
};

}  // namespace customar::detail
