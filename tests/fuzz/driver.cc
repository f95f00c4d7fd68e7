// The fuzz targets' main() when they are not built with libFuzzer (the default gcc build):
// replays every seed of the corpus directories given, then runs a bounded, deterministic
// mutation loop over them (bit flips, byte sets, inserts, erases, splices), so `ctest -L fuzz`
// fuzzes for a bounded time in every build. Built with clang and -DTUSK_FUZZ=libfuzzer the
// same targets link libFuzzer instead and this file is not used.
// Written by hand: a corpus replayer this small is not worth a dependency (Debian's libFuzzer
// needs clang; AFL++ needs its own compiler wrappers).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// With TUSK_FUZZ_SAVE=FILE each input is written there before it runs: after a crash, a hang
// or an out-of-memory kill, FILE holds the input that did it.
void run(const std::string& input) {
  static const char* save = std::getenv("TUSK_FUZZ_SAVE");
  if (save != nullptr) {
    std::ofstream(save, std::ios::binary | std::ios::trunc) << input;
  }
  LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> seeds;
  double seconds = 10;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("-max_total_time=", 0) == 0) {
      seconds = std::atof(arg.c_str() + 16);
      continue;
    }
    std::filesystem::path p(arg);
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::directory_iterator(p)) {
        if (e.is_regular_file()) {
          seeds.push_back(read_file(e.path()));
        }
      }
    } else {
      seeds.push_back(read_file(p));
    }
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "usage: %s [-max_total_time=S] CORPUS_DIR|FILE...\n", argv[0]);
    return 2;
  }
  for (const auto& s : seeds) {
    run(s);
  }
  std::mt19937_64 rng(0x7a5c);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::uint64_t runs = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    for (int batch = 0; batch < 256; ++batch, ++runs) {
      std::string in = seeds[rng() % seeds.size()];
      const int edits = 1 + static_cast<int>(rng() % 8);
      for (int e = 0; e < edits; ++e) {
        const std::size_t at = in.empty() ? 0 : rng() % (in.size() + 1);
        switch (rng() % 6) {
          case 0:
            if (!in.empty() && at < in.size()) {
              in[at] = static_cast<char>(in[at] ^ (1 << (rng() % 8)));
            }
            break;
          case 1:
            if (at < in.size()) {
              in[at] = static_cast<char>(rng());
            }
            break;
          case 2:
            in.insert(at, 1 + rng() % 4, static_cast<char>(rng()));
            break;
          case 3:
            if (at < in.size()) {
              in.erase(at, 1 + rng() % 4);
            }
            break;
          case 4: {  // splice in a piece of another seed
            const std::string& other = seeds[rng() % seeds.size()];
            if (!other.empty()) {
              const std::size_t from = rng() % other.size();
              in.insert(at, other, from, 1 + rng() % 16);
            }
            break;
          }
          default:  // repeat a piece (lists, long values)
            if (at < in.size()) {
              std::string piece = in.substr(at, 1 + rng() % 8);
              for (int k = static_cast<int>(rng() % 64); k > 0; --k) {
                in.insert(at, piece);
              }
            }
        }
      }
      if (in.size() > 1 << 16) {
        in.resize(1 << 16);
      }
      run(in);
    }
  }
  std::printf("%zu seeds replayed, %llu mutated inputs in %.0f s\n", seeds.size(),
              static_cast<unsigned long long>(runs), seconds);
  return 0;
}
