// Shim for abseil 20220623 (HasAbslStringify appeared in 20230125): same trait.
#ifndef ABSL_STRINGS_HAS_ABSL_STRINGIFY_SHIM_H_
#define ABSL_STRINGS_HAS_ABSL_STRINGIFY_SHIM_H_
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include "absl/strings/string_view.h"
namespace absl {
namespace strings_internal {
class UnimplementedSink {
 public:
  void Append(size_t count, char ch);
  void Append(string_view v);
  friend void AbslFormatFlush(UnimplementedSink* sink, absl::string_view v);
};
}  // namespace strings_internal
template <typename T, typename = void>
struct HasAbslStringify : std::false_type {};
template <typename T>
struct HasAbslStringify<
    T, std::enable_if_t<std::is_void<decltype(AbslStringify(
           std::declval<strings_internal::UnimplementedSink&>(),
           std::declval<const T&>()))>::value>> : std::true_type {};

// abseil 20220623's StrCat does not know AbslStringify (20230125 does): one overload for it.
namespace strings_internal {
class StringifySink {
 public:
  void Append(size_t count, char ch) { buffer_.append(count, ch); }
  void Append(string_view v) { buffer_.append(v.data(), v.size()); }
  friend void AbslFormatFlush(StringifySink* sink, absl::string_view v) {
    sink->Append(v);
  }
  std::string buffer_;
};
}  // namespace strings_internal
template <typename T, typename std::enable_if<HasAbslStringify<T>::value, int>::type = 0>
std::string StrCat(const T& v) {
  strings_internal::StringifySink sink;
  AbslStringify(sink, v);
  return std::move(sink.buffer_);
}
}  // namespace absl
#endif
