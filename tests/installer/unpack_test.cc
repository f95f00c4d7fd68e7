// Tests of installer/unpack.cc: member selection for single-kernel and hypervisor-specific
// layouts (pure, table-driven), member path safety, and extraction refusing traversal.
#include "installer/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace installer {
namespace {

std::vector<Member> members(std::initializer_list<const char*> paths) {
  std::vector<Member> out;
  for (const char* p : paths) {
    out.push_back(Member{p, "", 1});
  }
  return out;
}

TEST(Unpack, SingleKernelLayout) {
  auto m = members({"img/img.img", "img/vmlinuz-2.6", "img/initrd.img-2.6", "img/.hidden.img"});
  auto s = select_members(m, {});
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->kernel->path, "img/vmlinuz-2.6");
  EXPECT_EQ(s->ramdisk->path, "img/initrd.img-2.6");
  EXPECT_EQ(s->image.path, "img/img.img") << "initrd.img-* is not the machine image";
}

TEST(Unpack, HypervisorSpecificLayout) {
  auto m = members({"c/c.img", "c/xen-kernel/vmlinuz-xen", "c/xen-kernel/initrd-xen",
                    "c/kvm-kernel/vmlinuz-kvm", "c/kvm-kernel/initramfs-kvm"});
  auto kvm = select_members(m, {"kvm", true, true});
  ASSERT_TRUE(kvm) << kvm.error().message;
  EXPECT_EQ(kvm->kernel->path, "c/kvm-kernel/vmlinuz-kvm");
  EXPECT_EQ(kvm->ramdisk->path, "c/kvm-kernel/initramfs-kvm");
  EXPECT_EQ(kvm->image.path, "c/c.img");
  auto xen = select_members(m, {"xen", true, true});
  ASSERT_TRUE(xen);
  EXPECT_EQ(xen->kernel->path, "c/xen-kernel/vmlinuz-xen");
  auto none = select_members(m, {});
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("kvm, xen"), std::string::npos) << none.error().message;
  auto universal = select_members(m, {"universal", true, true});
  ASSERT_FALSE(universal) << "no kernel at the root";
}

TEST(Unpack, OnlyKvmFolderIsPickedAutomatically) {
  auto m = members({"c/c.img", "c/kvm-kernel/vmlinuz", "c/kvm-kernel/initrd"});
  auto s = select_members(m, {});
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->kernel->path, "c/kvm-kernel/vmlinuz");
}

TEST(Unpack, GivenKernelAndRamdiskSkipTheSearch) {
  auto m = members({"c/c.img"});
  auto s = select_members(m, {"", false, false});
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_FALSE(s->kernel);
  EXPECT_EQ(s->image.path, "c/c.img");
}

TEST(Unpack, Errors) {
  EXPECT_FALSE(select_members(members({"a/vmlinuz", "a/initrd"}), {}));  // no image
  EXPECT_FALSE(select_members(members({"a/a.img", "a/initrd"}), {}));    // no kernel
  EXPECT_FALSE(select_members({}, {}));
  auto no_ramdisk = select_members(members({"a/a.img", "a/vmlinuz"}), {});
  ASSERT_TRUE(no_ramdisk);
  EXPECT_FALSE(no_ramdisk->ramdisk);
  EXPECT_FALSE(no_ramdisk->notes.empty());
}

TEST(Unpack, SafeMemberPath) {
  struct {
    std::string in;
    bool ok;
    std::string out;
  } cases[] = {
      {"a/b", true, "a/b"},     {"./a//b/", true, "a/b"}, {"/etc/passwd", false, ""},
      {"a/../../b", false, ""}, {"..", false, ""},        {"a/..b", true, "a/..b"},
  };
  for (const auto& c : cases) {
    auto r = safe_member_path(c.in);
    ASSERT_EQ(r.has_value(), c.ok) << c.in;
    if (c.ok) {
      EXPECT_EQ(*r, c.out);
    } else {
      EXPECT_EQ(r.error().code, Errc::kUnsafe);
    }
  }
}

TEST(Unpack, ExtractRefusesTraversalAndSkipsSymlinks) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("tusk-unpack-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "out");
  auto write_tar = [&](const fs::path& path, std::vector<std::pair<std::string, std::string>> files,
                       bool with_symlink) {
    archive* a = archive_write_new();
    archive_write_add_filter_gzip(a);
    archive_write_set_format_gnutar(a);
    archive_write_open_filename(a, path.c_str());
    if (with_symlink) {
      archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, "img/link");
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_symlink(e, "/etc");
      archive_write_header(a, e);
      archive_entry_free(e);
    }
    for (const auto& [name, data] : files) {
      archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, name.c_str());
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
      archive_entry_set_mtime(e, 1300000000, 0);
      archive_write_header(a, e);
      archive_write_data(a, data.data(), data.size());
      archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
  };
  write_tar(dir / "good.tgz", {{"img/img.img", "disk"}, {"img/vmlinuz", "k"}}, true);
  auto good = extract_tarball((dir / "good.tgz").string(), (dir / "out").string());
  ASSERT_TRUE(good) << good.error().message;
  ASSERT_EQ(good->size(), 2u);
  EXPECT_FALSE(fs::exists(dir / "out" / "img" / "link"));
  EXPECT_EQ(fs::file_size(dir / "out" / "img" / "img.img"), 4u);
  // The member's mtime is kept (it is in the bundle's tar header: same tarball, same digest).
  struct stat st {};
  ASSERT_EQ(::stat((dir / "out" / "img" / "img.img").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtime, 1300000000);

  write_tar(dir / "evil.tgz", {{"img/../../evil", "x"}}, false);
  auto evil = extract_tarball((dir / "evil.tgz").string(), (dir / "out").string());
  ASSERT_FALSE(evil);
  EXPECT_EQ(evil.error().code, Errc::kUnsafe);
  EXPECT_FALSE(fs::exists(dir / "evil"));

  {
    std::FILE* f = std::fopen((dir / "junk.tgz").c_str(), "w");
    std::fputs("not a tarball at all", f);
    std::fclose(f);
  }
  auto junk = extract_tarball((dir / "junk.tgz").string(), (dir / "out").string());
  EXPECT_FALSE(junk);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace installer
