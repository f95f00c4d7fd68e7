// Streaming bundler and unbundler (EUSTORE.md §3). Bundle: image → tar (hand-written on purpose:
// one GNU-format member is a 512-byte header) → SHA-1 → gzip (zlib) → AES-128-CBC → 10 MiB parts
// with SHA-1/SHA-256 each, in one pass. Unbundle pulls the same chain backwards and lets libarchive
// parse the tar, so long names, PAX headers and sparse members of other bundlers are read too.
#include "installer/bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <optional>

namespace installer {
namespace {

constexpr std::size_t kReadBlock = 1 << 20;
constexpr std::size_t kZBuf = 256 * 1024;
constexpr std::size_t kTarBlock = 512;
constexpr std::size_t kTarRecord = 20 * kTarBlock;  // GNU tar's default record size

std::string errno_text() { return std::strerror(errno); }

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset();
    fd_ = std::exchange(o.fd_, -1);
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = -1;
  }
  // close() reporting errors (a failed close can mean lost writes).
  bool close_checked() {
    int fd = std::exchange(fd_, -1);
    return fd < 0 || ::close(fd) == 0;
  }

 private:
  int fd_ = -1;
};

Result<void> write_all(int fd, const char* p, std::size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(Errc::kIo, "write " + path + ": " + errno_text());
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return {};
}

std::string part_name(const std::string& prefix, std::size_t index) {
  std::string n = std::to_string(index);
  return prefix + ".part." + (n.size() < 2 ? "0" + n : n);
}

// --- tar ----------------------------------------------------------------------------------

void put_octal(char* field, std::size_t width, std::uint64_t value) {
  // width-1 octal digits, zero-padded, then NUL.
  std::snprintf(field, width, "%0*llo", static_cast<int>(width - 1),
                static_cast<unsigned long long>(value));
}

void put_size(char* field, std::uint64_t size) {
  if (size < (1ull << 33)) {  // fits 11 octal digits
    put_octal(field, 12, size);
    return;
  }
  // GNU base-256: first byte 0x80, then the value big-endian in the remaining 11 bytes.
  std::memset(field, 0, 12);
  field[0] = static_cast<char>(0x80);
  for (int i = 11; i >= 1 && size > 0; --i) {
    field[i] = static_cast<char>(size & 0xff);
    size >>= 8;
  }
}

std::string header_block(std::string_view name, std::uint64_t size, std::time_t mtime, char type) {
  std::string b(kTarBlock, '\0');
  std::memcpy(b.data(), name.data(), std::min<std::size_t>(name.size(), 100));
  put_octal(&b[100], 8, 0644);  // mode
  put_octal(&b[108], 8, 0);     // uid
  put_octal(&b[116], 8, 0);     // gid
  put_size(&b[124], size);
  put_octal(&b[136], 12, static_cast<std::uint64_t>(mtime < 0 ? 0 : mtime));
  std::memset(&b[148], ' ', 8);  // checksum counted as spaces
  b[156] = type;
  std::memcpy(&b[257], "ustar  ", 8);  // GNU magic + version ("ustar  \0")
  unsigned sum = 0;
  for (unsigned char c : b) {
    sum += c;
  }
  std::snprintf(&b[148], 8, "%06o", sum);  // six digits, NUL, then the space already there
  b[155] = ' ';
  return b;
}

}  // namespace

std::string tar_member_header(const std::string& name, std::uint64_t size, std::time_t mtime) {
  std::string out;
  if (name.size() > 100) {
    std::string longname = name + '\0';
    out += header_block("././@LongLink", longname.size(), 0, 'L');
    longname.resize((longname.size() + kTarBlock - 1) / kTarBlock * kTarBlock, '\0');
    out += longname;
  }
  out += header_block(name, size, mtime, '0');
  return out;
}

namespace {

// --- bundling stages (each owns the next) -------------------------------------------------

class PartSink {
 public:
  PartSink(std::string dir, std::string prefix, std::uint64_t part_size)
      : dir_(std::move(dir)), prefix_(std::move(prefix)), part_size_(part_size) {}

  Result<void> write(const char* p, std::size_t n) {
    while (n > 0) {
      if (fd_.get() < 0) {
        if (auto r = open_next(); !r) {
          return r;
        }
      }
      std::size_t room =
          static_cast<std::size_t>(std::min<std::uint64_t>(part_size_ - parts_.back().size, n));
      if (auto r = write_all(fd_.get(), p, room, parts_.back().path); !r) {
        return r;
      }
      sha1_->update(p, room);
      sha256_->update(p, room);
      parts_.back().size += room;
      total_ += room;
      p += room;
      n -= room;
      if (parts_.back().size == part_size_) {
        if (auto r = close_current(); !r) {
          return r;
        }
      }
    }
    return {};
  }

  Result<void> finish() { return close_current(); }
  std::vector<BundledPart>& parts() { return parts_; }
  std::uint64_t total() const { return total_; }

 private:
  Result<void> open_next() {
    BundledPart part;
    part.filename = part_name(prefix_, parts_.size());
    part.path = dir_ + "/" + part.filename;
    Fd fd(::open(part.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) {
      return fail(Errc::kIo, "create " + part.path + ": " + errno_text());
    }
    fd_ = std::move(fd);
    sha1_.emplace(Digest::Algo::kSha1);
    sha256_.emplace(Digest::Algo::kSha256);
    parts_.push_back(std::move(part));
    return {};
  }

  Result<void> close_current() {
    if (fd_.get() < 0) {
      return {};
    }
    if (!fd_.close_checked()) {
      return fail(Errc::kIo, "close " + parts_.back().path + ": " + errno_text());
    }
    parts_.back().sha1 = sha1_->final_hex();
    parts_.back().sha256 = sha256_->final_hex();
    sha1_.reset();
    sha256_.reset();
    return {};
  }

  std::string dir_;
  std::string prefix_;
  std::uint64_t part_size_;
  Fd fd_;
  std::optional<Digest> sha1_;
  std::optional<Digest> sha256_;
  std::vector<BundledPart> parts_;
  std::uint64_t total_ = 0;
};

class Encryptor {
 public:
  Encryptor(AesCbc aes, PartSink& sink) : aes_(std::move(aes)), sink_(sink) {}
  Result<void> write(const char* p, std::size_t n) {
    buf_.clear();
    if (auto r = aes_.update(p, n, buf_); !r) {
      return r;
    }
    return sink_.write(buf_.data(), buf_.size());
  }
  Result<void> finish() {
    buf_.clear();
    if (auto r = aes_.finish(buf_); !r) {
      return r;
    }
    if (auto r = sink_.write(buf_.data(), buf_.size()); !r) {
      return r;
    }
    return sink_.finish();
  }

 private:
  AesCbc aes_;
  PartSink& sink_;
  std::string buf_;
};

struct ZStreamDeflate {
  z_stream zs{};
  bool live = false;
  ~ZStreamDeflate() {
    if (live) {
      deflateEnd(&zs);
    }
  }
};

class Gzipper {
 public:
  explicit Gzipper(Encryptor& next) : next_(next), out_(kZBuf, '\0') {}

  Result<void> init() {
    // 16 + MAX_WBITS: a gzip wrapper (header + CRC-32 trailer) around raw deflate.
    if (deflateInit2(&z_.zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
      return fail(Errc::kIo, "zlib deflateInit2 failed");
    }
    z_.live = true;
    return {};
  }
  Result<void> write(const char* p, std::size_t n) { return run(p, n, Z_NO_FLUSH); }
  Result<void> finish() {
    if (auto r = run(nullptr, 0, Z_FINISH); !r) {
      return r;
    }
    return next_.finish();
  }

 private:
  Result<void> run(const char* p, std::size_t n, int flush) {
    z_.zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(p));
    z_.zs.avail_in = static_cast<uInt>(n);
    for (;;) {
      z_.zs.next_out = reinterpret_cast<Bytef*>(out_.data());
      z_.zs.avail_out = static_cast<uInt>(out_.size());
      int rc = deflate(&z_.zs, flush);
      if (rc == Z_STREAM_ERROR) {
        return fail(Errc::kIo, "zlib deflate failed");
      }
      std::size_t produced = out_.size() - z_.zs.avail_out;
      if (produced > 0) {
        if (auto r = next_.write(out_.data(), produced); !r) {
          return r;
        }
      }
      if (flush == Z_FINISH ? rc == Z_STREAM_END : (z_.zs.avail_in == 0 && z_.zs.avail_out != 0)) {
        return {};
      }
    }
  }

  Encryptor& next_;
  ZStreamDeflate z_;
  std::string out_;
};

// The tar stream of the bundle's one member, hashed (the manifest's <digest>) and passed on to
// the gzip stage; with no next stage only hashed (tar_digest()).
class TarStage {
 public:
  explicit TarStage(Gzipper* next) : next_(next), sha1_(Digest::Algo::kSha1) {}
  Result<void> write(const char* p, std::size_t n) {
    sha1_.update(p, n);
    written_ += n;
    return next_ ? next_->write(p, n) : Result<void>{};
  }
  // Pads the member to a block, writes the two zero end blocks, pads to a full record.
  Result<void> finish() {
    std::uint64_t pad = (kTarBlock - written_ % kTarBlock) % kTarBlock;
    std::uint64_t end = written_ + pad + 2 * kTarBlock;
    end = (end + kTarRecord - 1) / kTarRecord * kTarRecord;
    std::string zeros(end - written_, '\0');
    if (auto r = write(zeros.data(), zeros.size()); !r) {
      return r;
    }
    return next_ ? next_->finish() : Result<void>{};
  }
  std::string digest() { return sha1_.final_hex(); }

 private:
  Gzipper* next_;
  Digest sha1_;
  std::uint64_t written_ = 0;
};

// Streams the tar of one member (header, the file's bytes, padding, end blocks) into `tar`.
Result<void> write_tar(TarStage& tar, int fd, const std::string& path, const std::string& name,
                       const struct stat& st, const ProgressFn& progress) {
  const auto size = static_cast<std::uint64_t>(st.st_size);
  std::string header = tar_member_header(name, size, st.st_mtime);
  if (auto r = tar.write(header.data(), header.size()); !r) {
    return r;
  }
  std::string buf(kReadBlock, '\0');
  std::uint64_t done = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(Errc::kIo, "read " + path + ": " + errno_text());
    }
    if (n == 0) {
      break;
    }
    if (done + static_cast<std::uint64_t>(n) > size) {
      return fail(Errc::kIo, path + " grew while it was being bundled");
    }
    if (auto r = tar.write(buf.data(), static_cast<std::size_t>(n)); !r) {
      return r;
    }
    done += static_cast<std::uint64_t>(n);
    if (progress) {
      progress(done, size);
    }
  }
  if (done != size) {
    return fail(Errc::kIo, path + " shrank while it was being bundled");
  }
  return tar.finish();
}

Result<std::string> rsa_hex(const Key* key, std::string_view plain) {
  if (key == nullptr) {
    return std::string();
  }
  auto c = key->encrypt_pkcs1(plain);
  if (!c) {
    return conf::unexpected(c.error());
  }
  return to_hex(*c);
}

}  // namespace

Result<Bundle> bundle_image(const BundleOptions& opt) {
  if (opt.cloud_cert == nullptr) {
    return fail(Errc::kUsage, "bundling needs the cloud certificate (EUCALYPTUS_CERT, --ec2cert)");
  }
  if (opt.prefix.empty() || opt.prefix.find('/') != std::string::npos) {
    return fail(Errc::kUsage, "bundle prefix must be a plain file name: '" + opt.prefix + "'");
  }
  if (opt.part_size == 0) {
    return fail(Errc::kUsage, "part size must be positive");
  }
  Fd in(::open(opt.image_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) {
    return fail(Errc::kIo, "open " + opt.image_path + ": " + errno_text());
  }
  struct stat st {};
  if (::fstat(in.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return fail(Errc::kIo, opt.image_path + ": not a regular file");
  }
  ::posix_fadvise(in.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  const auto size = static_cast<std::uint64_t>(st.st_size);

  auto key = random_bytes(16);
  auto iv = random_bytes(16);
  if (!key || !iv) {
    return conf::unexpected(key ? iv.error() : key.error());
  }
  auto aes = AesCbc::create(true, *key, *iv);
  if (!aes) {
    return conf::unexpected(aes.error());
  }
  PartSink sink(opt.dest_dir, opt.prefix, opt.part_size);
  Encryptor enc(std::move(*aes), sink);
  Gzipper gz(enc);
  if (auto r = gz.init(); !r) {
    return conf::unexpected(r.error());
  }
  TarStage tar(&gz);

  if (auto r = write_tar(tar, in.get(), opt.image_path, opt.prefix, st, opt.progress); !r) {
    return conf::unexpected(r.error());
  }

  Bundle b;
  Manifest& m = b.manifest;
  m.architecture = opt.architecture;
  switch (opt.type) {
    case ImageType::kKernel:
      m.kernel_id = "true";
      break;
    case ImageType::kRamdisk:
      m.ramdisk_id = "true";
      break;
    case ImageType::kMachine:
      m.kernel_id = opt.kernel_id;
      m.ramdisk_id = opt.ramdisk_id;
      break;
  }
  m.name = opt.prefix;
  m.user = opt.user;
  m.type = opt.type;
  m.digest_sha1 = tar.digest();
  m.size = size;
  m.bundled_size = sink.total();
  // §3.2: what is RSA-encrypted is the 32-char lowercase hex text of key and IV.
  const std::string key_hex = to_hex(*key);
  const std::string iv_hex = to_hex(*iv);
  for (auto [dst, cert, plain] : {std::tuple{&m.ec2_encrypted_key, opt.cloud_cert, &key_hex},
                                  std::tuple{&m.user_encrypted_key, opt.user_cert, &key_hex},
                                  std::tuple{&m.ec2_encrypted_iv, opt.cloud_cert, &iv_hex},
                                  std::tuple{&m.user_encrypted_iv, opt.user_cert, &iv_hex}}) {
    auto h = rsa_hex(cert, *plain);
    if (!h) {
      return conf::unexpected(h.error());
    }
    *dst = std::move(*h);
  }
  for (const auto& p : sink.parts()) {
    m.parts.push_back(ManifestPart{p.filename, p.sha1});
  }
  if (opt.private_key != nullptr) {
    auto sig = opt.private_key->sign_sha1(signed_text(m));
    if (!sig) {
      return conf::unexpected(sig.error());
    }
    m.signature = to_hex(*sig);
  }
  b.parts = std::move(sink.parts());
  b.manifest_xml = serialize(m);
  b.manifest_path = opt.dest_dir + "/" + opt.prefix + ".manifest.xml";
  Fd out(::open(b.manifest_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (out.get() < 0) {
    return fail(Errc::kIo, "create " + b.manifest_path + ": " + errno_text());
  }
  if (auto r = write_all(out.get(), b.manifest_xml.data(), b.manifest_xml.size(), b.manifest_path);
      !r) {
    return conf::unexpected(r.error());
  }
  if (!out.close_checked()) {
    return fail(Errc::kIo, "close " + b.manifest_path + ": " + errno_text());
  }
  return b;
}

// --- unbundle -------------------------------------------------------------------------------

namespace {

struct ZStreamInflate {
  z_stream zs{};
  bool live = false;
  ~ZStreamInflate() {
    if (live) {
      inflateEnd(&zs);
    }
  }
};

// Pulls ciphertext from the parts in manifest order (checking each part's SHA-1 and the total),
// decrypts and gunzips it, and hands out the tar stream in bounded pieces, hashing it on the way.
class TarSource {
 public:
  TarSource(const Manifest& m, std::string dir, AesCbc aes, ProgressFn progress)
      : m_(m),
        dir_(std::move(dir)),
        aes_(std::move(aes)),
        progress_(std::move(progress)),
        tar_sha1_(Digest::Algo::kSha1),
        read_buf_(kReadBlock, '\0'),
        out_(kZBuf, '\0') {}

  Result<void> init() {
    if (inflateInit2(&z_.zs, 16 + MAX_WBITS) != Z_OK) {
      return fail(Errc::kIo, "zlib inflateInit2 failed");
    }
    z_.live = true;
    return {};
  }

  // Next piece of the tar stream; an empty view at the end. The view lives until the next call.
  Result<std::string_view> next() {
    for (;;) {
      if (gz_off_ < gz_.size()) {
        if (stream_end_) {
          // Another gzip member (pigz/cat'ed gzip files): start over; anything else is garbage.
          if (static_cast<unsigned char>(gz_[gz_off_]) != 0x1f) {
            return fail(Errc::kFormat, "unbundle: data after the end of the gzip stream");
          }
          inflateReset(&z_.zs);
          stream_end_ = false;
        }
        z_.zs.next_in = reinterpret_cast<Bytef*>(gz_.data() + gz_off_);
        z_.zs.avail_in = static_cast<uInt>(gz_.size() - gz_off_);
        z_.zs.next_out = reinterpret_cast<Bytef*>(out_.data());
        z_.zs.avail_out = static_cast<uInt>(out_.size());
        int rc = inflate(&z_.zs, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
          return fail(Errc::kFormat, std::string("unbundle: the decrypted data is not gzip (") +
                                         (z_.zs.msg ? z_.zs.msg : "zlib error") +
                                         "): wrong key or corrupt parts");
        }
        gz_off_ = gz_.size() - z_.zs.avail_in;
        if (rc == Z_STREAM_END) {
          stream_end_ = true;
          any_stream_ = true;
        }
        std::size_t produced = out_.size() - z_.zs.avail_out;
        if (produced > 0) {
          tar_sha1_.update(out_.data(), produced);
          tar_bytes_ += produced;
          return std::string_view(out_.data(), produced);
        }
        continue;
      }
      gz_.clear();
      gz_off_ = 0;
      if (auto r = fetch(); !r) {
        return conf::unexpected(r.error());
      }
      if (gz_.empty() && cipher_done_) {
        if (!stream_end_) {
          return fail(Errc::kFormat, "unbundle: the gzip stream is truncated");
        }
        return std::string_view();
      }
    }
  }

  std::string tar_digest() { return tar_sha1_.final_hex(); }
  std::uint64_t cipher_bytes() const { return cipher_bytes_; }

 private:
  // Appends decrypted bytes to gz_ (possibly none: a block boundary, an empty part).
  Result<void> fetch() {
    for (;;) {
      if (cipher_done_) {
        return {};
      }
      if (part_fd_.get() < 0) {
        if (part_ == m_.parts.size()) {
          if (cipher_bytes_ != m_.bundled_size) {
            return fail(Errc::kChecksum, "unbundle: the parts hold " +
                                             std::to_string(cipher_bytes_) +
                                             " bytes, the manifest says bundled_size " +
                                             std::to_string(m_.bundled_size));
          }
          cipher_done_ = true;
          return aes_.finish(gz_);
        }
        path_ = dir_ + "/" + m_.parts[part_].filename;
        part_fd_ = Fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
        if (part_fd_.get() < 0) {
          return fail(Errc::kIo, "unbundle: open part " + path_ + ": " + errno_text());
        }
        part_sha1_.emplace(Digest::Algo::kSha1);
      }
      ssize_t n = ::read(part_fd_.get(), read_buf_.data(), read_buf_.size());
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return fail(Errc::kIo, "unbundle: read " + path_ + ": " + errno_text());
      }
      if (n == 0) {
        std::string got = part_sha1_->final_hex();
        if (got != m_.parts[part_].sha1) {
          return fail(Errc::kChecksum, "unbundle: part " + m_.parts[part_].filename +
                                           " has SHA-1 " + got + ", the manifest says " +
                                           m_.parts[part_].sha1);
        }
        part_fd_.reset();
        ++part_;
        continue;
      }
      part_sha1_->update(read_buf_.data(), static_cast<std::size_t>(n));
      cipher_bytes_ += static_cast<std::uint64_t>(n);
      if (progress_) {
        progress_(cipher_bytes_, m_.bundled_size);
      }
      return aes_.update(read_buf_.data(), static_cast<std::size_t>(n), gz_);
    }
  }

  const Manifest& m_;
  std::string dir_;
  AesCbc aes_;
  ProgressFn progress_;
  Digest tar_sha1_;
  std::string read_buf_;
  std::string out_;
  std::string gz_;  // decrypted, still compressed
  std::size_t gz_off_ = 0;
  ZStreamInflate z_;
  bool stream_end_ = false;
  bool any_stream_ = false;
  bool cipher_done_ = false;
  std::size_t part_ = 0;
  Fd part_fd_;
  std::string path_;
  std::optional<Digest> part_sha1_;
  std::uint64_t cipher_bytes_ = 0;
  std::uint64_t tar_bytes_ = 0;
};

struct ArchiveReadFree {
  void operator()(archive* a) const { archive_read_free(a); }
};

struct ReadCtx {
  TarSource* src;
  std::optional<Error> error;
};

la_ssize_t read_cb(archive* a, void* client, const void** buf) {
  auto* ctx = static_cast<ReadCtx*>(client);
  auto piece = ctx->src->next();
  if (!piece) {
    ctx->error = piece.error();
    archive_set_error(a, EIO, "%s", piece.error().message.c_str());
    return -1;
  }
  *buf = piece->data();
  return static_cast<la_ssize_t>(piece->size());
}

// Decrypts "<hex of hex key>" with `key`; the plaintext must be 32 hex chars (§3.2).
Result<std::string> decrypt_hex16(const Key& key, const std::string& hex_cipher) {
  auto raw = from_hex(hex_cipher);
  if (!raw || raw->empty()) {
    return fail(Errc::kFormat, "empty or non-hex encrypted key");
  }
  auto plain = key.decrypt_pkcs1(*raw);
  if (!plain) {
    return conf::unexpected(plain.error());
  }
  auto bytes = from_hex(*plain);
  if (!bytes || bytes->size() != 16) {
    return fail(Errc::kCrypto, "decrypted key/IV is not 32 hex characters");
  }
  return *bytes;
}

bool all_zero(const char* p, std::size_t n) {
  static const char kZeros[4096] = {};
  while (n > 0) {
    std::size_t k = std::min(n, sizeof kZeros);
    if (std::memcmp(p, kZeros, k) != 0) {
      return false;
    }
    p += k;
    n -= k;
  }
  return true;
}

class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  ~TempFile() {
    if (!path_.empty()) {
      ::unlink(path_.c_str());
    }
  }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

// After a decoding failure: re-hash every part, so that a corrupt part is reported as such
// rather than as the gzip or tar error it caused further down the chain.
std::optional<Error> corrupt_part(const Manifest& m, const std::string& dir) {
  std::string buf(kReadBlock, '\0');
  for (const auto& part : m.parts) {
    std::string path = dir + "/" + part.filename;
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
      return Error{Errc::kIo, "unbundle: open part " + path + ": " + errno_text()};
    }
    Digest d(Digest::Algo::kSha1);
    ssize_t n;
    while ((n = ::read(fd.get(), buf.data(), buf.size())) > 0) {
      d.update(buf.data(), static_cast<std::size_t>(n));
    }
    std::string got = d.final_hex();
    if (got != part.sha1) {
      return Error{Errc::kChecksum, "unbundle: part " + part.filename + " has SHA-1 " + got +
                                        ", the manifest says " + part.sha1};
    }
  }
  return std::nullopt;
}

}  // namespace

namespace {
Result<Unbundled> unbundle_unchecked(const UnbundleOptions& opt, Manifest* seen);
}  // namespace

Result<Unbundled> unbundle(const UnbundleOptions& opt) {
  Manifest m;
  auto r = unbundle_unchecked(opt, &m);
  if (!r && r.error().code != Errc::kChecksum && r.error().code != Errc::kUsage &&
      !m.parts.empty()) {
    if (auto why = corrupt_part(m, opt.source_dir)) {
      return conf::unexpected(std::move(*why));
    }
  }
  return r;
}

namespace {
Result<Unbundled> unbundle_unchecked(const UnbundleOptions& opt, Manifest* seen) {
  if (opt.private_key == nullptr) {
    return fail(Errc::kUsage, "unbundle needs a private key (-k)");
  }
  std::ifstream mf(opt.manifest_path, std::ios::binary);
  if (!mf) {
    return fail(Errc::kIo, "cannot read manifest " + opt.manifest_path);
  }
  std::string xml;
  xml.resize(16 << 20);
  mf.read(xml.data(), static_cast<std::streamsize>(xml.size()));
  xml.resize(static_cast<std::size_t>(mf.gcount()));
  auto parsed = parse_manifest(xml);
  if (!parsed) {
    return fail(parsed.error().code, opt.manifest_path + ": " + parsed.error().message);
  }
  const Manifest& m = parsed->manifest;
  *seen = m;

  // The user's key opens user_encrypted_*; the cloud's opens ec2_encrypted_*.
  Unbundled out;
  bool used_user_key = true;
  auto key = decrypt_hex16(*opt.private_key, m.user_encrypted_key);
  auto iv = decrypt_hex16(*opt.private_key, m.user_encrypted_iv);
  if (!key || !iv) {
    used_user_key = false;
    key = decrypt_hex16(*opt.private_key, m.ec2_encrypted_key);
    iv = decrypt_hex16(*opt.private_key, m.ec2_encrypted_iv);
    if (!key || !iv) {
      return fail(Errc::kCrypto, opt.manifest_path +
                                     ": this private key opens neither user_encrypted_key/iv nor "
                                     "ec2_encrypted_key/iv");
    }
  }
  if (m.signature == "UNSIGNED") {
    out.signature = "unsigned";
  } else {
    const Key* verifier = opt.verify_cert ? opt.verify_cert
                          : used_user_key ? opt.private_key
                                          : nullptr;
    if (verifier == nullptr) {
      out.signature = "not checked";
    } else {
      auto sig = from_hex(m.signature);
      if (!sig || !verifier->verify_sha1(parsed->signed_text, *sig)) {
        return fail(Errc::kCrypto, opt.manifest_path + ": the manifest signature does not verify");
      }
      out.signature = "verified";
    }
  }

  auto aes = AesCbc::create(false, *key, *iv);
  if (!aes) {
    return conf::unexpected(aes.error());
  }
  TarSource src(m, opt.source_dir, std::move(*aes), opt.progress);
  if (auto r = src.init(); !r) {
    return conf::unexpected(r.error());
  }
  ReadCtx ctx{&src, std::nullopt};
  std::unique_ptr<archive, ArchiveReadFree> a(archive_read_new());
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_none(a.get());
  auto archive_fail = [&](const std::string& what) -> Error {
    if (ctx.error) {
      return *ctx.error;
    }
    const char* msg = archive_error_string(a.get());
    return Error{Errc::kFormat, "unbundle: " + what + ": " + (msg ? msg : "tar error")};
  };
  if (archive_read_open(a.get(), &ctx, nullptr, read_cb, nullptr) != ARCHIVE_OK) {
    return conf::unexpected(archive_fail("cannot read the tar stream"));
  }
  archive_entry* entry = nullptr;
  if (archive_read_next_header(a.get(), &entry) != ARCHIVE_OK) {
    return conf::unexpected(archive_fail("no tar member"));
  }
  if (archive_entry_filetype(entry) != AE_IFREG) {
    return fail(Errc::kFormat, "unbundle: the first tar member is not a regular file");
  }
  std::string member = archive_entry_pathname(entry) ? archive_entry_pathname(entry) : "";
  std::string base =
      member.substr(member.rfind('/') == std::string::npos ? 0 : member.rfind('/') + 1);
  if (base.empty() || base == "." || base == "..") {
    return fail(Errc::kUnsafe, "unbundle: unusable tar member name '" + member + "'");
  }
  const auto entry_size = static_cast<std::uint64_t>(archive_entry_size(entry));
  if (entry_size != m.size) {
    return fail(Errc::kChecksum, "unbundle: the tar member holds " + std::to_string(entry_size) +
                                     " bytes, the manifest says size " + std::to_string(m.size));
  }
  out.image_path = opt.dest_dir + "/" + base;
  std::string tmp_path = opt.dest_dir + "/." + base + ".tusk-partial";
  Fd fd(::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    return fail(Errc::kIo, "create " + tmp_path + ": " + errno_text());
  }
  TempFile guard(tmp_path);
  for (;;) {
    const void* block = nullptr;
    std::size_t len = 0;
    la_int64_t offset = 0;
    int rc = archive_read_data_block(a.get(), &block, &len, &offset);
    if (rc == ARCHIVE_EOF) {
      break;
    }
    if (rc != ARCHIVE_OK) {
      return conf::unexpected(archive_fail("reading the image from the tar stream"));
    }
    // Zero runs become holes: the file is truncated to its full size below.
    const char* p = static_cast<const char*>(block);
    if (all_zero(p, len)) {
      continue;
    }
    std::size_t done = 0;
    while (done < len) {
      ssize_t w = ::pwrite(fd.get(), p + done, len - done, offset + static_cast<off_t>(done));
      if (w < 0) {
        if (errno == EINTR) {
          continue;
        }
        return fail(Errc::kIo, "write " + tmp_path + ": " + errno_text());
      }
      done += static_cast<std::size_t>(w);
    }
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(m.size)) != 0) {
    return fail(Errc::kIo, "truncate " + tmp_path + ": " + errno_text());
  }
  // The rest of the stream (tar end blocks, record padding) still counts for the digests.
  for (;;) {
    auto piece = src.next();
    if (!piece) {
      return conf::unexpected(piece.error());
    }
    if (piece->empty()) {
      break;
    }
  }
  std::string digest = src.tar_digest();
  if (digest != m.digest_sha1) {
    return fail(Errc::kChecksum, "unbundle: the tar stream has SHA-1 " + digest +
                                     ", the manifest says " + m.digest_sha1);
  }
  if (!fd.close_checked()) {
    return fail(Errc::kIo, "close " + tmp_path + ": " + errno_text());
  }
  if (::rename(tmp_path.c_str(), out.image_path.c_str()) != 0) {
    return fail(Errc::kIo, "rename to " + out.image_path + ": " + errno_text());
  }
  guard.release();
  out.size = m.size;
  return out;
}

}  // namespace

Result<TarDigest> tar_digest(const std::string& image_path, const std::string& prefix) {
  Fd in(::open(image_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) {
    return fail(Errc::kIo, "open " + image_path + ": " + errno_text());
  }
  struct stat st {};
  if (::fstat(in.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return fail(Errc::kIo, image_path + ": not a regular file");
  }
  ::posix_fadvise(in.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  TarStage tar(nullptr);
  if (auto r = write_tar(tar, in.get(), image_path, prefix, st, nullptr); !r) {
    return conf::unexpected(r.error());
  }
  return TarDigest{tar.digest(), static_cast<std::uint64_t>(st.st_size)};
}

}  // namespace installer
