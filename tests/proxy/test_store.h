// What the fill and request tests share: a temporary directory and a small store in it
// (1 MiB, 4-byte chunks, so a 10-byte object has three chunks), on a manual clock.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "cache/store.h"
#include "conf/clock.h"

namespace proxy {

inline std::string make_temp_dir(const char* prefix) {
  std::string tmpl = (std::filesystem::temp_directory_path() / prefix).string() + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << tmpl;
  }
  return tmpl;
}

inline std::unique_ptr<cache::Store> open_test_store(const std::string& dir,
                                                     const conf::ManualClock& clock) {
  cache::Options o;
  o.dir = dir + "/cache";
  o.max_size = 1 << 20;
  o.chunk_size = 4;
  o.now = clock.clock();
  auto s = cache::Store::open(std::move(o));
  if (!s) {
    ADD_FAILURE() << s.error().message;
    return nullptr;
  }
  return std::move(s).value();
}

}  // namespace proxy
