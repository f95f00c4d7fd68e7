// Result<T, E>: the one error shape of tusk, with the std::expected API (g++ 12 has no <expected>
// in C++20 mode). Lives in conf/ because conf is the one module every other module may use.
// Tricky: Result<void, E> is a separate specialisation; `unexpected(e)` builds the error side.
#pragma once

#include <type_traits>
#include <utility>
#include <variant>

#include "conf/check.h"

namespace conf {

template <class E>
class Unexpected {
 public:
  explicit Unexpected(E e) : error_(std::move(e)) {}
  E& error() & { return error_; }
  E&& error() && { return std::move(error_); }

 private:
  E error_;
};

template <class E>
Unexpected<std::decay_t<E>> unexpected(E&& e) {
  return Unexpected<std::decay_t<E>>(std::forward<E>(e));
}

template <class T, class E>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit on purpose
  template <class G>
  Result(Unexpected<G> e) : v_(std::in_place_index<1>, std::move(e).error()) {}  // NOLINT

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    TUSK_CHECK(has_value());
    return std::get<0>(v_);
  }
  const T& value() const& {
    TUSK_CHECK(has_value());
    return std::get<0>(v_);
  }
  T&& value() && {
    TUSK_CHECK(has_value());
    return std::get<0>(std::move(v_));
  }
  const E& error() const& {
    TUSK_CHECK(!has_value());
    return std::get<1>(v_);
  }
  E&& error() && {
    TUSK_CHECK(!has_value());
    return std::get<1>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  template <class U>
  T value_or(U&& fallback) const& {
    return has_value() ? std::get<0>(v_) : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  std::variant<T, E> v_;
};

template <class E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  template <class G>
  Result(Unexpected<G> e) : error_(std::move(e).error()), ok_(false) {}  // NOLINT

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  void value() const { TUSK_CHECK(ok_); }
  const E& error() const& {
    TUSK_CHECK(!ok_);
    return error_;
  }
  E&& error() && {
    TUSK_CHECK(!ok_);
    return std::move(error_);
  }

 private:
  E error_{};
  bool ok_ = true;
};

}  // namespace conf
