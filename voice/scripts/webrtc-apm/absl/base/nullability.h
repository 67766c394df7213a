// Shim for building WebRTC APM 2.1 against Debian 12's abseil 20220623, which predates
// nullability annotations (abseil 20230802): the annotations are documentation only.
#ifndef ABSL_BASE_NULLABILITY_SHIM_H_
#define ABSL_BASE_NULLABILITY_SHIM_H_
#define absl_nullable
#define absl_nonnull
#define absl_nullability_unknown
#define ABSL_POINTERS_DEFAULT_NONNULL
#define ABSL_NULLABILITY_COMPATIBLE
namespace absl {
template <typename T> using Nullable = T;
template <typename T> using Nonnull = T;
template <typename T> using NullabilityUnknown = T;
}  // namespace absl
#endif
